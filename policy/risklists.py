"""Risk characteristic lists: an in-memory index of ``RiskListEntry`` records.

The lists live on a compacted topic keyed by ``entry_id`` (a null value deletes the entry). Every
worker needs every entry, so the index is built from the whole topic (or from a table mirroring
it) and answers :meth:`RiskListIndex.matches` with a handful of dict lookups per declaration:
one per field kind, plus the 2/4/6/8-digit prefixes of the HS code. The validity window is checked
against the declaration's *event time*, so a replay of old traffic sees the lists as they applied
then (as long as the expired entries are still in the index, see :meth:`prune`).
"""

from __future__ import annotations

import heapq
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Final, TypeVar

import orjson
from pydantic import ValidationError

from policy.config import validation_summary
from schemas import SCHEMA_VERSION, Declaration, RiskListAction, RiskListEntry, RiskListKind

# Order of hits in a result: most severe first, so the first hit is the one that decides.
HIT_SEVERITY = {RiskListAction.INSPECT: 0, RiskListAction.MACHINE_CHECK: 1, RiskListAction.WATCH: 2}

class RiskListKeyMismatch(ValueError):
    """A risk-list record whose Kafka key is not its entry_id would make deletes miss it."""

    reason_code = "key-mismatch"


@dataclass(frozen=True, slots=True)
class RiskHit:
    """One matched entry, as recorded on the decision and the instruction."""

    entry_id: str
    list_id: str
    kind: RiskListKind
    value: str
    action: RiskListAction
    reason: str
    source_agency: str

    @property
    def ref(self) -> str:
        """``list_id/entry_id``: '/' cannot occur in an identifier, so the pair splits unambiguously."""
        return f"{self.list_id}/{self.entry_id}"

    def describe(self) -> str:
        return (f"risk list {self.list_id} entry {self.entry_id} ({self.kind.value} {self.value}, "
                f"{self.source_agency}): {self.reason}")

    @classmethod
    def of(cls, e: RiskListEntry) -> RiskHit:
        return cls(e.entry_id, e.list_id, e.kind, e.value, e.action, e.reason, e.source_agency)


def _sort_key(hit: RiskHit) -> tuple[int, str, str]:
    return HIT_SEVERITY[hit.action], hit.list_id, hit.entry_id


# A risk-list table's keys: entry ids, as bytes (raw Kafka keys) or as text.
EntryKey = TypeVar("EntryKey", bytes, str)


def _key(key: bytes | str) -> str:
    return key.decode() if isinstance(key, bytes) else key


# An entry as the index holds it: a plain tuple (entry_id, list_id, kind, value, action, reason,
# source_agency, valid_from, valid_until, digest of its record), kind and action by their values.
# The garbage collector stops tracking a tuple of strings, datetimes and ints once it has seen it, so
# the index's hundreds of thousands of entries add nothing to each full collection (slotted objects
# would be walked by every one: most of a second per collection with 300,000 entries).
_Held = tuple[str, str, str, str, str, str, str, datetime, datetime | None, int]
_ID: Final = 0
_KIND: Final = 2
_VALUE: Final = 3
_FROM: Final = 7
_UNTIL: Final = 8
_DIGEST: Final = 9
_KINDS = {k.value: k for k in RiskListKind}
_ACTIONS = {a.value: a for a in RiskListAction}


def _hit(e: _Held) -> RiskHit:
    return RiskHit(e[0], e[1], _KINDS[e[2]], e[3], _ACTIONS[e[4]], e[5], e[6])


def _entry(e: _Held) -> RiskListEntry:
    return RiskListEntry.model_construct(entry_id=e[0], list_id=e[1], kind=_KINDS[e[2]], value=e[3], action=_ACTIONS[e[4]],
                                         reason=e[5], source_agency=e[6], valid_from=e[7], valid_until=e[8],
                                         schema_version=SCHEMA_VERSION)


def _digest(raw: bytes | None) -> int:
    """A digest of a record's bytes; 0 for an entry put without them (never equal to a record's: the
    digest of any record is forced non-zero). Bytes' hash is SipHash: a false match is negligible."""
    return 0 if raw is None else (hash(raw) or 1)


def _held(entry: RiskListEntry, digest: int = 0) -> _Held:
    return (entry.entry_id, sys.intern(entry.list_id), entry.kind.value, entry.value, entry.action.value, sys.intern(entry.reason),
            sys.intern(entry.source_agency), entry.valid_from, entry.valid_until, digest)


def parse_entry(raw: bytes) -> _Held:
    """A risk-list record, validated as ``RiskListEntry`` (raises pydantic's ValidationError), kept
    as the index keeps it: the model itself is dropped (validation is cheap, holding it is not)."""
    return _held(RiskListEntry.model_validate_json(raw), _digest(raw))


class RiskListIndex:
    """Entries by id, plus per kind a lookup table ``value -> entries`` for matching."""

    def __init__(self, entries: Iterable[RiskListEntry] = ()) -> None:
        self._entries: dict[str, _Held] = {}
        # kind -> value -> the entries with that value (a tuple: most values are in one list only)
        self._lookup: dict[str, dict[str, tuple[_Held, ...]]] = {kind.value: {} for kind in RiskListKind}
        # The same dicts in the order matches() reads them (no enum hashing per declaration).
        self._by_field = tuple(self._lookup[kind.value] for kind in (
            RiskListKind.HS_CODE, RiskListKind.HS_PREFIX, RiskListKind.ORIGIN, RiskListKind.ROUTE,
            RiskListKind.ENTERPRISE, RiskListKind.DECLARANT, RiskListKind.SELLER))
        # (valid_until, entry_id) of every entry with an end, earliest first: prune() pops what is due
        # instead of walking the index. A replaced or removed entry leaves a stale item, skipped when
        # popped and dropped when the heap is rebuilt (it never holds more than twice the entries).
        self._expiry: list[tuple[datetime, str]] = []
        for entry in entries:
            self.put(entry)

    # ---- updates ---------------------------------------------------------------------------
    def put(self, entry: RiskListEntry, raw: bytes | None = None) -> None:
        """Add an entry, or replace the one with the same entry_id (its kind or value may change)."""
        self._put(_held(entry, _digest(raw)))

    def _put(self, held: _Held) -> None:
        entry_id, value, valid_until = held[_ID], held[_VALUE], held[_UNTIL]
        self.remove(entry_id)
        self._entries[entry_id] = held
        by_value = self._lookup[held[_KIND]]
        by_value[value] = (*by_value.get(value, ()), held)
        if valid_until is not None:
            heapq.heappush(self._expiry, (valid_until, entry_id))
            if len(self._expiry) > 2 * len(self._entries) + 64:
                self._expiry = [(e[_UNTIL], k) for k, e in self._entries.items() if e[_UNTIL] is not None]
                heapq.heapify(self._expiry)

    def remove(self, entry_id: str) -> bool:
        old = self._entries.pop(entry_id, None)
        if old is None:
            return False
        by_value = self._lookup[old[_KIND]]
        rest = tuple(e for e in by_value[old[_VALUE]] if e is not old)
        if rest:
            by_value[old[_VALUE]] = rest
        else:
            del by_value[old[_VALUE]]
        return True

    def apply(self, key: bytes | str, value: bytes | None) -> bool:
        """Apply one record of the risk-list topic (null value: delete). Returns True if anything
        changed. Raises pydantic's ValidationError or RiskListKeyMismatch for a bad record (the
        caller dead-letters it); the index is unchanged then."""
        entry_id = _key(key)
        if value is None:
            return self.remove(entry_id)
        value = bytes(value)
        old = self._entries.get(entry_id)
        if old is not None and old[_DIGEST] == _digest(value):
            return False  # redelivery
        held = parse_entry(value)
        if held[_ID] != entry_id:
            raise RiskListKeyMismatch(f"record key {entry_id!r} does not match entry_id {held[_ID]!r}")
        self._put(held)
        return True

    def sync(self, table: Mapping[EntryKey, bytes | None]) -> int:
        """Make the index equal to a mapping ``entry_id -> entry JSON`` (e.g. a Faust table's
        ``.data``): once after a start or a rebalance (:meth:`refresh` keeps it equal after that).
        Unchanged entries are skipped by digest. Invalid values are skipped (they were dead-lettered
        when written). Returns the number of entries added, replaced or removed."""
        changed = 0
        seen: set[str] = set()
        for key, value in list(table.items()):
            entry_id = _key(key)
            if value is None:
                continue
            seen.add(entry_id)
            try:
                changed += self.apply(entry_id, value)
            except ValueError:
                seen.discard(entry_id)
        for entry_id in [e for e in self._entries if e not in seen]:
            changed += self.remove(entry_id)
        return changed

    def refresh(self, table: Mapping[EntryKey, bytes | None], keys: Iterable[EntryKey]) -> int:
        """Make the index agree with ``table`` (as in :meth:`sync`) for ``keys`` only: the entries
        whose records changed. Costs a look-up per key, whatever the size of the table. Returns the
        number of entries added, replaced or removed."""
        changed = 0
        for key in keys:
            value = table.get(key)
            if value is None:
                changed += self.remove(_key(key))
                continue
            try:
                changed += self.apply(key, value)
            except ValueError:  # dead-lettered when written; an older valid version must not linger
                changed += self.remove(_key(key))
        return changed

    def prune(self, before: datetime) -> int:
        """Drop entries that expired before ``before`` (memory bound), earliest first, from a heap
        by end of validity: the cost is the number of entries dropped, not the size of the index.
        A replay of declarations older than ``before`` will then no longer see them: prune with a
        generous margin."""
        gone = 0
        while self._expiry and self._expiry[0][0] <= before:
            valid_until, entry_id = heapq.heappop(self._expiry)
            held = self._entries.get(entry_id)
            if held is not None and held[_UNTIL] == valid_until:  # else a stale item: replaced or removed
                self.remove(entry_id)
                gone += 1
        return gone

    # ---- queries ---------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, entry_id: object) -> bool:
        return entry_id in self._entries

    def get(self, entry_id: str) -> RiskListEntry | None:
        held = self._entries.get(entry_id)
        return None if held is None else _entry(held)

    def entries(self) -> list[RiskListEntry]:
        return [_entry(self._entries[k]) for k in sorted(self._entries)]

    def matches(self, declaration: Declaration, at: datetime | None = None) -> list[RiskHit]:
        """Entries that apply to the declaration at ``at`` (default: its event time), most severe
        first, then by list id and entry id (a deterministic order for the instruction). A dict
        look-up per field (and per HS prefix length), whatever the number of entries."""
        if not self._entries:
            return []
        when = at if at is not None else declaration.event_time
        d = declaration
        hs = d.hs_code
        codes, prefixes, origins, routes, enterprises, declarants, sellers = self._by_field
        # An hs-prefix entry is 2, 4, 6 or 8 digits (schemas.RiskListEntry) and an HsCode 6, 8 or 10:
        # the 8-digit look-up only for a code that long (a 6-digit code is not its own 8-digit prefix).
        found = (
            codes.get(hs), prefixes.get(hs[:2]), prefixes.get(hs[:4]), prefixes.get(hs[:6]),
            prefixes.get(hs[:8]) if len(hs) >= 8 else None,
            origins.get(d.origin_country),
            routes.get(f"{d.departure_country}->{d.origin_country}"),
            enterprises.get(d.enterprise_id),
            declarants.get(d.declarant_id),
            sellers.get(d.seller_id) if d.seller_id is not None else None,
        )
        hits = [_hit(e) for bucket in found if bucket for e in bucket
                if e[_FROM] <= when and (e[_UNTIL] is None or when < e[_UNTIL])]
        if len(hits) > 1:
            hits.sort(key=_sort_key)
        return hits

    # ---- persistence -----------------------------------------------------------------------
    def to_bytes(self) -> bytes:
        """All entries as one JSON array, canonical and sorted by entry_id: equal indexes give equal
        bytes. (For a large list prefer a table keyed by entry_id and :meth:`sync`: one Kafka
        record per entry stays far below the broker's message size limit.)"""
        return b"[" + b",".join(e.model_dump_json().encode() for e in self.entries()) + b"]"

    @classmethod
    def from_bytes(cls, raw: bytes) -> RiskListIndex:
        return cls(RiskListEntry.model_validate_json(orjson.dumps(item)) for item in orjson.loads(raw))


def load_jsonl(lines: Iterable[str | bytes], source: str = "<risk lists>") -> RiskListIndex:
    """An index from JSON lines of RiskListEntry (later lines replace earlier ones with the same
    entry_id; ``{"entry_id": ..., "deleted": true}`` deletes). Raises ValueError naming the line."""
    index = RiskListIndex()
    for n, line in enumerate(lines, 1):
        text = line.strip()
        if not text:
            continue
        try:
            doc = orjson.loads(text)
            if isinstance(doc, dict) and doc.get("deleted") is True and set(doc) <= {"entry_id", "deleted"}:
                index.remove(str(doc.get("entry_id")))
                continue
            index.put(RiskListEntry.model_validate_json(text))
        except ValidationError as exc:
            raise ValueError(f"{source} line {n}: not a valid risk-list entry: {validation_summary(exc, 2)}") from exc
        except ValueError as exc:  # orjson.JSONDecodeError
            raise ValueError(f"{source} line {n}: not JSON: {exc}") from exc
    return index
