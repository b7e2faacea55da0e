"""Bad input against a real worker, on both brokers: a few hundred hostile records on every input
topic, interleaved with good ones.

The corpus is built first (hypothesis, derandomized: the same records on every run), from the
strategies of ``tests/hostile.py``: invalid JSON and UTF-8, wrong types, missing and
extra fields, NaN and infinities, absurd numbers, huge strings and payloads, unknown enum values,
implausible timestamps, nested garbage and deep nesting, duplicate keys, wrong top-level types,
null values, plus key problems (missing, foreign, huge, non-UTF-8 keys; a declaration off its
partition) and a record near Kafka's 1 MB limit on every topic. Then everything is sent, shuffled,
with good declarations, batches, scans, credit events, risk-list entries and inspection results
among it, and a last wave of good records on every topic after it. Each sent record's (partition,
offset) is known from its delivery report, so every dead letter is matched to the record it came
from.

Not sent as "bad": a batch's Kafka key is not checked (its partition is what matters), and a credit
event may come without a key (by design: the topic has one partition).
"""

from __future__ import annotations

import itertools
import random
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any

import orjson
import pytest
from confluent_kafka import Message

from clients import topics
from schemas.partitioning import partition_for
from tests.hostile import CATEGORIES, Hostile, centralised, collect, credit, declaration, hostile, inspection, risk, scan
from tests.integration.pipeline_harness import Harness, metric_value, pipeline_settings, write_policy

PARTITIONS = 4
PER_CATEGORY = 2  # hostile records per (topic, category)
MAX_BYTES = 150_000  # larger records' dead letters outgrow the producer batch (xfail in the unit suite)
SEED = 20261128
TOPIC_OF = {"declaration": topics.DECLARATIONS, "batch": topics.DECLARATION_BATCHES, "centralised": topics.CENTRALISED_DECLARATIONS,
            "scan": topics.SCANS, "credit": topics.CREDIT_EVENTS, "risk": topics.RISK_LISTS, "inspection": topics.INSPECTION_RESULTS}


@dataclass
class Outgoing:
    topic: str  # logical name
    key: bytes | None
    value: bytes | None
    reasons: tuple[str, ...] = ()  # dead letters it must produce; () for a good record
    what: str = "good"
    partition: int | None = None  # explicit partition (else the key's murmur2 partition)
    declarations: tuple[str, ...] = ()  # good declarations it carries (must each get one final)


@dataclass
class Corpus:
    bad: list[Outgoing] = field(default_factory=list)
    good: list[Outgoing] = field(default_factory=list)
    last_wave: list[Outgoing] = field(default_factory=list)


def fresh_ids(prefix: str, partition: int | None = None) -> Any:
    """Unique declaration ids, optionally only ones whose murmur2 partition is ``partition``."""
    counter = itertools.count()

    def next_id() -> str:
        while True:
            candidate = f"{prefix}{next(counter)}"
            if partition is None or partition_for(candidate.encode(), PARTITIONS) == partition:
                return candidate

    return next_id


def good_records(tag: str, n_decl: int, n_batch: int, n_side: int, n_centralised: int = 0) -> list[Outgoing]:
    out = []
    for i in range(n_decl):  # general trade: released; zero-tariff without the qualification: inspected
        did = f"{tag}D{i}"
        scenario = "zero-tariff" if i % 3 == 0 else "general-trade"
        out.append(Outgoing(topics.DECLARATIONS, did.encode(), orjson.dumps(declaration(did, f"{tag}E{i % 7}", scenario)),
                            declarations=(did,)))
    for b in range(n_batch):
        p = b % PARTITIONS
        ids = fresh_ids(f"{tag}B{b}-", p)
        items = [declaration(ids(), f"{tag}E{b}") for _ in range(5)]
        envelope = {"schema_version": 1, "batch_id": f"{tag}B{b}", "gateway": "FZ-GW", "declarations": items}
        out.append(Outgoing(topics.DECLARATION_BATCHES, f"{tag}B{b}".encode(), orjson.dumps(envelope), partition=p,
                            declarations=tuple(d["declaration_id"] for d in items)))
    for c in range(n_centralised):  # split into one declaration per item, each decided
        cid = f"{tag}C{c}"
        record = centralised(cid, f"{tag}E{c}", n_items=3)
        out.append(Outgoing(topics.CENTRALISED_DECLARATIONS, cid.encode(), orjson.dumps(record),
                            declarations=tuple(f"{cid}-{n:04d}" for n in range(1, 4))))
    for i in range(n_side):
        did = f"{tag}SC{i}"  # a scan for a declaration that never comes: kept as an early scan, no output
        out.append(Outgoing(topics.SCANS, did.encode(), orjson.dumps(scan(did))))
        eid = f"{tag}CE{i}"  # an enterprise no declaration uses: the fold must apply it
        out.append(Outgoing(topics.CREDIT_EVENTS, eid.encode(), orjson.dumps(credit(eid, f"{tag}EV{i}"))))
        rid = f"{tag}R{i}"
        out.append(Outgoing(topics.RISK_LISTS, rid.encode(), orjson.dumps(risk(rid))))
        did = f"{tag}IN{i}"
        out.append(Outgoing(topics.INSPECTION_RESULTS, did.encode(), orjson.dumps(inspection(did))))
    return out


def key_problems(keyless_compacted: bool) -> list[Outgoing]:
    """Good values under bad keys, on every topic that checks its key. Apache Kafka itself refuses
    a record without a key on a compacted topic (risk-lists); the embedded broker takes it."""
    out = []
    huge = b"K" * 64_000
    for i in range(2):
        did = f"KEYD{i}"
        value = orjson.dumps(declaration(did))
        for what, key in (("no key", None), ("foreign key", b"OTHER"), ("huge key", huge), ("non-UTF-8 key", b"\xff\xfe" + did.encode())):
            out.append(Outgoing(topics.DECLARATIONS, key, value, ("key-mismatch",), f"declaration: {what}"))
        wrong = (partition_for(did.encode(), PARTITIONS) + 1) % PARTITIONS
        out.append(Outgoing(topics.DECLARATIONS, did.encode(), value, ("wrong-partition",), "declaration: wrong partition",
                            partition=wrong))
        value = orjson.dumps(centralised(f"KEYC{i}"))
        for what, key in (("no key", None), ("foreign key", b"OTHER"), ("huge key", huge)):
            out.append(Outgoing(topics.CENTRALISED_DECLARATIONS, key, value, ("key-mismatch",), f"centralised: {what}"))
        value = orjson.dumps(scan(f"KEYS{i}"))
        for what, key in (("no key", None), ("foreign key", b"OTHER"), ("huge key", huge)):
            out.append(Outgoing(topics.SCANS, key, value, ("key-mismatch",), f"scan: {what}"))
        value = orjson.dumps(credit(f"KEYE{i}", f"KEYEV{i}"))
        for what, key in (("foreign key", b"OTHER"), ("huge key", huge)):
            out.append(Outgoing(topics.CREDIT_EVENTS, key, value, ("key-mismatch",), f"credit: {what}"))
        value = orjson.dumps(inspection(f"KEYI{i}"))
        for what, key in (("no key", None), ("foreign key", b"OTHER"), ("huge key", huge)):
            out.append(Outgoing(topics.INSPECTION_RESULTS, key, value, ("key-mismatch",), f"inspection: {what}"))
        value = orjson.dumps(risk(f"KEYR{i}"))
        for what, key, v in (("no key", None, value), ("no key, null value", None, None), ("foreign key", b"OTHER", value),
                             ("huge key", huge, value), ("non-UTF-8 key", b"\xff\xfe", value)):
            if key is None and not keyless_compacted:
                continue
            out.append(Outgoing(topics.RISK_LISTS, key, v, ("key-mismatch",), f"risk: {what}"))
    return out


def near_limit() -> list[Outgoing]:
    """One ~900 kB bad record per topic (a valid record plus a padding field): its dead letter must
    still fit in a Kafka record, or the agent crashes on MESSAGE_TOO_LARGE and stalls."""
    records = {  # kind -> (key, record)
        "declaration": ("BIGD1", declaration("BIGD1")),
        "batch": ("BIGB", {"batch_id": "BIGB", "gateway": "FZ-GW", "declarations": [declaration("BIGD2")]}),
        "centralised": ("BIGC", centralised("BIGC")),
        "scan": ("BIGS", scan("BIGS")),
        "credit": ("BIGE", credit("BIGE", "BIGEV")),
        "risk": ("BIGR", risk("BIGR")),
        "inspection": ("BIGI", inspection("BIGI")),
    }
    return [Outgoing(TOPIC_OF[kind], key.encode(), orjson.dumps({**record, "padding": "A" * 900_000}), ("schema-violation",),
                     f"{kind}: 900 kB record", partition=0 if kind == "batch" else None)
            for kind, (key, record) in records.items()]


def build_corpus(keyless_compacted: bool) -> Corpus:
    corpus = Corpus()
    batch_ids = {p: fresh_ids(f"FZB{p}-", p) for p in range(PARTITIONS)}
    for kind, categories in CATEGORIES.items():
        for category in categories:
            if category == "bad-items":  # good declarations among bad ones, on the batch's partition
                examples: list[Hostile] = []
                for p in range(PARTITIONS):
                    examples += collect(hostile(kind, category, MAX_BYTES, partition=p, fresh=batch_ids[p]), 2)
            else:
                examples = collect(hostile(kind, category, MAX_BYTES), PER_CATEGORY)
            for h in examples:
                corpus.bad.append(Outgoing(TOPIC_OF[kind], h.key_id.encode(), h.value, h.reasons, f"{kind}: {h.category}",
                                           partition=h.partition, declarations=h.good_items))
    corpus.bad += key_problems(keyless_compacted) + near_limit()
    corpus.good = good_records("G", n_decl=120, n_batch=8, n_side=6, n_centralised=4)
    corpus.last_wave = good_records("L", n_decl=2 * PARTITIONS, n_batch=PARTITIONS, n_side=1, n_centralised=1)
    return corpus


@pytest.fixture
def harness(broker, unique_name, tmp_path):
    # Every good declaration is decided finally at declaration time: released (score thresholds
    # of 1.0) or, zero-tariff without the qualification, inspected by the hard rule.
    policy = write_policy(
        tmp_path / "policy.yaml", version="fuzz-1",
        thresholds={"aeo": {"machine_check": 1.0, "inspect": 1.0}, "white-list": {"machine_check": 1.0, "inspect": 1.0},
                    "general": {"machine_check": 1.0, "inspect": 1.0}},
        scenario_thresholds={}, random_selection={"share": 0.0, "action": "machine-check"},
        capacity={"default": {"machine_check": None, "inspect": None}, "ports": {}, "bounds": {}},
        # Good centralised declarations come from enterprises without credit events (general class).
        batch={"allowed_classes": ["aeo", "white-list", "general"]},
    )
    h = Harness(pipeline_settings(broker.bootstrap_servers, unique_name, tmp_path, partitions=PARTITIONS, policy_file=policy), tmp_path)
    yield h
    h.close()


def test_hostile_records_are_dead_lettered_and_good_ones_decided(harness: Harness, broker, broker_timings) -> None:
    corpus = build_corpus(keyless_compacted=broker.kind != "kafka")  # before the worker starts: generation is not part of the measured time
    worker = harness.start_worker()
    worker.wait_ready()
    started = time.monotonic()

    sent: dict[tuple[str, int, int], Outgoing] = {}
    failed: list[str] = []

    def send(record: Outgoing) -> None:
        def delivered(err: Any, msg: Message) -> None:
            if err is not None:
                failed.append(f"{record.what}: {err}")
            else:
                sent[(msg.topic(), msg.partition(), msg.offset())] = record

        extra = {} if record.partition is None else {"partition": record.partition}
        harness.producer.produce(harness.settings.topic(record.topic), key=record.key, value=record.value, on_delivery=delivered, **extra)
        harness.producer.poll(0)

    mixed = corpus.bad + corpus.good
    random.Random(SEED).shuffle(mixed)
    for record in mixed + corpus.last_wave:
        send(record)
    harness.flush()
    assert failed == [] and len(sent) == len(mixed) + len(corpus.last_wave)

    everything = corpus.bad + corpus.good + corpus.last_wave
    expected_letters = sum(len(r.reasons) for r in corpus.bad)
    decided = {d for r in everything for d in r.declarations}
    side = Counter(r.topic for r in corpus.good + corpus.last_wave if not r.declarations)

    def processed_side_records() -> bool:
        text = worker.metrics_text()
        return (metric_value(text, "customs_credit_events_applied_total") >= side[topics.CREDIT_EVENTS]
                and metric_value(text, "customs_inspection_results_total") >= side[topics.INSPECTION_RESULTS]
                and metric_value(text, "customs_risk_list_entries") >= side[topics.RISK_LISTS]
                and metric_value(text, "customs_events_in_total", type="scan") >= side[topics.SCANS])

    def mismatches() -> dict[str, Any]:
        """Dead letters that do not match a bad record's expected reasons, bad records without any."""
        got: dict[tuple[str, int, int], list[str]] = defaultdict(list)
        for letter in harness.dead_letters:
            got[(letter["source_topic"], letter["partition"], letter["offset"])].append(letter["reason"])
        bad_at = {at: r for at, r in sent.items() if r.reasons}
        wrong = {f"{sent[at].what if at in sent else '?'} @{at}": (sorted(reasons), sorted(bad_at[at].reasons) if at in bad_at else "good")
                 for at, reasons in got.items() if at not in bad_at or sorted(reasons) != sorted(bad_at[at].reasons)}
        missing = sorted(r.what for at, r in bad_at.items() if at not in got)
        undecided = sorted(decided - set(harness.finals()))[:20]
        return {k: v for k, v in (("wrong", wrong), ("missing", missing), ("undecided", undecided)) if v}

    try:
        harness.read_until(lambda h: len(h.dead_letters) >= expected_letters and decided <= set(h.finals()) and processed_side_records(),
                           90, f"{expected_letters} dead letters, a final instruction for {len(decided)} declarations, "
                               f"{sum(side.values())} side records applied")
    except AssertionError as exc:
        raise AssertionError(f"{mismatches()}\n{exc}") from None
    elapsed = time.monotonic() - started

    # Every dead letter comes from a bad record, with the reasons that record must produce.
    assert mismatches() == {}
    assert len(harness.dead_letters) == expected_letters
    assert all(letter["error"] for letter in harness.dead_letters)

    # Every good declaration: exactly one final instruction; nothing hostile was ever decided.
    finals = harness.finals()
    assert {d: ids for d, ids in finals.items() if len(ids) != 1} == {}
    assert {i["declaration_id"] for i in harness.instructions} <= decided
    assert all(i["final"] and i["stage"] == "declaration" for i in harness.instructions)

    # The worker survived all of it, is ready, and counted the dead letters per topic and reason.
    assert worker.alive(), worker.log_tail()
    text = worker.metrics_text()
    assert metric_value(text, "customs_worker_ready") == 1.0
    want = Counter((harness.settings.topic(r.topic), reason) for r in corpus.bad for reason in r.reasons)
    counted = {k: metric_value(text, "customs_dead_letters_total", topic=k[0], reason=k[1]) for k in want}
    assert counted == {k: float(v) for k, v in want.items()}
    assert "crashed" not in worker.log_tail(10_000).lower()

    by_topic = Counter(r.topic for r in corpus.bad)
    broker_timings.add(broker.kind, f"fuzz: {len(corpus.bad)} hostile records ({len(mixed) + len(corpus.last_wave)} sent)", elapsed)
    print(f"\nfuzz on {broker.kind}: {len(corpus.bad)} hostile records {dict(by_topic)}, {expected_letters} dead letters, "
          f"{len(decided)} declarations decided, {len(sent)} records in {elapsed:.1f}s")
