"""The risk types that selected a declaration: chosen from a routed model's per-type scores,
carried by the declaration, scan and timeout instructions, absent (and optional) otherwise."""

from __future__ import annotations

import msgspec
import pydantic
import pytest

from decision.flow import Versions, on_declaration, on_scan, on_timeout
from decision.services import selected_risk_types
from decision.state import DeclarationState, Phase
from policy.decide import Decision
from schemas import Action, ControlInstruction, CreditClass, RiskType, SelectionReason
from tests.unit.factories import declaration, scan

V = Versions("policy-1", "model-1/routed")
MC = Decision(Action.MACHINE_CHECK, SelectionReason.MODEL_THRESHOLD, CreditClass.GENERAL, ("score high",), thresholds=(0.1, 0.5))
SCORES = (("undervaluation", 0.3), ("misclassification", 0.02), ("restricted-goods", 0.1))


def test_risk_types_are_those_at_or_above_the_machine_check_threshold():
    assert selected_risk_types(SCORES, Action.MACHINE_CHECK, (0.1, 0.5)) == ("undervaluation", "restricted-goods")
    assert selected_risk_types(SCORES, Action.INSPECT, (0.05, 0.2)) == ("undervaluation", "restricted-goods")
    assert selected_risk_types(SCORES, Action.RELEASE, (0.1, 0.5)) == ()  # a release names none
    assert selected_risk_types(SCORES, Action.INSPECT, None) == ()  # decided before the score was compared
    assert selected_risk_types((), Action.INSPECT, (0.0, 0.1)) == ()  # an unrouted model


def test_instructions_of_every_stage_name_the_risk_types():
    types = selected_risk_types(SCORES, MC.action, MC.thresholds)
    step = on_declaration(None, declaration(), MC, 0.3, V, 60.0, 100.0, risk_types=types)
    first = ControlInstruction.model_validate_json(step.emit[0])
    assert first.risk_types == (RiskType.UNDERVALUATION, RiskType.RESTRICTED_GOODS)
    final = on_scan(step.state, scan(verdict="suspicious", anomaly_score=0.9), 120.0)
    assert ControlInstruction.model_validate_json(final.emit[0]).risk_types == first.risk_types
    timed = on_timeout(step.state, 1, 200.0)
    assert ControlInstruction.model_validate_json(timed.emit[0]).risk_types == first.risk_types
    # The state keeps them across a restart (msgspec array form, appended field).
    state = msgspec.msgpack.decode(msgspec.msgpack.encode(step.state), type=DeclarationState)
    assert state.risk_types == ["undervaluation", "restricted-goods"] and state.phase is Phase.AWAITING_SCAN


def test_without_risk_types_the_key_is_absent_and_old_records_parse():
    step = on_declaration(None, declaration(), MC, 0.3, V, 60.0, 100.0)
    assert b"risk_types" not in step.emit[0]
    assert ControlInstruction.model_validate_json(step.emit[0]).risk_types == ()


def test_old_states_without_risk_types_still_decode():
    step = on_declaration(None, declaration(), MC, 0.3, V, 60.0, 100.0)
    old = msgspec.msgpack.encode(step.state)
    fields = msgspec.msgpack.decode(old)
    assert fields[-1] == []  # the appended risk_types; a state stored before it lacks the element
    state = msgspec.msgpack.decode(msgspec.msgpack.encode(fields[:-1]), type=DeclarationState)
    assert state.risk_types == []


def test_the_schema_refuses_unknown_risk_types():
    step = on_declaration(None, declaration(), MC, 0.3, V, 60.0, 100.0, risk_types=("smuggling",))
    with pytest.raises(pydantic.ValidationError):
        ControlInstruction.model_validate_json(step.emit[0])
