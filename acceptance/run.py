#!/usr/bin/env python3
"""Run the eolake acceptance suites (Robot Framework) against one base URL.

    python acceptance/run.py                                   # the local platform (`eolake up`), port 8080
    python acceptance/run.py --base-url https://staging.example.org --no-demo-data
    python acceptance/run.py --base-url https://eo.example.org --admin-key-file ~/.eolake-prod-admin.key
    python acceptance/run.py --stack prod --base-url https://eo.example.org    # the stack's path prefixes

The exit code is robot's: 0 when every test passed (skipped tests do not fail the run).
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import sys
from pathlib import Path
from urllib.parse import urlsplit

HERE = Path(__file__).resolve().parent
REPO_ROOT = HERE.parent
DEFAULT_BASE_URL = "http://127.0.0.1:8080"
LOCAL_HOSTS = {"127.0.0.1", "localhost", "::1", "[::1]"}


def is_local(base_url: str) -> bool:
    return (urlsplit(base_url).hostname or "") in LOCAL_HOSTS


def state_dir() -> Path:
    return Path(os.environ.get("EOLAKE_STATE_DIR") or REPO_ROOT / ".eolake")


def read_key(path: Path | None) -> str:
    if path is None:
        return ""
    try:
        return path.expanduser().read_text().strip()
    except OSError as exc:
        sys.exit(f"cannot read the API key file {path}: {exc}")


def port_of(url: str) -> int | None:
    parts = urlsplit(url)
    return parts.port or {"http": 80, "https": 443}.get(parts.scheme)


def local_key(role: str, base_url: str) -> str:
    """The key for `role` of the local platform serving `base_url` (from its state directory), or ""."""
    state = state_dir()
    try:
        running = json.loads((state / "runtime.json").read_text()).get("base_url", "")
        key = (state / f"{role}.key").read_text().strip()
    except (OSError, ValueError):
        return ""
    if port_of(running) != port_of(base_url):
        print(
            f"acceptance: the platform in {state} serves {running}, not {base_url}: no local {role} key "
            "(set EOLAKE_STATE_DIR or pass --admin-key-file)",
            file=sys.stderr,
        )
        return ""
    return key


def spki_sha256(certificate: Path) -> str:
    """What Chromium's --ignore-certificate-errors-spki-list takes: base64 SHA-256 of the certificate's public key."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization

    key = x509.load_pem_x509_certificate(certificate.read_bytes()).public_key()
    digest = hashes.Hash(hashes.SHA256())
    digest.update(key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo))
    return base64.b64encode(digest.finalize()).decode()


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--base-url",
        default=os.environ.get("EOLAKE_BASE_URL", DEFAULT_BASE_URL),
        help=f"the platform's public base URL (default: $EOLAKE_BASE_URL or {DEFAULT_BASE_URL})",
    )
    p.add_argument(
        "--admin-key-file",
        type=Path,
        help="a file holding an admin API key: enables the write tests (default for a local base URL: "
        "admin.key in $EOLAKE_STATE_DIR or ./.eolake)",
    )
    p.add_argument(
        "--user-key-file",
        type=Path,
        help="a file holding a non-admin API key (default for a local base URL: user.key, as above)",
    )
    p.add_argument(
        "--demo-data",
        dest="demo_data",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="expect the demo collections (default: yes for a local base URL, no otherwise)",
    )
    p.add_argument(
        "--include",
        "-i",
        action="append",
        default=[],
        metavar="TAG",
        help="run only tests with this tag (repeatable, e.g. --include smoke)",
    )
    p.add_argument(
        "--exclude",
        "-e",
        action="append",
        default=[],
        metavar="TAG",
        help="skip tests with this tag (repeatable, e.g. --exclude write)",
    )
    p.add_argument(
        "--outputdir",
        "-d",
        type=Path,
        default=REPO_ROOT / "results" / "acceptance",
        help="where robot writes output.xml, log.html and report.html (default: results/acceptance)",
    )
    p.add_argument(
        "--ca-file",
        type=Path,
        help="trust this CA certificate (PEM) for HTTPS instead of the system's, e.g. a test proxy's "
        "self-signed certificate",
    )
    p.add_argument("--ready-timeout", default="2 min", help="how long to wait for readiness (robot time format)")
    p.add_argument(
        "--stack",
        help="take each service's path prefix from this stack (a name in stacks/ or a stack "
        "file); default: the standard layout (/stac, /tiles, ...)",
    )
    p.add_argument(
        "--prefix",
        action="append",
        default=[],
        metavar="SERVICE=/PATH",
        help="a service's path prefix (repeatable; overrides --stack), e.g. catalog=/catalog",
    )
    p.add_argument(
        "suites", nargs="*", type=Path, help="suite files or folders (default: every suite under acceptance/)"
    )
    return p.parse_args(argv)


def prefixes(args: argparse.Namespace) -> dict[str, str]:
    """Service name → path prefix, from --stack and --prefix (only what they name: the suites default the rest)."""
    found: dict[str, str] = {}
    if args.stack:
        from eolake_spec import SpecError, load_stack

        try:
            platform = load_stack(args.stack)
        except SpecError as exc:
            sys.exit(str(exc))
        found = {name: service.path for name, service in platform.enabled_services.items() if service.path != "/"}
    for item in args.prefix:
        name, sep, path = item.partition("=")
        if not sep or not name.isalpha() or not path.startswith("/"):
            sys.exit(f"--prefix {item!r}: expected SERVICE=/PATH, e.g. catalog=/catalog")
        found[name.lower()] = path.rstrip("/") or "/"
    return found


def robot_arguments(args: argparse.Namespace) -> list[str]:
    local = is_local(args.base_url)
    base = args.base_url
    admin_key = read_key(args.admin_key_file) if args.admin_key_file else (local_key("admin", base) if local else "")
    user_key = read_key(args.user_key_file) if args.user_key_file else (local_key("user", base) if local else "")
    demo = local if args.demo_data is None else args.demo_data
    options = [
        "--name",
        "eolake acceptance",
        "--outputdir",
        str(args.outputdir),
        "--variable",
        f"BASE_URL:{args.base_url.rstrip('/')}",
        "--variable",
        f"EXPECT_DEMO_DATA:{'true' if demo else 'false'}",
        "--variable",
        f"READY_TIMEOUT:{args.ready_timeout}",
        "--metadata",
        f"Base URL:{args.base_url}",
        "--exclude",
        "wip",
        "--consolecolors",
        "auto",
    ]
    for name, path in sorted(prefixes(args).items()):
        options += ["--variable", f"{name.upper()}_PREFIX:{path}"]
    if args.ca_file:
        options += [
            "--variable",
            f'BROWSER_EXTRA_OPTIONS:; add_argument("--ignore-certificate-errors-spki-list='
            f'{spki_sha256(args.ca_file)}")',
        ]
    # Keys are robot variables (the suites keep them out of log.html), never metadata.
    if admin_key:
        options += ["--variable", f"ADMIN_API_KEY:{admin_key}"]
    if user_key:
        options += ["--variable", f"USER_API_KEY:{user_key}"]
    for tag in args.include:
        options += ["--include", tag]
    for tag in args.exclude:
        options += ["--exclude", tag]
    suites = [str(s) for s in args.suites] or [
        str(HERE / name)
        for name in sorted(p.name for p in HERE.iterdir() if p.is_dir() and p.name not in {"resources", "__pycache__"})
    ]
    return options + suites


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        from robot import run_cli
    except ImportError:
        sys.exit("robotframework is not installed: `uv sync` installs the dev dependencies")
    command = robot_arguments(args)
    if args.ca_file:
        if not args.ca_file.is_file():
            sys.exit(f"no CA certificate at {args.ca_file}")
        # requests (RequestsLibrary's sessions verify by default) reads its CA bundle from here.
        os.environ["REQUESTS_CA_BUNDLE"] = str(args.ca_file.resolve())
    print(f"acceptance: {args.base_url} -> {args.outputdir}", file=sys.stderr)
    return run_cli(command, exit=False)


if __name__ == "__main__":
    sys.exit(main())
