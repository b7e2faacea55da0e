"""The declaration state's lifecycle as pure transitions: full state -> fingerprint -> deleted,
orphan scans, and how a fingerprint classifies what still arrives."""

from __future__ import annotations

import orjson
import pytest

from decision.flow import Versions, classify_declaration, on_declaration, on_scan, on_timeout
from decision.retention import Expiry, Lifetimes, due_at, expire, fingerprint
from decision.state import (
    STAGE_BITS,
    DeclarationState,
    Fingerprint,
    Outcome,
    Phase,
    RevisionKind,
    UnknownFormat,
    decode_stored,
    emitted_digest,
    encode_fingerprint,
    encode_state,
    fingerprint_time,
)
from policy.decide import Decision
from schemas import Action, CreditClass, SelectionReason, Stage
from tests.unit.factories import declaration, scan

V = Versions("policy-1", "model-1")
MC = Decision(Action.MACHINE_CHECK, SelectionReason.MODEL_THRESHOLD, CreditClass.GENERAL, ("score high",))
RELEASE = Decision(Action.RELEASE, SelectionReason.NONE, CreditClass.GENERAL, ("score low",))
LIFE = Lifetimes(compact_after_s=300.0, retention_s=14 * 86_400.0, orphan_scan_ttl_s=6 * 3600.0)


def finalised_by_scan(at: float) -> DeclarationState:
    decided = on_declaration(None, declaration(), MC, 0.7, V, 60.0, at - 10)
    final = on_scan(decided.state, scan(verdict="clean"), at).state
    assert final is not None
    final.changed_at = at  # as the worker stamps every write
    return final


def test_a_final_state_is_kept_whole_for_the_compaction_window_then_becomes_a_fingerprint() -> None:
    state = finalised_by_scan(1000.0)
    assert due_at(state, LIFE, first_seen=0) == 1300.0
    assert expire(state, LIFE, 1299.0) is None
    expired = expire(state, LIFE, 1300.0)
    assert expired is not None and expired.what is Expiry.COMPACTED
    fp = decode_stored(expired.value)
    assert fp == Fingerprint(1000, 1, STAGE_BITS[Stage.DECLARATION] | STAGE_BITS[Stage.SCAN], emitted_digest(state.emitted),
                             "851712", "E1")
    assert fp.stage_names() == ["declaration", "scan"]
    # 18 bytes, then the HS code and the enterprise with a length byte each (the goal is <= 200 bytes
    # per retained declaration, key and dict included: bench state).
    assert len(expired.value) == 18 + 1 + 6 + 1 + 2


def test_a_fingerprint_is_deleted_after_the_retention() -> None:
    fp = fingerprint(finalised_by_scan(1000.0), 1300.0)
    assert expire(fp, LIFE, 1000.0 + LIFE.retention_s - 1) is None
    expired = expire(fp, LIFE, 1000.0 + LIFE.retention_s)
    assert expired is not None and expired.what is Expiry.DELETED and expired.value is None


def test_an_orphan_scan_expires_with_what_is_kept_of_it() -> None:
    kept = on_scan(None, scan(scan_id="SC9", verdict="suspicious", suspected_categories=("firearms",)), 500.0).state
    assert kept is not None and kept.phase is Phase.SCAN_FIRST
    kept.changed_at = 500.0
    assert expire(kept, LIFE, 500.0 + LIFE.orphan_scan_ttl_s - 1) is None
    expired = expire(kept, LIFE, 500.0 + LIFE.orphan_scan_ttl_s)
    assert expired is not None and expired.what is Expiry.ORPHAN_SCAN and expired.value is None
    the_scan = scan(scan_id="SC9")
    assert orjson.loads(expired.orphan_scan or b"") == {
        "scan_id": "SC9", "revision": 1, "device_type": "x-ray", "anomaly_score": 0.1, "verdict": "suspicious",
        "suspected_categories": ["firearms"], "port": the_scan.port, "device_id": the_scan.device_id,
        "event_time": the_scan.event_time.timestamp()}


def test_a_machine_check_awaiting_its_scan_never_expires_by_time() -> None:
    awaiting = on_declaration(None, declaration(), MC, 0.7, V, 60.0, 100.0).state
    assert awaiting is not None and due_at(awaiting, LIFE, first_seen=100.0) is None
    assert expire(awaiting, LIFE, 10**10) is None


def test_a_state_written_before_the_lifecycle_counts_from_when_it_was_first_seen() -> None:
    legacy = on_declaration(None, declaration(), RELEASE, 0.1, V, 60.0, 100.0).state
    assert legacy is not None and legacy.changed_at == 0.0
    assert due_at(legacy, LIFE, first_seen=5000.0) == 5300.0
    compacted = expire(legacy, LIFE, 5300.0)
    assert compacted is not None and decode_stored(compacted.value or b"").finalised_at == 5300


def test_the_fingerprint_format_is_its_own_and_read_by_the_state_reader() -> None:
    fp = Fingerprint(1_790_000_000, 7, 5, b"12345678")
    raw = encode_fingerprint(fp)
    assert raw[:1] == b"\x02" and decode_stored(raw) == fp and fingerprint_time(raw) == 1_790_000_000
    assert fingerprint_time(encode_state(DeclarationState(Phase.SCAN_FIRST))) is None
    with pytest.raises(UnknownFormat):
        decode_stored(raw[:-1])
    parties = Fingerprint(1_790_000_000, 7, 5, b"12345678", "85171200", "E-000123")
    raw = encode_fingerprint(parties)
    assert raw[:1] == b"\x03" and decode_stored(raw) == parties and fingerprint_time(raw) == 1_790_000_000
    for broken in (raw[:-1], raw + b"x", raw[:20]):
        with pytest.raises(UnknownFormat):
            decode_stored(broken)
    assert isinstance(decode_stored(encode_state(DeclarationState(Phase.FINAL))), DeclarationState)


def test_records_that_meet_a_fingerprint_are_recognised_and_nothing_is_emitted() -> None:
    fp = Fingerprint(1000, 2, 1, b"\0" * 8)
    assert classify_declaration(fp, 1) is RevisionKind.STALE
    assert classify_declaration(fp, 2) is RevisionKind.DUPLICATE
    assert classify_declaration(fp, 3) is RevisionKind.LATE_REVISION
    for revision, outcome in ((1, Outcome.STALE), (2, Outcome.DUPLICATE), (3, Outcome.LATE_REVISION)):
        step = on_declaration(fp, declaration(revision=revision), None, None, V, 60.0, 2000.0)
        assert (step.outcome, step.state, step.emit, step.instructions) == (outcome, None, [], [])
    assert on_scan(fp, scan(revision=1), 2000.0).outcome is Outcome.STALE
    late_scan = on_scan(fp, scan(revision=2), 2000.0)
    assert (late_scan.outcome, late_scan.state, late_scan.emit) == (Outcome.IGNORED_SCAN, None, [])
    assert on_timeout(fp, 2, 2000.0).outcome is Outcome.IGNORED_TIMEOUT
