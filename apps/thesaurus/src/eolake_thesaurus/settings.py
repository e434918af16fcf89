from __future__ import annotations

from pathlib import Path

from pydantic import Field

from eolake_kit import ServiceSettings
from eolake_thesaurus.manifest import MANIFEST
from eolake_thesaurus.store import index_path


class ThesaurusSettings(ServiceSettings):
    manifest = MANIFEST

    storage_path: Path = Field(Path("data"), description="the platform's storage folder; the index is thesaurus/")
    index_file: Path | None = Field(None, description="the SQLite index; default <storage_path>/thesaurus/index.sqlite")
    max_limit: int = Field(200, ge=1, le=10000, description="largest page a search or autocomplete returns")
    max_depth: int = Field(3, ge=0, le=10, description="deepest narrower expansion a client may ask for")

    @property
    def index_path(self) -> Path:
        return self.index_file or index_path(self.storage_path)
