"""Failed logins, counted per client address and per (user name, address) over a sliding window.

Past a limit, logins from that address (or for that name from that address) are refused with 429
until the window has moved on, without checking the password: a guesser gets a handful of tries
per window and cannot make the console spend argon2's work on it. Counting per address rather than
per name alone means nobody can lock an officer out by typing the officer's name wrongly from
elsewhere. Memory is bounded: the least recently failed keys are forgotten first.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable

FAILURES_PER_NAME = 5  # per (name, address) and window
FAILURES_PER_ADDRESS = 20  # per address and window, whatever the names
WINDOW_S = 300.0
TRACKED_KEYS = 10_000


class LoginThrottle:
    def __init__(self, per_name: int = FAILURES_PER_NAME, per_address: int = FAILURES_PER_ADDRESS,
                 window_s: float = WINDOW_S, tracked: int = TRACKED_KEYS, clock: Callable[[], float] = time.monotonic) -> None:
        self._limits = {"name": per_name, "address": per_address}
        self.window_s = window_s
        self._tracked = tracked
        self._clock = clock
        self._lock = threading.Lock()
        self._failures: OrderedDict[tuple[str, ...], deque[float]] = OrderedDict()

    @staticmethod
    def _keys(name: str, address: str) -> dict[str, tuple[str, ...]]:
        return {"name": ("name", name[:64], address), "address": ("address", address)}

    def wait_s(self, name: str, address: str) -> float:
        """Seconds until a login for ``name`` from ``address`` is checked again (0: now)."""
        now = self._clock()
        wait = 0.0
        with self._lock:
            for kind, key in self._keys(name, address).items():
                times = self._recent(key, now)
                if times is not None and len(times) >= self._limits[kind]:
                    wait = max(wait, times[0] + self.window_s - now)
        return wait

    def failed(self, name: str, address: str) -> None:
        now = self._clock()
        with self._lock:
            for key in self._keys(name, address).values():
                times = self._recent(key, now)
                if times is None:
                    times = self._failures[key] = deque(maxlen=max(self._limits.values()))
                times.append(now)
                self._failures.move_to_end(key)
            while len(self._failures) > self._tracked:
                self._failures.popitem(last=False)

    def succeeded(self, name: str, address: str) -> None:
        """A correct password clears that name's failures from that address (not the address's)."""
        with self._lock:
            self._failures.pop(self._keys(name, address)["name"], None)

    def _recent(self, key: tuple[str, ...], now: float) -> deque[float] | None:
        times = self._failures.get(key)
        while times and times[0] <= now - self.window_s:
            times.popleft()
        return times
