"""The current risk-list entries as the console holds them: all of the office's lists, searchable.

The office keeps about 300,000 entries in 147 lists, and the page must find any of them within a
page load. An entry is a small frozen struct outside the garbage collector; the strings that
entries of a list share (list, kind, action, reason, agency) are interned, so each is held once;
and entries are grouped by list, each list sorted on demand and the sort kept until the list
changes. A search matches the shared strings once per distinct combination ("facet") and only the
entry id and value per entry. Figures: docs/benchmark.md, "The console at the office's volumes".
"""

from __future__ import annotations

import sys
from collections import Counter
from dataclasses import dataclass
from datetime import datetime

import msgspec

from schemas import RiskListEntry

# (list id, kind, action, reason, source agency): interned, one tuple per distinct combination.
Facet = tuple[str, str, str, str, str]


class HeldEntry(msgspec.Struct, frozen=True, gc=False):
    """One current entry (strings and datetimes only: it can never be part of a reference cycle)."""

    entry_id: str
    value: str
    valid_from: datetime
    valid_until: datetime | None
    facet: Facet
    text: str  # lower-case "entry id value": what a search matches besides the facet

    @property
    def list_id(self) -> str:
        return self.facet[0]

    @property
    def kind(self) -> str:
        return self.facet[1]

    @property
    def action(self) -> str:
        return self.facet[2]

    @property
    def reason(self) -> str:
        return self.facet[3]

    @property
    def source_agency(self) -> str:
        return self.facet[4]


@dataclass(frozen=True)
class ListSummary:
    list_id: str
    entries: int
    kinds: tuple[str, ...]
    actions: tuple[str, ...]
    agencies: tuple[str, ...]


class _List:
    __slots__ = ("entries", "facets", "ordered")

    def __init__(self) -> None:
        self.entries: dict[str, HeldEntry] = {}
        self.facets: Counter[Facet] = Counter()  # entries of the list per facet
        self.ordered: list[HeldEntry] | None = None  # by entry id; None once the list changed

    def in_order(self) -> list[HeldEntry]:
        if self.ordered is None:
            self.ordered = [self.entries[k] for k in sorted(self.entries)]
        return self.ordered


class RiskEntries:
    """Entries by id and by list, at most ``limit`` of them (the rest counted in ``dropped``). Not
    thread-safe: the feed calls it under its lock."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.dropped = 0  # entries not held because ``limit`` was reached
        self._by_id: dict[str, HeldEntry] = {}
        self._lists: dict[str, _List] = {}
        self._facets: dict[Facet, Facet] = {}

    def __len__(self) -> int:
        return len(self._by_id)

    def __contains__(self, entry_id: object) -> bool:
        return entry_id in self._by_id

    def get(self, entry_id: str) -> HeldEntry | None:
        return self._by_id.get(entry_id)

    def put(self, entry_id: str, entry: RiskListEntry | None) -> None:
        """Hold ``entry`` under ``entry_id`` (the record's key), or forget it (None: a tombstone)."""
        old = self._by_id.pop(entry_id, None)
        if old is not None:
            self._forget(old)
        if entry is None:
            return
        if len(self._by_id) >= self.limit:
            self.dropped += 1
            return
        held = self._held(entry_id, entry)
        self._by_id[entry_id] = held
        lst = self._lists.get(held.facet[0])
        if lst is None:
            lst = self._lists[held.facet[0]] = _List()
        lst.entries[entry_id] = held
        lst.facets[held.facet] += 1
        lst.ordered = None

    def _forget(self, held: HeldEntry) -> None:
        lst = self._lists[held.facet[0]]
        del lst.entries[held.entry_id]
        lst.facets[held.facet] -= 1
        if not lst.facets[held.facet]:
            del lst.facets[held.facet]
            del self._facets[held.facet]  # a facet names its list: no other list holds it
        lst.ordered = None
        if not lst.entries:
            del self._lists[held.facet[0]]

    def _held(self, entry_id: str, e: RiskListEntry) -> HeldEntry:
        key: Facet = (sys.intern(e.list_id), e.kind.value, e.action.value, sys.intern(e.reason), sys.intern(e.source_agency))
        facet = self._facets.setdefault(key, key)
        return HeldEntry(entry_id, e.value, e.valid_from, e.valid_until, facet, f"{entry_id} {e.value}".lower())

    def search(self, text: str, list_id: str | None = None, limit: int = 200) -> tuple[list[HeldEntry], int]:
        """The first ``limit`` entries (by list, then entry id) whose fields contain ``text`` (any
        case), of ``list_id`` only if given, and how many match in all."""
        needle = text.strip().lower()
        names = sorted(self._lists) if list_id is None else [list_id] if list_id in self._lists else []
        facets = {f for f in self._facets if needle in " ".join(f).lower()} if needle else set()
        shown: list[HeldEntry] = []
        total = 0
        for name in names:
            lst = self._lists[name]
            if not needle:
                matching = len(lst.entries)
                if len(shown) < limit:
                    shown += lst.in_order()[:limit - len(shown)]
            elif len(shown) < limit:
                found = [e for e in lst.in_order() if e.facet in facets or needle in e.text]
                matching = len(found)
                shown += found[:limit - len(shown)]
            else:  # enough to show: only count the rest
                matching = sum(1 for e in lst.entries.values() if e.facet in facets or needle in e.text)
            total += matching
        return shown, total

    def lists(self) -> list[ListSummary]:
        """One line per list, by list id."""
        summaries = []
        for name in sorted(self._lists):
            lst = self._lists[name]
            kinds, actions, agencies = (tuple(sorted({f[i] for f in lst.facets})) for i in (1, 2, 4))
            summaries.append(ListSummary(name, len(lst.entries), kinds, actions, agencies))
        return summaries
