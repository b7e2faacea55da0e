"""The archive's tables kept open between queries, refreshed when the sink has committed since.

Opening a Delta table reads its log (a checkpoint and the commits after it); a console answering one
declaration's history after another would do that for five tables on every page. :class:`OpenTables`
opens each table once and, at most every ``refresh_s`` seconds, asks a separate handle of the
same table whether it has a newer version (``update_incremental`` reads only the commits after the
one it holds). A newer version is opened as a new object that replaces the old one: objects handed
out are never changed afterwards, so a query that is reading one (polars lists its files and their
statistics at collect time) never sees the table move under it.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

from deltalake import DeltaTable

from archive import tables as t
from archive.location import ArchiveLocation

REFRESH_S = 2.0


@dataclass
class _Held:
    served: DeltaTable  # handed to queries, never updated in place
    probe: DeltaTable  # updated in place to learn of new versions
    checked_at: float


class OpenTables:
    """The tables of one archive location, each opened once and refreshed when it has a new version."""

    def __init__(self, location: ArchiveLocation, refresh_s: float = REFRESH_S) -> None:
        self.location = location
        self.refresh_s = refresh_s
        self._held: dict[str, _Held] = {}
        self._locks = {name: threading.Lock() for name in t.SPECS}

    def get(self, name: str) -> DeltaTable | None:
        """The table at a version at most ``refresh_s`` old, or None when the archive has not created it."""
        held = self._held.get(name)
        now = time.monotonic()
        if held is not None and now - held.checked_at < self.refresh_s:
            return held.served
        with self._locks[name]:  # one refresh per table at a time; readers of other tables go on
            held = self._held.get(name)
            if held is not None and now - held.checked_at < self.refresh_s:
                return held.served
            if held is None:
                opened = t.open_table(self.location, name)
                if opened is None:
                    return None
                self._held[name] = _Held(opened, self._open(name), time.monotonic())
                return opened
            held.probe.update_incremental()
            if held.probe.version() != held.served.version():
                held = _Held(self._open(name), held.probe, time.monotonic())
            else:
                held.checked_at = time.monotonic()
            self._held[name] = held
            return held.served

    def _open(self, name: str) -> DeltaTable:
        return DeltaTable(self.location.table(name), storage_options=self.location.options())

    def pinned(self, names: tuple[str, ...]) -> dict[str, DeltaTable | None]:
        """The tables as of now, for an answer that must read the same versions throughout."""
        return {name: self.get(name) for name in names}
