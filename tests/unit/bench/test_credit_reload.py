"""The credit_reload section's pure parts: the reload it publishes and the figures it computes."""

from __future__ import annotations

from datetime import UTC, datetime

import orjson

from bench.seedscale.credit import book_figures, events_in, p99_within
from policy.credit import UNKNOWN_ENTERPRISE, fold_credit_events
from portsim.population import Population
from portsim.reload import register_reload
from schemas import CreditEventBatch

AT = datetime(2026, 12, 1, tzinfo=UTC)


def test_the_reload_has_the_entries_asked_for_in_enterprise_order_and_is_deterministic():
    pop = Population(7, 500)
    batches = list(register_reload(pop, 23_000, 500, AT, batch_events=1000))
    assert [len(b["events"]) for b in batches] == [1000] * 23
    events = [e for b in batches for e in CreditEventBatch.model_validate_json(orjson.dumps(b)).events]
    order = [e.enterprise_id for e in events]
    rank = {eid: i for i, eid in enumerate(pop.ids)}
    assert order == sorted(order, key=rank.__getitem__) and len(set(order)) == 500  # each enterprise's entries together
    assert len({e.source_agency for e in events}) == 20
    assert batches == list(register_reload(Population(7, 500), 23_000, 500, AT, batch_events=1000))
    assert events_in([(b"k", orjson.dumps(b)) for b in batches]) == 23_000


def test_a_reload_folds_to_the_register_it_reloads():
    pop = Population(7, 300)
    reloaded: dict[str, list] = {}
    for b in register_reload(pop, 300 * 46, 300, AT):
        for e in CreditEventBatch.model_validate_json(orjson.dumps(b)).events:
            reloaded.setdefault(e.enterprise_id, []).append(e)
    initial: dict[str, list] = {}
    for e in pop.initial_events(AT):
        initial.setdefault(e.enterprise_id, []).append(e)
    for eid, events in reloaded.items():
        a = fold_credit_events(UNKNOWN_ENTERPRISE, events).state
        b = fold_credit_events(UNKNOWN_ENTERPRISE, initial.get(eid, [])).state
        assert (a.effective_class, a.qualifications) == (b.effective_class, b.qualifications), eid


def test_book_figures_weigh_the_whole_record_against_the_decisions_view():
    pop = Population(7, 200)
    records = [(b["batch_id"].encode(), orjson.dumps(b)) for b in register_reload(pop, 200 * 46, 200, AT)]
    out = book_figures(records)
    assert out["enterprises"] == 200 and out["record_bytes"] > 1000  # 20 agencies' entries each
    assert out["parsed_record_bytes"] > 10 * out["effective_view_bytes"] > 0 and out["read_us"] > 0


def test_p99_counts_only_the_declarations_published_in_the_window():
    latencies = [(float(t), float(t), 0.0) for t in range(1, 201)]  # published at t, t ms
    p99, n = p99_within(latencies, 101.0, 200.0)
    assert n == 100 and 198.0 < p99 <= 200.0
    assert p99_within(latencies, 500.0, 600.0) == (None, 0)


def test_cpu_per_event_is_the_extra_cpu_over_the_declarations_own():
    from bench.seedscale.credit import cpu_us_per_event
    quiet = {"cpu_us_per_declaration": {"system": 200.0}}
    load = {"offered_rate": 1000.0, "duration_s": 30.0, "cpu_us_per_declaration": {"system": 350.0}}
    assert cpu_us_per_event(load, quiet, 300_000) == 15.0  # 150 us x 30,000 declarations / 300,000 events


def test_fold_figures_count_the_long_micro_batches_between_two_readings() -> None:
    from bench.seedscale.credit import fold_figures

    before = {"count": 10.0, "sum": 0.5, "0.05": 9.0, "0.1": 10.0, "0.25": 10.0}
    # 20 more batches taking 2.0 s in all: 12 within 50 ms, 5 more within 100 ms, 2 within 250 ms, 1 longer.
    after = {"count": 30.0, "sum": 2.5, "0.05": 21.0, "0.1": 27.0, "0.25": 29.0}
    assert fold_figures(before, after) == {"count": 20, "mean_ms": 100.0, "over_50ms": 8, "over_100ms": 3, "over_250ms": 1}
    assert fold_figures(before, before)["mean_ms"] is None


def test_fold_batches_reads_the_fold_agent_s_histogram_summed_over_the_workers() -> None:
    from types import SimpleNamespace

    from prometheus_client import CollectorRegistry, Histogram, generate_latest

    from bench.seedscale.credit import LONG_BATCH_S, fold_batches

    def worker(fold: list[float], other: list[float]) -> SimpleNamespace:
        registry = CollectorRegistry()
        h = Histogram("customs_batch_seconds", "t", ["agent", "phase"], registry=registry,
                      buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5))
        for v in fold:
            h.labels("fold_credit_events", "decide").observe(v)
        for v in other:
            h.labels("decide_declarations", "decide").observe(v)
            h.labels("fold_credit_events", "deliver").observe(v)
        text = generate_latest(registry).decode()
        return SimpleNamespace(metrics_text=lambda *names: text)

    workers = SimpleNamespace(procs=[worker([0.01, 0.07], [0.3]), worker([0.2, 0.3], [0.9, 0.9])])
    got = fold_batches(workers)  # type: ignore[arg-type]
    assert got["count"] == 4.0 and abs(got["sum"] - 0.58) < 1e-9
    assert [got[le] for le in LONG_BATCH_S] == [1.0, 2.0, 3.0]  # at or under 50, 100, 250 ms
