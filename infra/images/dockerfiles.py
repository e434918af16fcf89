"""Writes apps/<service>/Dockerfile for the Python services from ONE template (the web view, with its npm stage,
keeps its own). The member list is generated from apps/*/pyproject.toml, so a new package needs no edits here.

    python infra/images/dockerfiles.py          # write
    python infra/images/dockerfiles.py --check  # exit 1 when a Dockerfile differs (tests/test_dockerfiles.py)
"""

from __future__ import annotations

import sys
from pathlib import Path

from eolake_thesaurus.prepare import IMAGE_VOCABULARIES

from eolake_spec import manifest

REPO = Path(__file__).resolve().parents[2]

SERVICES: dict[str, dict] = {
    "catalog": {
        "summary": "eolake catalog image (stac-fastapi-pgstac behind the eolake service kit).",
        "label": "eolake catalog service: STAC API over the eolake data lake",
        "usage": [
            "docker run --read-only --tmpfs /tmp -p 8081:8081 \\",
            "    -e EOLAKE_CATALOG_DATABASE_URL=postgresql://user:password@host:5432/eolake eolake-catalog",
        ],
    },
    "tiles": {
        "summary": "eolake tiles image (titiler-pgstac map tiles, previews and statistics behind the eolake service kit).",
        "label": "eolake tile service: titiler-pgstac map tiles, previews and statistics of the catalogued rasters",
        "usage": [
            "docker run --read-only --tmpfs /tmp -p 8082:8082 \\",
            "    -e EOLAKE_TILES_DATABASE_URL=postgresql://user:password@host:5432/eolake \\",
            "    -e EOLAKE_TILES_STORAGE_PATH=/data -v /srv/eolake/data:/data:ro eolake-tiles",
        ],
    },
    "timeseries": {
        "summary": "eolake timeseries image (hydrology virtual stations and water-level series behind the service kit).",
        "label": "eolake time-series service: hydrology virtual stations and water-level series",
        "usage": [
            "docker run --read-only --tmpfs /tmp -p 8083:8083 \\",
            '    -e EOLAKE_TIMESERIES_PEERS=\'{"catalog": {"url": "http://catalog:8081/stac"}}\' \\',
            "    -e EOLAKE_TIMESERIES_STORAGE_PATH=/data -v /srv/eolake/data:/data:ro eolake-timeseries",
        ],
    },
    "thesaurus": {
        "summary": "eolake thesaurus image (SKOS vocabularies in an embedded SQLite index, Skosmos-compatible REST API).",
        "label": "eolake thesaurus service: SKOS vocabularies with a Skosmos-compatible API",
        "env": {"STORAGE_PATH": "/data"},
        # The French-English dictionaries (GPL, from Debian) that prepare imports from /usr/share/dictd.
        "packages": ["dict-freedict-fra-eng", "dict-freedict-eng-fra"],
        "build": "--build-context vocabularies=../shared/data/thesauri ",
        "usage": [
            "docker run --read-only --tmpfs /tmp -v thesaurus-data:/data eolake-thesaurus \\",
            "    /app/.venv/bin/python -m eolake_thesaurus.prepare   # once: the index, from the image's files",
            "docker run --read-only --tmpfs /tmp -v thesaurus-data:/data:ro -p 8085:8085 \\",
            "    -e EOLAKE_THESAURUS_STORAGE_PATH=/data eolake-thesaurus",
            "",
            "The vocabularies (GEMET en+fr, EEA; INSPIRE themes, European Commission; public, re-use with",
            "attribution) are not in the repository: the build takes them from the named build context",
            "`vocabularies` (a directory holding the files below, e.g. downloaded from the EEA and the INSPIRE",
            "registry) and refuses any file whose SHA-256 is not the one pinned here.",
        ],
        # Files the image carries for `python -m eolake_thesaurus.prepare` (its default directory), by SHA-256.
        "data": {
            "context": "vocabularies",
            "target": str(IMAGE_VOCABULARIES),
            "files": {
                "gemet-en.rdf": "00485117f5a52042eb4e825a54552fa30cbae56c94b7c68f4c88a8cdffcd3aca",
                "gemet-fr.rdf": "6f7aa7dc68a3d7621a7fc621a5b9170b4bd1f912bdab1bb8f209b9d242ce8b4c",
                "inspire-theme.rdf": "cdb57c387ca7e669e2d7cce2ba24de7787c7b7dbc3a2bba64464257c84609016",
            },
        },
    },
    "search": {
        "summary": "eolake federated search image (STAC API over several providers, queried in parallel; EODAG offline).",
        "label": "eolake federated search: a STAC API over several providers, in parallel, with EODAG",
        "env": {"STORAGE_PATH": "/tmp"},
        "usage": [
            "docker run --read-only --tmpfs /tmp -p 8086:8086 \\",
            '    -e EOLAKE_SEARCH_TOKEN_KEY="$(cat signing.key)" \\',
            '    -e EOLAKE_SEARCH_PEERS=\'{"catalog": {"url": "http://catalog:8081/stac"}, \\',
            '                           "thesaurus": {"url": "http://thesaurus:8085/thesaurus"}}\' eolake-search',
        ],
    },
    "events": {
        "summary": "eolake events image: the outbox relay publishing catalog and order changes as CloudEvents to AMQP.",
        "label": "eolake events service: catalog and order changes as CloudEvents on an AMQP topic exchange",
        "usage": [
            "docker run --read-only --tmpfs /tmp -p 8088:8088 \\",
            "    -e EOLAKE_EVENTS_DATABASE_URL=postgresql://user:password@host:5432/eolake \\",
            "    -e EOLAKE_EVENTS_AMQP_URL=amqp://user:password@broker:5672/ eolake-events",
            "",
            "The outbox and its triggers are created by a migration step run as a database superuser:",
            "python -m eolake_events.schema postgresql://postgres@host:5432/eolake eolake_app",
        ],
    },
    "downloads": {
        "summary": "eolake download service image: the orders API, and (same image, another command) the staging workers.",
        "label": "eolake download service: orders, staging workers, resumable downloads",
        "usage": [
            "docker run --read-only --tmpfs /tmp -v /srv/eolake:/data -p 8087:8087 \\",
            "    -e EOLAKE_DOWNLOADS_STORAGE_PATH=/data \\",
            "    -e EOLAKE_DOWNLOADS_DATABASE_URL=postgresql://user:password@host:5432/eolake eolake-downloads",
            "docker run ... eolake-downloads python -m eolake_downloads.worker   # a worker",
            "",
            "The schema (tables and the procrastinate queue) is created by a migration step run as a database",
            "owner: python -m eolake_downloads.schema postgresql://owner@host/eolake eolake_app",
        ],
    },
}

TEMPLATE = """{summary}
# Generated by infra/images/dockerfiles.py from one template: edit it there, then run it.
#
# The build context is the repository root (the uv workspace), not this directory:
#
#   docker build {build}-f apps/{name}/Dockerfile -t eolake-{name} .
#
# Run it with a read-only root filesystem; the only writable path the service may use is /tmp:
#
{usage}#
# Needs BuildKit (the default builder since Docker 23) for the uv cache mounts.
# Checked without Docker by tests/test_dockerfiles.py, which replays the builder's `uv sync` locally.

# ---------------------------------------------------------------------------------------------------------
# Builder: resolve nothing, install exactly what uv.lock pins for eolake-{name} into /app/.venv.
# ---------------------------------------------------------------------------------------------------------
FROM python:3.11-slim-bookworm AS builder

# uv comes from PyPI (no curl | sh, no ghcr.io image): only PyPI and Debian are allowed sources.
RUN pip install --no-cache-dir --disable-pip-version-check uv==0.13.9

ENV UV_COMPILE_BYTECODE=1 \\
    UV_LINK_MODE=copy \\
    UV_PYTHON_DOWNLOADS=never \\
    UV_PYTHON=/usr/local/bin/python3.11 \\
    UV_PROJECT_ENVIRONMENT=/app/.venv

WORKDIR /app

# The workspace definition first: the lock, the root pyproject and every member's pyproject.toml
# (the workspace is apps/*; the list is generated from it). Only kit and {name} sources follow later.
COPY uv.lock pyproject.toml ./
{members}
# Third-party dependencies only: this layer is reused until uv.lock or a pyproject changes.
RUN --mount=type=cache,target=/root/.cache/uv \\
    uv sync --frozen --package eolake-{name} --no-dev --no-editable --no-install-workspace

# Then the two workspace packages the service needs, installed as real wheels (no editable links to /app/apps).
COPY apps/spec/src apps/spec/src
COPY apps/kit/src apps/kit/src
COPY apps/{name}/src apps/{name}/src
RUN --mount=type=cache,target=/root/.cache/uv \\
    uv sync --frozen --package eolake-{name} --no-dev --no-editable

{data_stage}# ---------------------------------------------------------------------------------------------------------
# Runtime: the same base (the venv's python links to /usr/local/bin/python3.11), no uv, no build tools,
# no sources; just the venv, owned by root and read-only for the service user.
# ---------------------------------------------------------------------------------------------------------
FROM python:3.11-slim-bookworm

LABEL org.opencontainers.image.title="eolake-{name}" \\
      org.opencontainers.image.description="{label}"

RUN groupadd --system --gid 10001 eolake \\
    && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \\
       --shell /usr/sbin/nologin eolake

{packages}COPY --from=builder /app/.venv /app/.venv
{data_copy}
ENV PATH=/app/.venv/bin:$PATH \\
    PYTHONDONTWRITEBYTECODE=1 \\
    PYTHONUNBUFFERED=1 \\
    TMPDIR=/tmp \\
{env}    EOLAKE_{NAME}_HOST=0.0.0.0

WORKDIR /app
USER 10001:10001
EXPOSE {port}
STOPSIGNAL SIGTERM

# Liveness only (/healthz never touches a dependency); python's urllib because slim has no curl.
# A non-2xx answer or no answer raises, so the check exits non-zero.
HEALTHCHECK --interval=15s --timeout=5s --start-period=20s --retries=3 \\
    CMD ["/app/.venv/bin/python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('EOLAKE_{NAME}_PORT', '{port}'), timeout=4)"]

ENTRYPOINT ["/app/.venv/bin/python", "-m", "eolake_{name}"]
"""


def members() -> str:
    """Every workspace member's pyproject (uv checks the whole workspace), the kit first."""
    names = (
        ["apps/kit"]
        + sorted(str(p.parent.relative_to(REPO)) for p in REPO.glob("apps/*/pyproject.toml") if p.parent.name != "kit")
        + ["infra"]
    )
    return "".join(f"COPY {n}/pyproject.toml {n}/pyproject.toml\n" for n in names)


DATA_STAGE = """# ---------------------------------------------------------------------------------------------------------
# Data: the files of the build context `{context}` (docker build --build-context {context}=DIR), each checked
# against its pinned SHA-256; a missing or different file fails the build.
# ---------------------------------------------------------------------------------------------------------
FROM python:3.11-slim-bookworm AS {context}-checked

COPY --from={context} {names} /{context}/
RUN cd /{context} && printf '%s  %s\\n' \\
{sums}    | sha256sum --check --strict - \\
    && chmod 0444 /{context}/*

"""


def data_stage(data: dict | None) -> tuple[str, str]:
    """The stage that checks a service's data files, and the COPY that puts them into the runtime image."""
    if not data:
        return "", ""
    context, files = data["context"], data["files"]
    sums = "".join(f"        {digest} {name} \\\n" for name, digest in files.items())
    stage = DATA_STAGE.format(context=context, names=" ".join(files), sums=sums)
    return stage, f"COPY --from={context}-checked /{context} {data['target']}\n"


def packages(names: list[str]) -> str:
    """The Debian packages a service reads data from at run time (no build tools, no apt lists kept)."""
    if not names:
        return ""
    return (
        "RUN apt-get update \\\n    && apt-get install --yes --no-install-recommends "
        + " ".join(names)
        + " \\\n    && rm -rf /var/lib/apt/lists/*\n\n"
    )


def render(name: str) -> str:
    s = SERVICES[name]
    usage = "".join(f"#   {line}\n" if line else "#\n" for line in s["usage"])
    env = "".join(f"    EOLAKE_{name.upper()}_{key}={value} \\\n" for key, value in s.get("env", {}).items())
    stage, copy = data_stage(s.get("data"))
    return TEMPLATE.format(
        summary="# " + s["summary"],
        usage=usage,
        members=members(),
        label=s["label"],
        port=manifest(name).port,
        name=name,
        NAME=name.upper(),
        env=env,
        build=s.get("build", ""),
        data_stage=stage,
        data_copy=copy,
        packages=packages(s.get("packages", [])),
    )


def main(argv: list[str]) -> int:
    stale = []
    for name in SERVICES:
        path = REPO / "apps" / name / "Dockerfile"
        text = render(name)
        if "--check" in argv:
            if not path.exists() or path.read_text() != text:
                stale.append(str(path.relative_to(REPO)))
        else:
            path.write_text(text)
    if stale:
        print("out of date: " + ", ".join(stale) + " (run python infra/images/dockerfiles.py)")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
