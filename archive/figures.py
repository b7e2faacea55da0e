"""The analyst's figures for a window, computed in the background and kept, so that a page shows
them at once.

Over a month of decisions (ten million instructions) the figures take seconds to compute
(docs/benchmark.md, "Console"): far more than a page may take. :class:`FigureCache` keeps the
figures of each (day_from, day_to, port) it was asked for, computed by one background thread. A
page asks and gets at once what is kept, with the time it was computed (figures older than
``max_age_s`` are shown all the same and recomputed behind them); a window of which nothing is
kept is queued and the page says it is being computed, and polls. :meth:`FigureCache.warm`
recomputes the windows an analyst opens every day (the last week, all ports) on a timer, so that
not even the first request for them finds nothing.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from archive import analytics
from archive.location import LocationLike
from archive.queries import report
from policy.config import Policy

log = logging.getLogger(__name__)

Window = tuple[date, date, str | None]


@dataclass(frozen=True)
class Figures:
    window: Window
    doc: dict[str, Any]  # report, risk_lists, rules, rates, models
    computed_at: float  # time.time()
    seconds: float  # how long the computation took


def compute(window: Window, archive_dir: LocationLike | None, policy: Policy) -> dict[str, Any]:
    """Every figure of the analyst's page for one window."""
    day_from, day_to, port = window
    return {
        "report": report(day_from, day_to, port, archive_dir=archive_dir),
        "risk_lists": analytics.risk_list_performance(day_from, day_to, port, archive_dir=archive_dir),
        "rules": analytics.rule_performance(day_from, day_to, port, archive_dir=archive_dir),
        "rates": analytics.selection_rates(day_from, day_to, port, archive_dir=archive_dir, policy=policy),
        "models": analytics.model_comparison(day_from, day_to, port, archive_dir=archive_dir),
    }


def last_days(days: int = 7, today: date | None = None) -> Window:
    """The window of the last ``days`` UTC days, today included, all ports."""
    end = today or datetime.now(UTC).date()
    return end - timedelta(days=days - 1), end, None


@dataclass(frozen=True)
class Computing:
    """The window is queued or being computed; ``estimate_s`` is how long a month took last time (None: not yet known)."""

    window: Window
    since: float  # time.time() when it was first asked for
    estimate_s: float | None
    month_estimate_s: float | None


@dataclass(frozen=True)
class Failed:
    """The last computation of the window raised: the page shows ``error``, not a spinner forever."""

    window: Window
    error: str
    failed_at: float


@dataclass(frozen=True)
class Refused:
    """Too many windows are waiting for their figures already: this one is not queued."""

    window: Window
    waiting: int


Answer = Figures | Computing | Failed | Refused

ERROR_MAX = 300  # characters of an error shown on the page


def _days(window: Window) -> int:
    return (window[1] - window[0]).days + 1


class FigureCache:
    """The figures of each window asked for, computed by one background thread.

    A page never waits for a computation: :meth:`ask` answers with the kept figures (stale ones
    queued for a recomputation), or queues the window and answers :class:`Computing` (the page
    polls), or :class:`Failed` with the computation's error, or :class:`Refused` when
    ``max_waiting`` windows are waiting already (a careless or hostile user cannot queue a year of
    month windows, each of them seconds of the archive's time)."""

    def __init__(self, archive_dir: LocationLike | None, policy: Policy, max_age_s: float = 300.0, max_windows: int = 64,
                 computer: Callable[[Window], dict[str, Any]] | None = None, max_waiting: int = 4) -> None:
        self._compute = computer or (lambda window: compute(window, archive_dir, policy))
        self.max_age_s = max_age_s
        self.max_windows = max_windows
        self.max_waiting = max_waiting
        self._kept: OrderedDict[Window, Figures] = OrderedDict()
        self._failed: OrderedDict[Window, Failed] = OrderedDict()
        self._lock = threading.Lock()
        self._busy: Window | None = None  # being computed now
        self._asked: OrderedDict[Window, float] = OrderedDict()  # windows nothing is kept of, first asked first, -> when asked
        self._stale: list[Window] = []  # kept windows to recompute, after the asked ones
        self._warmed: Callable[[], list[Window]] = list
        self._every_s = 0.0
        self._seconds_per_day: float | None = None  # of the last computation: the estimate shown while computing
        self._wake = threading.Condition(self._lock)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def ask(self, window: Window, retry: bool = False) -> Answer:
        """What a page shows for ``window`` now; never waits for a computation. ``retry`` queues a failed window again."""
        with self._lock:
            kept = self._kept.get(window)
            if kept is not None:
                self._kept.move_to_end(window)
                if time.time() - kept.computed_at > self.max_age_s and window != self._busy and window not in self._stale:
                    self._stale.append(window)
                    self._wake.notify_all()
                return kept
            failed = self._failed.get(window)
            if failed is not None:
                if not retry:
                    return failed
                del self._failed[window]
            if window not in self._asked and window != self._busy:
                if self.waiting() >= self.max_waiting:
                    return Refused(window, self.waiting())
                self._asked[window] = time.time()
                self._wake.notify_all()
            self._start()
            rate = self._seconds_per_day
            return Computing(window, self._asked.get(window, time.time()),
                             None if rate is None else round(rate * _days(window), 1), None if rate is None else round(rate * 30, 1))

    def waiting(self) -> int:
        """Windows asked for and not computed yet (the one being computed included)."""
        return len(self._asked) + (1 if self._busy is not None and self._busy not in self._kept else 0)

    def warm(self, windows: Callable[[], list[Window]], every_s: float) -> None:
        """Recompute the windows ``windows()`` names every ``every_s`` seconds (called each time: "the
        last week" moves at midnight), so that not even their first request waits."""
        with self._lock:
            self._warmed, self._every_s = windows, every_s
            self._start()

    def _start(self) -> None:
        if self._thread is None and not self._stop.is_set():
            self._thread = threading.Thread(target=self._run, name="figures", daemon=True)
            self._thread.start()

    def _next(self, due: float) -> tuple[Window | None, float]:
        """Under the lock: the window to compute next (asked ones first), and when the warmed ones are due again."""
        if self._every_s > 0 and time.monotonic() >= due:
            for w in self._warmed():
                if w not in self._stale and w not in self._asked:
                    self._stale.append(w)
            due = time.monotonic() + self._every_s
        if self._asked:
            return self._asked.popitem(last=False)[0], due
        if self._stale:
            return self._stale.pop(0), due
        return None, due

    def _run(self) -> None:
        due = 0.0
        while not self._stop.is_set():
            with self._lock:
                window, due = self._next(due)
                if window is None:
                    self._wake.wait(timeout=max(0.0, min(1.0, due - time.monotonic())) if self._every_s > 0 else 1.0)
                    continue
                self._busy = window
            try:
                start = time.perf_counter()
                doc = self._compute(window)
                figures = Figures(window, doc, time.time(), round(time.perf_counter() - start, 3))
                with self._lock:
                    self._kept[window] = figures
                    self._kept.move_to_end(window)
                    while len(self._kept) > self.max_windows:
                        self._kept.popitem(last=False)
                    self._failed.pop(window, None)
                    self._seconds_per_day = figures.seconds / _days(window)
            except Exception as exc:  # an archive that cannot be read now: shown on the page, tried again when asked
                log.exception("figures of %s could not be computed", window)
                with self._lock:
                    if window not in self._kept:  # kept figures stay shown; the next round tries again
                        self._failed[window] = Failed(window, " ".join(f"{type(exc).__name__}: {exc}".split())[:ERROR_MAX], time.time())
                        while len(self._failed) > self.max_windows:
                            self._failed.popitem(last=False)
            finally:
                with self._lock:
                    self._busy = None
                    self._wake.notify_all()

    def stop(self) -> None:
        self._stop.set()
        with self._lock:
            self._wake.notify_all()
        if self._thread is not None:
            self._thread.join(30)
