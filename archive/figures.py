"""The analyst's figures for a window, computed in the background and kept, so that a page shows
them at once.

Over a month of decisions (ten million instructions) the figures take seconds to compute
(docs/benchmark.md, "Console"): far more than a page may take. :class:`FigureCache` keeps the
figures of each (day_from, day_to, port) it was asked for. A request gets what is kept, with the
time it was computed; one that finds them older than ``max_age_s`` gets them all the same and
starts a recomputation in the background (one at a time), so only the first request for a window
waits for the computation. :meth:`FigureCache.warm` recomputes the windows an analyst opens every
day (the last week, all ports) on a timer, so that not even the first one waits.
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


class FigureCache:
    def __init__(self, archive_dir: LocationLike | None, policy: Policy, max_age_s: float = 300.0, max_windows: int = 64,
                 computer: Callable[[Window], dict[str, Any]] | None = None) -> None:
        self._compute = computer or (lambda window: compute(window, archive_dir, policy))
        self.max_age_s = max_age_s
        self.max_windows = max_windows
        self._kept: OrderedDict[Window, Figures] = OrderedDict()
        self._lock = threading.Lock()
        self._busy: set[Window] = set()  # being computed (by a request or in the background)
        self._queue: list[Window] = []  # to recompute in the background, oldest request first
        self._wake = threading.Condition(self._lock)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def get(self, window: Window) -> Figures:
        """The figures of ``window``: as kept (a recomputation queued if they are older than
        ``max_age_s``), or computed now if none are kept."""
        with self._lock:
            kept = self._kept.get(window)
            if kept is not None:
                self._kept.move_to_end(window)
                if time.time() - kept.computed_at > self.max_age_s:
                    self._enqueue(window)
                return kept
        return self._refresh(window)

    def _enqueue(self, window: Window) -> None:
        if window not in self._busy and window not in self._queue:
            self._queue.append(window)
            self._wake.notify()

    def _refresh(self, window: Window) -> Figures:
        start = time.perf_counter()
        doc = self._compute(window)
        figures = Figures(window, doc, time.time(), round(time.perf_counter() - start, 3))
        with self._lock:
            self._kept[window] = figures
            self._kept.move_to_end(window)
            while len(self._kept) > self.max_windows:
                self._kept.popitem(last=False)
        return figures

    def warm(self, windows: Callable[[], list[Window]], every_s: float) -> None:
        """Start the background thread: it recomputes queued windows and, every ``every_s``
        seconds, the ones ``windows()`` names (called each time: "the last week" moves at midnight)."""
        def run() -> None:
            due = 0.0
            while not self._stop.is_set():
                with self._lock:
                    if time.monotonic() >= due:
                        for w in windows():
                            self._enqueue(w)
                        due = time.monotonic() + every_s
                    if not self._queue:
                        self._wake.wait(timeout=max(0.0, min(1.0, due - time.monotonic())))
                        continue
                    window = self._queue.pop(0)
                    self._busy.add(window)
                try:
                    self._refresh(window)
                except Exception:  # an archive that cannot be read now: logged, and the next round tries again
                    log.exception("figures of %s could not be computed", window)
                finally:
                    with self._lock:
                        self._busy.discard(window)

        self._thread = threading.Thread(target=run, name="figures", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        with self._lock:
            self._wake.notify()
        if self._thread is not None:
            self._thread.join(30)
