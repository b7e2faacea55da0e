"""Fault injection on real brokers with real worker processes.

* ``test_kill_one_of_two_workers_under_traffic``: two workers in one group under steady traffic;
  kill -9 one of them mid-stream. Every declaration still gets exactly one final outcome, pending
  machine-checks of the killed worker are finalised by the survivor from the changelog, and the
  takeover is measured.
* ``test_kafka_broker_restart_under_traffic``: Apache Kafka restarted (same port, same data dir)
  under traffic: nothing lost once it is back, the worker survives.
* ``test_worker_restart_recovers_table_state``: SIGTERM a worker, start a new one on the same app id
  with an empty data dir: state comes back from the changelog, redeliveries re-emit the same bytes,
  no decision is made twice.

Delivery is at-least-once: the same instruction record may appear more than once (consumers dedupe
by ``instruction_id``). The tests count those raw duplicates and state the figure; what fails is a
declaration with two *different* final instruction ids, or a duplicate id with different bytes
(a second decision). Figures are printed and listed in the "fault injection figures" section of
the terminal summary (durations also under "broker timings").

A declaration that never gets an instruction fails the test with where it sits in the input
topics and, on Kafka, the group's offset commits around it (decoded from __consumer_offsets): a
commit past records nobody processed is the signature of a consumer that skipped them.

Tansu: its group description lists no members, so the killed worker's partitions are read from
the worker's log; its high-watermark bug truncates Faust's table recovery, which turns a
re-decision after a restart into an xfail there (as test_brokers.py does); the broker restart is
Kafka only (Tansu keeps its log in memory).

Waits are conditions with deadlines; the only sleeps pace the traffic generator.
"""

from __future__ import annotations

import contextlib
import struct
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient

from clients import topics
from clients.gateway import DeclarationPublisher
from schemas.partitioning import partition_for
from tests.integration.pipeline_harness import Harness, WorkerProcess, metric_value, pipeline_settings, write_policy

PARTITIONS = 4
PORT = "HAK-SEA"

# Traffic mix, cycled: what the pipeline must decide for each kind under the test policy.
#   rel: duty-free shopping, thresholds 1.0        -> release at declaration time
#   zt:  zero-tariff, no qualification (hard rule) -> inspect at declaration time
#   mcc: general trade (machine-check) + clean scan      -> release at scan time
#   mcs: general trade (machine-check) + suspicious scan -> inspect at scan time
#   to:  general trade (machine-check), never scanned    -> inspect at the scan deadline
MIX = ("rel", "mcc", "zt", "to", "rel", "mcs", "mcc", "rel", "to", "zt")
SCANNED = {"mcc": "clean", "mcs": "suspicious"}
# Sentinel machine-checks of the kill test, at ports with longer deadlines: decided (and their
# offsets committed) before the kill, so the survivor never sees their declarations again.
SENTINEL_TO_PORT, SENTINEL_SCAN_PORT = "SNT-TO", "SNT-SCAN"
SENTINEL_TIMEOUTS = {SENTINEL_TO_PORT: 25.0, SENTINEL_SCAN_PORT: 120.0}


def fault_policy(path: Path, timeout_s: float, port_timeouts: dict[str, float] | None = None) -> Path:
    return write_policy(
        path, version="faults-1",
        thresholds={"aeo": {"machine_check": 1.0, "inspect": 1.0}, "general": {"machine_check": 0.0, "inspect": 1.0}},
        scenario_thresholds={"duty-free-shopping": {"general": {"machine_check": 1.0, "inspect": 1.0}}},
        random_selection={"share": 0.0, "action": "machine-check"},
        scan={"timeout_s": timeout_s, "port_timeout_s": port_timeouts or {}},
        capacity={"default": {"machine_check": None, "inspect": None}, "ports": {}, "bounds": {}},  # no adaptation
        # The test's own ports join the register, each with the one scanner the test's scans name.
        ports={p: {"devices": [f"{p}-XR01"]} for p in (PORT, *SENTINEL_TIMEOUTS, FAST_PORT)},
    )


def now_iso() -> str:
    return datetime.now(UTC).isoformat()


def declaration(did: str, kind: str, port: str = PORT) -> dict[str, Any]:
    scenario = {"rel": "duty-free-shopping", "zt": "zero-tariff"}.get(kind, "general-trade")
    return dict(declaration_id=did, revision=1, port=port, enterprise_id="GEN1", declarant_id="DC1",
                scenario=scenario, hs_code="851712", origin_country="CN", departure_country="CN", transport_mode="sea",
                declared_value=1000.0, currency="CNY", net_mass_kg=5.0, tax_rate=5.0, event_time=now_iso())


def scan(did: str, verdict: str, port: str = PORT) -> dict[str, Any]:
    return dict(scan_id=f"S-{did}", declaration_id=did, port=port, device_id=f"{port}-XR01", device_type="x-ray",
                anomaly_score=0.9 if verdict == "suspicious" else 0.05, verdict=verdict,
                suspected_categories=["narcotics"] if verdict == "suspicious" else [], event_time=now_iso())


# ------------------------------------------------------------------------------------------------
# figures: printed, and listed in the terminal summary


class _FaultFigures:
    """A pytest plugin registered at run time: one terminal-summary section for every test here."""

    def __init__(self) -> None:
        self.rows: list[tuple[str, str, str]] = []

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        if self.rows:
            terminalreporter.section("fault injection figures")
            for kind, label, value in self.rows:
                terminalreporter.write_line(f"{kind:6} {label:60} {value}")


@pytest.fixture(scope="session")
def fault_figures(request: pytest.FixtureRequest) -> _FaultFigures:
    plugin = request.config.pluginmanager.get_plugin("fault-figures")
    if plugin is None:
        plugin = _FaultFigures()
        request.config.pluginmanager.register(plugin, "fault-figures")
    return plugin


@pytest.fixture
def record(broker: Any, fault_figures: _FaultFigures, broker_timings: Any) -> Callable[..., None]:
    def add(label: str, value: float, unit: str = "s") -> None:
        text = f"{value:.2f} s" if unit == "s" else f"{value:g} {unit}"
        print(f"[{broker.kind}] {label}: {text}")
        fault_figures.rows.append((broker.kind, label, text))
        if unit == "s":
            broker_timings.add(broker.kind, label, value)
    return add


# ------------------------------------------------------------------------------------------------
# helpers: instructions as read back from the topic, traffic, group membership


@dataclass(frozen=True, slots=True)
class Rec:
    partition: int
    ts: float  # record timestamp (the worker's clock at send; same host as the test)
    raw: bytes
    doc: dict[str, Any]


class Instructions:
    """Every instruction record read back, with partition, timestamp and exact bytes."""

    def __init__(self, harness: Harness) -> None:
        self.h = harness
        self.recs: list[Rec] = []
        self.by_id: dict[str, list[Rec]] = defaultdict(list)
        self.by_decl: dict[str, list[Rec]] = defaultdict(list)
        self.dead_letters: list[dict[str, Any]] = []
        self.last_new = time.monotonic()

    def pump(self, timeout: float = 0.2) -> int:
        n = 0
        dlq = self.h.settings.topic(topics.DEAD_LETTERS)
        for msg in self.h.reader.consume(2000, timeout=timeout):
            if msg.error():
                continue
            if msg.topic() == dlq:
                self.dead_letters.append(orjson.loads(msg.value()))
                continue
            raw = msg.value()
            rec = Rec(msg.partition(), msg.timestamp()[1] / 1000.0, raw, orjson.loads(raw))
            self.recs.append(rec)
            self.by_id[rec.doc["instruction_id"]].append(rec)
            self.by_decl[rec.doc["declaration_id"]].append(rec)
            n += 1
        if n:
            self.last_new = time.monotonic()
        return n

    def wait(self, done: Callable[[], bool], timeout_s: float, what: str, workers: list[WorkerProcess],
             diagnose: Callable[[], str] | None = None) -> float:
        start = time.monotonic()
        while not done():
            if time.monotonic() - start > timeout_s:
                logs = "\n".join(f"--- {w.log_path} ({'alive' if w.alive() else 'dead'}; {worker_state(w)})\n"
                                 f"{w.log_tail(25)}" for w in workers)
                detail = diagnose() if diagnose else ""
                raise AssertionError(f"timed out after {timeout_s:.0f}s waiting for {what}; {detail}\nworker logs:\n{logs}")
            self.pump()
        return time.monotonic() - start

    def missing_finals(self, kinds: dict[str, str]) -> str:
        finals = self.finals()
        missing = [d for d in kinds if d not in finals]
        by_partition: dict[int, int] = defaultdict(int)
        by_kind: dict[str, int] = defaultdict(int)
        for d in missing:
            by_partition[partition_for(d.encode(), PARTITIONS)] += 1
            by_kind[kinds[d]] += 1
        examples = {d: [(r.doc["stage"], r.doc["action"], round(r.ts, 2)) for r in self.by_decl.get(d, [])] for d in missing[:8]}
        return (f"{len(missing)} of {len(kinds)} declarations without a final: by partition {dict(by_partition)}, "
                f"by kind {dict(by_kind)}, e.g. {examples}; last instruction per partition: "
                f"{ {p: round(max(r.ts for r in self.recs if r.partition == p), 2) for p in {r.partition for r in self.recs}} }")

    def settle(self, kinds: dict[str, str], workers: list[WorkerProcess], quiet_s: float = 20.0) -> None:
        """Read until every declaration has a final instruction and the stream has been quiet for
        3 s, or nothing new has arrived for ``quiet_s`` (well past the scan deadline: whatever is
        missing then is lost, and check_outcomes says so)."""
        self.last_new = time.monotonic()
        self.wait(lambda: (time.monotonic() - self.last_new >= 3.0 and set(kinds) <= set(self.finals()))
                  or time.monotonic() - self.last_new >= quiet_s, 300, "the instruction stream to settle", workers)

    def quiesce(self, quiet_s: float, timeout_s: float, workers: list[WorkerProcess]) -> None:
        """Read until no new instruction has arrived for ``quiet_s`` (late duplicates included)."""
        self.last_new = time.monotonic()
        self.wait(lambda: time.monotonic() - self.last_new >= quiet_s, timeout_s, "the instruction stream to settle", workers)

    # -- views ---------------------------------------------------------------------------------
    def finals(self) -> dict[str, set[str]]:
        out: dict[str, set[str]] = defaultdict(set)
        for rec in self.recs:
            if rec.doc["final"]:
                out[rec.doc["declaration_id"]].add(rec.doc["instruction_id"])
        return out

    def final_of(self, did: str) -> dict[str, Any] | None:
        return next((r.doc for r in self.by_decl.get(did, ()) if r.doc["final"]), None)

    def raw_duplicates(self) -> int:
        return sum(len(v) - 1 for v in self.by_id.values())

    def divergent(self) -> dict[str, int]:
        """instruction id -> number of distinct byte strings, where more than one (a second decision)."""
        return {iid: len({r.raw for r in v}) for iid, v in self.by_id.items() if len({r.raw for r in v}) > 1}


class Traffic:
    """Publishes declarations at a steady rate from a background thread (alternately in gateway
    batches and as single records) and their scans ``scan_delay_s`` later. After ``stop()`` the
    scans still due are published, then the thread ends."""

    def __init__(self, settings: Any, rate: float = 300.0, scan_delay_s: float = 1.0, prefix: str = "F",
                 producer_options: dict[str, Any] | None = None) -> None:
        self.settings = settings
        self.rate = rate
        self.scan_delay_s = scan_delay_s
        self.prefix = prefix
        # Every record's delivery is checked (default callback), declarations included.
        self.producer = Producer({**settings.confluent_config(), "partitioner": "murmur2_random", "linger.ms": 5,
                                  "message.timeout.ms": 300_000, "on_delivery": self._on_delivery, **(producer_options or {})})
        self.batched = DeclarationPublisher(self.producer, settings, gateway="FAULT-GW", max_batch=200)
        self.single = DeclarationPublisher(self.producer, settings, batching=False)
        self.kinds: dict[str, str] = {}
        self.delivery_errors: list[str] = []
        self.error: BaseException | None = None
        self._stop = threading.Event()
        self._scans: list[tuple[float, str, str]] = []  # (due, did, verdict), in due order
        self._thread = threading.Thread(target=self._run, name="fault-traffic", daemon=True)

    def _on_delivery(self, err: Any, msg: Any) -> None:
        if err is not None:
            self.delivery_errors.append(f"{msg.topic()}: {err}")

    def start(self) -> Traffic:
        self._thread.start()
        return self

    def queued(self) -> int:
        """Records the producer has not delivered yet."""
        return len(self.producer) if self.producer is not None else 0

    @property
    def published(self) -> int:
        return len(self.kinds)

    def _run(self) -> None:
        try:
            tick = 0.01
            owed = 0.0
            next_tick = time.monotonic()
            scans_topic = self.settings.topic(topics.SCANS)
            while not (self._stop.is_set() and not self._scans):
                now = time.monotonic()
                if not self._stop.is_set():
                    owed += self.rate * tick
                    while owed >= 1:
                        owed -= 1
                        n = len(self.kinds)
                        kind = MIX[n % len(MIX)]
                        did = f"{self.prefix}{n:06d}"
                        self.kinds[did] = kind
                        (self.batched if n % 2 == 0 else self.single).publish(declaration(did, kind))
                        if kind in SCANNED:
                            self._scans.append((now + self.scan_delay_s, did, SCANNED[kind]))
                while self._scans and self._scans[0][0] <= now:
                    _, did, verdict = self._scans.pop(0)
                    self.producer.produce(scans_topic, key=did.encode(), value=orjson.dumps(scan(did, verdict)))
                self.batched.poll()
                next_tick += tick
                time.sleep(max(0.0, next_tick - time.monotonic()))  # paces the traffic
            self.batched.flush(0)
        except BaseException as exc:  # noqa: BLE001 - re-raised in the test thread by stop()
            self.error = exc

    def stop(self, flush_timeout_s: float = 120.0, check: bool = True) -> None:
        """Stop publishing; with ``check``, every record must have been delivered. Without it (a
        test already failing), give up quickly and raise nothing."""
        self._stop.set()
        self._thread.join(timeout=flush_timeout_s if check else 5)
        if self.producer is None:
            return
        remaining = self.producer.flush(flush_timeout_s if check else 1)
        self.producer = self.batched = self.single = None  # type: ignore[assignment]  # destroys the client
        if not check:
            return
        assert not self._thread.is_alive(), "traffic thread did not finish"
        if self.error is not None:
            raise self.error
        assert remaining == 0, f"{remaining} records not delivered"
        assert self.delivery_errors == [], f"delivery errors: {self.delivery_errors[:5]}"


def owned_partitions(settings: Any) -> dict[str, set[int]] | None:
    """Consumer-group member id -> declaration partitions it owns (None: group not describable)."""
    admin = AdminClient(settings.confluent_config())
    try:
        desc = admin.describe_consumer_groups([settings.app_id], request_timeout=5)[settings.app_id].result(timeout=10)
    except Exception as exc:  # noqa: BLE001 - a diagnostics API; the caller decides
        print(f"describe_consumer_groups failed: {exc!r}")
        return None
    decl = settings.topic(topics.DECLARATIONS)
    return {m.member_id: {tp.partition for tp in (m.assignment.topic_partitions if m.assignment else []) if tp.topic == decl}
            for m in desc.members}


def read_all(settings: Any, topic_names: list[str], timeout_s: float = 20.0) -> list[Any]:
    """Every record of the given (full) topic names, read without a group."""
    c = Consumer({**settings.confluent_config(), "group.id": "faults-diag", "enable.auto.commit": False,
                  "enable.partition.eof": True, "fetch.wait.max.ms": 10})
    try:
        md = c.list_topics(timeout=10).topics
        tps = [TopicPartition(t, p, OFFSET_BEGINNING) for t in topic_names if t in md for p in md[t].partitions]
        c.assign(tps)
        out, eof, deadline = [], set(), time.monotonic() + timeout_s
        while len(eof) < len(tps) and time.monotonic() < deadline:
            for m in c.consume(5000, timeout=0.5):
                if m.error():
                    if m.error().code() == -191:  # _PARTITION_EOF
                        eof.add((m.topic(), m.partition()))
                    continue
                out.append(m)
        return out
    finally:
        c.close()


def commit_history(settings: Any) -> list[tuple[float, str, int, int]]:
    """(commit time, topic, partition, offset) of every offset commit of the app's group, decoded
    from Kafka's __consumer_offsets (Apache Kafka only)."""

    def string(buf: bytes, i: int) -> tuple[str, int]:
        (n,) = struct.unpack_from(">h", buf, i)
        return buf[i + 2:i + 2 + n].decode(), i + 2 + n

    out = []
    for m in read_all(settings, ["__consumer_offsets"]):
        key, value = m.key(), m.value()
        if not key or not value or struct.unpack_from(">h", key, 0)[0] > 1:
            continue
        group, i = string(key, 2)
        if group != settings.app_id:
            continue
        topic, i = string(key, i)
        (partition,) = struct.unpack_from(">i", key, i)
        version, offset = struct.unpack_from(">hq", value, 0)
        j = 10 + (4 if version >= 3 else 0)
        if version >= 4:  # flexible version: compact string (uvarint length + 1)
            n, j = value[j] - 1, j + 1
            j += max(n, 0)
        else:
            _, j = string(value, j)
        (ts,) = struct.unpack_from(">q", value, j)
        out.append((ts / 1000.0, topic, partition, offset))
    return sorted(out)


def lost_records_report(settings: Any, missing: list[str]) -> str:
    """Where the declarations that got no instruction sit in the input topics, and the group's
    commits on those partitions around them."""
    names = [settings.topic(topics.DECLARATIONS), settings.topic(topics.DECLARATION_BATCHES)]
    want = set(missing)
    where: dict[tuple[str, int], list[tuple[int, float, str]]] = defaultdict(list)
    for m in read_all(settings, names):
        value = orjson.loads(m.value())
        ids = [d["declaration_id"] for d in value["declarations"]] if "declarations" in value else [value["declaration_id"]]
        for did in set(ids) & want:
            where[(m.topic(), m.partition())].append((m.offset(), m.timestamp()[1] / 1000.0, did))
    lines: list[str] = []
    commits: list[tuple[float, str, int, int]] = []
    try:
        commits = commit_history(settings)
    except Exception as exc:  # noqa: BLE001 - diagnostics only (Tansu has no __consumer_offsets)
        lines.append(f"no commit history: {exc!r}")
    for (topic, partition), recs in sorted(where.items()):
        lo, hi = min(r[0] for r in recs), max(r[0] for r in recs)
        lines.append(f"{topic}[{partition}] offsets {lo}..{hi} ({len(recs)} lost, produced "
                     f"{min(r[1] for r in recs):.2f}..{max(r[1] for r in recs):.2f})")
        near = [c for c in commits if c[1] == topic and c[2] == partition]
        lines += [f"    commit at {c[0]:.2f}: {c[3]}" for c in near if lo - 400 <= c[3] <= hi + 400]
    return "\n".join(lines)


def ids_on_partition(prefix: str, partition: int, n: int) -> list[str]:
    out, i = [], 0
    while len(out) < n:
        did = f"{prefix}{i}"
        if partition_for(did.encode(), PARTITIONS) == partition:
            out.append(did)
        i += 1
    return out


def publish_sentinels(h: Harness, per_partition: int = 2) -> dict[str, tuple[str, int, int]]:
    """Machine-checks on every partition: half to time out (port SNT-TO), half to get a scan after
    the kill (port SNT-SCAN). Returns id -> (kind, partition, offset)."""
    kinds: dict[str, str] = {}
    offsets: dict[str, tuple[int, int]] = {}
    errors: list[Any] = []
    producer = Producer({**h.settings.confluent_config(), "partitioner": "murmur2_random"})
    topic = h.settings.topic(topics.DECLARATIONS)

    def delivered(err: Any, msg: Any) -> None:
        if err is not None:
            errors.append(err)
        offsets[msg.key().decode()] = (msg.partition(), msg.offset())

    for p in range(PARTITIONS):
        for kind, port in (("sto", SENTINEL_TO_PORT), ("sscan", SENTINEL_SCAN_PORT)):
            for did in ids_on_partition(f"SN-{kind}-", p, per_partition):
                producer.produce(topic, key=did.encode(), value=orjson.dumps(declaration(did, "to", port=port)),
                                 on_delivery=delivered)
                kinds[did] = kind
    assert producer.flush(30) == 0 and errors == [], errors
    return {did: (kind, *offsets[did]) for did, kind in kinds.items()}


def partitions_led(settings: Any) -> bool:
    """Every partition of the pipeline's topics has a leader (a restarted broker serves them)."""
    try:
        md = AdminClient(settings.confluent_config()).list_topics(timeout=2).topics
    except Exception:  # noqa: BLE001 - not answering yet
        return False
    names = [spec.name for spec in topics.topic_specs(settings)]
    return all(n in md and md[n].error is None and md[n].partitions
               and all(p.leader >= 0 and p.error is None for p in md[n].partitions.values()) for n in names)


def committed_offsets(settings: Any) -> dict[int, int]:
    """The group's committed offsets on the declarations topic (partition -> next offset to read)."""
    c = Consumer({**settings.confluent_config(), "group.id": settings.app_id, "enable.auto.commit": False})
    try:
        tps = c.committed([TopicPartition(settings.topic(topics.DECLARATIONS), p) for p in range(PARTITIONS)], timeout=10)
        return {tp.partition: tp.offset for tp in tps}
    finally:
        c.close()


def worker_state(w: WorkerProcess) -> str:
    try:
        text = w.metrics_text()
    except OSError as exc:
        return f"metrics unavailable: {exc}"
    names = ("customs_worker_ready", "customs_assigned_partitions", "customs_pending_machine_checks",
             "customs_instructions_total", "customs_events_in_total", "customs_redelivered_total")
    return ", ".join(f"{n.removeprefix('customs_')}={metric_value(text, n):g}" for n in names)


def active_partitions_from_log(worker: WorkerProcess, table: str = topics.TABLE_DECLARATION_STATE) -> set[int]:
    """The worker's active partitions as of its last assignment, from the table Faust logs when it
    recovers ("Highwater for active changelog partitions"); for brokers whose group description
    lists no members (Tansu)."""
    changelog = topics.changelog_topic(worker.settings, table)
    lines = worker.log_path.read_text(errors="replace").splitlines()
    starts = [i for i, line in enumerate(lines) if "Highwater for active changelog partitions" in line]
    if not starts:
        return set()
    parts: set[int] = set()
    topic = None
    for line in lines[starts[-1] + 1:]:
        if not line.startswith(("|", "+")):
            break
        cells = [c.strip() for c in line.strip("|").split("|")]
        if line.startswith("+") or len(cells) < 2 or not cells[1].isdigit():
            continue
        topic = topic if cells[0] == "\u3003" else cells[0]  # Faust prints a ditto mark for a repeated topic
        if topic == changelog:
            parts.add(int(cells[1]))
    return parts


def xfail_if_tansu_watermarks(broker: Any, symptom: str) -> None:
    """Tansu 0.6.0 reports a partition's high watermark as the base offset of its last record batch
    + 1; Faust reads a changelog only up to the high watermark when it recovers a table, so the
    recovered state misses the latest updates (deploy/kafka/README.md). Known, kept visible."""
    if broker.kind == "tansu":
        pytest.xfail(f"Tansu high-watermark bug truncates Faust's table recovery: {symptom}")


def metric_or_none(worker: WorkerProcess, name: str) -> float | None:
    with contextlib.suppress(OSError):
        return worker.metric(name)
    return None


def check_outcomes(log: Instructions, kinds: dict[str, str], explain: Callable[[list[str]], str] | None = None) -> dict[str, int]:
    """Exactly one final instruction per declaration, the right one; returns counts of the
    outcomes that are right but forced by the fault (a clean scan overtaken by its deadline)."""
    finals = log.finals()
    missing = sorted(set(kinds) - set(finals))
    if missing:
        raise AssertionError(f"LOST: {log.missing_finals(kinds)}\n{explain(missing) if explain else ''}")
    several = {d: sorted(ids) for d, ids in finals.items() if len(ids) != 1}
    assert several == {}, f"declarations with more than one distinct final outcome: {dict(list(several.items())[:5])}"
    wrong: dict[str, Any] = {}
    overtaken = 0
    for did, kind in kinds.items():
        f = log.final_of(did)
        assert f is not None
        got = (f["stage"], f["action"])
        if kind == "rel":
            ok = got == ("declaration", "release")
        elif kind == "zt":
            ok = got == ("declaration", "inspect")
        elif kind == "to":
            ok = got == ("timeout", "inspect")
        elif kind == "mcs":
            ok = got in (("scan", "inspect"), ("timeout", "inspect"))
        else:  # mcc: released by its clean scan, unless the deadline fired first (takeover, outage)
            ok = got in (("scan", "release"), ("timeout", "inspect"))
            overtaken += got == ("timeout", "inspect")
        if kind in ("mcc", "mcs", "to"):
            first = [r.doc for r in log.by_decl[did] if r.doc["stage"] == "declaration"]
            ok = ok and bool(first) and first[0]["action"] == "machine-check" and not first[0]["final"]
        if not ok:
            wrong[did] = (kind, [(r.doc["stage"], r.doc["action"], r.doc["final"]) for r in log.by_decl[did]])
    assert wrong == {}, f"{len(wrong)} wrong outcomes, e.g. {dict(list(wrong.items())[:5])}"
    return {"clean scans overtaken by the deadline": overtaken}


@pytest.fixture
def make_harness(broker: Any, unique_name: str, tmp_path: Path) -> Iterator[Callable[..., Harness]]:
    """``make_harness(scan_timeout_s, port_timeouts)``: topics, policy and a reader; workers are
    started by the test (``h.start_worker()``) and killed at teardown."""
    made: list[Harness] = []

    def make(timeout_s: float = 5.0, port_timeouts: dict[str, float] | None = None) -> Harness:
        policy = fault_policy(tmp_path / "policy.yaml", timeout_s, port_timeouts)
        made.append(Harness(pipeline_settings(broker.bootstrap_servers, unique_name, tmp_path, policy_file=policy,
                                              partitions=PARTITIONS), tmp_path))
        return made[-1]

    yield make
    for h in made:
        for w in h.workers:
            w.kill()  # no grace needed at teardown: the topics are per test
        h.reader.close()
        h.producer = None  # type: ignore[assignment]  # librdkafka would keep reconnecting after the broker stops


# ------------------------------------------------------------------------------------------------
# 1. kill -9 one of two workers under traffic


def test_kill_one_of_two_workers_under_traffic(broker: Any, make_harness: Callable[..., Harness],
                                               record: Callable[..., None], request: pytest.FixtureRequest) -> None:
    if broker.kind == "tansu":
        # Tansu ignores LeaveGroup, reports wrong high watermarks and no group members, so its
        # takeover differs from Kafka's and the test is intermittent there (docs/reliability.md);
        # Apache Kafka is the gate.
        pytest.skip("embedded Tansu: takeover without LeaveGroup or group members is intermittent; Apache Kafka runs this test")
    h = make_harness(5.0, SENTINEL_TIMEOUTS)
    log = Instructions(h)
    t_test = time.monotonic()
    a = h.start_worker()
    a.wait_ready()
    traffic = Traffic(h.settings, rate=300, scan_delay_s=1.0).start()
    try:
        b = h.start_worker()
        b.wait_ready()  # joins under traffic: a rebalance before the fault

        def both_own() -> bool:
            na, nb = metric_or_none(a, "customs_assigned_partitions"), metric_or_none(b, "customs_assigned_partitions")
            return bool(na and nb and na + nb == PARTITIONS)

        log.wait(both_own, 120, "both workers to own partitions", h.workers)
        decided_before = lambda: sum(1 for r in log.recs if r.doc["stage"] == "declaration")  # noqa: E731 - a named condition for the wait it is passed to
        mark = decided_before()
        log.wait(lambda: decided_before() >= mark + 600, 60, "2 s of traffic decided by both workers", h.workers)
        groups = owned_partitions(h.settings)
        print(f"group before the kill: {groups}")
        if not groups:  # Tansu describes the group with no members: read the assignment from the worker's log
            groups = {"killed": active_partitions_from_log(a), "survivor": active_partitions_from_log(b)}
            print(f"assignment from the workers' logs: {groups}")
        assert len(groups) == 2 and all(groups.values()), f"two members owning partitions expected: {groups}"
        # Sentinels: machine-checks decided, and their offsets committed, before the kill.
        sentinels = publish_sentinels(h)
        log.wait(lambda: all(log.by_decl.get(d) for d in sentinels), 60, "the sentinels' machine-checks", h.workers)
        # Their offsets are committed within a few commit intervals -- unless the worker has stopped
        # committing a partition (faust-streaming 0.15.3 does when records at the head of its acked
        # offsets were never acked), which costs re-processing, not correctness: sentinels there
        # are re-delivered, and only the others prove recovery from the changelog alone.
        stall_deadline = time.monotonic() + 15
        while True:
            committed = committed_offsets(h.settings)
            stalled = {p for _, p, off in sentinels.values() if committed.get(p, -1) <= off}
            if not stalled or time.monotonic() > stall_deadline:
                break
            log.pump()
        if stalled:
            print(f"offset commits stalled on declarations partitions {sorted(stalled)}: committed {committed}")

        t_kill_wall, t_kill = time.time(), time.monotonic()
        a.kill()  # SIGKILL of its process group
        print(f"killed worker0 at {t_kill_wall:.2f}")
        published_at_kill = traffic.published

        # Takeover: the survivor owns every partition (metric, refreshed every second by its timer)...
        own_all = log.wait(lambda: metric_or_none(b, "customs_assigned_partitions") == PARTITIONS
                           and metric_or_none(b, "customs_worker_ready") == 1, 180, "the survivor to own all partitions",
                           h.workers)
        after = owned_partitions(h.settings) if "killed" not in groups else {"survivor": set(range(PARTITIONS))}
        print(f"group after the kill: {after}")
        assert after and len(after) == 1 and next(iter(after.values())) == set(range(PARTITIONS)), after
        survivor_id = next(iter(after))
        killed_parts = set().union(*(p for m, p in groups.items() if m != survivor_id))
        assert killed_parts and survivor_id in groups, (groups, after)
        # The sentinels' scans arrive after the kill: only a worker holding their state can use them.
        for did, (kind, _, _) in sentinels.items():
            if kind == "sscan":
                h.publish(topics.SCANS, did, scan(did, "clean", port=SENTINEL_SCAN_PORT))
        h.flush()
        # ... and has decided something on a partition it took over.
        first_taken = lambda: [r.ts for r in log.recs if r.partition in killed_parts and r.ts > t_kill_wall]  # noqa: E731 - a named condition for the wait it is passed to
        log.wait(lambda: bool(first_taken()), 120, "an instruction on a taken-over partition", h.workers)
        t_first = min(first_taken()) - t_kill_wall
        record("kill -9 -> survivor owns all partitions (metric, 1 s timer)", own_all)
        record("kill -9 -> first instruction on a taken-over partition", t_first)
        # Keep the traffic going a little after the takeover, then let the scans still due go out.
        log.wait(lambda: traffic.published >= published_at_kill + 300 and time.monotonic() - t_kill >= own_all + 2,
                 60, "traffic after the takeover", h.workers)
    except BaseException:
        traffic.stop(check=False)
        raise
    traffic.stop()
    kinds = traffic.kinds
    log.wait(lambda: all(log.final_of(d) for d in sentinels), 120, "the sentinels' final instructions", h.workers)
    log.settle(kinds, h.workers)

    # Machine-checks pending on the killed worker at the kill: machine-check emitted before, final after.
    pending = {}
    for did, kind in kinds.items():
        recs = log.by_decl.get(did, [])
        mc = [r for r in recs if r.doc["stage"] == "declaration"]
        fin = [r for r in recs if r.doc["final"]]
        if kind not in ("mcc", "mcs", "to") or not mc or not fin or mc[0].partition not in killed_parts:
            continue
        if mc[0].ts < t_kill_wall < fin[0].ts:
            # Did the survivor see the declaration again (a redelivery re-emits the machine-check)?
            # If not, the only way it knew about this machine-check was the recovered table state.
            pending[did] = (fin[0].doc["stage"], any(r.ts > t_kill_wall for r in mc))
    by_scan = sum(1 for stage, _ in pending.values() if stage == "scan")
    state_only = sum(1 for _, redelivered in pending.values() if not redelivered)
    proving = {d for d, (_, p, _) in sentinels.items() if p in killed_parts and p not in stalled}
    record("kill -9: declarations published", len(kinds), "declarations")
    record("kill -9: instruction records / distinct ids", len(log.recs), f"/ {len(log.by_id)}")
    record("kill -9: raw duplicate instruction records", log.raw_duplicates(), "records")
    record("kill -9: machine-checks pending on the killed worker", len(pending),
           f"(by scan {by_scan}, by timeout {len(pending) - by_scan}, known from the changelog only {state_only})")
    record("kill -9: sentinels finalised from the changelog only (taken over)", len(proving),
           f"machine-checks (commits stalled on partitions {sorted(stalled)})" if stalled else "machine-checks")
    record("kill -9 test run time", time.monotonic() - t_test)

    assert b.alive(), f"the survivor died:\n{b.log_tail()}"
    extra = check_outcomes(log, kinds, lambda missing: lost_records_report(h.settings, missing))
    record("kill -9: clean scans overtaken by their deadline", extra["clean scans overtaken by the deadline"], "declarations")
    if log.divergent():
        xfail_if_tansu_watermarks(broker, f"{len(log.divergent())} instructions decided again by the survivor")
    assert log.divergent() == {}, f"instruction ids emitted with different bytes (decided twice): {list(log.divergent())[:5]}"
    assert log.dead_letters == [], log.dead_letters[:3]

    # Sentinels: finalised after the kill, by the timeout or by the scan, from the recovered state
    # only (their declarations were committed before the kill and never seen again).
    sentinel_finals = {did: log.final_of(did) for did in sentinels}
    want = {did: ("timeout", "inspect") if kind == "sto" else ("scan", "release") for did, (kind, _, _) in sentinels.items()}
    assert {d: (f["stage"], f["action"]) for d, f in sentinel_finals.items() if f} == want
    assert all(r.ts > t_kill_wall for d in sentinels for r in log.by_decl[d] if r.doc["final"])
    reseen = [d for d in proving if any(r.ts > t_kill_wall for r in log.by_decl[d] if r.doc["stage"] == "declaration")]
    assert reseen == [], f"sentinel declarations redelivered after the kill although their offsets were committed: {reseen}"
    assert pending, "no machine-check was pending on the killed worker at the kill: the test proves nothing"
    assert proving or state_only, "no machine-check of the killed worker was known to the survivor from the changelog only"


# ------------------------------------------------------------------------------------------------
# 2. restart the Apache Kafka broker under traffic


def test_kafka_broker_restart_under_traffic(broker: Any, make_harness: Callable[..., Harness],
                                           record: Callable[..., None]) -> None:
    if broker.kind != "kafka":
        pytest.skip("Tansu keeps its log in memory: a broker restart loses every topic by design")
    h = make_harness(5.0)
    log = Instructions(h)
    t_test = time.monotonic()
    w = h.start_worker()
    w.wait_ready()
    traffic = Traffic(h.settings, rate=300, scan_delay_s=1.0, prefix="K").start()
    try:
        log.wait(lambda: sum(1 for r in log.recs if r.doc["stage"] == "declaration") >= 600, 60,
                 "2 s of traffic decided", h.workers)
        t_down_wall, t0 = time.time(), time.monotonic()
        published_before = traffic.published
        broker.restart()  # SIGTERM, same data dir and ports; returns once it answers metadata
        outage = time.monotonic() - t0
        record("broker restart: restart() (SIGTERM -> metadata ready)", outage)
        published_during = traffic.published - published_before
        assert w.alive(), f"the worker died while the broker was down:\n{w.log_tail()}"
        broker_log = lambda: f"broker log tail:\n{broker.log_tail(40)}"  # noqa: E731 - a named condition for the wait it is passed to
        led = log.wait(lambda: partitions_led(h.settings), 120, "every partition of the pipeline's topics to have a leader",
                       h.workers, broker_log)
        record("broker restart: metadata ready -> every partition led", led)
        # Decisions resume: a declaration published after the restart is decided.
        after_restart = traffic.published
        resumed = log.wait(lambda: any(r.ts > t_down_wall + outage and int(r.doc["declaration_id"][1:]) >= after_restart
                                       for r in log.recs[-2000:]), 120, "decisions after the broker restart", h.workers,
                           lambda: f"traffic producer: {traffic.queued()} records still queued, delivery errors "
                                   f"{traffic.delivery_errors[:3]}; {broker_log()}")
        record("broker restart: all led -> first decision of a new declaration", resumed)
        log.wait(lambda: traffic.published >= after_restart + 600, 60, "traffic after the restart", h.workers)
    except BaseException:
        traffic.stop(check=False)
        raise
    traffic.stop()
    kinds = traffic.kinds
    log.settle(kinds, h.workers)
    record("broker restart: declarations published (during the outage)", len(kinds), f"declarations ({published_during})")
    record("broker restart: raw duplicate instruction records", log.raw_duplicates(), "records")
    record("broker restart test run time", time.monotonic() - t_test)
    assert w.alive(), f"the worker died after the broker restart:\n{w.log_tail()}"
    extra = check_outcomes(log, kinds, lambda missing: lost_records_report(h.settings, missing))
    record("broker restart: clean scans overtaken by their deadline", extra["clean scans overtaken by the deadline"], "declarations")
    assert log.divergent() == {}, f"instruction ids emitted with different bytes: {list(log.divergent())[:5]}"
    assert log.dead_letters == [], log.dead_letters[:3]


# ------------------------------------------------------------------------------------------------
# 3. restart a worker: state recovers from the changelog, nothing is decided twice

SLOW_PORT, FAST_PORT = PORT, "TST-TO"


def test_worker_restart_recovers_table_state(broker: Any, make_harness: Callable[..., Harness],
                                             record: Callable[..., None]) -> None:
    h = make_harness(120.0, {FAST_PORT: 10.0})  # machine-checks at FAST_PORT time out across the restart
    log = Instructions(h)
    t_test = time.monotonic()
    first = h.start_worker()
    first.wait_ready()
    ids = {kind: [f"R-{kind}-{i}" for i in range(4)] for kind in ("rel", "zt", "mcc", "mcs")}
    timeouts = [f"R-to-{i}" for i in range(4)]  # machine-checks at a port with a 10 s deadline
    sent: dict[str, bytes] = {}
    for kind, dids in ids.items():
        for did in dids:
            sent[did] = orjson.dumps(declaration(did, kind))
    for did in timeouts:
        sent[did] = orjson.dumps(declaration(did, "to", port=FAST_PORT))
    for did, value in sent.items():
        h.publish(topics.DECLARATIONS, did, value)
    h.flush()
    log.wait(lambda: all(log.by_decl.get(d) for d in sent), 60, "a first instruction for every declaration", h.workers)
    before = {iid: recs[0].raw for iid, recs in log.by_id.items()}
    assert all(not log.final_of(d) for d in ids["mcc"] + ids["mcs"] + timeouts), "machine-checks must still be pending"

    t_stop = time.monotonic()
    first.stop()  # SIGTERM: a graceful stop
    stop_s = time.monotonic() - t_stop
    t_exit_wall = time.time()
    assert first.proc.returncode is not None
    second = h.start_worker()  # same app id, empty data dir: every table comes from its changelog
    recovery_s = second.wait_ready()
    record("worker restart: SIGTERM -> exited", stop_s)
    record("worker restart: new worker start -> ready (tables recovered)", recovery_s)

    # Scans for the pending machine-checks, and redeliveries of every declaration.
    for kind, verdict in SCANNED.items():
        for did in ids[kind]:
            h.publish(topics.SCANS, did, scan(did, verdict))
    for did, value in sent.items():
        h.publish(topics.DECLARATIONS, did, value)
    h.flush()

    def settled() -> bool:
        redelivered = all(any(r.ts > t_exit_wall for r in log.by_decl[d]) for d in sent)
        return redelivered and all(log.final_of(d) for d in sent)

    log.wait(settled, 90, "finals for the pending machine-checks and re-emitted instructions", h.workers)
    log.quiesce(2.0, 30, h.workers)
    assert second.alive(), second.log_tail()

    if log.divergent():
        xfail_if_tansu_watermarks(broker, f"{len(log.divergent())} instructions decided again after the restart")
    assert log.divergent() == {}, {iid: [r.doc["decided_at"] for r in log.by_id[iid]] for iid in log.divergent()}
    reemitted = [r for r in log.recs if r.ts > t_exit_wall and r.doc["instruction_id"] in before]
    assert all(r.raw == before[r.doc["instruction_id"]] for r in reemitted)
    assert {r.doc["declaration_id"] for r in reemitted} == set(sent), "every redelivered declaration re-emits its instruction"
    finals = log.finals()
    assert {d: f for d, f in finals.items() if len(f) != 1} == {}
    want = {**{d: ("declaration", "release") for d in ids["rel"]}, **{d: ("declaration", "inspect") for d in ids["zt"]},
            **{d: ("scan", "release") for d in ids["mcc"]}, **{d: ("scan", "inspect") for d in ids["mcs"]},
            **{d: ("timeout", "inspect") for d in timeouts}}
    got = {d: (log.final_of(d)["stage"], log.final_of(d)["action"]) for d in want}  # type: ignore[index]  # an undecided id (None) fails the test either way
    assert got == want
    # The timeouts fired in the new worker, from the recovered deadlines table.
    assert all(r.ts > t_exit_wall for d in timeouts for r in log.by_decl[d] if r.doc["final"]), \
        f"the first worker fired the timeouts before it exited (its stop took {stop_s:.1f}s)"
    # No decision made twice: the new worker decided nothing at declaration time.
    m = second.metrics_text()
    assert metric_value(m, "customs_instructions_total", stage="declaration") == 0
    assert metric_value(m, "customs_instructions_total") == len(ids["mcc"]) + len(ids["mcs"]) + len(timeouts)
    redelivered = metric_value(m, "customs_redelivered_total", type="declaration", outcome="duplicate")
    assert redelivered >= len(sent)

    record("worker restart: raw duplicate instruction records", log.raw_duplicates(), "records")
    record("worker restart: declarations seen again by the new worker", redelivered, f"(re-published: {len(sent)})")
    record("worker restart test run time", time.monotonic() - t_test)
