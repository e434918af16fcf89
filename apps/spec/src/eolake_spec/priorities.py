"""External search providers, and the priorities that order them (with the platform's own, `local`) per collection."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from eolake_spec.base import Strict


class Provider(Strict):
    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]*$")
    kind: Literal["stac", "eodag"]
    url: str | None = None
    enabled: bool = False
    timeout_seconds: float = Field(10, gt=0, le=120)
    collections: list[str] = Field([], description="search only these collections of the provider (empty: all)")
    free_text: Literal["q", "filter"] = Field("q", description="send free text as `q`, or as a CQL2 filter")
    item_search: bool = Field(True, description="search its items (off: its collections are only discoverable)")


def check_priorities(priorities: dict[str, list[str]], providers: list[Provider]) -> None:
    """Each collection's priorities name enabled providers (or `local`), each once."""
    known = {"local", *(p.name for p in providers if p.enabled)}
    for collection, names in priorities.items():
        unknown = [n for n in names if n not in known]
        if unknown:
            raise ValueError(
                f"priorities.{collection}: {', '.join(unknown)} not an enabled provider "
                f"(known: {', '.join(sorted(known))})"
            )
        if len(set(names)) != len(names):
            raise ValueError(f"priorities.{collection}: a provider is named twice")
