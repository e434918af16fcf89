#!/usr/bin/env python3
"""Build, on the controller, the offline wheelhouse of one eolake release for the app hosts.

    build_wheelhouse.py SOURCE_DIR CACHE_DIR PACKAGE...

The release id is a hash of uv.lock and the workspace sources: the same checkout gives the same id, and the hosts
install a release once. CACHE_DIR/eolake-<release>.tar.gz holds the dependencies pinned as uv.lock has them
(`uv export --frozen --no-dev`), their wheels (`pip wheel`, hashes checked) and the workspace packages' wheels
(`uv build`), and the controller's uv binary that installs them on the hosts. Prints
{"release": ..., "archive": ..., "built": bool} as JSON.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

KEEP_ARCHIVES = 3  # the cache keeps the newest releases' archives (a rollback or an upgrade needs the last ones)


def release_id(source: Path) -> str:
    digest = hashlib.sha256(Path(__file__).read_bytes())  # a new way of building is a new release
    files = [source / "uv.lock", source / "pyproject.toml"]
    files += sorted(
        p
        for p in (source / "apps").rglob("*")
        if p.is_file() and "__pycache__" not in p.parts and p.suffix not in (".pyc", ".pyo")
    )
    for path in files:
        digest.update(str(path.relative_to(source)).encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:16]


def uv(source: Path) -> str:
    local = source / ".tools" / "bin" / "uv"
    found = str(local) if local.exists() else shutil.which("uv")
    if not found:
        sys.exit("uv is not installed on the controller (./eolake installs it into .tools/bin)")
    return found


def export(source: Path, packages: list[str], *options: str) -> list[str]:
    command = [
        uv(source),
        "export",
        "--frozen",
        "--no-dev",
        "--quiet",
        "--no-header",
        *options,
        *(arg for name in packages for arg in ("--package", name)),
    ]
    lines = subprocess.run(
        command, check=True, cwd=source, env={**os.environ, "UV_SYSTEM_CERTS": "1"}, stdout=subprocess.PIPE, text=True
    ).stdout.splitlines()
    return lines


def build(source: Path, stage: Path, packages: list[str]) -> None:
    """requirements.txt: the dependencies with uv.lock's hashes, checked here by pip when it fetches them;
    pinned.txt: the same versions without hashes, for the hosts (a wheel built here from an sdist has no published
    hash); workspace/: the eolake packages they need."""
    locked = export(source, packages)
    members = [line.removeprefix("-e ").strip() for line in locked if line.startswith("-e ")]
    (stage / "requirements.txt").write_text("\n".join(line for line in locked if not line.startswith("-e ")) + "\n")
    (stage / "pinned.txt").write_text("\n".join(export(source, packages, "--no-hashes", "--no-emit-workspace")) + "\n")
    run = {
        "check": True,
        "cwd": source,
        "env": {**os.environ, "UV_SYSTEM_CERTS": "1", "PIP_CONSTRAINT": ""},
        "stdout": sys.stderr,
    }
    (stage / "bin").mkdir()
    shutil.copy2(uv(source), stage / "bin" / "uv")  # the hosts install with the controller's uv, offline
    for member in members:
        subprocess.run(
            [uv(source), "build", "--wheel", "--quiet", "--out-dir", str(stage / "workspace"), member], **run
        )
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--require-hashes",
            "--quiet",
            "-r",
            str(stage / "requirements.txt"),
            "-w",
            str(stage / "wheels"),
        ],
        **run,
    )


def main(argv: list[str]) -> int:
    source, cache, packages = Path(argv[0]).resolve(), Path(argv[1]).expanduser().resolve(), argv[2:]
    release = release_id(source)
    archive = cache / f"eolake-{release}.tar.gz"
    built = not archive.exists()
    if built:
        cache.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=cache) as tmp:
            stage = Path(tmp) / release
            stage.mkdir()
            build(source, stage, packages)
            partial = Path(tmp) / archive.name
            with tarfile.open(partial, "w:gz") as tar:
                tar.add(stage, arcname=".")
            os.replace(partial, archive)  # all or nothing: a failed build leaves no archive
        for old in sorted(cache.glob("eolake-*.tar.gz"), key=lambda p: p.stat().st_mtime)[:-KEEP_ARCHIVES]:
            old.unlink()
    print(json.dumps({"release": release, "archive": str(archive), "built": built}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
