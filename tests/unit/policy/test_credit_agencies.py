"""Per-agency credit entries: how agencies combine into the effective state, and the table encoding."""

from __future__ import annotations

import gc

import orjson
import pytest

from policy.credit import MAX_AGENCIES, UNKNOWN_ENTERPRISE, EnterpriseCredit, TooManyAgencies, apply_credit_event, fold_credit_events
from schemas import CreditClass, Qualification
from tests.unit.factories import credit_event


def fold(*events):
    state = UNKNOWN_ENTERPRISE
    for e in events:
        state = apply_credit_event(state, e)
    return state


def test_customs_class_is_authoritative_over_other_agencies():
    state = fold(credit_event(event_id="A1", credit_class="white-list", source_agency="taxation"))
    assert state.credit_class is CreditClass.WHITE_LIST  # no customs class yet: the latest agency's
    state = fold(credit_event(event_id="A1", credit_class="white-list", source_agency="taxation"),
                 credit_event(event_id="C1", credit_class="focus-list", source_agency="customs"),
                 credit_event(event_id="A2", credit_class="aeo", source_agency="taxation"))
    assert state.credit_class is CreditClass.FOCUS_LIST
    assert state.agencies["taxation"].credit_class is CreditClass.AEO  # recorded under its agency all the same
    assert state.agencies["customs"].credit_class is CreditClass.FOCUS_LIST


def test_a_joint_penalty_stands_while_any_agency_keeps_it():
    imposed = [credit_event(event_id="P1", event_type="joint-penalty-imposed", credit_class=None, source_agency="courts"),
               credit_event(event_id="P2", event_type="joint-penalty-imposed", credit_class=None, source_agency="taxation")]
    state = fold(*imposed, credit_event(event_id="L1", event_type="joint-penalty-lifted", credit_class=None, source_agency="courts"))
    assert state.joint_penalty and state.effective_class is CreditClass.JOINT_PENALTY
    assert not state.agencies["courts"].joint_penalty and state.agencies["taxation"].joint_penalty
    state = apply_credit_event(state, credit_event(event_id="L2", event_type="joint-penalty-lifted", credit_class=None,
                                                   source_agency="taxation"))
    assert not state.joint_penalty


def test_the_latest_qualification_status_wins_whoever_set_it():
    q = {"credit_class": None, "qualification": "zero-tariff"}
    state = fold(credit_event(event_id="Q1", event_type="qualification-registered", source_agency="customs", **q),
                 credit_event(event_id="Q2", event_type="qualification-suspended", source_agency="commerce", **q))
    assert not state.qualified_for(Qualification.ZERO_TARIFF)
    assert state.agencies["customs"].qualifications == {"zero-tariff": "active"}
    state = apply_credit_event(state, credit_event(event_id="Q3", event_type="qualification-registered", source_agency="customs", **q))
    assert state.qualified_for(Qualification.ZERO_TARIFF)


def test_folding_a_group_equals_folding_one_by_one_and_a_replayed_suffix_changes_nothing():
    events = [credit_event(event_id=f"E{i}", event_type=t, credit_class=c, source_agency=a)
              for i, (t, c, a) in enumerate([("credit-class-changed", "aeo", "customs"), ("joint-penalty-imposed", None, "courts"),
                                             ("credit-class-changed", "white-list", "taxation"), ("joint-penalty-lifted", None, "courts")])]
    folded = fold_credit_events(UNKNOWN_ENTERPRISE, events)
    assert folded.state == fold(*events)
    assert folded.applied == {"credit-class-changed": 2, "joint-penalty-imposed": 1, "joint-penalty-lifted": 1}
    assert fold_credit_events(folded.state, events[2:]).state == folded.state  # a redelivered micro-batch
    again = fold_credit_events(folded.state, events[-1:])
    assert again.state is folded.state and not again.applied  # the same event twice in a row is skipped


def test_an_event_from_one_agency_too_many_is_refused_and_the_others_apply():
    events = [credit_event(event_id=f"X{i}", credit_class="white-list", source_agency=f"agency-{i}") for i in range(MAX_AGENCIES + 1)]
    folded = fold_credit_events(UNKNOWN_ENTERPRISE, [*events, credit_event(event_id="C9", credit_class="aeo", source_agency="agency-3")])
    assert [e.event_id for e, _ in folded.refused] == [f"X{MAX_AGENCIES}"]
    assert len(folded.state.agencies) == MAX_AGENCIES and folded.state.credit_class is CreditClass.AEO
    with pytest.raises(TooManyAgencies):
        apply_credit_event(folded.state, credit_event(event_id="Y", source_agency="one-more"))
    assert apply_credit_event(folded.state, credit_event(event_id="Z", source_agency="agency-0")).agencies["agency-0"].last_event_id == "Z"
    # An agency it already has, then a new one, with room for exactly one more: both apply.
    almost = fold_credit_events(UNKNOWN_ENTERPRISE, events[:MAX_AGENCIES - 1]).state
    both = fold_credit_events(almost, [credit_event(event_id="K1", source_agency="agency-0"),
                                       credit_event(event_id="K2", source_agency="last-one")])
    assert not both.refused and len(both.state.agencies) == MAX_AGENCIES


def test_the_table_value_round_trips_and_first_release_json_is_still_read():
    state = fold(credit_event(event_id="C1", credit_class="aeo", reason="certified"),
                 credit_event(event_id="P1", event_type="joint-penalty-imposed", credit_class=None, source_agency="courts"))
    raw = state.to_bytes()
    assert raw[:1] == b"\x02" and EnterpriseCredit.from_bytes(raw) == state
    assert EnterpriseCredit.from_bytes(raw).agencies["customs"].last_reason == "certified"
    legacy = orjson.dumps({"credit_class": "aeo", "joint_penalty": True, "qualifications": {"zero-tariff": "active"},
                           "last_event_id": "OLD"})
    old = EnterpriseCredit.from_bytes(legacy)
    assert (old.credit_class, old.joint_penalty, old.qualifications, old.agencies) == (CreditClass.AEO, True, {"zero-tariff": "active"}, {})
    lifted = apply_credit_event(old, credit_event(event_id="L", event_type="joint-penalty-lifted", credit_class=None, source_agency="x"))
    assert not lifted.joint_penalty  # a penalty of unknown agency ends with any agency's lift
    with pytest.raises(ValueError, match="format byte"):
        EnterpriseCredit.from_bytes(b"\x07junk")


def test_a_parsed_credit_state_is_invisible_to_the_garbage_collector():
    # The worker's credit book holds a parsed state per enterprise (tens of thousands, each with an
    # entry per agency): tracked, they made every full collection walk millions of objects.
    state = fold(*(credit_event(event_id=f"E{i}", credit_class="aeo", source_agency=f"agency-{i}") for i in range(20)),
                 credit_event(event_id="Q", event_type="qualification-registered", credit_class=None,
                              qualification="zero-tariff", source_agency="commerce"))
    parsed = EnterpriseCredit.from_bytes(state.to_bytes())
    assert len(parsed.agencies) == 21 and parsed.qualifications
    untracked = [parsed, parsed.agencies, parsed.qualifications, *parsed.agencies.values(),
                 *(entry.qualifications for entry in parsed.agencies.values())]
    assert [o for o in untracked if gc.is_tracked(o)] == []


def _lift(event_id: str, agency: str):
    return credit_event(event_id=event_id, event_type="focus-list-lifted", credit_class=None, source_agency=agency)


def test_lifting_a_focus_list_placement_never_demotes_an_aeo():
    """A lift by an agency with no focus-list placement changes no class: the AEO stays AEO."""
    state = fold(credit_event(event_id="C1", credit_class="aeo", source_agency="customs"), _lift("L1", "customs"))
    assert state.credit_class is CreditClass.AEO and state.agencies["customs"].credit_class is CreditClass.AEO
    state = fold(credit_event(event_id="T1", credit_class="white-list", source_agency="taxation"), _lift("L1", "customs"))
    assert state.credit_class is CreditClass.WHITE_LIST


def test_a_lift_withdraws_only_the_placing_agencys_placement():
    placed = (credit_event(event_id="C1", credit_class="aeo", source_agency="customs"),
              credit_event(event_id="R1", credit_class="focus-list", source_agency="customs risk analysis"))
    state = fold(*placed)
    assert state.credit_class is CreditClass.AEO  # customs' class is authoritative: the placement has no effect
    assert state.agencies["customs risk analysis"].credit_class is CreditClass.FOCUS_LIST
    state = fold(*placed, _lift("L1", "customs risk analysis"))
    assert state.credit_class is CreditClass.AEO and state.agencies["customs risk analysis"].credit_class is None
    # Customs' own placement: lifting it falls back to the other agencies' entries (the latest), else general.
    state = fold(credit_event(event_id="T1", credit_class="white-list", source_agency="taxation", event_time="2026-11-01T00:00:00+00:00"),
                 credit_event(event_id="C1", credit_class="focus-list", source_agency="customs"))
    assert state.credit_class is CreditClass.FOCUS_LIST
    assert apply_credit_event(state, _lift("L1", "customs")).credit_class is CreditClass.WHITE_LIST
    alone = fold(credit_event(event_id="C1", credit_class="focus-list", source_agency="customs"), _lift("L1", "customs"))
    assert alone.credit_class is CreditClass.GENERAL
    # Another agency's lift leaves customs' placement standing.
    assert apply_credit_event(state, _lift("L2", "taxation")).credit_class is CreditClass.FOCUS_LIST


def test_a_lift_without_customs_falls_back_to_the_latest_other_agency():
    state = fold(credit_event(event_id="A1", credit_class="white-list", source_agency="taxation", event_time="2026-11-01T00:00:00+00:00"),
                 credit_event(event_id="A2", credit_class="aeo", source_agency="trade", event_time="2026-11-02T00:00:00+00:00"),
                 credit_event(event_id="A3", credit_class="focus-list", source_agency="courts", event_time="2026-11-03T00:00:00+00:00"))
    assert state.credit_class is CreditClass.FOCUS_LIST
    # Folded in one batch and from the stored state, the same answer.
    assert apply_credit_event(state, _lift("L1", "courts")).credit_class is CreditClass.AEO
    back = EnterpriseCredit.from_bytes(state.to_bytes())
    assert apply_credit_event(back, _lift("L1", "courts")).credit_class is CreditClass.AEO
    folded = fold_credit_events(back, [_lift("L1", "courts"), _lift("L1", "courts")])
    assert folded.state.credit_class is CreditClass.AEO and folded.applied == {"focus-list-lifted": 1}


def test_a_lift_carries_no_class():
    with pytest.raises(ValueError, match="carries no credit_class"):
        credit_event(event_id="L1", event_type="focus-list-lifted", credit_class="general")
