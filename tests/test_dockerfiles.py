"""Static checks of every apps/*/Dockerfile, and a local replay of the builder's `uv sync` (no Docker needed).

The build context of every image is the repository root: `docker build -f apps/<app>/Dockerfile .`
"""

from __future__ import annotations

import http.server
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import threading
import tomllib
from pathlib import Path

import pytest

from dockerfile import (
    Instruction,
    Stage,
    context_copies,
    dockerignore_rules,
    expand_source,
    ignored,
    image_is_pinned,
    parse_dockerfile,
    stage_by_ref,
)

ROOT = Path(__file__).resolve().parents[1]
DOCKERFILES = sorted(ROOT.glob("apps/*/Dockerfile"))
IDS = [p.parent.name for p in DOCKERFILES]

BUILD_TOOLS = re.compile(
    r"(?<![\w.+-])(gcc|g\+\+|cc|clang|make|cmake|build-essential|pkg-config|[\w.+]+-dev)(?![\w.+-])"
)
PACKAGE_INSTALL = re.compile(
    r"\b(apt-get|apt|aptitude)\s+(?:-\S+\s+)*install\b|\bapk\s+add\b|\b(yum|dnf|microdnf)\s+install\b"
)
DEV_DISTRIBUTIONS = re.compile(r"^(pytest(-.*)?|robotframework(-.*)?|ruff|mypy|coverage|hypothesis)$")


# ----------------------------------------------------------------------------------------------------------
# Static checks, one run per Dockerfile
# ----------------------------------------------------------------------------------------------------------


def test_every_service_with_an_entry_point_has_a_dockerfile():
    services = {p.parents[2].name for p in ROOT.glob("apps/*/src/eolake_*/__main__.py")}
    assert services >= {"catalog", "tiles", "downloads", "web"}
    assert {p.parent.name for p in DOCKERFILES} >= services


def test_generated_dockerfiles_match_their_template():
    result = subprocess.run(
        [sys.executable, str(ROOT / "infra/images/dockerfiles.py"), "--check"], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.fixture(params=DOCKERFILES, ids=IDS)
def dockerfile(request) -> Path:
    return request.param


@pytest.fixture
def stages(dockerfile) -> list[Stage]:
    return parse_dockerfile(dockerfile)


def test_multi_stage(stages):
    assert len(stages) >= 2, "build in one stage, run from a clean second stage"


def named_contexts(dockerfile: Path) -> set[str]:
    """The build contexts the header's `docker build` command passes (--build-context NAME=DIR)."""
    return set(re.findall(r"--build-context ([\w-]+)=", dockerfile.read_text().split("\nFROM ", 1)[0]))


def test_base_images_pinned_to_a_tag(dockerfile, stages):
    for stage in stages:
        if stage.image == "scratch" or stage_by_ref(stages, stage.image, stage.index):
            continue
        assert image_is_pinned(stage.image), f"FROM {stage.image}: pin a tag (not latest) or a digest"
    for stage in stages:
        for ins in stage.all("COPY"):
            ref = ins.flags_and_rest()[0].get("from")
            if ref and not stage_by_ref(stages, ref, stage.index) and ref not in named_contexts(dockerfile):
                assert image_is_pinned(ref), f"line {ins.line}: COPY --from={ref}: pin a tag or a digest"


def test_copy_from_refers_to_an_earlier_stage_a_named_context_or_pinned_image(dockerfile, stages):
    for stage in stages:
        for ins in stage.all("COPY"):
            ref = ins.flags_and_rest()[0].get("from")
            if ref and not stage_by_ref(stages, ref, stage.index) and ref not in named_contexts(dockerfile):
                assert "/" in ref or ":" in ref, f"line {ins.line}: COPY --from={ref}: no such earlier stage"


def test_final_stage_runs_as_a_non_root_numeric_user(stages):
    user = stages[-1].last("USER")
    assert user is not None, "the final stage needs a USER"
    name = user.args.split(":")[0].strip()
    assert name not in ("root", "0", ""), f"USER {user.args}: the service must not run as root"
    # Kubernetes' runAsNonRoot can only verify a numeric uid.
    assert name.isdigit(), f"USER {user.args}: use a numeric uid"


def test_no_build_tools_in_final_stage(stages):
    final = stages[-1]
    for ins in final.all("RUN"):
        _, command = ins.flags_and_rest()
        for segment in re.split(r"&&|;|\|\|", command):
            if PACKAGE_INSTALL.search(segment):
                tools = BUILD_TOOLS.findall(PACKAGE_INSTALL.split(segment)[-1])
                assert not tools, f"line {ins.line}: build tools {tools} installed in the final stage"


def test_entrypoint_or_cmd(stages):
    final = stages[-1]
    assert final.last("ENTRYPOINT") or final.last("CMD"), "the final stage needs an ENTRYPOINT or a CMD"
    for ins in (final.last("ENTRYPOINT"), final.last("CMD")):
        if ins is not None:
            assert ins.args.startswith("["), f"line {ins.line}: use the exec form so the process gets SIGTERM"


def test_healthcheck(stages):
    health = stages[-1].last("HEALTHCHECK")
    assert health is not None, "the final stage needs a HEALTHCHECK"
    _, rest = health.flags_and_rest()
    assert rest.split()[0].upper() == "CMD", f"line {health.line}: HEALTHCHECK {rest.split()[0]}"
    command = healthcheck_command(health)
    if len(command) >= 3 and command[1] == "-c" and "python" in Path(command[0]).name:
        compile(command[2], "HEALTHCHECK", "exec")  # the quoting survived


def healthcheck_command(health: Instruction) -> list[str]:
    _, rest = health.flags_and_rest()
    body = rest.split(None, 1)[1]
    return json.loads(body) if body.startswith("[") else ["/bin/sh", "-c", body]


def test_every_copy_source_exists_and_is_in_the_build_context(stages):
    rules = dockerignore_rules()
    for stage in stages:
        for ins, sources, _ in context_copies(stage):
            for source in sources:
                assert not re.match(r"^[a-z]+://", source), f"line {ins.line}: no remote sources ({source})"
                matches = expand_source(source)
                assert matches, f"line {ins.line}: {ins.cmd} source {source} does not exist in the repository"
                for match in matches:
                    rel = match.relative_to(ROOT).as_posix()
                    assert not ignored(rel, rules), f"line {ins.line}: {rel} is excluded by .dockerignore"
                    if match.is_dir():
                        kept = [
                            f
                            for f in match.rglob("*")
                            if f.is_file() and not ignored(f.relative_to(ROOT).as_posix(), rules)
                        ]
                        assert kept, f"line {ins.line}: .dockerignore leaves nothing of {rel}"


def uv_runs(stage: Stage) -> list[str]:
    return [ins.flags_and_rest()[1] for ins in stage.all("RUN") if re.match(r"uv\s", ins.flags_and_rest()[1])]


def workspace_members() -> dict[str, Path]:
    root = tomllib.loads((ROOT / "pyproject.toml").read_text())
    members: dict[str, Path] = {}
    for pattern in root["tool"]["uv"]["workspace"]["members"]:
        for pyproject in sorted(ROOT.glob(f"{pattern}/pyproject.toml")):
            members[tomllib.loads(pyproject.read_text())["project"]["name"]] = pyproject.parent
    return members


def test_uv_builds_see_the_whole_workspace(stages):
    """`uv sync --frozen` runs against the workspace uv.lock describes: lock plus every member's pyproject."""
    for stage in stages:
        if not any(re.search(r"\buv\s+sync\b", run) for run in uv_runs(stage)):
            continue
        copied = {Path(s).as_posix() for _, sources, _ in context_copies(stage) for s in sources}
        wanted = {"uv.lock", "pyproject.toml"} | {
            (path / "pyproject.toml").relative_to(ROOT).as_posix() for path in workspace_members().values()
        }
        assert wanted <= copied, f"stage {stage.name or stage.index} does not copy {sorted(wanted - copied)}"
        for run in uv_runs(stage):
            if re.search(r"\buv\s+sync\b", run):
                assert "--frozen" in run or "--locked" in run, f"{run}: install exactly what uv.lock pins"
                assert "--no-dev" in run, f"{run}: no dev dependencies in an image"


# ----------------------------------------------------------------------------------------------------------
# The catalog image's own contract
# ----------------------------------------------------------------------------------------------------------


def test_catalog_image_contract():
    stages = parse_dockerfile(ROOT / "apps/catalog/Dockerfile")
    builder, final = stages[0], stages[-1]
    assert builder.image == final.image == "python:3.11-slim-bookworm"
    assert any("uv==" in ins.args and "pip install" in ins.args for ins in builder.all("RUN"))
    assert "uv sync --frozen --package eolake-catalog --no-dev --no-editable" in uv_runs(builder)
    env = stage_env(builder)
    assert env["UV_COMPILE_BYTECODE"] == "1" and env["UV_LINK_MODE"] == "copy"
    assert env["UV_PROJECT_ENVIRONMENT"] == "/app/.venv"
    # Only the venv reaches the final stage.
    copies = [ins.words() for ins in final.all("COPY") + final.all("ADD")]
    assert copies == [["/app/.venv", "/app/.venv"]], copies
    assert final.all("COPY")[0].flags_and_rest()[0]["from"] == (builder.name or "0")
    assert final.last("USER").args.split(":")[0] == "10001"
    assert "10001" in " ".join(ins.args for ins in final.all("RUN"))  # the user exists in /etc/passwd
    assert final.last("EXPOSE").args.split() == ["8081"]
    assert final.last("STOPSIGNAL").args == "SIGTERM"
    assert final.last("ENTRYPOINT").words() == ["/app/.venv/bin/python", "-m", "eolake_catalog"]
    final_env = stage_env(final)
    assert final_env["EOLAKE_CATALOG_HOST"] == "0.0.0.0"
    assert final_env["PYTHONDONTWRITEBYTECODE"] == "1" and final_env["PYTHONUNBUFFERED"] == "1"
    assert "/healthz" in " ".join(healthcheck_command(final.last("HEALTHCHECK")))


def stage_env(stage: Stage) -> dict[str, str]:
    env: dict[str, str] = {}
    for ins in stage.all("ENV"):
        words = shlex.split(ins.args)
        if words and "=" not in words[0]:  # legacy `ENV KEY value`
            env[words[0]] = " ".join(words[1:])
            continue
        for word in words:
            key, _, value = word.partition("=")
            env[key] = value
    return env


class _Healthz(http.server.BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802
        self.send_response(200 if self.path == "/healthz" else 500)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


def test_healthcheck_probes_healthz_on_the_configured_port(dockerfile, stages):
    command = healthcheck_command(stages[-1].last("HEALTHCHECK"))
    if not (len(command) >= 3 and command[1] == "-c" and "python" in Path(command[0]).name):
        pytest.skip("not a python -c health check")
    ports = set(re.findall(r"EOLAKE_[A-Z_]+_PORT", command[2]))
    if not ports:
        pytest.skip("the health check does not read its port from the environment")
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Healthz)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        port = str(server.server_address[1])
        env = {**os.environ, **{name: port for name in ports}}
        run = [sys.executable, *command[1:]]
        assert subprocess.run(run, env=env, capture_output=True, timeout=30).returncode == 0
    finally:
        server.shutdown()
        server.server_close()
    # Nothing listening there any more: the check must fail.
    down = subprocess.run([sys.executable, *command[1:]], env=env, capture_output=True, timeout=30)
    assert down.returncode != 0


# ----------------------------------------------------------------------------------------------------------
# Replay the builder locally: the same COPYs (minus .dockerignore) into a fake root, the same `uv ...` RUNs.
# ----------------------------------------------------------------------------------------------------------


def _copy_into(sources: list[str], dest: str, workdir: str, rootfs: Path, rules) -> None:
    target = rootfs / (dest if dest.startswith("/") else f"{workdir}/{dest}").lstrip("/")
    matches = [m for s in sources for m in expand_source(s)]
    into_dir = dest.endswith("/") or dest in (".", "./") or len(matches) > 1 or target.is_dir()

    def skip(directory: str, names: list[str]) -> set[str]:
        base = Path(directory).relative_to(ROOT)
        return {n for n in names if ignored((base / n).as_posix(), rules)}

    for match in matches:
        if match.is_dir():
            shutil.copytree(match, target, ignore=skip, dirs_exist_ok=True, symlinks=True)
        else:
            out = target / match.name if into_dir else target
            out.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(match, out)


def replay(stage: Stage, rootfs: Path) -> tuple[dict[str, str], list[str]]:
    """Run the stage's context COPYs and `uv ...` RUNs with paths under `rootfs`; other RUNs are skipped."""
    uv = Path(sys.executable).with_name("uv")  # pinned in the dev group, so always beside the interpreter
    rules = dockerignore_rules()
    env = {k: v for k, v in os.environ.items() if not k.startswith("UV_") and k not in ("VIRTUAL_ENV", "PYTHONPATH")}
    env["UV_SYSTEM_CERTS"] = "1"  # this machine's trust store, as the bootstrap does
    env["PATH"] = f"{Path(uv).parent}{os.pathsep}{env.get('PATH', '')}"
    workdir, ran = "/", []
    for ins in stage.instructions:
        if ins.cmd == "WORKDIR":
            workdir = ins.args if ins.args.startswith("/") else f"{workdir.rstrip('/')}/{ins.args}"
            (rootfs / workdir.lstrip("/")).mkdir(parents=True, exist_ok=True)
        elif ins.cmd == "ENV":
            for key, value in stage_env(Stage(0, "", None, [ins])).items():
                if key == "UV_PYTHON":
                    value = getattr(sys, "_base_executable", sys.executable)  # the image's python is 3.11 too
                elif value.startswith("/"):
                    value = str(rootfs / value.lstrip("/"))
                env[key] = value
        elif ins.cmd in ("COPY", "ADD"):
            assert "from" not in ins.flags_and_rest()[0], "replay only handles copies from the build context"
            words = ins.words()
            _copy_into(words[:-1], words[-1], workdir, rootfs, rules)
        elif ins.cmd == "RUN":
            _, command = ins.flags_and_rest()
            if re.match(r"uv\s", command):
                result = subprocess.run(
                    ["/bin/sh", "-c", command],
                    cwd=rootfs / workdir.lstrip("/"),
                    env=env,
                    capture_output=True,
                    text=True,
                    timeout=240,
                )
                assert result.returncode == 0, f"line {ins.line}: {command}\n{result.stdout}\n{result.stderr}"
                ran.append(command)
    return env, ran


def _builds(dockerfile: Path) -> list[tuple[Stage, Stage]]:
    stages = parse_dockerfile(dockerfile)
    final = stages[-1]
    out = []
    for ins in final.all("COPY"):
        ref = ins.flags_and_rest()[0].get("from")
        source = stage_by_ref(stages, ref, final.index) if ref else None
        if source is not None and uv_runs(source):
            out.append((source, final))
    return out


PROBE = r"""
import importlib, importlib.metadata as md, json, pkgutil, sys
module = sys.argv[1]
package = importlib.import_module(module)
imported = [module]
for info in pkgutil.walk_packages(getattr(package, "__path__", []), module + "."):
    importlib.import_module(info.name)  # __main__ too: its main() sits behind `if __name__ == "__main__"`
    imported.append(info.name)
dists = {}
for dist in md.distributions():
    direct = dist.read_text("direct_url.json")
    dists[dist.metadata["Name"].lower().replace("_", "-")] = json.loads(direct) if direct else None
print(json.dumps({"file": package.__file__, "imported": imported, "dists": dists, "prefix": sys.prefix}))
"""


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=IDS)
def test_builder_replay_gives_a_runnable_venv_without_dev_packages(dockerfile, tmp_path):
    builds = _builds(dockerfile)
    if not builds:
        pytest.skip("no uv-built stage is copied into the final image")
    for builder, final in builds:
        rootfs = tmp_path / (builder.name or str(builder.index))
        env, ran = replay(builder, rootfs)
        sync = [c for c in ran if re.search(r"\buv\s+sync\b", c)]
        assert sync, "the builder never ran uv sync"

        venv = env.get("UV_PROJECT_ENVIRONMENT")
        assert venv, "set UV_PROJECT_ENVIRONMENT: the venv must land where the final stage copies it"
        container_venv = "/" + Path(venv).relative_to(rootfs).as_posix()
        copied = [
            ins.words()[0]
            for ins in final.all("COPY")
            if ins.flags_and_rest()[0].get("from") in (builder.name, str(builder.index))
        ]
        assert container_venv in copied, f"the final stage copies {copied}, the venv is {container_venv}"

        entry = final.last("ENTRYPOINT").words()
        assert entry[0].startswith(container_venv + "/"), f"{entry[0]} is not the venv's python"
        python = rootfs / entry[0].lstrip("/")
        assert python.exists(), f"{entry[0]} missing from the venv"
        assert entry[1] == "-m", "expected `python -m <module>`"
        module = entry[2]

        # Import the service and all of its modules with the venv alone (-I: no cwd, PYTHONPATH or user site).
        probe = subprocess.run(
            [str(python), "-I", "-c", PROBE, module],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=120,
            env={"PATH": "/usr/bin:/bin", "PYTHONDONTWRITEBYTECODE": "1"},
        )
        assert probe.returncode == 0, probe.stderr
        report = json.loads(probe.stdout.strip().splitlines()[-1])
        assert report["file"].startswith(venv + "/"), f"{module} imported from {report['file']}, not the venv"
        assert f"{module}.__main__" in report["imported"]

        dists = report["dists"]
        dev = sorted(name for name in dists if DEV_DISTRIBUTIONS.match(name))
        assert not dev, f"dev/test packages in the image venv: {dev}"

        # Exactly the packaged workspace member and the workspace members it depends on, as real wheels.
        selected = re.search(r"--package\s+(\S+)", sync[-1])
        assert selected, f"{sync[-1]}: build one service (--package), not the whole workspace"
        package = selected.group(1)
        members = workspace_members()
        wanted, todo = set(), [package]
        while todo:
            name = todo.pop()
            if name in wanted:
                continue
            wanted.add(name)
            project = tomllib.loads((members[name] / "pyproject.toml").read_text())["project"]
            deps = project.get("dependencies", [])
            todo += [m for m in members if any(re.match(rf"{re.escape(m)}\b(?![-.\w])", d) for d in deps)]
        installed = {name for name in dists if name in members}
        assert installed == wanted, f"workspace packages in the venv: {sorted(installed)} != {sorted(wanted)}"
        for name in wanted:
            editable = (dists[name] or {}).get("dir_info", {}).get("editable")
            assert not editable, f"{name} is installed editable"
        assert not [p for p in Path(venv).rglob("*.pth") if str(rootfs) in p.read_text()], (
            "a .pth file points back at the build tree"
        )

        # UV_COMPILE_BYTECODE: the image runs with PYTHONDONTWRITEBYTECODE on a read-only filesystem.
        assert list((Path(report["file"]).parent / "__pycache__").glob("*.pyc")), "bytecode was not compiled"

        # Root owns the venv in the image; the non-root service user must be able to read all of it.
        def world_readable(p: Path) -> bool:
            need = 0o005 if p.is_dir() else 0o004
            return p.stat().st_mode & need == need

        unreadable = [p for p in Path(venv).rglob("*") if not p.is_symlink() and not world_readable(p)]
        assert not unreadable, f"not world-readable: {unreadable[:5]}"


# ----------------------------------------------------------------------------------------------------------
# The thesaurus image carries its vocabularies where `python -m eolake_thesaurus.prepare` reads them.
# ----------------------------------------------------------------------------------------------------------

SHARED_THESAURI = ROOT.parent / "shared" / "data" / "thesauri"


def _checked_vocabularies(stages: list[Stage]) -> tuple[Stage, list[str], str]:
    """The stage that checks the vocabularies, the files it takes from the named context, its check command."""
    checked = stage_by_ref(stages, "vocabularies-checked", len(stages))
    assert checked is not None, "no stage checks the vocabularies"
    (take,) = [i for i in checked.all("COPY") if i.flags_and_rest()[0].get("from") == "vocabularies"]
    (check,) = checked.all("RUN")
    return checked, take.words()[:-1], check.flags_and_rest()[1]


def test_thesaurus_image_carries_the_vocabularies_where_prepare_reads_them(tmp_path):
    from eolake_thesaurus.demo import DEMO
    from eolake_thesaurus.prepare import IMAGE_VOCABULARIES

    dockerfile = ROOT / "apps" / "thesaurus" / "Dockerfile"
    stages = parse_dockerfile(dockerfile)
    assert "vocabularies" in named_contexts(dockerfile)
    _, files, check = _checked_vocabularies(stages)
    assert sorted(files) == sorted(name for name, _, _ in DEMO)
    copies = [i.words() for i in stages[-1].all("COPY") if i.flags_and_rest()[0].get("from") == "vocabularies-checked"]
    assert copies == [["/vocabularies", str(IMAGE_VOCABULARIES)]]

    # The build's checksum step, replayed on the project's sample files: they pass, a changed byte does not.
    image = tmp_path / "image"
    vocabularies = image / IMAGE_VOCABULARIES.relative_to("/")
    vocabularies.mkdir(parents=True)
    for name in files:
        shutil.copy(SHARED_THESAURI / name, vocabularies / name)
    replayed = check.replace("/vocabularies", str(vocabularies))
    assert subprocess.run(["/bin/sh", "-c", replayed], capture_output=True).returncode == 0
    tampered = tmp_path / "tampered"
    shutil.copytree(vocabularies, tampered)
    (tampered / files[0]).write_bytes((tampered / files[0]).read_bytes() + b" ")
    assert (
        subprocess.run(["/bin/sh", "-c", check.replace("/vocabularies", str(tampered))], capture_output=True).returncode
        != 0
    )

    # The init container's command on that layout: the index is filled from the image's files.
    env = {
        **os.environ,
        "EOLAKE_THESAURUS_STORAGE_PATH": str(tmp_path / "data"),
        "EOLAKE_THESAURUS_VOCABULARIES": str(vocabularies),
    }
    prepared = subprocess.run(
        [sys.executable, "-m", "eolake_thesaurus.prepare"], env=env, capture_output=True, text=True, timeout=300
    )
    assert prepared.returncode == 0, prepared.stderr
    assert "filled; imported gemet, gemet, inspire" in prepared.stdout
    empty = subprocess.run(
        [sys.executable, "-m", "eolake_thesaurus.prepare", str(tmp_path / "nothing")],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert empty.returncode == 2 and "no vocabulary file" in empty.stderr
