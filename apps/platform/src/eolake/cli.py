"""The `eolake` command: up, status, down, upgrade, ingest, validate.

Each command imports what it needs: `eolake --help` or `eolake status` on a stopped platform answers at once.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from rich.console import Console

from eolake.embedded.state import StateDir
from eolake.paths import default_state_dir

console = Console()
err = Console(stderr=True, soft_wrap=True)  # a message stays one line, whatever the terminal width
START_TIMEOUT = 900.0
STATUS_POLL_SECONDS = 0.1  # how often `up` reads the supervisor's runtime.json (a small file)
LOCK_TIMEOUT_MAX = 86400.0  # a day: PostgreSQL's lock_timeout takes at most 2^31-1 ms, and no load waits longer


def cmd_up(args: argparse.Namespace, state: StateDir) -> int:
    from eolake.embedded.leftovers import stop_leftovers
    from eolake.embedded.postgres import free_port, port_is_free
    from eolake_spec import load_stack

    if pid := state.supervisor_pid():
        base = state.runtime().get("base_url", "?")
        console.print(
            f"eolake is already running (pid {pid}) at {base}: `eolake status` shows it, `eolake down` stops it."
        )
        return 0
    platform = load_stack(args.stack)
    if leftovers := stop_leftovers(state):
        console.print(f"stopped what a killed supervisor left running: {', '.join(leftovers)}")
    port = args.port or platform.base_url.port or 80
    if not port_is_free(port):
        err.print(
            f"[red]port {port} is already in use[/]: stop what uses it, or start on another port with "
            f"`eolake up --port {free_port()}`"
        )
        return 2
    state.prepare()
    state.runtime_file.unlink(missing_ok=True)
    command = [
        sys.executable,
        "-m",
        "eolake.embedded.supervisor",
        "--stack",
        args.stack,
        "--state-dir",
        str(state.root),
    ] + (["--port", str(args.port)] if args.port else [])
    if args.foreground:
        return subprocess.call(command)
    with open(state.logs / "supervisor.log", "ab") as out:
        process = subprocess.Popen(
            command, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True
        )
    deadline = time.monotonic() + START_TIMEOUT
    with console.status("starting PostgreSQL, the services and the gateway (the first start loads demo data)…"):
        while True:
            status = state.runtime().get("status")
            if status == "ready":
                break
            if process.poll() is not None or status == "failed" or time.monotonic() > deadline:
                error = state.runtime().get("error") or f"the supervisor stopped (code {process.poll()})"
                err.print(f"[red]eolake did not start[/]: {error}")
                err.print(_tail(state.logs / "supervisor.log"))
                return 1
            time.sleep(STATUS_POLL_SECONDS)
    print_urls(state)
    return 0


def print_urls(state: StateDir) -> None:
    runtime = state.runtime()
    console.print(f"[green]eolake is up[/] at {runtime['base_url']} (stack {runtime['stack']})")
    urls = {c["service"]: c["url"] for c in runtime["services"].values() if c.get("service")}
    for name, url in sorted(urls.items()):
        console.print(f"  {name:<10} {url}/")
    for name, component in sorted(runtime.get("monitoring", {}).items()):
        console.print(f"  {name:<10} {component['url'] + '/' if component['url'] else component['note']}")
    if broker := runtime.get("broker"):
        console.print(
            f"  events     {broker['amqp']} (AMQP, user {broker['user']}, password in "
            f"{broker['password_file']}; exchange and routing keys: the events service's root)"
        )
    console.print(
        f"  API keys   {state.key_file('admin')} (admin), {state.key_file('user')} (user): send as the X-API-Key header"
    )
    console.print(f"  logs       {state.logs}/")
    console.print("`eolake status` shows readiness; `eolake down` stops everything.")


def cmd_status(args: argparse.Namespace, state: StateDir) -> int:
    pid = state.supervisor_pid()
    runtime = state.runtime()
    if not pid:
        return _report_not_running(state)
    import httpx
    from rich.table import Table

    from eolake.embedded.postgres import PostgresCluster

    base = runtime.get("base_url", "").rstrip("/")
    rows = [
        (
            "database",
            "ready" if PostgresCluster(state.postgres).postmaster_alive() else "down",
            f"127.0.0.1:{runtime.get('database_port')}",
        )
    ]
    services = [(n, c) for n, c in sorted(runtime.get("services", {}).items()) if c.get("service")]
    # Monitoring that does not run (not installed, disabled) is not a failure.
    monitoring = [(n, c) for n, c in sorted(runtime.get("monitoring", {}).items()) if c.get("url")]
    with httpx.Client(timeout=3) as client, ThreadPoolExecutor(8) as pool:  # probed at once: one wait, not twelve
        answers = [pool.submit(_service_state, client, child) for _, child in services]
        answers += [pool.submit(_monitoring_state, client, component) for _, component in monitoring]
        rows += [
            (name, answer.result(), child["url"] + "/") for (name, child), answer in zip(services + monitoring, answers)
        ]
    if args.json:
        console.print_json(
            json.dumps(
                {
                    "status": runtime.get("status"),
                    "base_url": base,
                    "release": runtime.get("release"),
                    "upgrade": runtime.get("upgrade"),
                    "components": {n: {"state": s, "url": u} for n, s, u in rows},
                }
            )
        )
    else:
        table = Table(
            title=f"eolake {runtime.get('stack')} {runtime.get('release', '')} at {base} "
            f"(supervisor pid {pid}, {runtime.get('status')})"
        )
        for column in ("component", "state", "url"):
            table.add_column(column)
        for name, state_text, url in rows:
            table.add_row(name, f"[green]{state_text}[/]" if state_text == "ready" else f"[red]{state_text}[/]", url)
        console.print(table)
    return 0 if all(s == "ready" for _, s, _ in rows) else 1


def _service_state(client, child: dict) -> str:
    import httpx

    try:  # each instance, at its own address: the public URL answers for whichever is up
        answer = client.get(child["upstream"] + child["probe"])
        state_text = "ready" if answer.status_code == 200 else answer.json().get("detail", "not ready")
    except (httpx.HTTPError, ValueError) as exc:
        state_text = f"unreachable ({type(exc).__name__})"
    if child.get("state") not in ("serving", None):
        state_text = f"{child['state']}: {state_text}"
    return state_text


def _monitoring_state(client, component: dict) -> str:
    import httpx

    try:
        return "ready" if client.get(component["url"] + component["probe"]).status_code == 200 else "not ready"
    except httpx.HTTPError as exc:
        return f"unreachable ({type(exc).__name__})"


def _report_not_running(state: StateDir) -> int:
    """No supervisor: say so, and what it left running, if anything (`up` and `down` stop it)."""
    from eolake.embedded.leftovers import leftover_children
    from eolake.embedded.postgres import PostgresCluster

    leftovers = leftover_children(state)
    database = state.postgres.exists() and PostgresCluster(state.postgres).postmaster_alive()
    if not leftovers and not database:
        console.print("eolake is not running: `eolake up` starts it.")
        return 3
    left = [f"{name} (pid {pid})" for name, pid in sorted(leftovers.items())] + (["PostgreSQL"] if database else [])
    console.print(
        f"eolake's supervisor is not running, but these still run: {', '.join(left)}. `eolake up` starts "
        "the platform again (stopping the processes left over, using the database), `eolake down` stops "
        "them."
    )
    return 3


def cmd_down(args: argparse.Namespace, state: StateDir) -> int:
    pid = state.supervisor_pid()
    if not pid:
        return _stop_leftovers(state)
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 120
    with console.status("stopping the gateway, the services and PostgreSQL…"):
        while state.supervisor_pid() and time.monotonic() < deadline:
            time.sleep(0.2)
    if state.supervisor_pid():
        err.print(f"[red]the supervisor (pid {pid}) did not stop within 120 s[/]; see {state.logs}/supervisor.log")
        return 1
    console.print("eolake stopped; the data is kept in " + str(state.root))
    return 0


def _stop_leftovers(state: StateDir) -> int:
    from eolake.embedded.leftovers import stop_leftovers
    from eolake.embedded.postgres import PostgresCluster, PostgresError

    stopped = stop_leftovers(state)
    for root, what in ((state.replica, "its read replica"), (state.postgres, "PostgreSQL")):
        if root.exists() and PostgresCluster(root).postmaster_alive():
            try:
                PostgresCluster(root).stop()
            except PostgresError as exc:
                err.print(f"[red]{what} did not stop[/]: {exc}")
                return 1
            stopped.append(what)
    console.print(
        f"eolake was not running; stopped what it left: {', '.join(stopped)}" if stopped else "eolake is not running."
    )
    return 0


def cmd_upgrade(args: argparse.Namespace, state: StateDir) -> int:
    """Ask the supervisor to replace every service instance with one of the installed code (and `--release`)."""
    import secrets

    pid = state.supervisor_pid()
    if not pid or state.runtime().get("status") not in ("ready", "upgrading"):
        err.print("eolake is not running (or not ready yet): `eolake up` starts the installed version")
        return 2
    request = {"id": secrets.token_hex(8), "release": args.release}
    tmp = state.upgrade_file.with_suffix(".tmp")
    tmp.write_text(json.dumps(request))
    os.replace(tmp, state.upgrade_file)
    os.kill(pid, signal.SIGUSR1)
    deadline = time.monotonic() + START_TIMEOUT
    with console.status("migrating, then replacing the instances one at a time…"):
        while (upgrade := state.runtime().get("upgrade") or {}).get("id") != request["id"] or upgrade.get(
            "status"
        ) == "running":
            if not state.supervisor_pid() or time.monotonic() > deadline:
                err.print(f"[red]the upgrade did not finish[/]: see {state.logs}/supervisor.log")
                return 1
            time.sleep(0.3)
    if upgrade["status"] != "done":
        err.print(
            f"[red]upgrade stopped[/]: {upgrade.get('error')} (the instances not replaced run as before)",
            highlight=False,
        )
        return 1
    console.print(
        f"upgraded to {upgrade['release']} (from {upgrade['from']}) in {upgrade['seconds']} s; "
        f"pgstac {upgrade.get('pgstac')}"
    )
    return 0


def cmd_alerts(args: argparse.Namespace, state: StateDir) -> int:
    from rich.table import Table

    from eolake.embedded.outbox import read

    outbox = state.alert_outbox
    entries = read(outbox, args.last)
    if args.json:
        console.print_json(json.dumps(entries))
        return 0
    if not entries:
        console.print(f"no notification yet ({outbox})")
        return 0
    table = Table(title="notifications Alertmanager sent (to the stack's receivers and this outbox)")
    for column in ("received", "receiver", "status", "alerts"):
        table.add_column(column)
    for entry in entries:
        alerts = ", ".join(f"{a['alertname']}[{a.get('service') or '-'}]" for a in entry["alerts"])
        table.add_row(entry["received_at"], entry["receiver"], str(entry["status"]), alerts)
    console.print(table)
    return 0


def _backups(state: StateDir):
    from eolake.embedded.backup import Backups
    from eolake.embedded.postgres import PostgresCluster

    return Backups(PostgresCluster(state.postgres), state.backups)


def cmd_backup(args: argparse.Namespace, state: StateDir) -> int:
    from rich.table import Table

    from eolake.embedded.backup import BackupError

    backups = _backups(state)
    if not backups.config.exists():
        err.print("no backups here: `eolake up` configures them (the stack's database.backups, pgBackRest installed)")
        return 2
    try:
        if not args.list:
            if not backups.cluster.running:
                err.print("the database is not running: `eolake up` first")
                return 2
            with console.status(f"{args.kind} base backup…"):
                taken = backups.backup(args.kind)
            console.print(f"backup {taken.label} ({taken.kind}, {taken.size / 2**20:.1f} MiB) ended {taken.stopped}")
            return 0
        table = Table(title=f"base backups in {backups.root / 'repo'} (WAL archived continuously)")
        for column in ("label", "kind", "ended (UTC)", "MiB"):
            table.add_column(column)
        for taken in backups.sets():
            table.add_row(taken.label, taken.kind, taken.stopped.isoformat(), f"{taken.size / 2**20:.1f}")
        console.print(table)
        return 0
    except BackupError as exc:
        err.print(f"[red]{exc}[/]")
        return 1


def _restore_target(text: str):
    from datetime import datetime

    try:
        return datetime.fromisoformat(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{text!r} is not an ISO 8601 time such as 2026-11-29T23:50:00+00:00") from exc


def cmd_restore(args: argparse.Namespace, state: StateDir) -> int:
    from urllib.parse import urlsplit

    from eolake.embedded.backup import BackupError

    runtime, backups = state.runtime(), _backups(state)
    if not backups.config.exists():
        err.print("no backups here: nothing to restore from")
        return 2
    try:
        backups.check_target(args.to)
    except BackupError as exc:
        err.print(f"[red]restore refused[/]: {exc}")
        return 2
    running = state.supervisor_pid() is not None
    if running and cmd_down(args, state) != 0:
        return 1
    try:
        seconds = backups.restore(args.to)
    except BackupError as exc:
        err.print(f"[red]restore refused[/]: {exc}")
        if running:
            console.print("the platform stays stopped: `eolake up` starts it as it was")
        return 1
    finally:
        backups.cluster.stop()
    console.print(f"database restored to {args.to.isoformat()} in {seconds:.1f} s")
    if not running:
        return 0
    port = urlsplit(runtime.get("base_url", "")).port
    return cmd_up(argparse.Namespace(stack=runtime.get("stack", "local"), port=port, foreground=False), state)


def cmd_ingest(args: argparse.Namespace, state: StateDir) -> int:
    import psycopg

    from eolake.embedded.postgres import PostgresCluster
    from eolake.ingest import BATCH_SIZE, IngestError, format_report, ingest

    dsn = args.dsn or os.environ.get("EOLAKE_DATABASE_URL")
    if not dsn:
        cluster = PostgresCluster(state.postgres)
        if not cluster.running:
            err.print("no database: start the platform (`eolake up`) or pass --dsn postgresql://…")
            return 2
        dsn = cluster.dsn()
    try:
        report = ingest(
            args.paths,
            dsn,
            strict=args.strict,
            batch_size=args.batch_size or BATCH_SIZE,
            progress=sys.stderr.isatty(),
            lock_seconds=args.lock_timeout,
        )
    except IngestError as exc:
        err.print(f"ingest: {exc}", markup=False, highlight=False)
        return 2
    except psycopg.errors.LockNotAvailable:
        err.print(
            f"ingest: a database lock was not granted within {args.lock_timeout:g} s (another session holds "
            "it); stopped, batches written before stay (run again: loads are idempotent)",
            markup=False,
        )
        return 2
    except psycopg.OperationalError as exc:
        err.print(f"ingest: cannot reach the database: {str(exc).strip()}", markup=False, highlight=False)
        return 2
    print(format_report(report))  # plain: one rejection a line, for grep and CI logs
    return 1 if report.rejected else 0


def cmd_demo(args: argparse.Namespace, state: StateDir) -> int:
    """The demo data into a platform that runs elsewhere (an on-premise install): once, recorded in the storage."""
    import psycopg

    from eolake.embedded.seed import load_demo

    marker = args.storage / "demo" / "loaded.json"
    if marker.exists():
        console.print(f"demo data already loaded ({marker})")
        return 0
    try:
        load_demo(args.storage, args.dsn, marker)
    except psycopg.OperationalError as exc:
        err.print(f"demo: cannot reach the database: {str(exc).strip()}", markup=False, highlight=False)
        return 2
    console.print(f"demo data loaded: {marker.read_text()}")
    return 0


def cmd_thesaurus(args: argparse.Namespace, state: StateDir) -> int:
    from eolake_thesaurus.demo import import_vocabulary

    def run() -> Any:
        return import_vocabulary(state.storage, args.file, args.vocabulary, args.title)

    return _thesaurus_import(
        "import", run, lambda r: f"{r.concepts} concepts, {r.labels} labels, {r.relations} relations"
    )


def cmd_thesaurus_dict(args: argparse.Namespace, state: StateDir) -> int:
    from eolake_thesaurus.dictionary import import_dictionary
    from eolake_thesaurus.settings import index_path

    def run() -> Any:
        path = index_path(state.storage)
        return import_dictionary(path, args.file, args.source, args.target, args.vocabulary, args.title)

    return _thesaurus_import("import-dict", run, lambda r: f"{r.concepts} entries, {r.labels} labels")


def _thesaurus_import(command: str, run: Callable[[], Any], counts: Callable[[Any], str]) -> int:
    """An import into the thesaurus index, reported in one line (or refused in one, exit code 2)."""
    from eolake_thesaurus.store import RdfImportError

    try:
        report = run()
    except RdfImportError as exc:
        err.print(f"thesaurus {command}: {exc}", markup=False, highlight=False)
        return 2
    print(f"{report.vocabulary}: {counts(report)} (added {report.added}); content hash {report.content_hash[:16]}")
    return 0


def cmd_validate(args: argparse.Namespace, state: StateDir) -> int:
    from eolake_spec import load_stack

    platform = load_stack(args.stack)
    used, budget = platform.connection_budget()
    console.print(
        f"{args.stack}: valid; services {', '.join(platform.enabled_services)}; database connections {used} of {budget}"
    )
    return 0


def cmd_render(args: argparse.Namespace, state: StateDir) -> int:
    """Kubernetes manifests of a stack, from the real Pulumi program (eolake_infra) run under mocks; or, for a stack
    with an `onprem` section and no `kubernetes` one, the Ansible inventory of playbooks/."""
    from eolake_spec import load_stack

    platform = load_stack(args.stack)
    if not platform.onprem and not platform.kubernetes:
        err.print(
            f"{args.stack}: nothing to render: the stack has neither a kubernetes: nor an onprem: section",
            markup=False,
            highlight=False,
        )
        return 2
    if platform.onprem and not platform.kubernetes:
        from eolake.onprem import RenderError, render_inventory

        try:
            written = render_inventory(platform, args.out)
        except RenderError as exc:
            err.print(f"{args.stack}: {exc}", markup=False, highlight=False)
            return 2
        console.print(f"{args.stack}: Ansible inventory in {args.out / 'inventory.yml'} ({len(written)} files)")
        return 0
    from eolake_infra.config import InfraError
    from eolake_infra.render import render

    try:
        written = render(args.stack, args.out)
    except InfraError as exc:
        err.print(str(exc), markup=False, highlight=False)
        return 2
    cluster = sum(1 for path in written if path.parent.name == "cluster")
    console.print(
        f"{args.stack}: {len(written) - cluster} manifests in {args.out}"
        + (f" and {cluster} cluster resources and user-data in {args.out / 'cluster'}" if cluster else "")
    )
    return 0


def _tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except FileNotFoundError:
        return ""


def _release_label(text: str) -> str:
    if text and not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.+-]{0,63}", text):
        raise argparse.ArgumentTypeError(f"{text!r} is not a release label (letters, digits, . _ + -; 64 at most)")
    return text


def _at_least(lowest: float, kind: type, highest: float = math.inf):
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        if not value >= lowest:
            raise argparse.ArgumentTypeError(f"must be at least {lowest:g}, not {text}")
        if not value <= highest:
            raise argparse.ArgumentTypeError(f"must be at most {highest:g}, not {text}")
        return value

    return parse


class _Version(argparse.Action):
    """`eolake --version`: the distribution's version (eolake_kit's), imported only when asked for."""

    def __init__(self, option_strings: list[str], dest: str = argparse.SUPPRESS, **kwargs) -> None:
        super().__init__(option_strings, dest, nargs=0, help="print the distribution's version and exit", **kwargs)

    def __call__(self, parser, namespace, values, option_string=None) -> None:
        from eolake_kit.version import __version__

        print(f"eolake {__version__}")
        parser.exit()


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="eolake", description="eolake: an Earth-observation data lake platform")
    p.add_argument("--version", action=_Version)
    p.add_argument("--state-dir", type=Path, default=None, help="default: $EOLAKE_STATE_DIR or ./.eolake")
    sub = p.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", help="start the platform (PostgreSQL, services, gateway) and load the demo data")
    up.add_argument("--stack", default="local")
    up.add_argument("--port", type=int, help="gateway port (default: the port of the stack's base_url)")
    up.add_argument("--foreground", action="store_true", help="run in the foreground (Ctrl-C stops)")
    up.set_defaults(run=cmd_up)
    status = sub.add_parser("status", help="readiness of each component, and the URLs")
    status.add_argument("--json", action="store_true")
    status.set_defaults(run=cmd_status)
    sub.add_parser("down", help="stop everything cleanly (the data is kept)").set_defaults(run=cmd_down)
    upgrade = sub.add_parser(
        "upgrade",
        help="without downtime: migrate (only what the running version tolerates), "
        "then replace the service instances one at a time by the installed code",
    )
    upgrade.add_argument(
        "--release",
        default="",
        type=_release_label,
        help="a label for this release, shown at each service's /healthz (default: the version)",
    )
    upgrade.set_defaults(run=cmd_upgrade)
    backup = sub.add_parser("backup", help="take a base backup now (pgBackRest; WAL is archived continuously)")
    backup.add_argument("--kind", choices=("full", "diff", "incr"), default="full")
    backup.add_argument("--list", action="store_true", help="list the backups in the repository instead")
    backup.set_defaults(run=cmd_backup)
    restore = sub.add_parser(
        "restore", help="bring the database back to a point in time (stops and restarts a running platform)"
    )
    restore.add_argument(
        "--to",
        type=_restore_target,
        required=True,
        metavar="TIME",
        help="ISO 8601 with a time zone, e.g. 2026-11-29T23:50:00+00:00",
    )
    restore.set_defaults(run=cmd_restore)
    alerts = sub.add_parser("alerts", help="the newest notifications Alertmanager sent (the local outbox)")
    alerts.add_argument(
        "--last", type=int, default=20, choices=range(1, 1001), metavar="N", help="how many (1-1000, default 20)"
    )
    alerts.add_argument("--json", action="store_true")
    alerts.set_defaults(run=cmd_alerts)
    ingest = sub.add_parser(
        "ingest",
        help="load STAC collections and items (ndjson, JSON, static catalogs); exit 1 when records were rejected",
    )
    ingest.add_argument("paths", nargs="+", type=Path)
    ingest.add_argument("--strict", action="store_true", help="refuse the whole load if anything is invalid")
    ingest.add_argument(
        "--batch-size", type=_at_least(1, int), help="items per transaction (default: eolake.ingest.BATCH_SIZE)"
    )
    ingest.add_argument(
        "--lock-timeout",
        type=_at_least(0.001, float, LOCK_TIMEOUT_MAX),
        default=30,
        metavar="SECONDS",
        help="longest wait for a database lock before the load stops (default 30)",
    )
    ingest.add_argument("--dsn", help="default: the running local platform's database")
    ingest.set_defaults(run=cmd_ingest)
    demo = sub.add_parser("demo", help="load the demo data into a platform's database and storage (once)")
    demo.add_argument("--storage", type=Path, required=True, help="the platform's storage path")
    demo.add_argument(
        "--dsn",
        default=os.environ.get("EOLAKE_DATABASE_URL"),
        required=not os.environ.get("EOLAKE_DATABASE_URL"),
        help="default: $EOLAKE_DATABASE_URL",
    )
    demo.set_defaults(run=cmd_demo)
    thesaurus = sub.add_parser("thesaurus", help="manage the thesaurus index")
    thesaurus_sub = thesaurus.add_subparsers(dest="thesaurus_command", required=True)
    imp = thesaurus_sub.add_parser("import", help="add a SKOS file (RDF/XML or Turtle) to a vocabulary")
    imp.add_argument("file", type=Path)
    imp.add_argument("--vocabulary", help="vocabulary id (default: the file name); same id = same vocabulary")
    imp.add_argument("--title")
    imp.set_defaults(run=cmd_thesaurus)
    dictd = thesaurus_sub.add_parser(
        "import-dict",
        help="add a dictd dictionary (NAME.index beside NAME.dict.dz, "
        "such as Debian's dict-freedict-*) as translations from one language to another",
    )
    dictd.add_argument("file", type=Path, help="the .index or .dict.dz file")
    dictd.add_argument("--from", dest="source", required=True, help="language of the headwords (fr, en, …)")
    dictd.add_argument("--to", dest="target", required=True, help="language of the translations")
    dictd.add_argument(
        "--vocabulary", default="freedict", help="vocabulary id (default freedict); same id = same vocabulary"
    )
    dictd.add_argument("--title")
    dictd.set_defaults(run=cmd_thesaurus_dict)
    validate = sub.add_parser("validate", help="check a stack file")
    validate.add_argument("--stack", default="local")
    validate.set_defaults(run=cmd_validate)
    render = sub.add_parser(
        "render",
        help="write the Kubernetes manifests a stack would create (no cluster "
        "needed; with the OpenStack resources and nodes' user-data of a cluster it provisions), "
        "or the Ansible inventory of an on-premise stack",
    )
    render.add_argument("--stack", required=True, help="a stack name (stacks/Pulumi.<name>.yaml) or a file")
    render.add_argument(
        "--out",
        type=Path,
        required=True,
        help="directory; earlier YAML files there are replaced (an inventory's credentials/ is kept)",
    )
    render.set_defaults(run=cmd_render)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    state = StateDir((args.state_dir or default_state_dir()).resolve())
    try:
        return args.run(args, state)
    except Exception as exc:
        if not _is_spec_error(exc):
            raise
        err.print(str(exc), markup=False, highlight=False)
        return 2


def _is_spec_error(exc: Exception) -> bool:
    """Only a command that loaded a stack, and so imported eolake_spec, can raise its SpecError."""
    spec = sys.modules.get("eolake_spec")
    return spec is not None and isinstance(exc, spec.SpecError)


if __name__ == "__main__":
    sys.exit(main())
