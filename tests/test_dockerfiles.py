"""Static checks of every apps/*/Dockerfile, and a local replay of the builder's `uv sync` (no Docker needed).

The build context of every image is the repository root: `docker build -f apps/<app>/Dockerfile .`
"""

from __future__ import annotations

import glob
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
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCKERFILES = sorted(ROOT.glob("apps/*/Dockerfile"))
IDS = [p.parent.name for p in DOCKERFILES]

BUILD_TOOLS = re.compile(
    r"(?<![\w.+-])(gcc|g\+\+|cc|clang|make|cmake|build-essential|pkg-config|[\w.+]+-dev)(?![\w.+-])")
PACKAGE_INSTALL = re.compile(
    r"\b(apt-get|apt|aptitude)\s+(?:-\S+\s+)*install\b|\bapk\s+add\b|\b(yum|dnf|microdnf)\s+install\b")
DEV_DISTRIBUTIONS = re.compile(r"^(pytest(-.*)?|robotframework(-.*)?|ruff|mypy|coverage|hypothesis)$")


# ----------------------------------------------------------------------------------------------------------
# A small Dockerfile parser: instructions (continuations joined, comments dropped) grouped into stages.
# ----------------------------------------------------------------------------------------------------------

@dataclass
class Instruction:
    cmd: str
    args: str
    line: int

    def flags_and_rest(self) -> tuple[dict[str, str], str]:
        """Leading `--flag=value` options (COPY --from, RUN --mount, HEALTHCHECK --interval) and the rest."""
        flags: dict[str, str] = {}
        rest = self.args
        while m := re.match(r"--([\w-]+)(?:=(\S*))?\s*", rest):
            flags.setdefault(m.group(1), m.group(2) or "")
            rest = rest[m.end():]
        return flags, rest

    def words(self) -> list[str]:
        """Exec (JSON) form or shell-ish words of the part after the flags."""
        _, rest = self.flags_and_rest()
        if rest.startswith("["):
            return json.loads(rest)
        return shlex.split(rest)


@dataclass
class Stage:
    index: int
    image: str
    name: str | None
    instructions: list[Instruction] = field(default_factory=list)

    def all(self, cmd: str) -> list[Instruction]:
        return [i for i in self.instructions if i.cmd == cmd]

    def last(self, cmd: str) -> Instruction | None:
        found = self.all(cmd)
        return found[-1] if found else None


def parse_instructions(text: str) -> list[Instruction]:
    out: list[Instruction] = []
    parts: list[str] = []
    start = 0
    for number, raw in enumerate(text.splitlines(), 1):
        stripped = raw.strip()
        if not stripped or stripped.startswith("#"):
            continue  # blank lines and comments, also inside a continuation (Docker drops those too)
        if not parts:
            start = number
        if stripped.endswith("\\"):
            parts.append(stripped[:-1].strip())
            continue
        parts.append(stripped)
        cmd, _, args = " ".join(p for p in parts if p).partition(" ")
        out.append(Instruction(cmd.upper(), args.strip(), start))
        parts = []
    assert not parts, "the Dockerfile ends inside a line continuation"
    return out


def parse_dockerfile(path: Path) -> list[Stage]:
    stages: list[Stage] = []
    for ins in parse_instructions(path.read_text()):
        if ins.cmd == "FROM":
            _, rest = ins.flags_and_rest()
            words = rest.split()
            name = words[2] if len(words) == 3 and words[1].lower() == "as" else None
            assert len(words) in (1, 3), f"{path}:{ins.line}: cannot read FROM {ins.args!r}"
            stages.append(Stage(len(stages), words[0], name))
        else:
            assert stages or ins.cmd == "ARG", f"{path}:{ins.line}: {ins.cmd} before the first FROM"
            if stages:
                stages[-1].instructions.append(ins)
    return stages


def stage_by_ref(stages: list[Stage], ref: str, before: int) -> Stage | None:
    for stage in stages[:before]:
        if stage.name == ref or str(stage.index) == ref:
            return stage
    return None


def image_is_pinned(image: str) -> bool:
    if "@sha256:" in image:
        return True
    last = image.rsplit("/", 1)[-1]
    return ":" in last and last.rsplit(":", 1)[1] not in ("", "latest") and "$" not in image


def context_copies(stage: Stage) -> list[tuple[Instruction, list[str], str]]:
    """COPY/ADD from the build context: (instruction, sources, destination)."""
    out = []
    for ins in stage.instructions:
        if ins.cmd in ("COPY", "ADD") and "from" not in ins.flags_and_rest()[0]:
            words = ins.words()
            assert len(words) >= 2, f"line {ins.line}: {ins.cmd} needs a source and a destination"
            out.append((ins, words[:-1], words[-1]))
    return out


# ----------------------------------------------------------------------------------------------------------
# .dockerignore, matched like Docker does: patterns relative to the context root, `**` spans directories,
# a path is excluded when it or one of its parents matches, the last matching rule wins, `!` re-includes.
# ----------------------------------------------------------------------------------------------------------

def _pattern_regex(pattern: str) -> re.Pattern[str]:
    out, i = "", 0
    while i < len(pattern):
        c = pattern[i]
        if pattern.startswith("**", i):
            i += 2
            if pattern.startswith("/", i):
                out, i = out + "(?:.*/)?", i + 1
            else:
                out += ".*"
            continue
        if c == "*":
            out += "[^/]*"
        elif c == "?":
            out += "[^/]"
        elif c == "[" and (end := pattern.find("]", i + 1)) != -1:
            body = pattern[i + 1:end]
            out += "[" + ("^" + body[1:] if body.startswith("!") else body) + "]"
            i = end + 1
            continue
        elif c == "\\" and i + 1 < len(pattern):
            out, i = out + re.escape(pattern[i + 1]), i + 2
            continue
        else:
            out += re.escape(c)
        i += 1
    return re.compile(out + r"\Z")


def dockerignore_rules() -> list[tuple[bool, re.Pattern[str]]]:
    path = ROOT / ".dockerignore"
    rules = []
    if path.is_file():
        for line in path.read_text().splitlines():
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            negate = line.startswith("!")
            pattern = os.path.normpath(line.lstrip("!").strip()).lstrip("/")
            rules.append((negate, _pattern_regex(pattern)))
    return rules


def ignored(rel: str, rules: list[tuple[bool, re.Pattern[str]]]) -> bool:
    parts = Path(rel).parts
    prefixes = ["/".join(parts[: n + 1]) for n in range(len(parts))]
    excluded = False
    for negate, regex in rules:
        if any(regex.match(p) for p in prefixes):
            excluded = not negate
    return excluded


def expand_source(source: str) -> list[Path]:
    """A COPY source relative to the context root, wildcards expanded."""
    return [Path(p) for p in sorted(glob.glob(str(ROOT / source.lstrip("/")), recursive=False))]


# ----------------------------------------------------------------------------------------------------------
# Static checks, one run per Dockerfile
# ----------------------------------------------------------------------------------------------------------

def test_every_service_with_an_entry_point_has_a_dockerfile():
    assert (ROOT / "apps/catalog/Dockerfile") in DOCKERFILES


@pytest.fixture(params=DOCKERFILES, ids=IDS)
def dockerfile(request) -> Path:
    return request.param


@pytest.fixture
def stages(dockerfile) -> list[Stage]:
    return parse_dockerfile(dockerfile)


def test_multi_stage(stages):
    assert len(stages) >= 2, "build in one stage, run from a clean second stage"


def test_base_images_pinned_to_a_tag(stages):
    for stage in stages:
        if stage.image == "scratch" or stage_by_ref(stages, stage.image, stage.index):
            continue
        assert image_is_pinned(stage.image), f"FROM {stage.image}: pin a tag (not latest) or a digest"
    for stage in stages:
        for ins in stage.all("COPY"):
            ref = ins.flags_and_rest()[0].get("from")
            if ref and not stage_by_ref(stages, ref, stage.index):
                assert image_is_pinned(ref), f"line {ins.line}: COPY --from={ref}: pin a tag or a digest"


def test_copy_from_refers_to_an_earlier_stage_or_pinned_image(stages):
    for stage in stages:
        for ins in stage.all("COPY"):
            ref = ins.flags_and_rest()[0].get("from")
            if ref and not stage_by_ref(stages, ref, stage.index):
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
                        kept = [f for f in match.rglob("*")
                                if f.is_file() and not ignored(f.relative_to(ROOT).as_posix(), rules)]
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
            (path / "pyproject.toml").relative_to(ROOT).as_posix() for path in workspace_members().values()}
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
    uv = shutil.which("uv") or str(ROOT / ".venv/bin/uv")
    if not Path(uv).exists():
        pytest.skip("uv is not installed here")
    rules = dockerignore_rules()
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("UV_") and k not in ("VIRTUAL_ENV", "PYTHONPATH")}
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
                result = subprocess.run(["/bin/sh", "-c", command], cwd=rootfs / workdir.lstrip("/"), env=env,
                                        capture_output=True, text=True, timeout=240)
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
        copied = [ins.words()[0] for ins in final.all("COPY") if ins.flags_and_rest()[0].get("from") in
                  (builder.name, str(builder.index))]
        assert container_venv in copied, f"the final stage copies {copied}, the venv is {container_venv}"

        entry = final.last("ENTRYPOINT").words()
        assert entry[0].startswith(container_venv + "/"), f"{entry[0]} is not the venv's python"
        python = rootfs / entry[0].lstrip("/")
        assert python.exists(), f"{entry[0]} missing from the venv"
        assert entry[1] == "-m", "expected `python -m <module>`"
        module = entry[2]

        # Import the service and all of its modules with the venv alone (-I: no cwd, PYTHONPATH or user site).
        probe = subprocess.run([str(python), "-I", "-c", PROBE, module], cwd=tmp_path, capture_output=True,
                               text=True, timeout=120,
                               env={"PATH": "/usr/bin:/bin", "PYTHONDONTWRITEBYTECODE": "1"})
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
        assert not [p for p in Path(venv).rglob("*.pth") if str(rootfs) in p.read_text()], \
            "a .pth file points back at the build tree"

        # UV_COMPILE_BYTECODE: the image runs with PYTHONDONTWRITEBYTECODE on a read-only filesystem.
        assert list((Path(report["file"]).parent / "__pycache__").glob("*.pyc")), "bytecode was not compiled"

        # Root owns the venv in the image; the non-root service user must be able to read all of it.
        def world_readable(p: Path) -> bool:
            need = 0o005 if p.is_dir() else 0o004
            return p.stat().st_mode & need == need

        unreadable = [p for p in Path(venv).rglob("*") if not p.is_symlink() and not world_readable(p)]
        assert not unreadable, f"not world-readable: {unreadable[:5]}"
