"""The analyst's figures kept per window: computed once, served as kept, recomputed in the background."""

from __future__ import annotations

import threading
import time
from datetime import date
from typing import Any

from archive.figures import FigureCache, Window, compute, last_days
from policy.config import load_policy
from tests.unit.archive.fakes import NOW

WEEK: Window = (date(2026, 11, 24), date(2026, 11, 30), None)


class Counting:
    def __init__(self) -> None:
        self.calls: list[Window] = []
        self.lock = threading.Lock()

    def __call__(self, window: Window) -> dict[str, Any]:
        with self.lock:
            self.calls.append(window)
            return {"n": len(self.calls)}


def wait_until(done: Any, what: str, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not done():
        assert time.monotonic() < deadline, what
        time.sleep(0.01)  # probe interval; the deadline bounds the wait


def test_kept_figures_are_served_and_stale_ones_recomputed_in_the_background() -> None:
    counting = Counting()
    cache = FigureCache(None, load_policy(), max_age_s=3600, computer=counting)
    first = cache.get(WEEK)
    assert first.doc == {"n": 1} and cache.get(WEEK) is first and counting.calls == [WEEK]
    cache.max_age_s = 0.0  # everything kept is now stale: served as it is, recomputed behind the request
    cache.warm(lambda: [], every_s=3600)
    try:
        assert cache.get(WEEK) is first
        wait_until(lambda: cache.get(WEEK).doc == {"n": 2}, "the stale window recomputed in the background")
    finally:
        cache.stop()


def test_the_warmer_computes_the_named_windows_before_anyone_asks_and_the_cache_is_bounded() -> None:
    counting = Counting()
    cache = FigureCache(None, load_policy(), max_age_s=3600, max_windows=2, computer=counting)
    cache.warm(lambda: [last_days(7, date(2026, 11, 30))], every_s=3600)
    try:
        wait_until(lambda: counting.calls == [WEEK], "the warmer to compute the last week")
        assert cache.get(WEEK).doc == {"n": 1} and counting.calls == [WEEK]
    finally:
        cache.stop()
    for day in (1, 2, 3):
        cache.get((date(2026, 11, day), date(2026, 11, day), None))
    cache.get(WEEK)  # pushed out by the last two: computed again
    assert counting.calls.count(WEEK) == 2


def test_compute_gathers_every_figure_of_the_page(analyst_archive: Any) -> None:
    today = NOW.date()
    doc = compute((today, today, None), analyst_archive, load_policy())
    assert set(doc) == {"report", "risk_lists", "rules", "rates", "models"}
    assert doc["models"]["scored"] == 4 and doc["report"]["instructions"]["inspect"] >= 1


def test_the_page_port_filter_reaches_the_model_comparison(analyst_archive: Any) -> None:
    today = NOW.date()
    doc = compute((today, today, "HAK-AIR"), analyst_archive, load_policy())
    assert (doc["models"]["port"], doc["models"]["scored"]) == ("HAK-AIR", 1)
