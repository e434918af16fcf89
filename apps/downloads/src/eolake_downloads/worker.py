"""Download workers: procrastinate jobs that stage one file each, plus a maintenance loop (stalled jobs, lost
jobs, expiry, temporary files). Run with `python -m eolake_downloads.worker`; any number of them, on any host.

With a metrics port, the worker answers there: /metrics, /healthz (liveness: its event loop turns; never the
database) and /readyz (readiness: the job loop runs and its last sweep of the database succeeded recently)."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import procrastinate
import psycopg
import psycopg_pool
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb
from tenacity import Retrying, retry_if_exception_type, stop_after_attempt, wait_exponential

from eolake_downloads import metrics, tiers, transitions
from eolake_downloads.schema import QUEUE, SEARCH_PATH, job_app
from eolake_downloads.settings import DownloadsSettings
from eolake_downloads.sources import (
    Canceled,
    CopyInProgress,
    SourceError,
    Staging,
    TransientError,
    check_multihash,
    fetch,
    resolve,
)
from eolake_kit.bounds import reconnecting
from eolake_kit.logs import configure_logging

log = logging.getLogger("eolake.downloads.worker")
TASK = "eolake_downloads.stage_file"
FINAL_FILE_STATES = ("ready", "failed", "canceled", "expired")


class Health:
    """What the probes report: `beat` (the event loop turned), `swept` (a maintenance sweep of the database
    succeeded), `working` (procrastinate's worker is running). Times from `clock` (monotonic seconds)."""

    BEAT_SECONDS = 1.0

    def __init__(self, ready_within: float, alive_within: float = 30.0, clock: Callable[[], float] = time.monotonic):
        self.ready_within, self.alive_within, self.clock = ready_within, alive_within, clock
        self.beat: float | None = None
        self.swept: float | None = None
        self.working = False

    def alive(self) -> bool:
        return self.beat is not None and self.clock() - self.beat <= self.alive_within

    def ready(self) -> bool:
        return self.working and self.swept is not None and self.clock() - self.swept <= self.ready_within

    async def beating(self) -> None:
        while True:
            self.beat = self.clock()
            await asyncio.sleep(self.BEAT_SECONDS)


def serve_probes(health: Health, host: str, port: int) -> ThreadingHTTPServer:
    """/metrics, /healthz and /readyz on `port`, in a daemon thread."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 (http.server's name)
            path = self.path.split("?", 1)[0]
            if path == "/metrics":
                self._send(200, generate_latest(), CONTENT_TYPE_LATEST)
            elif path in ("/healthz", "/readyz"):
                ok = health.alive() if path == "/healthz" else health.ready() and health.alive()
                self._send(200 if ok else 503, b"ok\n" if ok else b"unavailable\n", "text/plain")
            else:
                self._send(404, b"not found\n", "text/plain")

        def _send(self, status: int, body: bytes, content_type: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args) -> None:  # probes every few seconds: not worth a log line each
            pass

    server = ThreadingHTTPServer((host, port), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="probes", daemon=True).start()
    return server


def file_lock(file_id: str) -> str:
    return f"file:{file_id}"


async def defer_file(app: procrastinate.App, file_id: str) -> None:
    """Queue the staging of one file; a second request while one waits is a no-op (queueing lock)."""
    try:
        await app.configure_task(
            TASK, queue=QUEUE, lock=file_lock(file_id), queueing_lock=file_lock(file_id)
        ).defer_async(file_id=file_id)
    except procrastinate.exceptions.AlreadyEnqueued:
        pass


def finish_order(conn: psycopg.Connection, order_id: str) -> str | None:
    """Close the order when all its files are final; returns the outcome when this call closed it. A retrieval
    that succeeded puts its item back online in the catalog, in the same transaction."""
    with conn.transaction():
        order = conn.execute("SELECT * FROM orders WHERE id = %s FOR UPDATE", (order_id,)).fetchone()
        if not order or order["status"] != "ordered":
            return None
        counts = {
            r["state"]: r["n"]
            for r in conn.execute(
                "SELECT state, count(*) AS n FROM files WHERE order_id = %s GROUP BY state", (order_id,)
            )
        }
        if any(s not in FINAL_FILE_STATES for s in counts):
            return None
        failed = counts.get("failed", 0)
        outcome = "failed" if failed else "succeeded"
        reason = f"{failed} of {sum(counts.values())} files failed" if failed else None
        if outcome == "succeeded" and order["kind"] == "retrieval":
            reason = restore_item(conn, order)
            outcome = "failed" if reason else outcome
        transitions.finish_sync(conn, order_id, outcome, reason)
    metrics.JOBS.labels(metrics.SERVICE, outcome).inc()
    if outcome == "succeeded":
        metrics.JOB_DURATION.labels(metrics.SERVICE).observe((datetime.now(UTC) - order["created"]).total_seconds())
    return outcome


def restore_item(conn: psycopg.Connection, order: dict) -> str | None:
    """The retrieved item, online again in the catalog (its assets where the order restored them); the reason it
    could not be, else None."""
    collection, item_id = order["target_collection"], order["target_item"]
    try:
        with conn.transaction():  # a savepoint: a failed update leaves the order to be closed as failed
            conn.execute("SET LOCAL search_path = downloads, pgstac, public")
            item = conn.execute("SELECT pgstac.get_item(%s, %s) AS item", (item_id, collection)).fetchone()["item"]
            if item is None:
                return f"item {collection}/{item_id} is no longer in the catalog"
            hrefs = {
                r["asset"]: r["location"]
                for r in conn.execute("SELECT asset, location FROM files WHERE order_id = %s", (order["id"],))
            }
            conn.execute("SELECT pgstac.update_item(%s)", (Jsonb(tiers.mark_online(item, hrefs)),))
    except psycopg.Error as e:
        log.error("retrieved item not updated in the catalog: %s", e, extra={"order": str(order["id"])})
        return f"the catalog was not updated: {e.__class__.__name__}"
    log.info("item back online", extra={"collection": collection, "item": item_id})
    return None


class Stager:
    def __init__(self, settings: DownloadsSettings):
        self.settings = settings
        self.staging = Staging(settings)
        self.pool = psycopg_pool.ConnectionPool(
            settings.dsn,
            min_size=0,
            max_size=max(2, settings.worker_concurrency),
            kwargs={"options": f"{SEARCH_PATH} {settings.postgres_options()}", "row_factory": dict_row},
            open=False,
            **reconnecting(psycopg_pool.ConnectionPool),
        )

    def claim(self, file_id: str) -> dict | None:
        with self.pool.connection() as conn, conn.transaction():
            row = conn.execute(
                "SELECT f.*, o.status AS order_status FROM files f JOIN orders o ON o.id = f.order_id "
                "WHERE f.id = %s FOR UPDATE OF f SKIP LOCKED",
                (file_id,),
            ).fetchone()
            if not row or row["state"] not in ("queued", "staging") or row["order_status"] != "ordered":
                return None
            conn.execute(
                "UPDATE files SET state = 'staging', attempts = attempts + 1, updated = now() WHERE id = %s", (file_id,)
            )
            return row

    def alive(self, file_id: str) -> bool:
        with self.pool.connection() as conn:
            row = conn.execute("SELECT state FROM files WHERE id = %s", (file_id,)).fetchone()
            return bool(row) and row["state"] == "staging"

    def stage(self, file_id: str) -> None:
        row = self.claim(file_id)
        if row is None:
            return
        tmp = self.staging.temp_path(file_id)  # kept only when this worker dies: the next try resumes it
        try:
            self._stage_from_providers(row, tmp)
        except CopyInProgress as e:
            log.warning("not staged here: %s", e, extra={"file": file_id})
            return
        except (SourceError, TransientError) as e:
            self._fail(file_id, _reason(e))
        except Exception as e:  # an unexpected error is reported too: never a file stuck in 'staging'
            log.exception("staging failed", extra={"file": file_id})
            self._fail(file_id, f"internal error: {e.__class__.__name__}")
        self.staging.discard(tmp)
        with self.pool.connection() as conn:
            finish_order(conn, str(row["order_id"]))

    def _stage_from_providers(self, row: dict, tmp: Path) -> None:
        """The file from the first of its providers that delivers it whole and verified; each one that fails is
        recorded in the file's `fallbacks` and gives way to the next."""
        sources = row["sources"] or [{"provider": tiers.LOCAL, "href": row["href"]}]
        fallbacks: list[dict] = []
        for n, source in enumerate(sources, 1):
            try:
                sha, size = self._fetch(row, source["href"], tmp)
            except (SourceError, TransientError) as e:
                if isinstance(e, Canceled) or n == len(sources):
                    self._note_fallbacks(row["id"], fallbacks)
                    raise
                fallbacks.append({"provider": source["provider"], "reason": _reason(e)})
                log.warning("provider failed, trying the next", extra={"file": str(row["id"]), **fallbacks[-1]})
                self.staging.discard(tmp)
                self._note_fallbacks(row["id"], fallbacks)
                continue
            self._publish(row, tmp, sha, size, source["provider"], fallbacks)
            return

    def _fetch(self, row: dict, href: str, tmp: Path) -> tuple[str, int]:
        file_id = str(row["id"])
        retrying = Retrying(
            retry=retry_if_exception_type(TransientError),
            stop=stop_after_attempt(self.settings.transient_attempts),
            wait=wait_exponential(multiplier=self.settings.retry_base_seconds, max=60),
            reraise=True,
            before_sleep=lambda rs: log.warning(
                "transient source error, retrying",
                extra={
                    "file": file_id,
                    "attempt": rs.attempt_number,
                    "error": str(rs.outcome and rs.outcome.exception()),
                },
            ),
        )
        sha, size = retrying(fetch, resolve(href, self.settings), tmp, self.settings, lambda: self.alive(file_id))
        check_multihash(row["expected_checksum"], sha)
        return sha, size

    def _publish(self, row: dict, tmp: Path, sha: str, size: int, provider: str, fallbacks: list[dict]) -> None:
        file_id, order_id, started = str(row["id"]), str(row["order_id"]), time.monotonic()
        with self.pool.connection() as conn, conn.transaction():
            # Publish only while the file is still ours and wanted: a canceled order publishes nothing.
            current = conn.execute("SELECT state FROM files WHERE id = %s FOR UPDATE", (file_id,)).fetchone()
            if not current or current["state"] != "staging":
                self.staging.discard(tmp)
                return
            location = (
                self.staging.restore(tmp, row["restore_to"])
                if row["restore_to"]
                else self.staging.publish(tmp, order_id, file_id)
            )
            expires = datetime.now(UTC) + timedelta(seconds=self.settings.expiry_seconds)
            conn.execute(
                "UPDATE files SET state = 'ready', checksum = %s, size = %s, location = %s, "
                "staged_at = now(), expires_at = %s, reason = NULL, provider = %s, fallbacks = %s, "
                "updated = now() WHERE id = %s",
                ("1220" + sha, size, location, expires, provider, Jsonb(fallbacks), file_id),
            )
        metrics.BYTES_STAGED.labels(metrics.SERVICE).inc(size)
        metrics.FILES.labels(metrics.SERVICE, "succeeded").inc()
        log.info(
            "file staged",
            extra={
                "file": file_id,
                "order": order_id,
                "bytes": size,
                "provider": provider,
                "seconds": round(time.monotonic() - started, 3),
            },
        )

    def _note_fallbacks(self, file_id, fallbacks: list[dict]) -> None:
        with self.pool.connection() as conn:
            conn.execute("UPDATE files SET fallbacks = %s WHERE id = %s", (Jsonb(fallbacks), file_id))

    def _fail(self, file_id: str, reason: str) -> None:
        log.error("file failed: %s", reason, extra={"file": file_id})
        metrics.FILES.labels(metrics.SERVICE, "failed").inc()
        with self.pool.connection() as conn:
            conn.execute(
                "UPDATE files SET state = 'failed', reason = %s, updated = now() WHERE id = %s AND state = 'staging'",
                (reason, file_id),
            )


def _reason(e: Exception) -> str:
    return str(e) if isinstance(e, SourceError) else f"source kept failing: {e}"


def build(settings: DownloadsSettings) -> tuple[procrastinate.App, Stager]:
    app = job_app(settings.dsn, pool_size=2, options=settings.postgres_options())
    stager = Stager(settings)

    @app.task(name=TASK, queue=QUEUE)
    def stage_file(file_id: str) -> None:  # sync: procrastinate runs it in a thread
        stager.stage(file_id)

    return app, stager


async def maintenance(app: procrastinate.App, stager: Stager, settings: DownloadsSettings) -> None:
    """One sweep: requeue jobs of dead workers, queue files that lost their job, expire old files."""
    for job in await app.job_manager.get_stalled_jobs(queue=QUEUE, seconds_since_heartbeat=settings.stalled_seconds):
        log.warning("retrying a stalled job", extra={"job": job.id, "lock": job.lock})
        await app.job_manager.retry_job(job)

    def sweep() -> tuple[list[str], int]:
        with stager.pool.connection() as conn:
            lost = [
                str(r["id"])
                for r in conn.execute(
                    "SELECT f.id FROM files f JOIN orders o ON o.id = f.order_id "
                    "WHERE f.state IN ('queued', 'staging') AND o.status = 'ordered' "
                    "AND f.updated < now() - make_interval(secs => %s) AND NOT EXISTS ("
                    "  SELECT 1 FROM procrastinate_jobs j WHERE j.lock = 'file:' || f.id::text "
                    "  AND j.status IN ('todo', 'doing'))",
                    (settings.stalled_seconds,),
                )
            ]
            expired = conn.execute(
                "UPDATE files SET state = 'expired', updated = now() WHERE state = 'ready' AND expires_at < now() "
                "RETURNING location"
            ).fetchall()
            wanted = {str(r["id"]) for r in conn.execute("SELECT id FROM files WHERE state IN ('queued', 'staging')")}
        for row in expired:
            try:
                stager.staging.remove(row["location"])
            except Exception:
                log.warning("could not remove an expired file", extra={"location": row["location"]}, exc_info=True)
        _remove_old_temporaries(stager.staging.tmp_dir, settings.stalled_seconds * 4, wanted)
        if expired:
            log.info("expired files removed", extra={"count": len(expired)})
        return lost, len(expired)

    lost, _ = await asyncio.to_thread(sweep)
    for file_id in lost:
        log.warning("requeueing a file without a job", extra={"file": file_id})
        await defer_file(app, file_id)


def _remove_old_temporaries(tmp_dir: Path, older_than: float, wanted: set[str]) -> None:
    """Copies (and their validator notes) untouched for `older_than` seconds, but those of files still `wanted`
    (queued or staging): their next try resumes them."""
    if not tmp_dir.is_dir():
        return
    limit = time.time() - older_than
    for path in tmp_dir.glob("*.part*"):
        if path.name.split(".", 1)[0] in wanted:
            continue
        try:
            if path.stat().st_mtime < limit:
                path.unlink()
        except OSError:
            pass


def health_for(settings: DownloadsSettings) -> Health:
    """Ready while a sweep succeeded within three maintenance intervals (at least the stalled-worker timeout)."""
    return Health(ready_within=max(3 * settings.maintenance_interval, settings.stalled_seconds))


async def run(settings: DownloadsSettings, health: Health | None = None) -> None:
    app, stager = build(settings)
    health = health or health_for(settings)
    beating = asyncio.create_task(health.beating())
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    stager.pool.open(wait=False)
    name = f"{socket.gethostname()}-{os.getpid()}"
    delay = 1.0
    while not stop.is_set():
        try:
            async with app.open_async():
                worker = asyncio.create_task(
                    app.run_worker_async(
                        queues=[QUEUE],
                        name=name,
                        concurrency=settings.worker_concurrency,
                        wait=True,
                        install_signal_handlers=False,
                        update_heartbeat_interval=settings.heartbeat_seconds,
                        stalled_worker_timeout=settings.stalled_seconds,
                        shutdown_graceful_timeout=30,
                        fetch_job_polling_interval=2.0,
                    )
                )
                log.info("worker started", extra={"worker": name})
                while not stop.is_set() and not worker.done():
                    health.working = True
                    try:
                        await maintenance(app, stager, settings)
                        health.swept = health.clock()
                        delay = 1.0
                    except Exception as e:
                        log.warning("maintenance failed: %s", e)
                    try:
                        await asyncio.wait_for(stop.wait(), settings.maintenance_interval)
                    except TimeoutError:
                        pass
                health.working = False
                worker.cancel()  # procrastinate stops gracefully on cancellation: running jobs finish first
                try:
                    await worker
                except (asyncio.CancelledError, Exception) as e:
                    if not stop.is_set():
                        raise RuntimeError(f"worker stopped: {e!r}") from e
        except Exception as e:  # Postgres went away: reconnect with backoff, jobs stay in the queue
            log.warning("worker loop failed, reconnecting in %.0f s: %s", delay, e)
            try:
                await asyncio.wait_for(stop.wait(), delay)
            except TimeoutError:
                pass
            delay = min(delay * 2, 30)
    beating.cancel()
    stager.pool.close()


def main() -> None:
    settings = DownloadsSettings()
    configure_logging("downloads-worker", settings.log_level)
    health = health_for(settings)
    if settings.worker_metrics_port:
        serve_probes(health, settings.host, settings.worker_metrics_port)
    asyncio.run(run(settings, health))


if __name__ == "__main__":
    main()
