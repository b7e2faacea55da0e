"""What every measurement shares: the data set, clients, the output watcher, the timed-backlog sequence."""

from __future__ import annotations

import contextlib
import os
import platform
import shutil
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import orjson
from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition

from bench.procs import Child, CpuMeter, Profile, paused
from clients import topics
from clients.producers import producer_config
from common.settings import Settings
from common.timefmt import utc_iso

if TYPE_CHECKING:
    from portsim.gateway import PortGateway

# What the bench's producers change in the reference configuration (clients.producers): room for a
# whole pre-loaded backlog, records (gateway batches) of up to 4 MB, a 2 ms linger.
PRODUCER_OPTIONS: dict[str, Any] = {"linger.ms": 2, "queue.buffering.max.messages": 2_000_000,
                                    "queue.buffering.max.kbytes": 2_000_000, "message.max.bytes": 4_000_000}
WARMUP = 200  # declarations each system decides before it is timed (connections, model, first batches)
STALL_S = 30.0  # no new decision for this long after the first one: the system under test is stuck
_T0 = time.monotonic()


class BenchError(RuntimeError):
    """A run failed; the message says what was expected and what happened."""


def log(msg: str) -> None:
    print(f"[bench {time.monotonic() - _T0:6.1f}s] {msg}", file=sys.stderr, flush=True)


def machine() -> str:
    model = "unknown cpu"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    return (f"{os.cpu_count()} cores, {model}; Python {platform.python_version()}; {platform.system()} "
            f"{platform.release()}; load average at start {load}")


# ---- data ---------------------------------------------------------------------------------------
@dataclass
class Dataset:
    """One generated office: declarations (JSON-ready dicts, event_time = generation time) and their
    ground truth, generated before any clock starts. Every run publishes and plays the scanners
    through a gateway of this office (:meth:`gateway`)."""

    office: Any
    records: list[dict[str, Any]]
    truths: dict[str, Any]
    credit_events: int  # events in the office's credit register
    lifecycle: Iterator[Any]  # the office's credit lifecycle stream: a system's gateways continue it (begin_run restarts it)
    warmup: list[dict[str, Any]] = field(default_factory=list)  # decided before any clock starts
    _next_index: int = 0

    @classmethod
    def generate(cls, seed: int, enterprises: int, count: int) -> Dataset:
        from portsim.traffic import PortOffice

        office = PortOffice(seed=seed, enterprises=enterprises)
        ds = cls(office, [], {}, sum(1 for _ in office.credit_population()), office.lifecycle_events(None))
        ds.records = ds.more(count)
        ds.warmup = ds.more(WARMUP)
        return ds

    def begin_run(self) -> None:
        """Start a system's run: its gateways publish the credit lifecycle from its first event, so
        every system a run compares decides the same declarations against the same credit changes."""
        self.lifecycle = self.office.lifecycle_events(None)

    def more(self, count: int) -> list[dict[str, Any]]:
        """The next ``count`` declarations of the same seeded stream (fresh ids, same distribution)."""
        stamp = utc_iso()  # a plausible event time; latency runs overwrite it with the publish time
        out = []
        for record, truth in self.office.declaration_dicts(count, first_index=self._next_index):
            record["event_time"] = stamp
            self.truths[record["declaration_id"]] = truth
            out.append(record)
        self._next_index += count
        return out

    def gateway(self, settings: Settings, *, linger_ms: float = PRODUCER_OPTIONS["linger.ms"], **options: Any) -> PortGateway:
        """A gateway of this office on ``settings`` (``options`` as :class:`PortGateway` takes them),
        with the bench's producer lingering ``linger_ms``. It publishes declarations as they are
        (with the simulator's credit lifecycle events, one per 200, continuing the data set's
        stream) and its scanners know the generated declarations' ground truth."""
        from portsim.gateway import PortGateway

        return PortGateway(settings, self.office, truths=self.truths, lifecycle=self.lifecycle, gateway_id="BENCH-GW",
                           producer_options={**PRODUCER_OPTIONS, "linger.ms": linger_ms}, **options)

    def write(self, settings: Settings, records: list[dict[str, Any]], *, batching: bool, credit: bool = True) -> int:
        """Publish ``records`` as they are (one record each, or gateway batches) with the credit
        lifecycle events that go with them (none with ``credit=False``) and wait until all are
        delivered. Returns the input records sent."""
        gateway = self.gateway(settings, batching=batching, **({} if credit else {"lifecycle_per_declaration": 0.0}))
        for r in records:
            gateway.publish(r)
        try:
            gateway.flush(60.0)
        except RuntimeError as exc:
            raise BenchError(f"the input could not be written: {exc}") from None
        return gateway.publisher.records_sent


def simple_instruction(decl: dict[str, Any], score: float, model_version: str, decided_at: str) -> bytes:
    """The instruction the ceiling and the naive agent emit: score threshold only, no policy."""
    return orjson.dumps({
        "schema_version": 1, "instruction_id": f"{decl['declaration_id']}:{decl['revision']}:declaration",
        "declaration_id": decl["declaration_id"], "revision": decl["revision"], "port": decl["port"],
        "stage": "declaration", "action": "inspect" if score >= 0.5 else "release", "final": True,
        "score": score, "model_version": model_version, "event_time": decl["event_time"], "decided_at": decided_at,
    })


# ---- clients ------------------------------------------------------------------------------------
def producer(settings: Settings, **extra: Any) -> Producer:
    return Producer(producer_config(settings, **{**PRODUCER_OPTIONS, **extra}))


def reader(settings: Settings, logical_topics: list[str]) -> Consumer:
    """All partitions assigned from the beginning: no group join (Tansu makes joins wait the full
    rebalance timeout). A 5 ms fetch wait because Tansu holds a fetch for the whole wait, which
    would otherwise add to every measured latency."""
    consumer = Consumer({**settings.confluent_config(), "group.id": "bench-reader-no-commit", "enable.auto.commit": False,
                         "enable.partition.eof": False, "fetch.wait.max.ms": 5})
    metadata = consumer.list_topics(timeout=30)
    assignment = []
    for name in logical_topics:
        topic = metadata.topics.get(settings.topic(name))
        if topic is None or topic.error is not None:
            raise BenchError(f"topic {settings.topic(name)} does not exist")
        assignment += [TopicPartition(settings.topic(name), p, OFFSET_BEGINNING) for p in topic.partitions]
    consumer.assign(assignment)
    return consumer


# ---- the output side ----------------------------------------------------------------------------
@dataclass
class Watcher:
    """Reads the instructions topic of one system and counts, per declaration, its first
    declaration-stage instruction (raw duplicates are counted apart). When a scanner (a gateway,
    ``Dataset.gateway``) is given, it answers machine-check instructions at once (no scan delay)."""

    settings: Settings
    scanner: PortGateway | None = None
    pending: dict[bytes, float] = field(default_factory=dict)  # key -> publish time (0: preloaded)
    # (publish time, ms to the instruction consumed here, ms to the instruction's decided_at) for
    # keys expected with measure=True; decided_at is when the system started on the key's batch.
    latencies: list[tuple[float, float, float]] = field(default_factory=list)
    measured: set[bytes] = field(default_factory=set)
    seen: set[bytes] = field(default_factory=set)
    first_at: float | None = None
    last_at: float | None = None
    decided = 0
    raw_duplicates = 0
    scans_sent = 0
    actions: Counter = field(default_factory=Counter)

    def __post_init__(self) -> None:
        self.consumer = reader(self.settings, [topics.INSTRUCTIONS])

    def expect(self, key: bytes, published_at: float = 0.0, measure: bool = False) -> None:
        self.pending[key] = published_at
        if measure:
            self.measured.add(key)

    def reset(self) -> None:
        self.first_at = self.last_at = None
        self.decided = self.raw_duplicates = self.scans_sent = 0
        self.latencies.clear()
        self.measured.clear()
        self.actions.clear()

    def poll(self, timeout_s: float) -> int:
        msgs = self.consumer.consume(10_000, timeout=timeout_s)
        now = time.time()
        new = 0
        for m in msgs:
            if m.error():
                raise BenchError(f"reading instructions: {m.error()}")
            value = m.value()
            if b'"stage":"declaration"' not in value:
                continue  # scan or timeout stage: not a declaration's first outcome
            key = m.key()
            if key in self.seen:
                self.raw_duplicates += 1
                continue
            self.seen.add(key)
            published = self.pending.pop(key, None)
            if published is None:
                continue  # from an earlier phase
            new += 1
            instruction = None  # parsed only when needed, at most once
            if key in self.measured:
                instruction = orjson.loads(value)
                decided = datetime.fromisoformat(instruction["decided_at"]).timestamp()
                self.latencies.append((published, (now - published) * 1000, (decided - published) * 1000))
            if self.scanner is not None and b'"action":"machine-check"' in value:
                self.scanner.answer(instruction or orjson.loads(value), scan_delay_scale=0.0)
            if b'"action":"release"' in value:
                self.actions["release"] += 1
            elif b'"action":"inspect"' in value:
                self.actions["inspect"] += 1
            else:
                self.actions["machine-check"] += 1
        if new:
            if self.first_at is None:
                self.first_at = now
            self.last_at = now
            self.decided += new
        if self.scanner is not None:
            self.scans_sent += self.scanner.publish_due_scans()
            self.scanner.publisher.poll()
        return new

    def drain(self, what: str, timeout_s: float, alive: Callable[[], str | None] = lambda: None) -> None:
        """Poll until every expected declaration is decided; fail on deadline, stall or a dead process."""
        start = time.monotonic()
        last_progress, next_report = start, start + 5.0
        while self.pending:
            if self.poll(0.05):
                last_progress = time.monotonic()
            now = time.monotonic()
            if (why := alive()) is not None:
                raise BenchError(f"{what}: {why} with {len(self.pending)} declarations undecided")
            if now - start > timeout_s:
                raise BenchError(f"{what}: {len(self.pending)} declarations undecided after {timeout_s:.0f}s")
            if self.first_at is not None and now - last_progress > STALL_S:
                raise BenchError(f"{what}: stalled, no decision for {STALL_S:.0f}s, {len(self.pending)} undecided")
            if now >= next_report:
                next_report = now + 5.0
                log(f"  {what}: {self.decided} decided, {len(self.pending)} to go")

    def throughput(self, started_at: float) -> dict[str, Any]:
        """Declarations per second from ``started_at`` (the system resumed on its backlog) to the
        last decision seen."""
        if self.last_at is None or self.first_at is None or self.last_at <= started_at:
            raise BenchError(f"nothing decided to time ({self.decided} decisions)")
        seconds = self.last_at - started_at
        return {"throughput": round(self.decided / seconds, 1), "declarations": self.decided, "seconds": round(seconds, 3),
                "first_decision_after_s": round(self.first_at - started_at, 3),
                "raw_duplicate_instructions": self.raw_duplicates, "scans_answered": self.scans_sent, "actions": dict(self.actions)}

    def close(self) -> None:
        if self.scanner is not None:
            self.scanner.close(10.0)
        self.consumer.close()


def warm_up(what: str, watcher: Watcher, write: Callable[[list[dict[str, Any]]], Any], records: list[dict[str, Any]],
            timeout_s: float, alive: Callable[[], str | None]) -> None:
    """Feed a few declarations and wait for their decisions: the system is up and warm after this."""
    for r in records:
        watcher.expect(r["declaration_id"].encode())
    write(records)
    watcher.drain(f"{what} warm-up", timeout_s, alive)
    log(f"{what}: warm ({len(records)} declarations decided)")


def timed_backlog(what: str, watcher: Watcher, pids: list[int], write: Callable[[list[dict[str, Any]]], Any],
                  records: list[dict[str, Any]], timeout_s: float, alive: Callable[[], str | None],
                  profile: Path | None) -> dict[str, Any]:
    """Throughput at saturation. The system is paused (SIGSTOP) while the backlog is written, so that
    the writer does not compete with it for the CPU and it resumes on a full backlog; the clock runs
    from SIGCONT to its last decision seen here. Optionally py-spy samples ``pids[0]`` meanwhile."""
    watcher.reset()
    for r in records:
        watcher.expect(r["declaration_id"].encode())
    with paused(pids):
        write(records)
    started_at = time.time()
    log(f"{what}: {len(records)} declarations pre-loaded; resumed")
    spy = Profile(pids[0], profile) if profile else None
    cpu = CpuMeter(pids)
    try:
        watcher.drain(what, timeout_s, alive)
    finally:
        top = spy.stop() if spy else None
    result = watcher.throughput(started_at)
    result.update(cpu.stop(result["declarations"]))
    if top:
        result["profile_self_pct"] = top
    log(f"{what}: {result['throughput']:,.0f} declarations/s ({result['declarations']} in {result['seconds']:.2f}s)")
    return result


def run_child_system(what: str, module: str, args: list[str], settings: Settings, data: Dataset, count: int,
                     workdir: Path, timeout_s: float, profile: Path | None,
                     load: Callable[[Watcher, list[int], Callable[[], str | None]], dict[str, Any]] | None = None) -> dict[str, Any]:
    """Ceiling and naive agent: a child process reading one record per declaration. ``load``, if
    given, then measures latency at offered loads on the same warm process."""
    child = Child(module, ["--bootstrap", settings.kafka_bootstrap_servers, "--prefix", settings.topic_prefix, *args],
                  workdir / f"{module}.log")
    watcher = Watcher(settings)
    try:
        write = lambda records: data.write(settings, records, batching=False, credit=False)  # noqa: E731 - one writer for the warm-up and the backlog
        warm_up(what, watcher, write, data.warmup, timeout_s, child.dead)
        result = timed_backlog(what, watcher, [child.pid], write, data.records[:count], timeout_s, child.dead, profile)
        if load is not None:
            result["latency_ms"] = load(watcher, [child.pid], child.dead)
        return result
    finally:
        child.stop()
        watcher.close()


def offered_load(what: str, settings: Settings, watcher: Watcher, data: Dataset, rate: float, duration_s: float,
                 warmup_s: float, timeout_s: float, linger_ms: float, pids: list[int],
                 alive: Callable[[], str | None], profile: Path | None = None) -> dict[str, Any]:
    """Publish through the gateway publisher at ``rate`` for ``duration_s``; each declaration's
    event_time is its publish time; latency = its declaration-stage instruction consumed here -
    publish time (so it includes the gateway's batching linger). Declarations published in the
    first ``warmup_s`` are not counted. Credit events (1 per 200) and scans flow meanwhile.
    The gateway publisher batches for ``linger_ms``; its Kafka producer lingers only 1 ms on top.
    With ``profile``, py-spy samples ``pids[0]`` while the load is offered."""
    records = data.more(int(rate * duration_s) + 1)
    gateway = data.gateway(settings, linger_ms=1, batching=True, linger_s=linger_ms / 1000)
    watcher.reset()
    log(f"{what} latency: offering {rate:,.0f} declarations/s for {duration_s:.0f}s")
    spy = Profile(pids[0], profile) if profile else None
    cpu = CpuMeter(pids)
    start = time.monotonic()
    end = start + duration_s
    sent = 0
    try:
        while True:
            now = time.monotonic()
            if now < end:
                for _ in range(min(int((now - start) * rate), len(records)) - sent):
                    r = records[sent]
                    r["event_time"] = utc_iso()
                    published = time.time()
                    gateway.publish(r)  # and a credit lifecycle event every 200
                    watcher.expect(r["declaration_id"].encode(), published, measure=now - start >= warmup_s)
                    sent += 1
            gateway.poll()
            watcher.poll(0.001)  # also the loop's pacing: blocks up to 1 ms when nothing arrives
            if now >= end:
                break
            if (why := alive()) is not None:
                raise BenchError(f"{what} latency at {rate:.0f}/s: {why}")
    finally:
        top = spy.stop() if spy else None
    gateway.close(30.0)
    watcher.drain(f"{what} latency at {rate:.0f}/s", timeout_s, alive)
    if not watcher.latencies:
        raise BenchError(f"{what} latency at {rate:.0f}/s: nothing measured after the warm-up")
    published, lat, intake = np.array(watcher.latencies).T
    p50, p95, p99 = (round(float(np.percentile(lat, q)), 1) for q in (50, 95, 99))
    # Where the time goes: publish -> the system starts on the batch (gateway linger, broker, fetch,
    # micro-batching, waiting for the previous batch), then -> instruction consumed here.
    split = {name: {f"p{q}": round(float(np.percentile(ms, q)), 1) for q in (50, 99)}
             for name, ms in (("to_batch_start", intake), ("batch_start_to_consumed", lat - intake))}
    second = (published - published.min()).astype(int)  # p99 per second of publishing: does a backlog build up?
    result = {"p50": p50, "p95": p95, "p99": p99, "max": round(float(lat.max()), 1), "measured": len(lat),
              "offered_rate": round(sent / duration_s, 1), "scans_answered": watcher.scans_sent,
              "p99_by_second": [round(float(np.percentile(lat[second == s], 99)), 1) for s in np.unique(second)],
              "split_ms": split,
              **cpu.stop(sent), **({"profile_self_pct": top} if top else {})}
    log(f"{what} latency at {rate:,.0f}/s: p50 {p50} ms, p95 {p95} ms, p99 {p99} ms ({len(lat)} declarations); {split_text(split)}")
    return result


def split_text(split: dict[str, dict[str, float]]) -> str:
    """A latency's ``split_ms`` in one line (the progress log and the printed table)."""
    intake, rest = split["to_batch_start"], split["batch_start_to_consumed"]
    return (f"publish -> batch start p50/p99 {intake['p50']}/{intake['p99']} ms, "
            f"batch start -> instruction consumed {rest['p50']}/{rest['p99']} ms")


def finish(results: dict[str, Any], out: Path, workdir: Path, started: float, failed: bool, keep: bool,
           print_table: Callable[[dict[str, Any]], None], kept: str) -> int:
    """Write a mode's results (with the run's wall time and load) to ``out``, print its table, and
    remove the work directory unless the run failed or ``keep`` (``kept`` names what stays there)."""
    results["config"].update({"wall_time_s": round(time.monotonic() - started, 1),
                              "load_average_at_end": [round(x, 2) for x in os.getloadavg()]})
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(orjson.dumps(results, option=orjson.OPT_INDENT_2) + b"\n")
    print_table(results)
    log(f"wrote {out} in {results['config']['wall_time_s']:.0f}s")
    if failed or keep:
        log(f"{kept} kept in {workdir}")
    else:
        shutil.rmtree(workdir, ignore_errors=True)
    return 1 if failed else 0
