"""(c) The real pipeline: ``riskctl worker`` processes with the full policy, fed like the gateways feed it.

Each measurement gets its own app id and topic prefix (fresh tables, fresh consumer group). Before
anything is timed the worker is ready, the enterprises' credit population is folded into its
credit table, and (two workers) both own partitions. Machine-check instructions are answered at
once with the simulated scanners' results, so scan traffic flows while the clock runs.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.common import BenchError, Dataset, Watcher, log, offered_load, timed_backlog, warm_up
from common.settings import Settings
from devkit.brokers import free_port
from devkit.launcher import WorkerProcess
from streams.metrics import LATENCY_BUCKETS


class Workers:
    """N ``riskctl worker`` processes of one app id (one consumer group)."""

    def __init__(self, settings: Settings, n: int, workdir: Path, extra_env: dict[str, str]) -> None:
        self.procs: list[WorkerProcess] = []
        try:
            for i in range(n):
                s = settings.model_copy(update={"metrics_port": free_port(), "data_dir": workdir / f"{settings.app_id}-{i}"})
                self.procs.append(WorkerProcess(s, workdir / f"{settings.app_id}-{i}.log", extra_env))
        except BaseException:
            self.stop()
            raise

    def metric(self, name: str, **labels: str) -> float:
        return sum(w.metric(name, **labels) for w in self.procs)

    def dead(self) -> str | None:
        for i, w in enumerate(self.procs):
            if not w.alive():
                return f"worker {i} exited with code {w.proc.returncode} (log {w.log_path}):\n{w.log_tail(20)}"
        return None

    def stop(self) -> None:
        for w in self.procs:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(w.proc.pid, signal.SIGCONT)
            w.stop()


def start(settings: Settings, data: Dataset, n: int, workdir: Path, extra_env: dict[str, str], timeout_s: float) -> Workers:
    """Workers ready, credit folded, partitions split: everything that must not be timed."""
    workers = Workers(settings, n, workdir, extra_env)
    try:
        started = time.monotonic()
        for w in workers.procs:
            w.wait_ready(timeout_s)
            log(f"pipeline {settings.app_id}: worker pid {w.proc.pid} ready {time.monotonic() - started:.1f}s after start")
        gateway = data.gateway(settings)
        gateway.publish_credit_population()
        expected = gateway.credit_enterprises

        def check() -> None:
            if (why := workers.dead()) is not None:
                raise BenchError(f"waiting for the workers to fold the credit register: {why}")

        if gateway.wait_for_credit_register(timeout_s, expected, check=check) < expected:
            raise BenchError(f"timed out after {timeout_s:.0f}s waiting for the workers to fold the credit register "
                             f"({expected} enterprises)")
        if n > 1:
            owned = lambda: [w.metric("customs_assigned_partitions") for w in workers.procs]  # noqa: E731 - read twice by the wait condition
            wait_for(lambda: min(owned()) > 0 and sum(owned()) == settings.partitions, timeout_s, workers,
                     f"{n} workers to split {settings.partitions} partitions")
            log(f"pipeline {settings.app_id}: partitions per worker {owned()}")
        return workers
    except BaseException:
        workers.stop()
        raise


@contextlib.contextmanager
def running(settings: Settings, data: Dataset, n: int, workdir: Path, extra_env: dict[str, str],
            timeout_s: float) -> Iterator[tuple[Workers, Watcher]]:
    """``start``'s workers and a watcher of their instructions (its gateway answers machine-checks
    with scans), both stopped however the block ends."""
    workers = start(settings, data, n, workdir, extra_env, timeout_s)
    watcher = None
    try:
        watcher = Watcher(settings, data.gateway(settings, linger_ms=5))
        yield workers, watcher
    finally:
        if watcher is not None:
            watcher.close()
        workers.stop()


def wait_for(condition: Any, timeout_s: float, workers: Workers, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if (why := workers.dead()) is not None:
            raise BenchError(f"waiting for {what}: {why}")
        if time.monotonic() > deadline:
            raise BenchError(f"timed out after {timeout_s:.0f}s waiting for {what}")
        time.sleep(0.2)  # probe interval; the deadline above bounds the wait


def throughput(settings: Settings, workers: Workers, watcher: Watcher, data: Dataset, count: int, batching: bool,
               timeout_s: float, profile: Path | None) -> dict[str, Any]:
    what = f"pipeline {settings.app_id} ({'gateway batches' if batching else 'single records'})"
    sent = []

    def write(records: list[dict[str, Any]]) -> None:
        sent.append(data.write(settings, records, batching=batching))  # with credit traffic: a lifecycle event every 200

    warm_up(what, watcher, write, data.warmup, timeout_s, workers.dead)
    before = BatchCounters.read(workers)
    pids = [w.proc.pid for w in workers.procs]
    result = timed_backlog(what, watcher, pids, write, data.records[:count], timeout_s, workers.dead, profile)
    result.update(BatchCounters.read(workers).since(before))
    result["input_records"] = sent[-1]
    if len(workers.procs) > 1:
        result["per_worker"] = [{"partitions": w.metric("customs_assigned_partitions"),
                                 "decided": w.metric("customs_instructions_total", stage="declaration")} for w in workers.procs]
    return result


def latency(settings: Settings, workers: Workers, watcher: Watcher, data: Dataset, rate: float, duration_s: float,
            warmup_s: float, timeout_s: float, linger_ms: float, profile: Path | None = None) -> dict[str, Any]:
    """End-to-end latency at an offered load (``bench.common.offered_load``), plus the quantiles the
    worker itself saw in its decision-latency histogram."""
    hist_before = decision_histogram(workers)
    before = BatchCounters.read(workers)
    result = offered_load(f"pipeline {settings.app_id}", settings, watcher, data, rate, duration_s, warmup_s, timeout_s,
                          linger_ms, [w.proc.pid for w in workers.procs], workers.dead, profile)
    result["worker_side"] = worker_quantiles(hist_before, decision_histogram(workers))
    result.update(BatchCounters.read(workers).since(before))
    log(f"pipeline latency at {rate:,.0f}/s: worker side {result['worker_side']}, micro-batches of {result['mean_micro_batch']}, "
        f"handlers' CPU {result['handler_cpu_us_per_declaration']} us a declaration")
    return result


@dataclass(frozen=True)
class BatchCounters:
    """The workers' micro-batch counters: declarations decided, micro-batches, and the CPU their
    handlers spent (``customs_handler_cpu_seconds_total``, every agent's)."""

    declarations: float
    batches: float
    handler_cpu_s: float

    @classmethod
    def read(cls, workers: Workers) -> BatchCounters:
        return cls(workers.metric("customs_batch_declarations_sum"), workers.metric("customs_batch_declarations_count"),
                   workers.metric("customs_handler_cpu_seconds_total"))

    def since(self, before: BatchCounters) -> dict[str, float]:
        """``mean_micro_batch`` (declarations) and ``handler_cpu_us_per_declaration`` between two reads:
        beside the process's CPU per declaration it says how much of it is the decisions themselves."""
        decided = self.declarations - before.declarations
        return {"mean_micro_batch": round(decided / max(self.batches - before.batches, 1.0), 1),
                "handler_cpu_us_per_declaration": round((self.handler_cpu_s - before.handler_cpu_s) * 1e6 / max(decided, 1.0), 1)}


def decision_histogram(workers: Workers) -> list[float]:
    """Cumulative bucket counts of the workers' own decision latency (event time -> instruction sent)."""
    return [workers.metric("customs_decision_latency_seconds_bucket", stage="declaration", le=le) for le in _LE]


def worker_quantiles(before: list[float], after: list[float]) -> dict[str, str]:
    """p50/p99 as the worker saw them (event time = publish time here), to its histogram's resolution:
    the difference to the end-to-end figures is the instruction's way back to a consumer."""
    delta = [a - b for a, b in zip(after, before)]
    out = {}
    for name, q in (("p50", 0.5), ("p99", 0.99)):
        i = next((i for i, n in enumerate(delta) if n >= q * delta[-1]), len(delta) - 1)
        out[name] = f"<= {float(_LE[i]) * 1000:g} ms" if _LE[i] != "+Inf" else f"> {float(_LE[-2]) * 1000:g} ms"
    return out


_LE = [*(repr(float(b)) for b in LATENCY_BUCKETS), "+Inf"]  # prometheus-client's label spelling
