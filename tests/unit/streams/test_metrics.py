"""The bulk histogram update must be indistinguishable from per-value ``observe``."""

from __future__ import annotations

import math

from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, Histogram

from streams.metrics import LATENCY_BUCKETS, observe_many

values = st.lists(st.floats(min_value=-10, max_value=1000, allow_nan=False) | st.sampled_from([0.001, 0.005, 1.0, 300.0]),
                  max_size=200)


def _pair() -> tuple[CollectorRegistry, Histogram, CollectorRegistry, Histogram]:
    ra, rb = CollectorRegistry(), CollectorRegistry()
    a = Histogram("h_seconds", "h", ["stage"], buckets=LATENCY_BUCKETS, registry=ra)
    b = Histogram("h_seconds", "h", ["stage"], buckets=LATENCY_BUCKETS, registry=rb)
    return ra, a, rb, b


def _samples(registry: CollectorRegistry) -> dict[tuple[str, tuple], float]:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for m in registry.collect() for s in m.samples if not s.name.endswith("_created")}


@settings(max_examples=200, deadline=None)
@given(values)
def test_observe_many_equals_observe_for_each_value(xs: list[float]) -> None:
    ra, a, rb, b = _pair()
    one, many = a.labels("declaration"), b.labels("declaration")
    for x in xs:
        one.observe(x)
    observe_many(many, xs)
    sa, sb = _samples(ra), _samples(rb)
    assert sa.keys() == sb.keys()
    for k in sa:
        assert math.isclose(sa[k], sb[k], rel_tol=1e-9, abs_tol=1e-9), (k, sa[k], sb[k])


def test_observe_many_on_boundaries_counts_like_prometheus() -> None:
    ra, a, rb, b = _pair()
    xs = [*LATENCY_BUCKETS, 0.0, 1e9]
    for x in xs:
        a.labels("scan").observe(x)
    observe_many(b.labels("scan"), xs)
    assert _samples(ra) == _samples(rb)
