"""The tools that keep the code honest, run as the developers and pre-commit run them: ruff (lint, complexity at
most 15, format), mypy (strict on the kit and the services' cores, the rest checked without failing and its error
count recorded), ESLint on the web view's scripts;
and the distribution's version, written once and shown everywhere."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml

from eolake_kit import __version__

ROOT = Path(__file__).resolve().parents[1]
VENV_BIN = Path(sys.executable).parent
WEB = ROOT / "apps" / "web"
MYPY_PACKAGES = [
    "eolake_kit",
    "eolake_spec",
    "eolake_catalog",
    "eolake_client",
    "eolake_downloads",
    "eolake_events",
    "eolake",
    "eolake_search",
    "eolake_thesaurus",
    "eolake_tiles",
    "eolake_timeseries",
    "eolake_web",
    "eolake_infra",
]


def run(*command: str | Path, cwd: Path = ROOT, timeout: float = 240) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(c) for c in command], cwd=cwd, capture_output=True, text=True, timeout=timeout)


def pyproject(path: Path = ROOT / "pyproject.toml") -> dict:
    return tomllib.loads(path.read_text())


def test_ruff_finds_nothing():
    result = run(VENV_BIN / "ruff", "check", "--output-format", "concise", ".")
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]


def test_complexity_is_bounded_at_15_without_exemptions():
    lint = pyproject()["tool"]["ruff"]["lint"]
    assert "C90" in lint["select"] and lint["mccabe"]["max-complexity"] == 15
    exempt = {path for path, rules in lint["per-file-ignores"].items() if "C901" in rules}
    assert not exempt, f"complexity exemptions: {exempt}"


def test_a_too_complex_function_is_caught(tmp_path):
    branches = "\n".join(f"    if x == {i}:\n        return {i}" for i in range(16))
    (tmp_path / "tangled.py").write_text(f"def tangled(x):\n{branches}\n    return -1\n")
    result = run(
        VENV_BIN / "ruff",
        "check",
        "--config",
        ROOT / "pyproject.toml",
        "--output-format",
        "concise",
        tmp_path / "tangled.py",
    )
    assert result.returncode == 1 and "C901 `tangled` is too complex (17 > 15)" in result.stdout


def test_the_tree_is_formatted():
    result = run(VENV_BIN / "ruff", "format", "--check", ".")
    assert result.returncode == 0, "run `.venv/bin/ruff format`:\n" + result.stdout[-3000:]


def strict_modules() -> list[str]:
    """The modules mypy checks with --strict (the kit and the services' framework-free cores)."""
    overrides = pyproject()["tool"]["mypy"]["overrides"]
    return next(o["module"] for o in overrides if o.get("disallow_untyped_defs"))


def source_file(module: str) -> Path:
    package, _, rest = module.partition(".")
    src = next(ROOT.glob(f"apps/*/src/{package}"))
    return src / (rest.replace(".", "/") + ".py") if rest else src


def in_strict_scope(line: str) -> bool:
    path = ROOT / line.split(":", 1)[0]
    for module in strict_modules():
        file = source_file(module.removesuffix(".*"))
        if path == file or (module.endswith(".*") and path.is_relative_to(file)):
            return True
    return False


def test_the_strict_scope_names_existing_modules_and_pre_commit_checks_the_same():
    modules = strict_modules()
    assert "eolake_kit.*" in modules and len(modules) > 10
    missing = [m for m in modules if not source_file(m.removesuffix(".*")).exists()]
    assert not missing, f"the strict mypy scope names modules that do not exist: {missing}"
    hook = next(
        h
        for repo in yaml.safe_load((ROOT / ".pre-commit-config.yaml").read_text())["repos"]
        for h in repo["hooks"]
        if h["id"] == "mypy"
    )
    checked = set(re.findall(r"-m (\S+)", hook["entry"])) | {f"{p}.*" for p in re.findall(r"-p (\S+)", hook["entry"])}
    assert checked == {m for m in modules if m + ".*" not in modules}, (
        "the mypy hook and pyproject's strict list differ"
    )


def test_mypy_is_strict_on_the_kit_and_the_cores_and_runs_over_every_package(record_property):
    result = run(VENV_BIN / "mypy", *(arg for p in MYPY_PACKAGES for arg in ("-p", p)))
    errors = [line for line in result.stdout.splitlines() if ": error:" in line]
    strict = [line for line in errors if in_strict_scope(line)]
    assert not strict, "\n".join(strict[:40])
    # Elsewhere it informs (returncode 1 with errors) but must run: 2 is a crash or a configuration error.
    assert result.returncode in (0, 1) and re.search(r"(Success|Found \d+ errors?)", result.stdout), (
        result.stdout[-3000:] + result.stderr[-3000:]
    )
    record_property("mypy_errors_outside_the_strict_scope", len(errors))


def test_eslint_finds_nothing_in_the_web_views_scripts():
    eslint = WEB / "node_modules" / ".bin" / "eslint"
    assert eslint.exists(), "ESLint is a devDependency of apps/web: run `npm ci` there (./eolake does)"
    result = run(eslint, "--max-warnings", "0", "src/eolake_web/static/js", cwd=WEB, timeout=120)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]


def test_eslint_would_catch_an_undefined_name():
    """The configuration really applies to the scripts' folder (a pattern that matched nothing would pass all)."""
    result = subprocess.run(
        [WEB / "node_modules" / ".bin" / "eslint", "--stdin", "--stdin-filename", "src/eolake_web/static/js/probe.js"],
        input="export const probe = () => helper();\n",
        cwd=WEB,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 1 and "'helper' is not defined" in result.stdout, result.stdout + result.stderr


def test_pre_commit_runs_the_same_checks():
    hooks = {
        h["id"]: h
        for repo in yaml.safe_load((ROOT / ".pre-commit-config.yaml").read_text())["repos"]
        for h in repo["hooks"]
    }
    assert set(hooks) == {"ruff-check", "ruff-format", "mypy", "eslint"}
    assert all(h["language"] == "system" for h in hooks.values())  # the project's own tools, pinned by its lockfiles
    result = run(VENV_BIN / "pre-commit", "validate-config", ".pre-commit-config.yaml", timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize(
    "project",
    sorted(str(p.relative_to(ROOT)) for p in [*ROOT.glob("apps/*/pyproject.toml"), ROOT / "infra" / "pyproject.toml"]),
)
def test_every_package_has_the_distributions_version(project):
    assert pyproject(ROOT / project)["project"]["version"] == __version__, (
        f"{project}: the distribution is released as one version ({__version__}, apps/kit/pyproject.toml)"
    )


def test_the_cli_and_the_changelog_show_the_version():
    result = run(VENV_BIN / "eolake", "--version", timeout=60)
    assert result.returncode == 0 and result.stdout.strip() == f"eolake {__version__}"
    changelog = (ROOT / "CHANGELOG.md").read_text()
    assert "## [Unreleased]" in changelog and re.search(
        rf"^## \[{re.escape(__version__)}\] - \d{{4}}-\d\d-\d\d$", changelog, re.M
    )


def test_the_architecture_page_names_only_what_exists():
    """Paths in ARCHITECTURE.md exist: from the root, or (a file or folder named in its context) somewhere below."""
    text = (ROOT / "ARCHITECTURE.md").read_text()
    named = {
        t
        for t in re.findall(r"`([^`\s]+)`", text)
        if "<" not in t
        and not t.startswith(("/", "http"))
        and re.search(r"/$|\.(py|md|toml|ya?ml|json)$", t)
        and "(" not in t
    }
    tracked = run("git", "ls-files").stdout.splitlines()
    folders = {str(Path(f).parent) + "/" for f in tracked}

    def exists(path: str) -> bool:
        if (ROOT / path).exists():
            return True
        return any(f.endswith("/" + path) for f in tracked) or any(d.endswith("/" + path) for d in folders)

    missing = [path for path in sorted(named) if not exists(path)]
    assert len(named) > 30 and not missing, f"ARCHITECTURE.md names what is not in the tree: {missing}"
