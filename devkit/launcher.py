"""Start and stop riskctl processes, workers and the archive sink (demo, benchmarks, tests): real processes,
readiness by probe."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path

from common.settings import Settings

READY_TIMEOUT_S = 120.0


class RiskctlProcess:
    """One ``riskctl <subcommand>`` subprocess in its own process group, configured through env vars
    (the settings the worker needs, then ``extra_env``, where None unsets a variable). Subclasses name
    the subcommand and say when the process is ready."""

    name = "riskctl"

    def __init__(self, settings: Settings, log_path: Path, argv: Sequence[str], extra_env: Mapping[str, str | None] | None = None,
                 metrics_port: int | None = None) -> None:
        self.settings = settings
        self.log_path = log_path
        self.argv = list(argv)
        self.metrics_port = settings.metrics_port if metrics_port is None else metrics_port
        env = {
            **os.environ,
            "KAFKA_BOOTSTRAP_SERVERS": settings.kafka_bootstrap_servers,
            "METRICS_PORT": str(settings.metrics_port),
            "METRICS_HOST": settings.metrics_host,
            "APP_ID": settings.app_id,
            "TOPIC_PREFIX": settings.topic_prefix,
            "PARTITIONS": str(settings.partitions),
            "DATA_DIR": str(settings.data_dir),
            **({"POLICY_FILE": str(settings.policy_file)} if settings.policy_file else {}),
            **({"MODEL_DIR": str(settings.model_dir)} if settings.model_dir else {}),
            "LOG_LEVEL": settings.log_level,
            **security_env(settings),
        }
        for name in SECURITY_FIELDS:  # unset here: not inherited from this process's environment
            if getattr(settings, name) is None:
                env.pop(name.upper(), None)
        for key, value in (extra_env or {}).items():
            if value is None:
                env.pop(key, None)
            else:
                env[key] = value
        env.pop("RISKCTL_SETTINGS", None)  # everything is passed explicitly above
        log_path.parent.mkdir(parents=True, exist_ok=True)
        self.started_at = time.monotonic()
        with open(log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "cli.main", *self.argv],
                env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            )

    @property
    def metrics_url(self) -> str:
        return f"http://{self.settings.metrics_host}:{self.metrics_port}/metrics"

    def metrics_text(self, *names: str) -> str:
        """The metrics endpoint's text; with ``names``, only those samples (prometheus-client's
        ``name[]`` filter), which spares the process rendering every series: a benchmark that probes
        a counter ten times a second must not spend the measured worker's time on its own probes."""
        query = "?" + urllib.parse.urlencode([("name[]", n) for n in names]) if names else ""
        return urllib.request.urlopen(self.metrics_url + query, timeout=2).read().decode()

    def wait_metrics(self, ready: Callable[[str], bool], timeout_s: float, what: str = "ready") -> float:
        """Poll the metrics endpoint until ``ready(body)``; the seconds waited. Raises if the process
        exits first (RuntimeError) or the deadline passes (TimeoutError), with the log's tail."""
        if not self.metrics_port:
            raise ValueError(f"{self.name} has no metrics endpoint (port 0) to probe")
        start = time.monotonic()
        while time.monotonic() - start < timeout_s:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited with code {self.proc.returncode}; log tail:\n{self.log_tail()}")
            with contextlib.suppress(OSError):
                if ready(self.metrics_text()):
                    return time.monotonic() - start
            time.sleep(0.2)  # probe interval; the deadline above bounds the wait
        raise TimeoutError(f"{self.name} not {what} after {timeout_s:.0f}s; log tail:\n{self.log_tail()}")

    def metric(self, name: str, **labels: str) -> float:
        """The sum of a sample's values (``metric_value``); only that sample is scraped."""
        return metric_value(self.metrics_text(name), name, **labels)

    def log_tail(self, lines: int = 40) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        return ""

    def alive(self) -> bool:
        return self.proc.poll() is None

    def wait_settled(self, busy_below: float = 0.3, timeout_s: float = 20.0, interval_s: float = 0.25) -> float:
        """Wait until the process uses less than ``busy_below`` of a core over two probe intervals in
        a row (after a burst a worker keeps working after its metrics say the burst was applied: it
        reads back its own GlobalTable changelog). Returns the seconds waited; at most ``timeout_s``."""
        start = time.monotonic()
        quiet = 0
        before, at = cpu_seconds(self.proc.pid), time.monotonic()
        while quiet < 2 and time.monotonic() - start < timeout_s and self.alive():
            time.sleep(interval_s)  # the probe interval of a CPU measurement, bounded by timeout_s
            now_cpu, now = cpu_seconds(self.proc.pid), time.monotonic()
            busy = (now_cpu - before) / (now - at)
            quiet = quiet + 1 if busy < busy_below or busy != busy else 0  # NaN: no /proc, do not wait
            before, at = now_cpu, now
        return time.monotonic() - start

    def kill(self) -> None:
        """kill -9, as a crash would."""
        if self.alive():
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()

    def stop(self, grace_s: float = 20.0) -> int | None:
        """SIGTERM to the process group, then SIGKILL after ``grace_s``; the exit code (negative: the
        signal that ended it, as in :attr:`subprocess.Popen.returncode`)."""
        if self.alive():
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=grace_s)
            except subprocess.TimeoutExpired:
                self.kill()
            except KeyboardInterrupt:  # Ctrl-C again while it stops: no grace period, and nothing left behind
                self.kill()
                raise
        return self.proc.returncode


class WorkerProcess(RiskctlProcess):
    """One ``riskctl worker`` subprocess (metrics on ``settings.metrics_port``)."""

    name = "worker"

    def __init__(self, settings: Settings, log_path: Path, extra_env: dict[str, str] | None = None) -> None:
        super().__init__(settings, log_path, ["worker", "--no-create-topics"], extra_env)

    def wait_ready(self, timeout_s: float = READY_TIMEOUT_S) -> float:
        """Poll the metrics endpoint until the worker owns partitions and its tables are recovered."""
        return self.wait_metrics(
            lambda body: "customs_worker_ready 1.0" in body and "customs_assigned_partitions 0.0" not in body, timeout_s)


class ArchiveProcess(RiskctlProcess):
    """One ``riskctl archive`` subprocess (the decision archive sink): every ``archive_*`` setting is
    passed as its env var, so ``settings.archive_dir`` is where it writes and
    ``settings.archive_metrics_port`` (not 0: readiness is probed there) where its metrics are."""

    name = "archive sink"

    def __init__(self, settings: Settings, log_path: Path, extra_env: dict[str, str] | None = None) -> None:
        super().__init__(settings, log_path, ["archive", "--no-create-topics"], {**archive_env(settings), **(extra_env or {})},
                         metrics_port=settings.archive_metrics_port)

    @property
    def archive_dir(self) -> Path:
        return Path(self.settings.archive_dir)

    def wait_ready(self, timeout_s: float = READY_TIMEOUT_S) -> float:
        """Poll the metrics endpoint until the sink owns partitions and has read their archived positions."""
        return self.wait_metrics(lambda body: "customs_archive_ready 1.0" in body, timeout_s)


class ConsoleProcess(RiskctlProcess):
    """One ``riskctl console`` subprocess: every ``console_*`` setting is passed as its env var, and the
    archive it reads (``archive_dir``; None: the settings' own). Metrics on ``console_metrics_port``."""

    name = "console"

    def __init__(self, settings: Settings, log_path: Path, archive_dir: Path | None = None,
                 extra_env: dict[str, str] | None = None) -> None:
        env: dict[str, str | None] = {**console_env(settings), **(extra_env or {})}
        if archive_dir is not None:
            env.update({"ARCHIVE_DIR": str(archive_dir), "ARCHIVE_LOCATION": None})
        super().__init__(settings, log_path, ["console"], env, metrics_port=settings.console_metrics_port)

    @property
    def url(self) -> str:
        scheme = "https" if self.settings.console_tls_certfile else "http"
        return f"{scheme}://{self.settings.console_host}:{self.settings.console_port}"

    def wait_ready(self, timeout_s: float = READY_TIMEOUT_S) -> float:
        """Poll ``/healthz`` until the console's feed has read the topics up to their ends."""
        start = time.monotonic()
        while time.monotonic() - start < timeout_s:
            if self.proc.poll() is not None:
                raise RuntimeError(f"console exited with code {self.proc.returncode}; log tail:\n{self.log_tail()}")
            with contextlib.suppress(OSError, ValueError):
                if json.loads(urllib.request.urlopen(f"{self.url}/healthz", timeout=2).read())["feed"] == "caught-up":
                    return time.monotonic() - start
            time.sleep(0.2)  # probe interval; the deadline above bounds the wait
        raise TimeoutError(f"console not ready after {timeout_s:.0f}s; log tail:\n{self.log_tail()}")


def console_env(settings: Settings) -> dict[str, str | None]:
    """Every ``console_*`` setting as the console's environment variable (None: unset, the default applies)."""
    env: dict[str, str | None] = {}
    for name in type(settings).model_fields:
        if name.startswith("console_"):
            value = getattr(settings, name)
            env[name.upper()] = None if value is None else str(value.get_secret_value() if hasattr(value, "get_secret_value") else value)
    return env


@contextlib.contextmanager
def console_process(settings: Settings, log_path: Path, archive_dir: Path | None = None) -> Iterator[ConsoleProcess]:
    console = ConsoleProcess(settings, log_path, archive_dir)
    try:
        yield console
    finally:
        console.stop()


SECURITY_FIELDS = ("kafka_security_protocol", "kafka_sasl_mechanism", "kafka_sasl_username", "kafka_sasl_password",
                   "kafka_ssl_cafile", "kafka_ssl_certfile", "kafka_ssl_keyfile")


def security_env(settings: Settings) -> dict[str, str]:
    """The Kafka TLS/SASL settings as the worker's environment variables. The password goes into the
    child's environment (readable only by the same user), never onto its command line."""
    env: dict[str, str] = {}
    for name in SECURITY_FIELDS:
        value = getattr(settings, name)
        if value is None:
            continue
        env[name.upper()] = value.get_secret_value() if hasattr(value, "get_secret_value") else str(value)
    return env


def archive_env(settings: Settings) -> dict[str, str | None]:
    """Every ``archive_*`` setting as the archive sink's environment variable (None: unset, the default applies)."""
    env: dict[str, str | None] = {}
    for name in type(settings).model_fields:
        if name.startswith("archive_"):
            value = getattr(settings, name)
            if isinstance(value, dict):  # archive_storage_options: JSON, secrets unwrapped (the child's env only)
                value = json.dumps({k: v.get_secret_value() if hasattr(v, "get_secret_value") else v for k, v in value.items()})
            env[name.upper()] = None if value is None else str(value)
    return env


@contextlib.contextmanager
def worker_process(settings: Settings, log_path: Path, extra_env: dict[str, str] | None = None) -> Iterator[WorkerProcess]:
    worker = WorkerProcess(settings, log_path, extra_env)
    try:
        yield worker
    finally:
        worker.stop()


@contextlib.contextmanager
def archive_process(settings: Settings, log_path: Path, extra_env: dict[str, str] | None = None) -> Iterator[ArchiveProcess]:
    """The archive sink for the ``with`` block; stopped with SIGTERM (it flushes, then exits 0) at its end."""
    sink = ArchiveProcess(settings, log_path, extra_env)
    try:
        yield sink
    finally:
        sink.stop()


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (all its threads) so far, from /proc (Linux; NaN elsewhere)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return float("nan")


def metric_value(text: str, name: str, **labels: str) -> float:
    """Sum of a metric's samples (Prometheus text format) whose labels include ``labels``."""
    total = 0.0
    for line in text.splitlines():
        m = re.fullmatch(r"([a-zA-Z_:][\w:]*)(\{(.*)\})? (\S+)", line)
        if not m or m.group(1) != name:
            continue
        found = dict(re.findall(r'(\w+)="([^"]*)"', m.group(3) or ""))
        if all(found.get(k) == v for k, v in labels.items()):
            total += float(m.group(4))
    return total
