"""Build the read-only index before the server starts (a Kubernetes init container, an on-premise ExecStartPre):
`python -m eolake_thesaurus.prepare [VOCABULARY_DIR]` imports the vocabulary files found there (default
EOLAKE_THESAURUS_VOCABULARIES, else /app/vocabularies, where the image keeps them) into <storage_path>/thesaurus,
left as one file that a server can read from a read-only mount. An index already filled is left as it is; no
vocabulary file at all is an error (exit 2), so a pod never serves an empty thesaurus."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from eolake_thesaurus.demo import DEMO, load_demo_vocabularies
from eolake_thesaurus.settings import ThesaurusSettings, index_path
from eolake_thesaurus.store import is_empty, seal

IMAGE_VOCABULARIES = Path("/app/vocabularies")  # where the thesaurus image carries them (infra/images/dockerfiles.py)


def main(argv: list[str]) -> int:
    source = Path(argv[0] if argv else os.environ.get("EOLAKE_THESAURUS_VOCABULARIES", IMAGE_VOCABULARIES))
    storage = ThesaurusSettings().storage_path
    if not any((source / name).is_file() for name, _, _ in DEMO):
        print(f"{source}: no vocabulary file ({', '.join(name for name, _, _ in DEMO)})", file=sys.stderr)
        return 2
    reports = load_demo_vocabularies(storage, source)
    filled = not is_empty(index_path(storage))
    seal(index_path(storage))  # last: every writer, is_empty included, turns WAL back on
    print(
        f"{index_path(storage)}: {'filled' if filled else 'empty'}; "
        f"imported {', '.join(r.vocabulary for r in reports) or 'nothing (already filled)'}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
