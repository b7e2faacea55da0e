"""How long a declaration's stored state lives, as pure transitions over the stored value.

    decided ── final outcome ──(state_compact_after_s)──> fingerprint ──(state_retention_s)──> deleted
    scan first, no declaration ──(orphan_scan_ttl_s)──> deleted, dead letter ``orphan-scan``
    awaiting its scan: lives until the scan or the deadline makes it final

The full state keeps the exact instruction bytes so that a redelivery re-emits them; a crash can
leave a state's changelog record delivered and its instruction not, so it is kept a few minutes
(far longer than a commit interval) after the final outcome. Then a ``Fingerprint`` is enough to
recognise a redelivered, stale or late record (``decision.flow``). The fingerprint outlives the
input topics' retention, so no record still readable from them is decided twice.

``changed_at`` (stamped on every write) starts a state's clock; a state written before it existed
(0) counts from when the worker first saw it.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

import msgspec
import orjson

from decision.state import (
    STAGE_BITS,
    DeclarationState,
    Fingerprint,
    Phase,
    Stored,
    emitted_digest,
    encode_fingerprint,
)
from schemas import Stage


@dataclass(frozen=True, slots=True)
class Lifetimes:
    compact_after_s: float  # full state kept after the final outcome
    retention_s: float  # fingerprint kept after the final outcome
    orphan_scan_ttl_s: float  # an early scan whose declaration never came


class Expiry(enum.Enum):
    """What an expiry did (a metric label)."""

    COMPACTED = "compacted"  # full state -> fingerprint
    DELETED = "deleted"  # fingerprint -> tombstone, after the retention
    ORPHAN_SCAN = "orphan-scan"  # early scan without its declaration -> tombstone and dead letter


class OrphanScan(Exception):
    """A scan kept for a declaration that did not come within ``orphan_scan_ttl_s``."""

    reason_code = "orphan-scan"


@dataclass(frozen=True, slots=True)
class Expired:
    what: Expiry
    value: bytes | None  # the new stored value (a fingerprint), or None: delete with a tombstone
    orphan_scan: bytes | None = None  # for ORPHAN_SCAN: what is kept of the scan, as JSON, for the dead letter


def due_at(stored: Stored, lifetimes: Lifetimes, first_seen: float) -> float | None:
    """When ``stored`` expires next (None: not by time; a machine-check awaits its scan or deadline).
    ``first_seen``: the clock of a state written before ``changed_at`` existed."""
    if isinstance(stored, Fingerprint):
        return stored.finalised_at + lifetimes.retention_s
    since = stored.changed_at or first_seen
    if stored.phase is Phase.FINAL:
        return since + lifetimes.compact_after_s
    if stored.phase is Phase.SCAN_FIRST:
        return since + lifetimes.orphan_scan_ttl_s
    return None


def expire(stored: Stored, lifetimes: Lifetimes, now: float) -> Expired | None:
    """The expiry of ``stored`` if it is due at ``now``, else None. A legacy state (``changed_at``
    0) is due when asked: its index entry was placed a full lifetime after the worker first saw it."""
    due = due_at(stored, lifetimes, first_seen=now - _longest(lifetimes))
    if due is None or due > now:
        return None
    if isinstance(stored, Fingerprint):
        return Expired(Expiry.DELETED, None)
    if stored.phase is Phase.FINAL:
        return Expired(Expiry.COMPACTED, encode_fingerprint(fingerprint(stored, now)))
    scan = stored.early_scan
    kept = None if scan is None else orjson.dumps(msgspec.structs.asdict(scan), default=_enum_value)
    return Expired(Expiry.ORPHAN_SCAN, None, kept)


def fingerprint(state: DeclarationState, now: float) -> Fingerprint:
    """What is kept of a finalised declaration: revision, the stages of the instructions it
    emitted, a hash of their bytes, when it was finalised, and its HS code and enterprise (for a
    finding that comes after compaction)."""
    assert state.decl is not None, "only a decided declaration is finalised"
    stages = 0
    for raw in state.emitted:
        stages |= STAGE_BITS.get(Stage(_instruction_id.decode(raw).instruction_id.rpartition(":")[2]), 0)
    return Fingerprint(int(state.changed_at or now), state.decl.revision, stages, emitted_digest(state.emitted),
                       state.decl.hs_code, state.decl.enterprise_id)


def _longest(lifetimes: Lifetimes) -> float:
    return max(lifetimes.compact_after_s, lifetimes.retention_s, lifetimes.orphan_scan_ttl_s)


def _enum_value(obj: object) -> object:
    if isinstance(obj, enum.Enum):
        return obj.value
    raise TypeError


class _InstructionId(msgspec.Struct):
    instruction_id: str  # "{declaration_id}:{revision}:{stage}"; the other fields are skipped unread


_instruction_id = msgspec.json.Decoder(_InstructionId)
