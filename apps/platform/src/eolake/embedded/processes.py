"""Start a process, wait until its HTTP probe answers, stop it: one way for the supervisor's children, the tests'
servers and the benchmarks' (tests/servers.py, bench/)."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

STOP_TIMEOUT = 20.0  # seconds between SIGTERM and SIGKILL


def answering(status: int) -> bool:
    """The process serves HTTP, whatever it thinks of the request (a 4xx included)."""
    return status < 500


def ok(status: int) -> bool:
    return status == 200


def answers(url: str, ready: Callable[[int], bool] = answering, client: httpx.Client | None = None) -> bool:
    """One probe: `url` answered with a status `ready` accepts (no answer at all is False)."""
    try:
        status = client.get(url).status_code if client else httpx.get(url, timeout=2).status_code
    except httpx.HTTPError:
        return False
    return ready(status)


def wait_until(predicate: Callable[[], object], timeout: float = 30, interval: float = 0.2):
    """The predicate's first true value, or its last false one once `timeout` seconds have passed."""
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if result or time.monotonic() > deadline:
            return result
        time.sleep(interval)


class NotStarted(RuntimeError):
    pass


def log_tail(log: Path, chars: int = 3000) -> str:
    return log.read_text(errors="replace")[-chars:] if log.exists() else ""


def wait_serving(
    process: subprocess.Popen,
    url: str,
    log: Path,
    timeout: float = 60,
    ready: Callable[[int], bool] = answering,
    name: str = "",
) -> None:
    """Until `url` answers as `ready` wants; NotStarted (with the log's end) if the process exits or is late."""
    name = name or " ".join(map(str, process.args if isinstance(process.args, list) else [process.args]))
    deadline = time.monotonic() + timeout
    with httpx.Client(timeout=2) as client:
        while not answers(url, ready, client):
            if process.poll() is not None:
                raise NotStarted(f"{name} exited ({process.returncode}):\n{log_tail(log)}")
            if time.monotonic() > deadline:
                raise NotStarted(f"{name} did not answer {url} within {timeout:g} s:\n{log_tail(log)}")
            time.sleep(0.1)


def stop(process: subprocess.Popen, timeout: float = STOP_TIMEOUT) -> None:
    """SIGTERM, and SIGKILL if it has not ended `timeout` seconds later."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@contextmanager
def serving(
    command: list[str],
    url: str,
    log: Path,
    probe: str = "/healthz",
    env: dict[str, str] | None = None,
    timeout: float = 60,
    ready: Callable[[int], bool] = answering,
    **popen,
) -> Iterator[subprocess.Popen]:
    """`command` started with its output in `log`; yields the process once `url + probe` answers; stopped at the end.
    `popen`: more subprocess.Popen arguments (cwd, start_new_session)."""
    with open(log, "wb") as out:
        process = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT, **popen)
    try:
        wait_serving(process, url + probe, log, timeout, ready)
        yield process
    finally:
        stop(process)
