"""The `eolake` command: up, status, down, ingest, validate."""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psycopg
from rich.console import Console
from rich.table import Table

from eolake.embedded.postgres import PostgresCluster, free_port, port_is_free
from eolake.embedded.state import StateDir
from eolake.paths import default_state_dir
from eolake_spec import SpecError, load_stack

console = Console()
err = Console(stderr=True)
START_TIMEOUT = 900.0


def cmd_up(args: argparse.Namespace, state: StateDir) -> int:
    if pid := state.supervisor_pid():
        base = state.runtime().get("base_url", "?")
        console.print(f"eolake is already running (pid {pid}) at {base}: `eolake status` shows it, `eolake down` "
                      "stops it.")
        return 0
    platform = load_stack(args.stack)
    port = args.port or platform.base_url.port or 80
    if not port_is_free(port):
        err.print(f"[red]port {port} is already in use[/]: stop what uses it, or start on another port with "
                  f"`eolake up --port {free_port()}`")
        return 2
    state.prepare()
    state.runtime_file.unlink(missing_ok=True)
    command = [sys.executable, "-m", "eolake.embedded.supervisor", "--stack", args.stack,
               "--state-dir", str(state.root)] + (["--port", str(args.port)] if args.port else [])
    if args.foreground:
        return subprocess.call(command)
    with open(state.logs / "supervisor.log", "ab") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                   start_new_session=True)
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
            time.sleep(0.3)
    print_urls(state)
    return 0


def print_urls(state: StateDir) -> None:
    runtime = state.runtime()
    console.print(f"[green]eolake is up[/] at {runtime['base_url']} (stack {runtime['stack']})")
    for name, service in sorted(runtime["services"].items()):
        if service["url"]:
            console.print(f"  {name:<10} {service['url']}/")
    for name, component in sorted(runtime.get("monitoring", {}).items()):
        console.print(f"  {name:<10} {component['url'] + '/' if component['url'] else component['note']}")
    console.print(f"  API keys   {state.key_file('admin')} (admin), {state.key_file('user')} (user): "
                  "send as the X-API-Key header")
    console.print(f"  logs       {state.logs}/")
    console.print("`eolake status` shows readiness; `eolake down` stops everything.")


def cmd_status(args: argparse.Namespace, state: StateDir) -> int:
    pid = state.supervisor_pid()
    runtime = state.runtime()
    if not pid:
        console.print("eolake is not running: `eolake up` starts it.")
        return 3
    base = runtime.get("base_url", "").rstrip("/")
    rows = [("database", "ready" if PostgresCluster(state.postgres).running else "down",
             f"127.0.0.1:{runtime.get('database_port')}")]
    with httpx.Client(timeout=3) as client:
        for name, service in sorted(runtime.get("services", {}).items()):
            if not service["url"]:
                continue
            try:
                answer = client.get(f"{service['url']}/readyz")
                state_text = "ready" if answer.status_code == 200 else answer.json().get("detail", "not ready")
            except (httpx.HTTPError, ValueError) as exc:
                state_text = f"unreachable ({type(exc).__name__})"
            rows.append((name, state_text, service["url"] + "/"))
        for name, component in sorted(runtime.get("monitoring", {}).items()):
            if component.get("url"):  # monitoring that does not run (not installed, disabled) is not a failure
                try:
                    ok = client.get(component["url"] + component["probe"]).status_code == 200
                    state_text = "ready" if ok else "not ready"
                except httpx.HTTPError as exc:
                    state_text = f"unreachable ({type(exc).__name__})"
                rows.append((name, state_text, component["url"] + "/"))
    if args.json:
        console.print_json(json.dumps({"status": runtime.get("status"), "base_url": base,
                                       "components": {n: {"state": s, "url": u} for n, s, u in rows}}))
    else:
        table = Table(title=f"eolake {runtime.get('stack')} at {base} (supervisor pid {pid})")
        for column in ("component", "state", "url"):
            table.add_column(column)
        for name, state_text, url in rows:
            table.add_row(name, f"[green]{state_text}[/]" if state_text == "ready" else f"[red]{state_text}[/]", url)
        console.print(table)
    return 0 if all(s == "ready" for _, s, _ in rows) else 1


def cmd_down(args: argparse.Namespace, state: StateDir) -> int:
    pid = state.supervisor_pid()
    if not pid:
        console.print("eolake is not running.")
        return 0
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


def cmd_ingest(args: argparse.Namespace, state: StateDir) -> int:
    from eolake.ingest import IngestError, format_report, ingest

    dsn = args.dsn or os.environ.get("EOLAKE_DATABASE_URL")
    if not dsn:
        cluster = PostgresCluster(state.postgres)
        if not cluster.running:
            err.print("no database: start the platform (`eolake up`) or pass --dsn postgresql://…")
            return 2
        dsn = cluster.dsn()
    try:
        report = ingest(args.paths, dsn, strict=args.strict, batch_size=args.batch_size,
                        progress=sys.stderr.isatty())
    except IngestError as exc:
        err.print(f"ingest: {exc}", markup=False, highlight=False)
        return 2
    except psycopg.OperationalError as exc:
        err.print(f"ingest: cannot reach the database: {str(exc).strip()}", markup=False, highlight=False)
        return 2
    print(format_report(report))  # plain: one rejection a line, for grep and CI logs
    return 1 if report.rejected else 0


def cmd_demo(args: argparse.Namespace, state: StateDir) -> int:
    """The demo data into a platform that runs elsewhere (an on-premise install): once, recorded in the storage."""
    from eolake.embedded.supervisor import load_demo

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
    from eolake_thesaurus.store import RdfImportError

    try:
        report = import_vocabulary(state.storage, args.file, args.vocabulary, args.title)
    except RdfImportError as exc:
        err.print(f"thesaurus import: {exc}", markup=False, highlight=False)
        return 2
    print(f"{report.vocabulary}: {report.concepts} concepts, {report.labels} labels, {report.relations} relations "
          f"(added {report.added}); content hash {report.content_hash[:16]}")
    return 0


def cmd_validate(args: argparse.Namespace, state: StateDir) -> int:
    platform = load_stack(args.stack)
    used, budget = platform.connection_budget()
    console.print(f"{args.stack}: valid; services {', '.join(platform.enabled_services)}; "
                  f"database connections {used} of {budget}")
    return 0


def cmd_render(args: argparse.Namespace, state: StateDir) -> int:
    """Kubernetes manifests of a stack, from the real Pulumi program (eolake_infra) run under mocks; or, for a stack
    with an `onprem` section and no `kubernetes` one, the Ansible inventory of playbooks/."""
    platform = load_stack(args.stack)
    if not platform.onprem and not platform.kubernetes:
        err.print(f"{args.stack}: nothing to render: the stack has neither a kubernetes: nor an onprem: section",
                  markup=False, highlight=False)
        return 2
    if platform.onprem and not platform.kubernetes:
        from eolake.onprem import render_inventory

        written = render_inventory(platform, args.out)
        console.print(f"{args.stack}: Ansible inventory in {args.out / 'inventory.yml'} ({len(written)} files)")
        return 0
    from eolake_infra.config import InfraError
    from eolake_infra.render import render

    try:
        written = render(args.stack, args.out)
    except InfraError as exc:
        err.print(str(exc), markup=False, highlight=False)
        return 2
    console.print(f"{args.stack}: {len(written)} manifests in {args.out}")
    return 0


def _tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except FileNotFoundError:
        return ""


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="eolake", description="eolake: an Earth-observation data lake platform")
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
    ingest = sub.add_parser("ingest", help="load STAC collections and items (ndjson, JSON, static catalogs); "
                            "exit 1 when records were rejected")
    ingest.add_argument("paths", nargs="+", type=Path)
    ingest.add_argument("--strict", action="store_true", help="refuse the whole load if anything is invalid")
    ingest.add_argument("--batch-size", type=int, default=500)
    ingest.add_argument("--dsn", help="default: the running local platform's database")
    ingest.set_defaults(run=cmd_ingest)
    demo = sub.add_parser("demo", help="load the demo data into a platform's database and storage (once)")
    demo.add_argument("--storage", type=Path, required=True, help="the platform's storage path")
    demo.add_argument("--dsn", default=os.environ.get("EOLAKE_DATABASE_URL"), required=not os.environ.get(
        "EOLAKE_DATABASE_URL"), help="default: $EOLAKE_DATABASE_URL")
    demo.set_defaults(run=cmd_demo)
    thesaurus = sub.add_parser("thesaurus", help="manage the thesaurus index")
    thesaurus_sub = thesaurus.add_subparsers(dest="thesaurus_command", required=True)
    imp = thesaurus_sub.add_parser("import", help="add a SKOS file (RDF/XML or Turtle) to a vocabulary")
    imp.add_argument("file", type=Path)
    imp.add_argument("--vocabulary", help="vocabulary id (default: the file name); same id = same vocabulary")
    imp.add_argument("--title")
    imp.set_defaults(run=cmd_thesaurus)
    validate = sub.add_parser("validate", help="check a stack file")
    validate.add_argument("--stack", default="local")
    validate.set_defaults(run=cmd_validate)
    render = sub.add_parser("render", help="write the Kubernetes manifests a stack would create (no cluster "
                            "needed), or the Ansible inventory of an on-premise stack")
    render.add_argument("--stack", required=True, help="a stack name (stacks/Pulumi.<name>.yaml) or a file")
    render.add_argument("--out", type=Path, required=True, help="directory; earlier YAML files there are replaced "
                        "(an inventory's credentials/ is kept)")
    render.set_defaults(run=cmd_render)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    state = StateDir((args.state_dir or default_state_dir()).resolve())
    try:
        return args.run(args, state)
    except SpecError as exc:
        err.print(str(exc), markup=False, highlight=False)
        return 2


if __name__ == "__main__":
    sys.exit(main())
