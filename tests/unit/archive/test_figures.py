"""The analyst's figures kept per window: computed once, served as kept, recomputed in the background."""

from __future__ import annotations

import threading
import time
from datetime import date
from typing import Any

from archive.figures import Computing, Failed, FigureCache, Figures, Refused, Window, compute, last_days
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


def figures_of(cache: FigureCache, window: Window, timeout_s: float = 10.0) -> Figures:
    """The window's figures, waiting (on a deadline) for the background computer if none are kept."""
    answer = cache.ask(window)
    deadline = time.monotonic() + timeout_s
    while not isinstance(answer, Figures):
        assert not isinstance(answer, Failed | Refused), answer
        assert time.monotonic() < deadline, f"the figures of {window}"
        time.sleep(0.01)  # probe interval; the deadline bounds the wait
        answer = cache.ask(window)
    return answer


class Gated(Counting):
    """A computer that waits for the test to let each computation finish (or fail)."""

    def __init__(self) -> None:
        super().__init__()
        self.go = threading.Event()
        self.error: str | None = None

    def __call__(self, window: Window) -> dict[str, Any]:
        assert self.go.wait(10), "the test never let the computation finish"
        if self.error:
            raise OSError(self.error)
        return super().__call__(window)


def test_a_window_nothing_is_kept_of_is_queued_and_the_request_does_not_wait() -> None:
    gated = Gated()
    cache = FigureCache(None, load_policy(), max_age_s=3600, computer=gated)
    try:
        first = cache.ask(WEEK)
        assert isinstance(first, Computing) and first.estimate_s is None and gated.calls == []
        assert isinstance(cache.ask(WEEK), Computing) and cache.waiting() == 1  # asked twice, queued once
        gated.go.set()
        wait_until(lambda: isinstance(cache.ask(WEEK), Figures), "the background computer to keep the week")
        kept = cache.ask(WEEK)
        assert isinstance(kept, Figures) and kept.doc == {"n": 1} and gated.calls == [WEEK]
        month = (date(2026, 11, 1), date(2026, 11, 30), None)
        gated.go.clear()
        pending = cache.ask(month)  # the week's computation gives the estimate, per day
        assert isinstance(pending, Computing) and pending.estimate_s is not None and pending.month_estimate_s == pending.estimate_s
    finally:
        gated.go.set()
        cache.stop()


def test_kept_figures_are_served_and_stale_ones_recomputed_in_the_background() -> None:
    counting = Counting()
    cache = FigureCache(None, load_policy(), max_age_s=3600, computer=counting)
    try:
        first = figures_of(cache, WEEK)
        assert first.doc == {"n": 1} and cache.ask(WEEK) is first and counting.calls == [WEEK]
        cache.max_age_s = 0.0  # everything kept is now stale: served as it is, recomputed behind the request
        assert cache.ask(WEEK) is first
        wait_until(lambda: figures_of(cache, WEEK).doc == {"n": 2}, "the stale window recomputed in the background")
    finally:
        cache.stop()


def test_a_failed_computation_is_an_error_until_asked_again() -> None:
    gated = Gated()
    gated.error = "archive unreachable"
    gated.go.set()
    cache = FigureCache(None, load_policy(), computer=gated)
    try:
        cache.ask(WEEK)
        wait_until(lambda: isinstance(cache.ask(WEEK), Failed), "the failure to be kept")
        failed = cache.ask(WEEK)
        assert isinstance(failed, Failed) and failed.error == "OSError: archive unreachable"
        assert isinstance(cache.ask(WEEK), Failed) and cache.waiting() == 0  # not queued again by itself
        gated.error = None
        assert isinstance(cache.ask(WEEK, retry=True), Computing)
        wait_until(lambda: isinstance(cache.ask(WEEK), Figures), "the retried window computed")
    finally:
        cache.stop()


def test_the_queue_of_windows_to_compute_is_bounded() -> None:
    gated = Gated()
    cache = FigureCache(None, load_policy(), computer=gated, max_waiting=2)
    days = [(date(2026, 11, d), date(2026, 11, d), None) for d in (1, 2, 3)]
    try:
        assert isinstance(cache.ask(days[0]), Computing) and isinstance(cache.ask(days[1]), Computing)
        refused = cache.ask(days[2])
        assert isinstance(refused, Refused) and refused.waiting == 2
        assert isinstance(cache.ask(days[0]), Computing)  # a queued window is still answered
        gated.go.set()
        wait_until(lambda: cache.waiting() == 0, "the queue to drain")
        assert isinstance(cache.ask(days[2]), Computing)  # room again
        wait_until(lambda: isinstance(cache.ask(days[2]), Figures), "the third window computed")
        assert sorted(gated.calls) == days
    finally:
        gated.go.set()
        cache.stop()


def test_the_warmer_computes_the_named_windows_before_anyone_asks_and_the_cache_is_bounded() -> None:
    counting = Counting()
    cache = FigureCache(None, load_policy(), max_age_s=3600, max_windows=2, computer=counting)
    cache.warm(lambda: [last_days(7, date(2026, 11, 30))], every_s=3600)
    try:
        wait_until(lambda: counting.calls == [WEEK], "the warmer to compute the last week")
        assert figures_of(cache, WEEK).doc == {"n": 1} and counting.calls == [WEEK]
        for day in (1, 2, 3):
            figures_of(cache, (date(2026, 11, day), date(2026, 11, day), None))
        figures_of(cache, WEEK)  # pushed out by the last two: computed again
        assert counting.calls.count(WEEK) == 2
    finally:
        cache.stop()


def test_compute_gathers_every_figure_of_the_page(analyst_archive: Any) -> None:
    today = NOW.date()
    doc = compute((today, today, None), analyst_archive, load_policy())
    assert set(doc) == {"report", "risk_lists", "rules", "rates", "models"}
    assert doc["models"]["scored"] == 4 and doc["report"]["instructions"]["inspect"] >= 1


def test_the_page_port_filter_reaches_the_model_comparison(analyst_archive: Any) -> None:
    today = NOW.date()
    doc = compute((today, today, "HAK-AIR"), analyst_archive, load_policy())
    assert (doc["models"]["port"], doc["models"]["scored"]) == ("HAK-AIR", 1)
