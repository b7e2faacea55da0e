"""The typed decision state and instruction: the same fields as the published schema, stable bytes."""

from __future__ import annotations

import msgspec
import orjson
import pytest

from decision.flow import Versions, on_declaration, on_scan
from decision.state import (
    DeclarationState,
    Instruction,
    Phase,
    ScanDeadline,
    UnknownFormat,
    decode_deadline,
    decode_state,
    encode_deadline,
    encode_state,
)
from policy.decide import Decision
from schemas import Action, ControlInstruction, CreditClass, SelectionReason
from tests.unit.factories import declaration, scan

MC = Decision(Action.MACHINE_CHECK, SelectionReason.MODEL_THRESHOLD, CreditClass.GENERAL, ("score high",), risk_hits=("L/E",),
              thresholds=(0.5, 0.9))
V = Versions("policy-1", "model-1")


def test_instruction_has_the_published_schemas_fields_in_its_order() -> None:
    assert Instruction.__struct_fields__ == tuple(ControlInstruction.model_fields)


@pytest.mark.parametrize("centralised_id", [None, "C1"])
def test_encoded_instructions_validate_against_the_published_schema(centralised_id: str | None) -> None:
    step = on_declaration(None, declaration(centralised_id=centralised_id), MC, 0.7, V, 60.0, 100.0)
    final = on_scan(step.state, scan(verdict="suspicious", suspected_categories=("firearms",)), 120.0)
    for raw in step.emit + final.emit:
        parsed = ControlInstruction.model_validate_json(raw)  # strict, as the stations read it
        assert parsed.centralised_id == centralised_id
        assert ("centralised_id" in orjson.loads(raw)) is (centralised_id is not None)


def test_state_round_trips_through_its_versioned_bytes() -> None:
    step = on_declaration(None, declaration(), MC, 0.7, V, 60.0, 100.0)
    raw = encode_state(step.state)
    assert raw[:1] == b"\x01"
    assert decode_state(raw) == step.state
    early = on_scan(None, scan(declaration_id="D9"), 90.0).state
    assert decode_state(encode_state(early)) == early and early.phase is Phase.SCAN_FIRST
    deadline = ScanDeadline(160.0, 1, "HAK-SEA", 3)
    assert decode_deadline(encode_deadline(deadline)) == deadline


def test_json_state_of_earlier_releases_is_still_read() -> None:
    instruction = {"schema_version": 1, "instruction_id": "D1:1:declaration", "action": "machine-check"}
    legacy = {"phase": "awaiting-scan", "decl": {"declaration_id": "D1", "revision": 1, "port": "HAK-SEA", "enterprise_id": "E1",
                                                 "scenario": "general-trade", "event_time": "2026-11-28T10:00:00Z"},
              "credit_class": "aeo", "score": 0.7, "versions": ["p", "m"], "risk_hits": ["L/E"], "emitted": [instruction]}
    state = decode_state(orjson.dumps(legacy))
    assert isinstance(state, DeclarationState) and state.phase is Phase.AWAITING_SCAN
    assert state.decl is not None and state.decl.revision == 1 and state.credit_class is CreditClass.AEO
    assert (state.policy_version, state.model_version) == ("p", "m")
    assert state.emitted == [orjson.dumps(instruction)]  # the bytes the earlier release emitted
    assert decode_deadline(b'{"deadline": 5.0, "revision": 2, "port": "P", "partition": 1}') == ScanDeadline(5.0, 2, "P", 1)


def test_a_format_this_release_does_not_know_is_refused() -> None:
    with pytest.raises(UnknownFormat):
        decode_state(b"\x02" + msgspec.msgpack.encode([]))
    with pytest.raises(UnknownFormat):
        decode_deadline(b"\x7f")
