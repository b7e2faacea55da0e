"""Section ``risk_lists``: decision throughput with the office's 147 reference lists against none.

One worker at saturation (``bench.pipeline.throughput``, as the main bench measures it), first with
no risk lists, then, on a fresh broker with the same declarations, with the reference lists
(``portsim.risklists``, about 300,000 entries) published to the risk-lists topic and indexed (the
worker's ``customs_risk_list_entries`` gauge shows them all, and the worker has settled: it also
reads its own writes back from the table's changelog, which outlasts the gauge) before the clock
starts. Beside it, in
this process: the index's memory (tracemalloc), a full sync's seconds (what a worker spends once
after a start), a tick's cost with the full index (a few changed entries and a prune) and the cost
of matching one declaration with and without the lists; and what the analyst's console spends to
hold the same entries and search them (``console.riskentries``).
"""

from __future__ import annotations

import argparse
import gc
import os
import time
import tracemalloc
from datetime import UTC, datetime, timedelta
from typing import Any

from bench import pipeline
from bench.common import BenchError, Dataset, log, producer
from bench.procs import CPU_ALSO, rss_mb
from bench.seedscale import Context
from clients import topics
from clients.topics import create_topics
from common.settings import Settings
from console.riskentries import RiskEntries
from devkit.brokers import make_broker
from policy.risklists import RiskListIndex
from portsim.risklists import REFERENCE_ENTRIES, REFERENCE_LISTS, ReferenceLists, reference_lists
from schemas import Declaration, RiskListEntry
from schemas.codec import parse

FULL = {"entries": REFERENCE_ENTRIES, "count": 60_000, "enterprises": 70_000}
QUICK = {"entries": 20_000, "count": 4_000, "enterprises": 3_000}
TICK_CHANGES = 10  # entries changed between two ticks in the tick-cost figure
# What an analyst types on the risk-lists page: a list, an HS prefix, a country, a word of a reason, nothing.
CONSOLE_SEARCHES = ("", "8517", "kp", "smuggling", "no-such-text")


def add_arguments(group: argparse._ArgumentGroup) -> None:
    group.add_argument("--risk-lists-lists", type=int, default=REFERENCE_LISTS, help=f"lists (default {REFERENCE_LISTS})")
    group.add_argument("--risk-lists-entries", type=int, help=f"entries in all (default {FULL['entries']:,}; --quick {QUICK['entries']:,})")
    group.add_argument("--risk-lists-count", type=int,
                       help=f"declarations per throughput run (default {FULL['count']:,}; --quick {QUICK['count']:,})")
    group.add_argument("--risk-lists-enterprises", type=int,
                       help=f"simulated enterprises (default {FULL['enterprises']:,}; --quick {QUICK['enterprises']:,})")


def _option(ctx: Context, name: str) -> int:
    value = getattr(ctx.args, f"risk_lists_{name}")
    return int(value if value is not None else (QUICK if ctx.quick else FULL)[name])


def run(ctx: Context) -> dict[str, Any]:
    entries, count, enterprises = _option(ctx, "entries"), _option(ctx, "count"), _option(ctx, "enterprises")
    data = Dataset.generate(ctx.args.seed, enterprises, count)
    now = datetime.now(UTC)
    lists = reference_lists(data.office.population, now, seed=ctx.args.seed, lists=ctx.args.risk_lists_lists, entries=entries)
    held = lists.held_at(now, timedelta(seconds=Settings().risk_list_prune_after_s))
    log(f"risk_lists: {len(lists.plans)} lists, {len(lists):,} entries ({held:,} held after pruning)")
    result: dict[str, Any] = {"lists": len(lists.plans), "entries": len(lists), "entries_held": held,
                              "kinds": sorted({p.kind.value for p in lists.plans}), **index_figures(lists, data, now),
                              "console": console_figures(lists)}
    result["no_lists"] = _measure(ctx, data, None, count, "none")
    result["with_lists"] = _measure(ctx, data, lists, count, "ref", held)
    result.update(figures(result["no_lists"], result["with_lists"]))
    log(f"risk_lists: throughput {result['throughput_no_lists']:,.0f}/s without, {result['throughput_with_lists']:,.0f}/s with "
        f"the lists: ratio {result['throughput_ratio']} (CPU per declaration: {result.get('cpu_ratio')})")
    return result


def figures(without: dict[str, Any], with_lists: dict[str, Any]) -> dict[str, Any]:
    """The section's headline figures from its two throughput runs. Beside the throughput ratio, the
    ratio of the worker's CPU time per declaration (without / with): on a machine shared with other
    work the wall-clock throughput of two runs minutes apart follows the load, CPU time far less."""
    a, b = without["throughput"], with_lists["throughput"]
    if a <= 0:
        raise BenchError("the run without lists decided nothing")
    out = {"throughput_no_lists": a, "throughput_with_lists": b, "throughput_ratio": round(b / a, 3)}
    cpu_a = (without.get("cpu_us_per_declaration") or {}).get("system")
    cpu_b = (with_lists.get("cpu_us_per_declaration") or {}).get("system")
    if cpu_a and cpu_b:
        out.update({"cpu_us_per_declaration_no_lists": cpu_a, "cpu_us_per_declaration_with_lists": cpu_b,
                    "cpu_ratio": round(cpu_a / cpu_b, 3)})
    return out


def index_figures(lists: ReferenceLists, data: Dataset, now: datetime) -> dict[str, Any]:
    """What the index costs in this process: memory, a full sync, a tick, a match."""
    table = dict(lists.key_values())
    gc.collect()
    tracemalloc.start()
    try:
        traced = RiskListIndex()
        traced.sync(table)
        memory, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    del traced
    index = RiskListIndex()
    started = time.perf_counter()
    index.sync(table)
    sync_s = time.perf_counter() - started
    keys = list(table)
    ticks = 100
    started = time.perf_counter()
    for i in range(ticks):  # a tick re-indexes the entries changed since the last one, then prunes
        changed = keys[i * TICK_CHANGES:(i + 1) * TICK_CHANGES]
        for k in changed:
            table[k] = table[k].replace(b'"reason":"', b'"reason":"(revised) ', 1)
        index.refresh(table, changed)
        index.prune(now - timedelta(days=7))
    tick_ms = (time.perf_counter() - started) / ticks * 1000
    declarations = [Declaration.model_validate(r, strict=False) for r in data.records[:20_000]]
    match_us = {}
    for name, idx in (("no_lists", RiskListIndex()), ("with_lists", index)):
        started = time.perf_counter()
        hit = sum(1 for d in declarations if idx.matches(d, at=now))
        match_us[name] = round((time.perf_counter() - started) / len(declarations) * 1e6, 2)
        if name == "with_lists":
            match_us["declarations_hit_share"] = round(hit / len(declarations), 3)
    log(f"risk_lists: index {memory / 1e6:.0f} MB, full sync {sync_s:.1f}s, tick {tick_ms:.2f} ms, match {match_us}")
    return {"index_memory_mb": round(memory / 1e6, 1), "index_bytes_per_entry": round(memory / max(len(index), 1)),
            "sync_seconds": round(sync_s, 2), "tick_ms": round(tick_ms, 3), "tick_changed_entries": TICK_CHANGES,
            "match_us_per_declaration": match_us}


def console_figures(lists: ReferenceLists) -> dict[str, Any]:
    """What the console spends on the same entries: memory held, reading them (validated as its feed
    does), the analyst's page's search (the first 200 matches and their count) and its lists table."""
    records = list(lists.key_values())
    gc.collect()
    started = time.perf_counter()
    tracemalloc.start()
    try:
        held = RiskEntries(limit=len(records) + 1)
        for key, value in records:
            held.put(key.decode(), parse(RiskListEntry, value))
        memory, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    load_s = time.perf_counter() - started  # with tracemalloc on: an upper bound
    search_ms = {}
    for text in CONSOLE_SEARCHES:
        held.search(text)  # the first search of a list sorts it; the page keeps the order until the list changes
        started = time.perf_counter()
        _, found = held.search(text)
        search_ms[text or "(all)"] = {"ms": round((time.perf_counter() - started) * 1000, 2), "matches": found}
    first_list = held.lists()[0].list_id
    started = time.perf_counter()
    summaries = held.lists()
    held.search("", first_list)
    lists_ms = (time.perf_counter() - started) * 1000
    log(f"risk_lists: console holds {len(held):,} entries in {memory / 1e6:.0f} MB, search {search_ms}")
    return {"entries_held": len(held), "memory_mb": round(memory / 1e6, 1), "bytes_per_entry": round(memory / max(len(held), 1)),
            "load_seconds": round(load_s, 2), "search_ms": search_ms, "lists": len(summaries), "lists_page_ms": round(lists_ms, 2)}


def _measure(ctx: Context, data: Dataset, lists: ReferenceLists | None, count: int, name: str, held: int = 0) -> dict[str, Any]:
    """One worker's throughput on a fresh broker, with ``lists`` published and indexed first."""
    data.begin_run()
    timeout = ctx.args.run_timeout
    with make_broker(ctx.args.broker) as broker:
        CPU_ALSO.update({"broker": [broker.pid], "bench": [os.getpid()]})
        settings = Settings(kafka_bootstrap_servers=broker.bootstrap_servers, topic_prefix=f"seed-lists-{name}.",
                            app_id=f"seed-lists-{name}", data_dir=ctx.workdir / name)
        create_topics(settings)
        with pipeline.running(settings, data, 1, ctx.workdir, {}, timeout) as (workers, watcher):
            extra: dict[str, Any] = {}
            if lists is not None:
                extra = _publish(settings, lists, held, workers, timeout)
            extra["worker_rss_mb"] = rss_mb(workers.procs[0].proc.pid)
            result = pipeline.throughput(settings, workers, watcher, data, count, True, timeout, None)
            return {**result, **extra}


def _publish(settings: Settings, lists: ReferenceLists, held: int, workers: pipeline.Workers, timeout_s: float) -> dict[str, Any]:
    started = time.monotonic()
    p = producer(settings)
    topic = settings.topic(topics.RISK_LISTS)
    for key, value in lists.key_values():
        while True:
            try:
                p.produce(topic, value, key)
                break
            except BufferError:
                p.poll(0.05)
    if p.flush(60.0):
        raise BenchError("the risk lists could not be published")
    published = time.monotonic() - started
    pipeline.wait_for(lambda: workers.metric("customs_risk_list_entries") >= held, timeout_s, workers,
                      f"the worker to index {held:,} risk-list entries")
    indexed = time.monotonic() - started
    # Settled: under a tenth of a core (timers, metrics, fetches) for a second.
    waited = workers.procs[0].wait_settled(busy_below=0.1, timeout_s=timeout_s, interval_s=0.5)
    if waited >= timeout_s:
        raise BenchError(f"the worker stayed busy for {timeout_s:.0f}s after indexing the risk lists")
    settled = time.monotonic() - started
    log(f"risk_lists: {len(lists):,} entries published in {published:.1f}s, indexed {indexed:.1f}s after the first, "
        f"the worker settled after {settled:.1f}s")
    return {"lists_published_s": round(published, 2), "lists_indexed_s": round(indexed, 2), "lists_settled_s": round(settled, 2),
            "indexed_entries": workers.metric("customs_risk_list_entries")}

