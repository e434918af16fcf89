"""The process/probe helper (eolake.embedded.processes) the supervisor, the tests and the benchmarks share."""

from __future__ import annotations

import signal
import subprocess
import sys

import pytest

from eolake.embedded import processes
from eolake.embedded.postgres import free_port


def test_serving_yields_once_the_probe_answers_and_stops_the_process(tmp_path):
    port = free_port()
    command = [sys.executable, "-m", "http.server", "--bind", "127.0.0.1", str(port)]
    url = f"http://127.0.0.1:{port}"
    with processes.serving(command, url, tmp_path / "http.log", probe="/") as process:
        assert processes.answers(url + "/", processes.ok)
        assert processes.answers(url + "/missing")  # a 404 is an answer
        assert not processes.answers(url + "/missing", processes.ok)
    assert process.returncode == -signal.SIGTERM
    assert not processes.answers(url + "/")


def test_a_process_that_exits_before_answering_is_reported_with_its_log(tmp_path):
    command = [sys.executable, "-c", "import sys; print('no configuration'); sys.exit(3)"]
    with pytest.raises(processes.NotStarted, match=r"(?s)exited \(3\).*no configuration"):
        with processes.serving(command, f"http://127.0.0.1:{free_port()}", tmp_path / "exits.log"):
            pytest.fail("yielded although the process exited")


def test_a_process_that_never_answers_is_stopped_after_the_timeout(tmp_path):
    command = [sys.executable, "-c", "import time; time.sleep(60)"]
    with pytest.raises(processes.NotStarted, match=r"did not answer .* within 0.5 s"):
        with processes.serving(command, f"http://127.0.0.1:{free_port()}", tmp_path / "mute.log", timeout=0.5):
            pytest.fail("yielded although nothing answered")


def test_stop_kills_a_process_that_ignores_sigterm():
    ignores = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print(flush=True); time.sleep(60)"
    process = subprocess.Popen([sys.executable, "-c", ignores], stdout=subprocess.PIPE)
    process.stdout.readline()  # the handler is in place
    processes.stop(process, timeout=0.5)
    assert process.returncode == -signal.SIGKILL
    process.stdout.close()
