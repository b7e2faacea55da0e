"""Scan binding and amendments in the pure state machine (decision.flow with decision.guards)."""

from __future__ import annotations

from datetime import timedelta

import msgspec
import orjson
import pytest

from decision.flow import Versions, on_declaration, on_scan, on_timeout
from decision.guards import check_scan_arrival, kept_scan_record
from decision.state import DeclarationState, Outcome, Phase, decode_state, encode_state
from policy.config import load_policy
from policy.decide import Decision
from schemas import Action, CreditClass, SelectionReason
from schemas.validation import Refused, UnknownPort
from tests.unit.decision.test_batch import decide
from tests.unit.factories import FIXTURE_POLICY, NOW, declaration, scan
from tests.unit.streams.helpers import FixedScorer

V = Versions("policy-1", "model-1")
MC = Decision(Action.MACHINE_CHECK, SelectionReason.RISK_LIST, CreditClass.GENERAL, ("risk list L/E1: machine-check",),
              risk_hits=("L/E1",))
RELEASE = Decision(Action.RELEASE, SelectionReason.NONE, CreditClass.GENERAL, ("score low",))
INSPECT = Decision(Action.INSPECT, SelectionReason.MODEL_THRESHOLD, CreditClass.GENERAL, ("score high",))
SKEW = 300.0
T0 = NOW.timestamp()  # the declarations' event time


def declare(state, decision=MC, now=T0 + 10, **over):
    return on_declaration(state, declaration(**over), decision, 0.5, V, 60.0, now, SKEW)


# ---- early scans (kept until their declaration comes) ---------------------------------------------
@pytest.mark.parametrize("early, reason", [
    (dict(port="YPU-SEA", device_id="YPU-SEA-XR01"), "scan-port-mismatch"),
    (dict(event_time=NOW - timedelta(hours=2)), "scan-implausible-time"),
])
def test_an_early_scan_that_does_not_bind_releases_nothing(early, reason):
    kept = on_scan(None, scan(verdict="clean", **early), T0, SKEW)
    assert kept.outcome is Outcome.EARLY_SCAN
    step = declare(kept.state)
    assert [i.action for i in step.instructions] == [Action.MACHINE_CHECK]  # no scan-stage release
    assert step.state.phase is Phase.AWAITING_SCAN and step.deadline == T0 + 10 + 60.0
    assert step.refusal is not None and step.refusal.reason == reason and step.refusal.scan == kept.state.early_scan
    # The dead letter carries what the state kept of the scan.
    record = orjson.loads(kept_scan_record("D1", step.refusal.scan))
    assert record["scan_id"] == "SC1" and record["verdict"] == "clean" and record["kept_by_worker"]
    # The declaration then waits for a proper scan, or its deadline.
    proper = on_scan(step.state, scan(scan_id="SC2", verdict="clean", event_time=NOW + timedelta(seconds=30)), T0 + 40, SKEW)
    assert proper.instructions[0].action is Action.RELEASE and proper.instructions[0].scan_id == "SC2"
    assert on_timeout(step.state, 1, T0 + 100).instructions[0].action is Action.INSPECT


def test_an_early_scan_that_binds_still_decides_at_once():
    kept = on_scan(None, scan(verdict="clean", event_time=NOW - timedelta(seconds=SKEW - 1)), T0, SKEW)
    step = declare(kept.state)
    assert step.refusal is None and [i.action for i in step.instructions] == [Action.MACHINE_CHECK, Action.RELEASE]


def test_an_unbound_early_scan_is_dead_lettered_even_when_the_declaration_needs_no_scan():
    kept = on_scan(None, scan(port="YPU-SEA", device_id="YPU-SEA-XR01"), T0, SKEW)
    step = declare(kept.state, RELEASE)
    assert step.state.phase is Phase.FINAL and step.refusal is not None and step.refusal.reason == "scan-port-mismatch"


def test_a_scan_for_an_awaiting_declaration_must_bind_too():
    pending = declare(None).state
    for bad, reason in [(dict(port="YPU-SEA", device_id="YPU-SEA-XR01"), "scan-port-mismatch"),
                        (dict(event_time=NOW - timedelta(seconds=SKEW + 1)), "scan-implausible-time")]:
        step = on_scan(pending, scan(verdict="clean", **bad), T0 + 20, SKEW)
        assert step.outcome is Outcome.REFUSED and step.state is None and not step.emit
        assert step.refusal is not None and step.refusal.reason == reason and step.refusal.scan is None  # its own bytes


def test_an_early_scan_stored_before_the_binding_fields_decodes_and_binds_to_nothing():
    # A SCAN_FIRST state as an earlier release wrote it: the scan summary has six fields.
    legacy = b"\x01" + msgspec.msgpack.encode(["scan-first", None, "general", None, "", None, [], [],
                                               ["SC1", 1, "x-ray", 0.1, "clean", []], None])
    state = decode_state(legacy)
    assert state.early_scan is not None and state.early_scan.port == "" and state.early_scan.event_time is None
    step = declare(state)
    assert step.refusal is not None and step.refusal.reason == "scan-port-mismatch"
    assert [i.action for i in step.instructions] == [Action.MACHINE_CHECK]
    assert decode_state(encode_state(state)) == state


# ---- on arrival ----------------------------------------------------------------------------------
def test_arrival_checks_port_device_and_future_time():
    policy = load_policy(FIXTURE_POLICY)
    check_scan_arrival(policy, scan(device_id="HAK-SEA-CT01"), T0)
    with pytest.raises(UnknownPort):
        check_scan_arrival(policy, scan(port="ELSEWHERE"), T0)
    for bad, reason in [(dict(device_id="XR1"), "scan-unknown-device"), (dict(device_id="YPU-SEA-XR01"), "scan-unknown-device"),
                        (dict(event_time=NOW + timedelta(seconds=SKEW + 5)), "scan-implausible-time")]:
        with pytest.raises(Refused) as info:
            check_scan_arrival(policy, scan(**bad), T0)
        assert info.value.reason_code == reason


# ---- amendments ----------------------------------------------------------------------------------
def test_an_amendment_never_lowers_a_pending_machine_check():
    pending = declare(None).state
    rev2 = declare(pending, RELEASE, now=T0 + 20, revision=2)
    first = rev2.instructions[0]
    assert first.revision == 2 and first.action is Action.MACHINE_CHECK and not first.final
    assert first.selection_reason is SelectionReason.RISK_LIST  # the control's own reason
    assert "machine-check of revision 1 kept" in first.reasons[-1]
    assert rev2.state.phase is Phase.AWAITING_SCAN and rev2.deadline == T0 + 20 + 60.0
    # A stricter decision of the new revision holds.
    assert declare(pending, INSPECT, revision=2).instructions[0].action is Action.INSPECT


def test_an_amendment_naming_another_enterprise_is_refused_and_changes_nothing():
    pending = declare(None).state
    step = declare(pending, None, revision=2, enterprise_id="E-OTHER")
    assert step.outcome is Outcome.REFUSED and step.state is None and not step.emit and step.deadline is None
    assert step.refusal is not None and step.refusal.reason == "enterprise-changed" and step.refusal.scan is None
    assert isinstance(pending, DeclarationState) and pending.decl is not None and pending.decl.enterprise_id == "E1"
    # The pending control still takes its scan.
    assert on_scan(pending, scan(verdict="suspicious"), T0 + 30, SKEW).instructions[0].action is Action.INSPECT


def test_an_amendment_naming_another_port_is_refused_and_changes_nothing():
    pending = declare(None).state
    step = declare(pending, RELEASE, revision=2, port="YPU-SEA")
    assert step.outcome is Outcome.REFUSED and step.state is None and not step.emit and step.deadline is None
    assert step.refusal is not None and step.refusal.reason == "port-changed" and step.refusal.scan is None
    assert "YPU-SEA" in step.refusal.detail and "HAK-SEA" in step.refusal.detail
    assert isinstance(pending, DeclarationState) and pending.decl is not None and pending.decl.port == "HAK-SEA"
    # The other port's scanner cannot release it; the pending control takes its own port's scan.
    other = on_scan(pending, scan(port="YPU-SEA", device_id="YPU-SEA-XR01", verdict="clean"), T0 + 30, SKEW)
    assert other.refusal is not None and other.refusal.reason == "scan-port-mismatch" and not other.instructions
    assert on_scan(pending, scan(verdict="suspicious"), T0 + 30, SKEW).instructions[0].action is Action.INSPECT
    # An amendment at the same port is decided (and keeps the control).
    assert declare(pending, RELEASE, revision=2).instructions[0].action is Action.MACHINE_CHECK


def test_a_port_change_before_any_control_or_after_the_final_outcome_is_not_refused():
    # Nothing pending: a released declaration's later revision is a late revision, not a refusal.
    released = declare(None, RELEASE).state
    late = declare(released, RELEASE, revision=2, port="YPU-SEA")
    assert late.outcome is Outcome.LATE_REVISION and late.refusal is None


# ---- decide_batch (the worker's and the backtest's one decision function) -------------------------
def test_decide_batch_refuses_an_enterprise_change_without_scoring_and_holds_a_pending_control():
    # MID is machine-checked (score 0.6 in the fixture policy), then amended twice in one batch.
    states: dict = {"MID": None}
    decide([declaration(declaration_id="MID")], states, scorer=FixedScorer({"MID": 0.6}))
    assert states["MID"].phase is Phase.AWAITING_SCAN
    scorer = FixedScorer({"MID": 0.0})  # the amendment alone would be released
    steps, controller, _ = decide([declaration(declaration_id="MID", revision=2, enterprise_id="E-OTHER"),
                                   declaration(declaration_id="MID", revision=3)], states, scorer=scorer)
    assert [s.outcome for s in steps] == [Outcome.REFUSED, Outcome.DECIDED]
    assert scorer.calls == [1]  # the refused revision is not scored
    assert controller.observed("HAK-SEA") == 1
    assert steps[1].instructions[0].action is Action.MACHINE_CHECK and states["MID"].decl.revision == 3


def test_decide_batch_refuses_a_port_change_without_scoring_and_holds_a_pending_control():
    states: dict = {"MID": None}
    decide([declaration(declaration_id="MID")], states, scorer=FixedScorer({"MID": 0.6}))
    scorer = FixedScorer({"MID": 0.0})
    steps, controller, _ = decide([declaration(declaration_id="MID", revision=2, port="YPU-SEA"),
                                   declaration(declaration_id="MID", revision=3)], states, scorer=scorer)
    assert [s.outcome for s in steps] == [Outcome.REFUSED, Outcome.DECIDED]
    assert steps[0].refusal is not None and steps[0].refusal.reason == "port-changed"
    assert scorer.calls == [1]  # the refused revision is not scored
    assert controller.observed("YPU-SEA") == 0 and controller.observed("HAK-SEA") == 1
    assert steps[1].instructions[0].action is Action.MACHINE_CHECK and states["MID"].decl.port == "HAK-SEA"

