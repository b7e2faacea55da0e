"""``credit_reload``: a bulk reload of the credit register folded by one worker while declarations
are offered at a steady rate, beside a small reload in the same run.

The reload (``portsim.reload.register_reload``: entries spread evenly over the enterprises, in
enterprise order, 1,000 to a batch record) is generated before any clock starts, then published
from a thread of its own while ``bench.common.offered_load`` offers declarations. Folded = the
worker's ``customs_credit_events_applied_total`` has grown by the reload's events (probed over its
metrics endpoint). ``seconds``: first reload record handed to the producer -> last event folded.
``p99_ms_during``: the p99 of the declarations published while the reload was being folded;
``p99_ms_no_reload`` the same load's p99 without a reload, just before, in the same run.

``book``: in the bench's own process, the reload folded as the worker folds it, then what reading
the register costs: a stored record's bytes, the record parsed whole (what the fold reads), the
effective view decisions read (``CreditBook.of``) and one such read, independent of the broker and
of the machine's other load.
"""

from __future__ import annotations

import argparse
import gc
import threading
import time
import tracemalloc
from datetime import UTC, datetime
from typing import Any

import numpy as np
import orjson

from bench import pipeline
from bench.common import BenchError, Dataset, Watcher, log, offered_load
from clients.topics import CREDIT_EVENT_BATCHES, create_topics
from common.settings import Settings
from decision.batch import CreditBook
from devkit.brokers import make_broker
from devkit.launcher import metric_value
from policy.credit import EffectiveCredit, EnterpriseCredit, fold_credit_events
from portsim.reload import register_reload
from schemas.creditbatch import parse_credit_event_batch

APPLIED = "customs_credit_events_applied_total"
BATCH_SECONDS = "customs_batch_seconds"
FOLD_AGENT = "fold_credit_events"
LONG_BATCH_S = ("0.05", "0.1", "0.25")  # bucket bounds of customs_batch_seconds: fold micro-batches longer than these


def add_arguments(group: argparse._ArgumentGroup) -> None:
    group.add_argument("--credit-entries", type=int, default=3_210_000, help="reload entries (default 3,210,000)")
    group.add_argument("--credit-enterprises", type=int, default=70_000, help="enterprises they cover (default 70,000)")
    group.add_argument("--credit-small-entries", type=int, default=30_000, help="the small reload beside it (default 30,000)")
    group.add_argument("--credit-rate", type=float, default=1000.0, help="declarations offered per second meanwhile (default 1,000)")
    group.add_argument("--credit-load-s", type=float, default=120.0, help="seconds the declarations are offered per reload")


def reload_records(data: Dataset, entries: int, enterprises: int) -> list[tuple[bytes, bytes]]:
    """The reload's batch records (key, value), generated before any clock starts."""
    pop = data.office.population
    return [(b["batch_id"].encode(), orjson.dumps(b)) for b in register_reload(pop, entries, enterprises, datetime.now(UTC))]


def events_in(records: list[tuple[bytes, bytes]]) -> int:
    return sum(len(orjson.loads(v)["events"]) for _, v in records)


def p99_within(latencies: list[tuple[float, float, float]], start: float, end: float) -> tuple[float | None, int]:
    """p99 (ms) and count of the declarations published in [start, end] (wall clock)."""
    lat = [ms for published, ms, _ in latencies if start <= published <= end]
    return (round(float(np.percentile(lat, 99)), 1) if lat else None), len(lat)


def book_figures(records: list[tuple[bytes, bytes]]) -> dict[str, Any]:
    """The reload folded into a table in this process, then what reading it costs: each stored
    record's bytes, the record parsed whole (what the fold reads, and what a cache of parsed records
    held per enterprise), the effective view decisions read, and one ``CreditBook.of`` read."""
    table: dict[bytes, bytes] = {}
    book = CreditBook(lambda: table)
    for _, value in records:
        by_enterprise: dict[str, list[Any]] = {}
        for event, _raw, _error in parse_credit_event_batch(value)[1]:
            if event is not None:
                by_enterprise.setdefault(event.enterprise_id, []).append(event)
        for enterprise, events in by_enterprise.items():
            table[enterprise.encode()] = fold_credit_events(book.record_of(enterprise), events).state.to_bytes()
    keys = list(table)

    def held_bytes(parse: Any) -> float:
        gc.collect()
        tracemalloc.start()
        try:
            parsed = [parse(table[k]) for k in keys]
            held, _ = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        del parsed
        return held / max(len(keys), 1)

    record, view = held_bytes(EnterpriseCredit.from_bytes), held_bytes(EffectiveCredit.from_bytes)
    names = [k.decode() for k in keys]
    started = time.perf_counter()
    for name in names:
        book.of(name)
    read_us = (time.perf_counter() - started) / max(len(names), 1) * 1e6
    return {"enterprises": len(keys), "record_bytes": round(sum(map(len, table.values())) / max(len(keys), 1)),
            "parsed_record_bytes": round(record), "effective_view_bytes": round(view), "read_us": round(read_us, 2)}


def cpu_us_per_event(load: dict[str, Any], quiet: dict[str, Any], events: int) -> float:
    """The worker's CPU per reload event: its CPU over the load with the reload, less what the
    same declarations cost it without one (``offered_load``'s per-declaration CPU figures)."""
    declarations = load["offered_rate"] * load["duration_s"]
    extra = (load["cpu_us_per_declaration"]["system"] - quiet["cpu_us_per_declaration"]["system"]) * declarations
    return round(extra / events, 1)


def _reload(settings: Settings, workers: pipeline.Workers, watcher: Watcher, data: Dataset, records: list[tuple[bytes, bytes]],
            rate: float, load_s: float, timeout_s: float) -> dict[str, Any]:
    from confluent_kafka import Producer

    events = events_in(records)
    base = workers.metric(APPLIED)
    fold_before = fold_batches(workers)
    marks: dict[str, float] = {}
    topic = settings.topic(CREDIT_EVENT_BATCHES)

    def publish() -> None:
        producer = Producer({**settings.confluent_config(), "linger.ms": 5, "compression.type": "lz4"})
        # The load generates its declarations first: the reload starts with the first one offered.
        deadline = time.monotonic() + timeout_s
        while not watcher.pending and time.monotonic() < deadline:
            time.sleep(0.005)  # polling a dict the load fills; bounded by the deadline
        marks["first"] = time.time()
        for key, value in records:
            while True:
                try:
                    producer.produce(topic, key=key, value=value)
                    break
                except BufferError:
                    producer.poll(0.05)
            producer.poll(0)
        producer.flush(timeout_s)
        marks["published"] = time.time()

    def folded() -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and workers.dead() is None:
            if workers.metric(APPLIED) - base >= events:
                marks["folded"] = time.time()
                return
            time.sleep(0.1)  # probe interval; bounded by the deadline

    threads = [threading.Thread(target=publish, daemon=True), threading.Thread(target=folded, daemon=True)]
    load_started = time.time()
    threads[0].start()
    threads[1].start()
    load = offered_load(f"credit reload of {events:,}", settings, watcher, data, rate, load_s, 0.0, timeout_s, 5.0,
                        [w.proc.pid for w in workers.procs], workers.dead)
    for t in threads:
        t.join(timeout_s)
    if "folded" not in marks:
        raise BenchError(f"the reload of {events:,} events was not folded within {timeout_s:.0f}s "
                         f"({workers.metric(APPLIED) - base:,.0f} applied)")
    seconds = marks["folded"] - marks["first"]
    fold_after = fold_batches(workers)
    p99, measured = p99_within(watcher.latencies, marks["first"], marks["folded"])
    result = {"events": events, "seconds": round(seconds, 1), "events_per_s": round(events / seconds),
              "us_per_event": round(seconds / events * 1e6, 1), "p99_ms_during": p99, "declarations_during": measured,
              "load_outlasted_reload": marks["folded"] <= load_started + load_s, "load_p99_ms": load["p99"],
              "worker_cpu": {k: v for k, v in load.items() if k.startswith("cpu")}, "load": {**load, "duration_s": load_s},
              "fold_batches": fold_figures(fold_before, fold_after)}
    log(f"credit reload: {events:,} events folded in {seconds:.1f}s; declarations' p99 meanwhile {p99} ms ({measured}); "
        f"fold micro-batches {result['fold_batches']}")
    return result


def fold_batches(workers: pipeline.Workers) -> dict[str, float]:
    """The fold agent's micro-batch counters (handler time, ``customs_batch_seconds`` phase decide):
    count, sum and the counts at or under each of ``LONG_BATCH_S``, from one scrape per worker."""
    labels = {"agent": FOLD_AGENT, "phase": "decide"}
    samples = {k: f"{BATCH_SECONDS}_{k}" for k in ("count", "sum", "bucket")}
    texts = [w.metrics_text(*samples.values()) for w in workers.procs]

    def total(sample: str, **more: str) -> float:
        return sum(metric_value(text, samples[sample], **labels, **more) for text in texts)

    return {"count": total("count"), "sum": total("sum"), **{le: total("bucket", le=le) for le in LONG_BATCH_S}}


def fold_figures(before: dict[str, float], after: dict[str, float]) -> dict[str, Any]:
    """The fold's micro-batches between two ``fold_batches`` readings: how many, their mean handler
    time, and how many held the event loop longer than each of ``LONG_BATCH_S`` seconds (a
    declaration that arrives then waits at least that long)."""
    count = after["count"] - before["count"]
    out: dict[str, Any] = {"count": int(count), "mean_ms": round((after["sum"] - before["sum"]) / count * 1000, 1) if count else None}
    for le in LONG_BATCH_S:
        out[f"over_{float(le) * 1000:g}ms"] = int(count - (after[le] - before[le]))
    return out


def run(ctx: Any) -> dict[str, Any]:
    args = ctx.args
    quick = ctx.quick
    enterprises = 7_000 if quick else args.credit_enterprises
    entries = 321_000 if quick else args.credit_entries
    load_s = 30.0 if quick else args.credit_load_s
    data = Dataset.generate(args.seed, enterprises, 10)
    small = reload_records(data, args.credit_small_entries, max(1, args.credit_small_entries * enterprises // entries))
    large = reload_records(data, entries, enterprises)
    log(f"credit_reload: {events_in(large):,} events for {enterprises:,} enterprises in {len(large):,} records; "
        f"small: {events_in(small):,}")
    book = book_figures(large)
    log(f"credit_reload: a stored record {book['record_bytes']:,} bytes, parsed whole {book['parsed_record_bytes']:,} bytes, "
        f"the decisions' view {book['effective_view_bytes']:,} bytes; a read {book['read_us']} µs")
    with make_broker(args.broker) as broker:
        settings = Settings(kafka_bootstrap_servers=broker.bootstrap_servers, topic_prefix="seed-credit.", app_id="seed-credit",
                            data_dir=ctx.workdir / "data")
        create_topics(settings)
        with pipeline.running(settings, data, 1, ctx.workdir, {}, args.run_timeout) as (workers, watcher):
            # The first seconds after a start (caches, first models, the first fetches) are not
            # counted: the baseline is the steady state the reloads are compared with.
            quiet = offered_load("no reload", settings, watcher, data, args.credit_rate, 15.0 if quick else 25.0, 5.0,
                                 args.run_timeout, 5.0, [w.proc.pid for w in workers.procs], workers.dead)
            small_result = _reload(settings, workers, watcher, data, small, args.credit_rate, min(load_s, 30.0), args.run_timeout)
            out = {"enterprises": enterprises, "p99_ms_no_reload": quiet["p99"], "small": small_result, "book": book}
            out.update(_reload(settings, workers, watcher, data, large, args.credit_rate, load_s, args.run_timeout))
            for figures in (small_result, out):
                load = figures.pop("load")
                figures["worker_cpu_us_per_event"] = cpu_us_per_event(load, quiet, figures["events"])
            out["table_writes"] = workers.metric("customs_credit_table_writes_total")
            return out
