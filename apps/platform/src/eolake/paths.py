"""Where things are: the repository (for stacks/ and the sample data beside it) and the state directory."""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[4]
SHARED_DATA = Path(os.environ.get("EOLAKE_SHARED_DATA", REPO_ROOT.parent / "shared" / "data"))


def default_state_dir() -> Path:
    return Path(os.environ.get("EOLAKE_STATE_DIR", REPO_ROOT / ".eolake"))
