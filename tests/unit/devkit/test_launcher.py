"""Process helpers of devkit.launcher: CPU time from /proc, waiting for a busy worker to settle, the
command line and environment of the worker and archive-sink subprocesses, readiness probes, stopping."""

from __future__ import annotations

import http.server
import math
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import pytest

from common.settings import Settings
from devkit import launcher
from devkit.brokers import RESERVED_PORTS, free_port
from devkit.launcher import ArchiveProcess, WorkerProcess, cpu_seconds

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")

# Spins for the given seconds of wall time, then sleeps (stands in for a worker after a burst).
SPIN_THEN_SLEEP = "import sys, time; end = time.monotonic() + float(sys.argv[1])\nwhile time.monotonic() < end: pass\ntime.sleep(60)"


def _process(spin_s: float) -> WorkerProcess:
    worker = object.__new__(WorkerProcess)  # only the process handle: no riskctl worker needed here
    worker.proc = subprocess.Popen([sys.executable, "-c", SPIN_THEN_SLEEP, str(spin_s)])
    return worker


def test_cpu_seconds_counts_work_and_is_nan_for_no_process() -> None:
    before = cpu_seconds(os.getpid())
    total = 0
    for i in range(3_000_000):
        total += i
    assert cpu_seconds(os.getpid()) > before
    assert math.isnan(cpu_seconds(2**22 + 12345))  # above the default pid_max: no such process


@pytest.mark.parametrize("spin_s", [0.0, 1.5])
def test_wait_settled_waits_out_a_busy_spell_and_no_longer(spin_s: float) -> None:
    worker = _process(spin_s)
    try:
        waited = worker.wait_settled(busy_below=0.3, timeout_s=20, interval_s=0.25)
    finally:
        worker.proc.kill()
        worker.proc.wait()
    assert waited < 10  # settled, not timed out
    if spin_s:
        assert waited >= 1.0  # it did not return while the process was still spinning
    else:
        assert waited < 1.5  # two quiet probes


# --- riskctl subprocesses: the command line and environment, readiness probes, stopping -------------------------------------------------

class _Recorder:
    """Stands in for subprocess.Popen: records the command and its keyword arguments, runs nothing."""

    calls: ClassVar[list[tuple[list[str], dict[str, Any]]]] = []

    def __init__(self, argv: list[str], **kwargs: Any) -> None:
        self.calls.append((argv, kwargs))
        self.pid = 0
        self.returncode: int | None = 0

    def poll(self) -> int | None:
        return self.returncode


@pytest.fixture
def popen(monkeypatch: pytest.MonkeyPatch) -> list[tuple[list[str], dict[str, Any]]]:
    _Recorder.calls = []
    monkeypatch.setattr(launcher.subprocess, "Popen", _Recorder)
    return _Recorder.calls


def test_worker_process_runs_the_worker_as_before(popen: list[tuple[list[str], dict[str, Any]]], tmp_path: Path) -> None:
    worker = WorkerProcess(Settings(metrics_port=19464), tmp_path / "w.log", {"EXTRA": "1"})
    (argv, kwargs), = popen
    assert argv == [sys.executable, "-m", "cli.main", "worker", "--no-create-topics"]
    assert kwargs["start_new_session"] is True and kwargs["env"]["EXTRA"] == "1" and kwargs["env"]["METRICS_PORT"] == "19464"
    assert worker.metrics_url == "http://127.0.0.1:19464/metrics" and worker.log_path == tmp_path / "w.log"


def test_archive_process_passes_every_archive_setting(popen: list[tuple[list[str], dict[str, Any]]], tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ARCHIVE_GROUP_ID", "inherited")  # unset in the settings below: not inherited by the sink either
    monkeypatch.setenv("RISKCTL_SETTINGS", str(tmp_path / "nowhere.toml"))
    settings = Settings(kafka_bootstrap_servers="127.0.0.1:29092", metrics_port=19464, archive_dir=tmp_path / "archive",
                        archive_metrics_port=19465, archive_flush_interval_s=1.0, archive_group_id=None,
                        archive_storage_options={"AWS_SECRET_ACCESS_KEY": "s3cr3t"})
    sink = ArchiveProcess(settings, tmp_path / "a.log", {"LOG_LEVEL": "DEBUG"})
    (argv, kwargs), = popen
    env = kwargs["env"]
    assert argv == [sys.executable, "-m", "cli.main", "archive", "--no-create-topics"]
    assert kwargs["start_new_session"] is True
    assert env["KAFKA_BOOTSTRAP_SERVERS"] == "127.0.0.1:29092" and env["LOG_LEVEL"] == "DEBUG"
    assert env["ARCHIVE_DIR"] == str(tmp_path / "archive") and env["ARCHIVE_METRICS_PORT"] == "19465"
    assert env["ARCHIVE_FLUSH_INTERVAL_S"] == "1.0"
    assert "ARCHIVE_GROUP_ID" not in env and "RISKCTL_SETTINGS" not in env
    unset = {"ARCHIVE_GROUP_ID", "ARCHIVE_LOCATION"}
    archive_fields = {name.upper() for name in Settings.model_fields if name.startswith("archive_")} - unset
    assert archive_fields <= set(env)
    assert sink.metrics_url == "http://127.0.0.1:19465/metrics" and sink.archive_dir == tmp_path / "archive"
    # What the sink reads back from that environment is these settings.
    monkeypatch.delenv("RISKCTL_SETTINGS")
    for name, value in env.items():
        if name.startswith("ARCHIVE_"):
            monkeypatch.setenv(name, value)
    read_back = Settings()
    assert read_back.archive_dir == settings.archive_dir and read_back.archive_metrics_port == 19465
    assert read_back.archive_storage_options["AWS_SECRET_ACCESS_KEY"].get_secret_value() == "s3cr3t"


class _Metrics(http.server.BaseHTTPRequestHandler):
    body = b""

    def do_GET(self) -> None:
        self.send_response(200)
        self.end_headers()
        self.wfile.write(type(self).body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def metrics_server() -> Iterator[tuple[int, type[_Metrics]]]:
    handler = type("Handler", (_Metrics,), {"body": b""})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1], handler
    finally:
        server.shutdown()
        server.server_close()


def _sink(port: int, tmp_path: Path, code: str = "import time; time.sleep(60)") -> ArchiveProcess:
    sink = object.__new__(ArchiveProcess)  # a stand-in process: no riskctl archive needed here
    sink.settings = Settings(archive_metrics_port=port, archive_dir=tmp_path)
    sink.metrics_port = port
    sink.log_path = tmp_path / "sink.log"
    sink.log_path.write_text("first line\nlast line\n")
    sink.proc = subprocess.Popen([sys.executable, "-c", code], start_new_session=True, stdout=subprocess.PIPE)
    return sink


def test_archive_ready_when_its_metrics_say_so(metrics_server: tuple[int, type[_Metrics]], tmp_path: Path) -> None:
    port, handler = metrics_server
    sink = _sink(port, tmp_path)
    try:
        handler.body = b"customs_archive_ready 0.0\n"
        with pytest.raises(TimeoutError, match=r"(?s)archive sink not ready after 1s.*last line"):
            sink.wait_ready(timeout_s=1.0)
        handler.body = b"customs_archive_assigned_partitions 18.0\ncustoms_archive_ready 1.0\n"
        assert sink.wait_ready(timeout_s=10.0) < 5.0
    finally:
        sink.kill()


def test_archive_ready_fails_fast_when_the_process_exits(metrics_server: tuple[int, type[_Metrics]], tmp_path: Path) -> None:
    port, _ = metrics_server
    sink = _sink(port, tmp_path, code="raise SystemExit(2)")
    started = time.monotonic()
    with pytest.raises(RuntimeError, match="archive sink exited with code 2"):
        sink.wait_ready(timeout_s=30.0)
    assert time.monotonic() - started < 10.0


def test_stop_terminates_the_group_and_kills_what_ignores_sigterm(tmp_path: Path) -> None:
    polite = _sink(0, tmp_path)
    assert polite.stop(grace_s=10.0) == -signal.SIGTERM
    stubborn = _sink(0, tmp_path, code="import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print('up', flush=True); "
                                        "time.sleep(60)")
    assert stubborn.proc.stdout is not None and stubborn.proc.stdout.readline() == b"up\n"  # SIGTERM is ignored from now on
    started = time.monotonic()
    assert stubborn.stop(grace_s=1.0) == -signal.SIGKILL
    assert time.monotonic() - started < 10.0
    assert not stubborn.alive() and stubborn.stop() == -signal.SIGKILL  # stopping again is harmless


def test_no_metrics_port_cannot_be_probed(tmp_path: Path) -> None:
    sink = _sink(0, tmp_path)
    try:
        with pytest.raises(ValueError, match="no metrics endpoint"):
            sink.wait_ready(timeout_s=1.0)
    finally:
        sink.kill()


def test_the_demo_ports_are_never_handed_out() -> None:
    assert {9092, 19092, 9464, 9465} <= RESERVED_PORTS
    assert all(free_port() not in RESERVED_PORTS for _ in range(20))


def test_a_metric_probe_scrapes_only_that_sample(tmp_path: Path) -> None:
    """What the worker serves (prometheus-client's exporter) with a probe's ``name[]`` filter: the
    asked-for samples only, so a benchmark probing a counter often does not make the measured worker
    render every series each time."""
    from prometheus_client import CollectorRegistry, Counter, Histogram, start_http_server

    registry = CollectorRegistry()
    applied = Counter("customs_test_applied", "probed", registry=registry)
    other = Histogram("customs_test_other_seconds", "not probed", ["agent"], registry=registry)
    applied.inc(7)
    other.labels("decide").observe(0.1)
    port = free_port()
    server, thread = start_http_server(port, addr="127.0.0.1", registry=registry)
    try:
        worker = object.__new__(WorkerProcess)  # only the endpoint: no riskctl worker needed here
        worker.settings, worker.metrics_port = Settings(metrics_port=port), port
        assert worker.metric("customs_test_applied_total") == 7.0
        probed = worker.metrics_text("customs_test_applied_total")
        assert "customs_test_applied_total 7.0" in probed and "customs_test_other" not in probed
        assert "customs_test_other_seconds_count" in worker.metrics_text()  # no names: everything
        assert worker.metric("customs_test_other_seconds_count", agent="decide") == 1.0
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
