"""The embedded target's alert outbox: a loopback webhook that Alertmanager posts every notification to, so what
would have been sent (to the stack's receivers, or to nobody) can be read with `eolake alerts`.

    python -m eolake.embedded.outbox --port PORT --file OUTBOX.jsonl

POST /<receiver> appends one line per notification; the file keeps the newest KEEP lines. GET /healthz answers ok.
"""

from __future__ import annotations

import argparse
import json
import signal
import threading
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

KEEP = 1000
MAX_BODY = 1 << 20  # Alertmanager batches alerts per group: a megabyte is thousands of them


def summary(receiver: str, payload: dict) -> dict:
    """The part of an Alertmanager webhook payload someone on call reads."""
    listed = payload.get("alerts")
    alerts = listed if isinstance(listed, list) else []
    return {
        "received_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "receiver": receiver,
        "status": payload.get("status"),
        "alerts": [
            {
                "alertname": a.get("labels", {}).get("alertname"),
                "severity": a.get("labels", {}).get("severity"),
                "service": a.get("labels", {}).get("service"),
                "status": a.get("status"),
                "summary": a.get("annotations", {}).get("summary"),
                "runbook_url": a.get("annotations", {}).get("runbook_url"),
            }
            for a in alerts
            if isinstance(a, dict)
        ],
    }


class Outbox:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.lock = threading.Lock()

    def append(self, entry: dict) -> None:
        with self.lock:
            lines = self.read_lines()[-(KEEP - 1) :] + [json.dumps(entry)]
            partial = self.path.with_suffix(".partial")
            partial.write_text("\n".join(lines) + "\n")
            partial.replace(self.path)  # never a half-written outbox

    def read_lines(self) -> list[str]:
        return self.path.read_text().splitlines() if self.path.exists() else []


def read(path: Path, last: int = 20) -> list[dict]:
    """The newest `last` notifications, oldest first; lines that are not JSON are skipped."""
    entries = []
    for line in Outbox(path).read_lines()[-last:]:
        try:
            entries.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return entries


def handler(outbox: Outbox) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
            self._answer(200 if self.path == "/healthz" else 404, {"status": "ok"} if self.path == "/healthz" else {})

        def do_POST(self) -> None:  # noqa: N802
            receiver = self.path.strip("/")
            length = int(self.headers.get("Content-Length") or 0)
            if not receiver.isidentifier() or not 0 < length <= MAX_BODY:
                return self._answer(400, {"detail": "POST /<receiver> with a JSON body up to 1 MiB"})
            try:
                payload = json.loads(self.rfile.read(length))
            except (json.JSONDecodeError, UnicodeDecodeError):
                return self._answer(400, {"detail": "the body is not JSON"})
            if not isinstance(payload, dict):
                return self._answer(400, {"detail": "the body is not a JSON object"})
            outbox.append(summary(receiver, payload))
            self._answer(200, {"status": "recorded"})

        def _answer(self, status: int, body: dict) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args) -> None:  # noqa: A002 (http.server's signature)
            return

    return Handler


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m eolake.embedded.outbox")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--file", type=Path, required=True)
    args = parser.parse_args(argv)
    server = ThreadingHTTPServer(("127.0.0.1", args.port), handler(Outbox(args.file)))
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown).start())
    server.serve_forever()


if __name__ == "__main__":
    main()
