"""The archive sink on real brokers: a real ``riskctl archive`` process, real Delta tables on disk.

``test_kill_9_mid_stream_archives_every_record_exactly_once``: while a producer streams every kind of
record (gateway batches with bad items, centralised declarations, garbage on every topic, risk-list
retractions, ...), the sink dies four times: once by its failpoint between two tables' commits of
one flush, twice by ``kill -9`` from the test, and it restarts under a new consumer group (no
committed offsets at all) once. At the end every record is in the archive exactly once: the
(topic, partition, offset, item) of every row, per table, equals what the producer's delivery reports
say was written, and the ids match. Then ``riskctl explain`` answers from the archive with no
broker, and with the broker reads only the instruction the archive has not caught up with.

``test_sink_throughput`` measures records and rows per second on a backlog.

Waits are conditions with deadlines (positions in the tables, metrics, process exits), never sleeps.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections import defaultdict
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import polars as pl
from confluent_kafka import Producer

from archive import tables as t
from clients import topics
from clients.topics import create_topics
from common.settings import Settings
from devkit.brokers import free_port
from devkit.launcher import metric_value

REPO = Path(__file__).resolve().parents[2]
NOW = datetime.now(UTC).isoformat()
PORTS = ("HAK-SEA", "HAK-AIR", "YPU-SEA")
Quad = tuple[str, int, int, int]


def wait_for(condition: Callable[[], bool], timeout_s: float, what: str, on_timeout: Callable[[], str] = lambda: "",
             interval_s: float = 0.05) -> float:
    started = time.monotonic()
    while not condition():
        if time.monotonic() - started > timeout_s:
            raise AssertionError(f"timed out after {timeout_s:.0f}s waiting for {what}\n{on_timeout()}")
        time.sleep(interval_s)  # poll interval of a condition with a deadline
    return time.monotonic() - started


class SinkProcess:
    """One ``riskctl archive`` subprocess in its own process group, configured through env vars."""

    def __init__(self, settings: Settings, log_path: Path, failpoint: str | None = None, extra_env: dict[str, str] | None = None) -> None:
        self.settings = settings
        self.log_path = log_path
        self.port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith(("ARCHIVE_", "RISKCTL_"))}
        env.update({
            "KAFKA_BOOTSTRAP_SERVERS": settings.kafka_bootstrap_servers, "APP_ID": settings.app_id,
            "TOPIC_PREFIX": settings.topic_prefix, "PARTITIONS": str(settings.partitions), "ARCHIVE_DIR": str(settings.archive_dir),
            "ARCHIVE_METRICS_PORT": str(self.port), "ARCHIVE_FLUSH_INTERVAL_S": str(settings.archive_flush_interval_s),
            "ARCHIVE_FLUSH_RECORDS": str(settings.archive_flush_records), "ARCHIVE_IDLE_COMMIT_S": str(settings.archive_idle_commit_s),
            "SESSION_TIMEOUT_S": str(settings.session_timeout_s), "HEARTBEAT_INTERVAL_S": str(settings.heartbeat_interval_s),
            "ARCHIVE_MAINTENANCE_INTERVAL_S": str(settings.archive_maintenance_interval_s), "LOG_LEVEL": "INFO",
        })
        if settings.archive_group_id:
            env["ARCHIVE_GROUP_ID"] = settings.archive_group_id
        if failpoint:
            env["RISKCTL_ARCHIVE_FAILPOINT"] = failpoint
        env.update(extra_env or {})
        with open(log_path, "ab") as log:
            self.proc = subprocess.Popen([sys.executable, "-m", "cli.main", "archive", "--no-create-topics"], cwd=REPO, env=env,
                                         stdout=log, stderr=subprocess.STDOUT, start_new_session=True)

    def metric(self, name: str) -> float:
        try:
            text = urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics", timeout=2).read().decode()
        except OSError:
            return float("nan")
        return metric_value(text, name)

    def log_tail(self, lines: int = 30) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        return ""

    def kill(self) -> None:
        """kill -9, as a crash would."""
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(30)

    def stop(self) -> int:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.kill()
        return self.proc.returncode


class Stream:
    """Produces every kind of record and remembers, from the delivery reports, the rows each must become."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.producer = Producer({**settings.confluent_config(), "partitioner": "murmur2_random", "linger.ms": 5})
        self.expected: dict[str, set[Quad]] = defaultdict(set)
        self.ids: dict[str, set[str]] = defaultdict(set)
        self.ends: dict[tuple[str, int], int] = {}
        self.garbage: dict[Quad, bytes] = {}
        self.failed: list[str] = []
        self.records = 0

    def send(self, logical: str, key: str | bytes, value: bytes | dict[str, Any] | None, rows: list[tuple[str, str | None]]) -> None:
        """``rows``: (table, id) of each row the record becomes, in item order."""
        payload = value if value is None or isinstance(value, bytes) else orjson.dumps(value)

        def delivered(err: Any, msg: Any) -> None:
            if err is not None:
                self.failed.append(str(err))
                return
            topic, partition, offset = msg.topic(), msg.partition(), msg.offset()
            self.ends[(topic, partition)] = max(self.ends.get((topic, partition), 0), offset + 1)
            for index, (table, ident) in enumerate(rows):
                self.expected[table].add((topic, partition, offset, index))
                if ident is not None:
                    self.ids[table].add(ident)
                if table == t.DEAD_LETTERS and ident is None and payload is not None:
                    self.garbage[(topic, partition, offset, index)] = payload

        self.producer.produce(self.settings.topic(logical), key=key.encode() if isinstance(key, str) else key, value=payload,
                              on_delivery=delivered)
        self.records += 1
        self.producer.poll(0)

    def round(self, n: int, rnd: random.Random) -> None:
        port = PORTS[n % len(PORTS)]
        for i in range(12):
            did = f"D-{n}-{i}"
            self.send(topics.DECLARATIONS, did, declaration(did, port), [(t.DECLARATIONS, did)])
        # A coherent story for D-n-0: machine-check, suspicious scan, inspect, inspection result.
        story = f"D-{n}-0"
        self.send(topics.INSTRUCTIONS, story, instruction(story, "declaration", "machine-check", port),
                  [(t.INSTRUCTIONS, f"{story}:1:declaration")])
        self.send(topics.SCANS, story, scan(story, port), [(t.SCANS, f"S-{story}")])
        self.send(topics.INSTRUCTIONS, story, instruction(story, "scan", "inspect", port), [(t.INSTRUCTIONS, f"{story}:1:scan")])
        self.send(topics.INSPECTION_RESULTS, story, inspection(story, port), [(t.INSPECTION_RESULTS, f"{story}:1:scan")])
        self.send(topics.SHADOW_SCORES, story, shadow(story, port), [(t.SHADOW_SCORES, f"{story}:1:declaration")])
        for i in range(1, 15):
            did = f"D-{n}-{i}"
            self.send(topics.INSTRUCTIONS, did, instruction(did, "declaration", "release", port),
                      [(t.INSTRUCTIONS, f"{did}:1:declaration")])
        for b in range(2):
            bid = f"B-{n}-{b}"
            items: list[Any] = [declaration(f"{bid}-{j}", port) for j in range(25)]
            rows: list[tuple[str, str | None]] = [(t.DECLARATIONS, f"{bid}-{j}") for j in range(25)]
            if b == 1 and n % 3 == 0:  # one bad item: the rest of the batch is kept
                items[7] = {**items[7], "hs_code": "12"}
                rows[7] = (t.DEAD_LETTERS, f"item:{bid}-7")
            self.send(topics.DECLARATION_BATCHES, bid, {"batch_id": bid, "gateway": "GW1", "declarations": items}, rows)
        cid = f"C-{n}"
        self.send(topics.CENTRALISED_DECLARATIONS, cid, centralised(cid, port),
                  [(t.CENTRALISED_ITEMS, f"{cid}-{k:04d}") for k in (1, 2, 3)])
        self.send(topics.CREDIT_EVENTS, f"E{n % 7}", credit(f"CE-{n}", f"E{n % 7}"), [(t.CREDIT_EVENTS, f"CE-{n}")])
        if n % 4 == 3:
            self.send(topics.RISK_LISTS, f"RL-{n - 1}", None, [(t.RISK_LISTS, f"RL-{n - 1}")])  # retraction
        else:
            self.send(topics.RISK_LISTS, f"RL-{n}", risk_entry(f"RL-{n}"), [(t.RISK_LISTS, f"RL-{n}")])
        self.send(topics.DEAD_LETTERS, "src", worker_dead_letter(n), [(t.DEAD_LETTERS, f"worker:{n}")])
        if n % 4 == 3:  # the import leaves the register
            self.send(topics.ZERO_TARIFF_REGISTER, f"ZT-{n - 1}", None, [(t.ZERO_TARIFF_REGISTER, f"ZT-{n - 1}")])
        else:
            self.send(topics.ZERO_TARIFF_REGISTER, f"ZT-{n}", zero_tariff_import(f"ZT-{n}", n), [(t.ZERO_TARIFF_REGISTER, f"ZT-{n}")])
        self.send(topics.POSITIONS, vin(n), position(f"PE-{n}", n, port), [(t.POSITIONS, f"PE-{n}")])
        self.send(topics.DUTY_FREE_PURCHASES, f"SH-{n % 5}", duty_free_purchase(f"DF-{n}", f"SH-{n % 5}"),
                  [(t.DUTY_FREE_PURCHASES, f"DF-{n}")] * 2)
        bad_topic = rnd.choice(t.ARCHIVED_TOPICS)
        self.send(bad_topic, f"X-{n}", f"not json {n} \xff".encode(), [(t.DEAD_LETTERS, None)])

    def flush(self) -> None:
        assert self.producer.flush(30) == 0, "the producer could not deliver every record"
        assert not self.failed, self.failed[:3]


def declaration(did: str, port: str) -> dict[str, Any]:
    return {"declaration_id": did, "port": port, "enterprise_id": "E1", "declarant_id": "DC1", "scenario": "general-trade",
            "hs_code": "851712", "origin_country": "CN", "departure_country": "CN", "transport_mode": "sea", "declared_value": 1000.0,
            "currency": "CNY", "net_mass_kg": 5.0, "tax_rate": 5.0, "event_time": NOW}


def instruction(did: str, stage: str, action: str, port: str, revision: int = 1) -> dict[str, Any]:
    return {"schema_version": 1, "instruction_id": f"{did}:{revision}:{stage}", "declaration_id": did, "revision": revision,
            "port": port, "enterprise_id": "E1", "scenario": "general-trade", "stage": stage, "action": action,
            "final": action != "machine-check", "selection_reason": "scan" if stage == "scan" else "model-threshold",
            "credit_class": "general", "score": 0.7, "model_version": "m1/general", "policy_version": "p-it",
            "reasons": [f"{stage}: {action}"], "risk_hits": [], "thresholds": [0.55, 0.8],
            "suspected_categories": ["cigarettes"] if stage == "scan" else [], "scan_id": f"S-{did}" if stage == "scan" else None,
            "event_time": NOW, "decided_at": NOW}


def scan(did: str, port: str) -> dict[str, Any]:
    return {"scan_id": f"S-{did}", "declaration_id": did, "port": port, "device_id": "XR1", "device_type": "x-ray",
            "anomaly_score": 0.93, "verdict": "suspicious", "suspected_categories": ["cigarettes"], "event_time": NOW}


def inspection(did: str, port: str) -> dict[str, Any]:
    return {"instruction_id": f"{did}:1:scan", "declaration_id": did, "revision": 1, "port": port, "station_id": "ST1",
            "found": True, "category": "cigarettes", "duty_recovered": 310.5, "inspected_at": NOW}


def shadow(did: str, port: str) -> dict[str, Any]:
    return {"instruction_id": f"{did}:1:declaration", "declaration_id": did, "revision": 1, "port": port,
            "scenario": "general-trade", "credit_class": "general", "champion_version": "m1/general", "champion_score": 0.7,
            "champion_action": "machine-check", "challenger_version": "m2/general", "challenger_score": 0.4,
            "challenger_action": "release", "thresholds": [0.55, 0.8], "decided_at": NOW}


def centralised(cid: str, port: str) -> dict[str, Any]:
    return {"centralised_id": cid, "port": port, "enterprise_id": "E1", "declarant_id": "DC1", "scenario": "general-trade",
            "transport_mode": "sea", "departure_country": "CN", "event_time": NOW,
            "items": [{"item_no": k, "hs_code": "851712", "origin_country": "CN", "declared_value": 10.0, "currency": "CNY",
                       "net_mass_kg": 1.0, "tax_rate": 5.0} for k in (1, 2, 3)]}


def credit(event_id: str, eid: str) -> dict[str, Any]:
    return {"event_id": event_id, "enterprise_id": eid, "event_type": "credit-class-changed", "credit_class": "aeo",
            "source_agency": "customs", "event_time": NOW}


def risk_entry(entry_id: str) -> dict[str, Any]:
    return {"entry_id": entry_id, "list_id": "RL", "kind": "origin", "value": "KP", "action": "inspect", "reason": "sanctions",
            "source_agency": "customs", "valid_from": NOW}


def worker_dead_letter(n: int) -> dict[str, Any]:
    return {"schema_version": 1, "source_topic": "it.declarations", "partition": 0, "offset": n, "key_b64": None,
            "value_b64": "eA==", "value_size": 1, "value_sha256": f"sha-{n}", "truncated": False, "reason": "invalid-json",
            "error": "bad", "received_at": NOW}


def vin(n: int) -> str:
    return f"LSVAU2180N{n:07d}"


def zero_tariff_import(import_id: str, n: int) -> dict[str, Any]:
    return {"import_id": import_id, "enterprise_id": "E1", "import_declaration_id": f"IMP-{import_id}", "hs_code": "870323",
            "description": "passenger car", "quantity": 1.0, "identifiers": [{"kind": "vin", "value": vin(n)}],
            "imported_at": NOW, "event_time": NOW}


def position(event_id: str, n: int, port: str) -> dict[str, Any]:
    return {"event_id": event_id, "identifier": vin(n), "kind": "vehicle", "event_type": "port-passage", "port": port,
            "tracker_id": "HN-TRACK-1", "event_time": NOW}


def duty_free_purchase(purchase_id: str, shopper: str) -> dict[str, Any]:
    return {"purchase_id": purchase_id, "shop_id": "SHOP1", "shopper_token": shopper,
            "identity_check": {"token": f"IC-{purchase_id}", "method": "face", "matched": True},
            "items": [{"category": "cosmetics", "goods_code": "G1", "quantity": 2, "unit_price_cny": 300.0},
                      {"category": "watches", "goods_code": "G2", "quantity": 1, "unit_price_cny": 4000.0}],
            "total_cny": 4600.0, "purchased_at": NOW}


def archive_settings(broker: Any, name: str, tmp_path: Path, **over: Any) -> Settings:
    return Settings(kafka_bootstrap_servers=broker.bootstrap_servers, app_id=name, topic_prefix=f"{name}.", partitions=3,
                    archive_dir=tmp_path / "archive", session_timeout_s=6.0, heartbeat_interval_s=1.0, **over)


def caught_up(settings: Settings, ends: dict[tuple[str, int], int]) -> bool:
    """Every table of every partition holds a position at its end (txn versions, not watermarks)."""
    logical = {settings.topic(name): name for name in t.ARCHIVED_TOPICS}
    opened = {name: t.open_table(settings.archive_dir, name) for name in t.SPECS}
    for (topic, partition), end in ends.items():
        for name in t.TOPIC_TABLES[logical[topic]]:
            table = opened[name]
            version = table.transaction_version(t.app_id(topic, partition)) if table is not None else None
            if version is None or version < end:
                return False
    return True


def table_frame(settings: Settings, name: str) -> pl.DataFrame:
    return pl.read_delta(str(t.table_path(settings.archive_dir, name)))


ID_COLUMN = {t.DECLARATIONS: "declaration_id", t.CENTRALISED_ITEMS: "declaration_id", t.SCANS: "scan_id",
             t.INSTRUCTIONS: "instruction_id", t.INSPECTION_RESULTS: "instruction_id", t.CREDIT_EVENTS: "event_id",
             t.RISK_LISTS: "entry_id", t.SHADOW_SCORES: "instruction_id", t.ZERO_TARIFF_REGISTER: "import_id",
             t.POSITIONS: "event_id", t.DUTY_FREE_PURCHASES: "purchase_id"}


def test_kill_9_mid_stream_archives_every_record_exactly_once(broker: Any, unique_name: str, tmp_path: Path,
                                                              broker_timings: Any) -> None:
    # Maintenance (compaction) runs every 2 s, so crashes and restarts also meet compactions in progress.
    settings = archive_settings(broker, unique_name, tmp_path, archive_flush_interval_s=0.3, archive_idle_commit_s=1.0,
                                archive_maintenance_interval_s=2.0)
    create_topics(settings)
    stream = Stream(settings)
    stop_producing = threading.Event()
    produced_rounds = [0]

    def produce() -> None:
        rnd = random.Random(7)
        while not stop_producing.is_set():
            stream.round(produced_rounds[0], rnd)
            produced_rounds[0] += 1
            stop_producing.wait(0.02)  # the stream's pace: about 50 rounds (4,000 records) a second at most

    producer = threading.Thread(target=produce, daemon=True)
    sinks: list[SinkProcess] = []

    def logs() -> str:
        return "\n---\n".join(s.log_tail() for s in sinks)

    def start(failpoint: str | None = None, group: str | None = None) -> SinkProcess:
        s = settings.model_copy(update={"archive_group_id": group}) if group else settings
        sinks.append(SinkProcess(s, tmp_path / f"sink{len(sinks)}.log", failpoint))
        return sinks[-1]

    def commits(sink: SinkProcess) -> float:
        value = sink.metric("customs_archive_commits_total")
        return 0.0 if value != value else value

    started = time.monotonic()
    producer.start()
    try:
        # 1. The failpoint kills the sink right after a declarations commit, before the other tables' commits.
        first = start(failpoint="crash-after-commit:declarations:3")
        wait_for(lambda: first.proc.poll() is not None, 90, "the failpoint to kill the first sink", logs)
        assert first.proc.returncode == -signal.SIGKILL, logs()
        # 2, 3. kill -9 from outside once the sink has committed a few times; the third sink is in a new
        # consumer group, which has no committed offsets: only the tables know where to resume.
        for group in (None, f"{unique_name}-other-group"):
            sink = start(group=group)
            wait_for(lambda sink=sink: commits(sink) >= 4, 90, "the sink to commit", logs)
            sink.kill()
        # 4. The last one runs to the end; one of its commits fails (an I/O error), so it drops its buffer
        # and seeks back to the archived positions once.
        last = start(failpoint="fail-commit:instructions:2", group=f"{unique_name}-other-group")
        # The stream keeps flowing until the failed commit has happened: a sink that caught up in one
        # commit would otherwise never reach its second instructions commit.
        wait_for(lambda: "partitions from the archived positions" in last.log_path.read_text(errors="replace"), 90,
                 "the last sink's failed commit and its re-read", logs)
        recovered_at = commits(last)
        wait_for(lambda: commits(last) > recovered_at, 90, "the last sink to commit after the failure", logs)
    finally:
        stop_producing.set()
        producer.join(30)
    stream.flush()
    wait_for(lambda: caught_up(settings, stream.ends), 120, "the archive to hold every partition's end", logs, interval_s=0.25)
    assert last.stop() == 0, logs()
    assert "archive maintenance in" in logs() and "archive maintenance failed" not in logs(), logs()
    assert "partitions from the archived positions" in last.log_path.read_text(), last.log_tail()
    broker_timings.add(broker.kind, f"archive: {stream.records} records, 4 sink deaths", time.monotonic() - started)
    assert "replaying the gap" in (tmp_path / "sink1.log").read_text(), "the failpoint crash left no table behind another"

    for name in t.SPECS:
        frame = table_frame(settings, name)
        quads = list(zip(frame["kafka_topic"], frame["kafka_partition"], frame["kafka_offset"], frame["item_index"]))
        assert len(quads) == len(set(quads)), f"{name}: {len(quads) - len(set(quads))} rows archived twice"
        missing, extra = stream.expected[name] - set(quads), set(quads) - stream.expected[name]
        assert not missing and not extra, f"{name}: {len(missing)} missing (e.g. {sorted(missing)[:3]}), {len(extra)} extra"
        if name in ID_COLUMN:
            assert set(frame[ID_COLUMN[name]].to_list()) == stream.ids[name], name
    dead = table_frame(settings, t.DEAD_LETTERS)
    assert dead.filter(pl.col("origin") == "worker").height == produced_rounds[0]
    mine = dead.filter((pl.col("origin") == "archive") & (pl.col("reason") != "schema-violation"))
    for row in mine.iter_rows(named=True):
        quad = (row["kafka_topic"], row["kafka_partition"], row["kafka_offset"], row["item_index"])
        assert base64.b64decode(row["value_b64"]) == stream.garbage[quad], "the dead letter must keep the original bytes"
    assert table_frame(settings, t.RISK_LISTS)["retracted"].sum() == produced_rounds[0] // 4
    assert table_frame(settings, t.ZERO_TARIFF_REGISTER)["removed"].sum() == produced_rounds[0] // 4
    register = table_frame(settings, t.ZERO_TARIFF_REGISTER).filter(pl.col("import_id") == "ZT-5").row(0, named=True)
    assert register["identifiers"] == [f"vin:{vin(5)}"] and register["status"] == "imported"
    purchases = table_frame(settings, t.DUTY_FREE_PURCHASES).filter(pl.col("purchase_id") == "DF-5").sort("item_index")
    assert purchases["goods_code"].to_list() == ["G1", "G2"] and purchases["total_cny"].to_list() == [4600.0, 4600.0]
    assert table_frame(settings, t.POSITIONS).filter(pl.col("event_id") == "PE-5")["port"].to_list() == [PORTS[5 % len(PORTS)]]

    # explain: from the archive alone with no broker, then the archive plus the topic's unarchived tail.
    story = "D-5-0"
    dead_broker = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:1", "ARCHIVE_DIR": str(settings.archive_dir),
                   "TOPIC_PREFIX": settings.topic_prefix, "PARTITIONS": str(settings.partitions)}
    out = subprocess.run([sys.executable, "-m", "cli.main", "explain", story, "--json", "--timeout", "2"], cwd=REPO, env=dead_broker,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    assert doc["outcome"]["action"] == "inspect" and doc["outcome"]["stage"] == "scan"
    assert [r["revision"] for r in doc["revisions"]] == [1] and doc["scans"][0]["scan_id"] == f"S-{story}"
    assert doc["inspection_results"][0]["duty_recovered"] == 310.5
    assert "the topics were not read" in out.stderr

    stream.send(topics.INSTRUCTIONS, story, instruction(story, "declaration", "release", "HAK-SEA", revision=2), [])
    stream.flush()
    live = {**dead_broker, "KAFKA_BOOTSTRAP_SERVERS": settings.kafka_bootstrap_servers}
    out = subprocess.run([sys.executable, "-m", "cli.main", "explain", story, "--json"], cwd=REPO, env=live,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    assert doc["sources"] == {"archive": True, "archive_scan": "full", "archived_instructions": 2, "topic_instructions": 1}, (
        doc["sources"], out.stderr)
    assert "not read" not in out.stderr, out.stderr
    assert doc["outcome"]["revision"] == 2 and doc["outcome"]["action"] == "release"


def test_sink_throughput(broker: Any, unique_name: str, tmp_path: Path, broker_timings: Any) -> None:
    settings = archive_settings(broker, unique_name, tmp_path, archive_flush_interval_s=1.0, archive_idle_commit_s=1.0)
    create_topics(settings)
    stream = Stream(settings)
    rnd = random.Random(3)
    for n in range(1500):
        stream.round(n, rnd)
    stream.flush()
    rows = sum(len(v) for v in stream.expected.values())
    sink = SinkProcess(settings, tmp_path / "sink.log")
    try:
        wait_for(lambda: sink.metric("customs_archive_ready") == 1, 90, "the sink's assignment", sink.log_tail)
        seconds = wait_for(lambda: caught_up(settings, stream.ends), 180, "the backlog archived", sink.log_tail, interval_s=0.25)
    finally:
        assert sink.stop() == 0, sink.log_tail()
    assert sum(table_frame(settings, name).height for name in t.SPECS) == rows
    broker_timings.add(broker.kind, f"archive backlog: {stream.records} records, {rows} rows", seconds)
    broker_timings.add(broker.kind, f"archive rate: {stream.records / seconds:,.0f} records/s, {rows / seconds:,.0f} rows/s", 0.0)
    print(f"\n{broker.kind}: archived {stream.records} records ({rows} rows) in {seconds:.1f}s: "
          f"{stream.records / seconds:,.0f} records/s, {rows / seconds:,.0f} rows/s")
