"""Precedence, credit classes, risk lists, capacity bounds and batches of the declaration-time decision."""

from __future__ import annotations

from datetime import timedelta

import pytest

from policy.capacity import LaneOffsets
from policy.config import PolicyError, load_policy
from policy.credit import UNKNOWN_ENTERPRISE, EnterpriseCredit, apply_credit_event
from policy.decide import (
    BatchNotAllowed,
    Decision,
    TooManyItems,
    check_centralised,
    decide,
    decide_items,
    effective_thresholds,
    random_draw,
)
from policy.risklists import RiskListIndex
from schemas import Action, CreditClass, RiskListEntry, Scenario, SelectionReason
from tests.unit.factories import FIXTURE_POLICY, NOW, credit_event, declaration

POLICY = load_policy(FIXTURE_POLICY).model_copy(
    update={"random_selection": load_policy(FIXTURE_POLICY).random_selection.model_copy(update={"share": 0.0})})


def credit(cls: CreditClass, **kw) -> EnterpriseCredit:
    return EnterpriseCredit(credit_class=cls, **kw)


@pytest.mark.parametrize("cls", [c for c in CreditClass if c is not CreditClass.JOINT_PENALTY])
def test_thresholds_follow_credit_class(cls):
    t = POLICY.thresholds[cls]
    d = declaration()
    assert decide(POLICY, d, credit(cls), t.inspect).action is Action.INSPECT
    assert decide(POLICY, d, credit(cls), t.machine_check).action is Action.MACHINE_CHECK
    below = decide(POLICY, d, credit(cls), max(0.0, t.machine_check - 0.01))
    assert below.action is Action.RELEASE and below.credit_class is cls


def test_aeo_is_treated_more_leniently_than_focus_list():
    d = declaration()
    score = 0.7
    assert decide(POLICY, d, credit(CreditClass.AEO), score).action is Action.RELEASE
    assert decide(POLICY, d, credit(CreditClass.FOCUS_LIST), score).action is Action.INSPECT


def test_zero_tariff_without_active_qualification_is_inspected_before_model():
    d = declaration(scenario="zero-tariff")
    out = decide(POLICY, d, credit(CreditClass.AEO), 0.0)
    assert out.action is Action.INSPECT and out.selection_reason is SelectionReason.RULE
    qualified = credit(CreditClass.AEO, qualifications={"zero-tariff": "active"})
    assert decide(POLICY, d, qualified, 0.0).action is Action.RELEASE
    suspended = credit(CreditClass.AEO, qualifications={"zero-tariff": "suspended"})
    assert "suspended" in decide(POLICY, d, suspended, 0.0).reasons[0]


def test_most_severe_wins_and_earlier_stage_names_the_reason_on_ties():
    d = declaration(scenario="processing-value-added")
    out = decide(POLICY, d, credit(CreditClass.GENERAL), 0.99)  # rule inspect and model inspect
    assert out.action is Action.INSPECT and out.selection_reason is SelectionReason.RULE
    assert len(out.reasons) == 2


def test_joint_penalty_overrides_certification():
    state = apply_credit_event(credit(CreditClass.AEO), credit_event(event_id="P1", event_type="joint-penalty-imposed", credit_class=None))
    assert state.effective_class is CreditClass.JOINT_PENALTY
    out = decide(POLICY, declaration(), state, 0.0)
    assert out.action is Action.MACHINE_CHECK and out.selection_reason is SelectionReason.RULE


def test_random_selection_is_deterministic_and_near_its_share():
    policy = load_policy(FIXTURE_POLICY).model_copy(
        update={"random_selection": load_policy(FIXTURE_POLICY).random_selection.model_copy(update={"share": 0.05})})
    ids = [f"D{i}" for i in range(20000)]
    picked = [i for i in ids
              if decide(policy, declaration(declaration_id=i), credit(CreditClass.GENERAL), 0.0).selection_reason is SelectionReason.RANDOM]
    again = [i for i in ids if random_draw(policy.seed, i) < 0.05]
    assert picked == again
    assert 0.045 < len(picked) / len(ids) < 0.055
    other_seed = [i for i in ids if random_draw(policy.seed + 1, i) < 0.05]
    assert other_seed != picked


def test_credit_fold_is_idempotent_and_tracks_lifecycle():
    s = UNKNOWN_ENTERPRISE
    reg = credit_event(event_id="Q1", event_type="qualification-registered", credit_class=None, qualification="zero-tariff")
    s1 = apply_credit_event(s, reg)
    assert s1.qualified_for(__import__("schemas").Qualification.ZERO_TARIFF)
    assert apply_credit_event(s1, reg) is s1
    s2 = apply_credit_event(
        s1, credit_event(event_id="Q2", event_type="qualification-revoked", credit_class=None, qualification="zero-tariff"))
    assert s2.qualifications["zero-tariff"] == "revoked"
    assert type(s2).from_bytes(s2.to_bytes()) == s2


def test_bad_policy_file_is_refused(tmp_path):
    bad = tmp_path / "p.yaml"
    bad.write_text("version: x\nseed: 1\nthresholds: {general: {machine_check: 0.9, inspect: 0.5}}\n")
    with pytest.raises(PolicyError, match="invalid"):
        load_policy(bad)
    with pytest.raises(PolicyError, match="cannot read"):
        load_policy(tmp_path / "missing.yaml")


# ---- risk lists in the precedence ------------------------------------------------------------
def entry(entry_id: str = "R1", action: str = "inspect", kind: str = "hs-prefix", value: str = "8517", **kw) -> RiskListEntry:
    fields = dict(entry_id=entry_id, list_id=f"L-{action}", kind=kind, value=value, action=action,
                  reason="alert from the coast guard", source_agency="coast-guard", valid_from=NOW - timedelta(days=1))
    fields.update(kw)
    return RiskListEntry.model_validate(fields, strict=False)


def hits_for(*entries: RiskListEntry, decl=None):
    return RiskListIndex(entries).matches(decl or declaration())


def test_inspect_list_hit_overrides_a_low_score_and_names_list_and_reason():
    out = decide(POLICY, declaration(), credit(CreditClass.AEO), 0.0, hits_for(entry()))
    assert out.action is Action.INSPECT and out.selection_reason is SelectionReason.RISK_LIST
    assert out.risk_hits == ("L-inspect/R1",)
    assert "L-inspect" in out.reasons[0] and "R1" in out.reasons[0] and "coast guard" in out.reasons[0]


def test_machine_check_list_hit_gives_machine_check_and_model_inspect_still_wins():
    hits = hits_for(entry(action="machine-check"))
    low = decide(POLICY, declaration(), credit(CreditClass.GENERAL), 0.0, hits)
    assert low.action is Action.MACHINE_CHECK and low.selection_reason is SelectionReason.RISK_LIST
    high = decide(POLICY, declaration(), credit(CreditClass.GENERAL), 0.99, hits)
    assert high.action is Action.INSPECT and high.selection_reason is SelectionReason.MODEL_THRESHOLD
    assert high.risk_hits == ("L-machine-check/R1",) and len(high.reasons) == 2


def test_watch_hit_changes_nothing_but_is_recorded():
    plain = decide(POLICY, declaration(), credit(CreditClass.GENERAL), 0.1)
    watched = decide(POLICY, declaration(), credit(CreditClass.GENERAL), 0.1, hits_for(entry(action="watch")))
    assert watched.action is plain.action is Action.RELEASE
    assert watched.selection_reason is SelectionReason.NONE
    assert watched.risk_hits == ("L-watch/R1",)
    assert watched.reasons[0] == plain.reasons[0] and watched.reasons[-1].startswith("watch: ")


def test_rule_names_the_reason_when_tied_with_an_inspect_list():
    d = declaration(scenario="zero-tariff")
    out = decide(POLICY, d, credit(CreditClass.GENERAL), 0.0, hits_for(entry(), decl=d))
    assert out.action is Action.INSPECT and out.selection_reason is SelectionReason.RULE
    assert out.risk_hits == ("L-inspect/R1",)


def test_risk_list_beats_model_and_random_on_ties():
    policy = POLICY.model_copy(update={"random_selection": POLICY.random_selection.model_copy(update={"share": 1.0})})
    t = policy.thresholds[CreditClass.GENERAL]
    out = decide(policy, declaration(), credit(CreditClass.GENERAL), t.machine_check, hits_for(entry(action="machine-check")))
    assert out.action is Action.MACHINE_CHECK and out.selection_reason is SelectionReason.RISK_LIST
    assert len(out.reasons) == 3  # risk list, model, random: every proposal is explained
    only_random = decide(policy, declaration(), credit(CreditClass.GENERAL), 0.0)
    assert only_random.selection_reason is SelectionReason.RANDOM


def test_the_most_severe_list_hit_comes_first():
    hits = hits_for(entry("W", action="watch"), entry("M", action="machine-check"), entry("I", action="inspect"))
    out = decide(POLICY, declaration(), credit(CreditClass.GENERAL), 0.0, hits)
    assert out.risk_hits == ("L-inspect/I", "L-machine-check/M", "L-watch/W")
    assert out.action is Action.INSPECT


def test_decision_stays_backward_compatible():
    old = Decision(Action.RELEASE, SelectionReason.NONE, CreditClass.GENERAL, ("x",))
    assert old.risk_hits == () and old.thresholds is None
    out = decide(POLICY, declaration(), credit(CreditClass.GENERAL), 0.1)  # the old four-argument call
    assert out.thresholds == (POLICY.thresholds[CreditClass.GENERAL].machine_check, POLICY.thresholds[CreditClass.GENERAL].inspect)


# ---- capacity offsets and credit-class bounds --------------------------------------------------
@pytest.mark.parametrize("offset", [-0.3, -0.1, 0.0, 0.1, 0.3])
@pytest.mark.parametrize("cls", list(CreditClass))
def test_offsets_never_push_a_class_past_its_bounds(cls, offset):
    bounds = POLICY.capacity.bounds_for(cls)
    for scenario in Scenario:
        mc, ins = effective_thresholds(POLICY, cls, scenario, LaneOffsets(offset, offset))
        assert bounds.machine_check.min <= mc <= bounds.machine_check.max
        assert bounds.inspect.min <= ins <= bounds.inspect.max


def test_aeo_is_never_harsher_and_focus_list_never_more_lenient_than_configured():
    harsh, lenient = LaneOffsets(-0.3, -0.3), LaneOffsets(0.3, 0.3)
    aeo = POLICY.thresholds[CreditClass.AEO]
    assert effective_thresholds(POLICY, CreditClass.AEO, Scenario.GENERAL_TRADE, harsh) == (aeo.machine_check, aeo.inspect)
    focus = POLICY.thresholds[CreditClass.FOCUS_LIST]
    assert effective_thresholds(POLICY, CreditClass.FOCUS_LIST, Scenario.GENERAL_TRADE, lenient) == (focus.machine_check, focus.inspect)


def test_offsets_move_the_model_threshold_and_the_reason_says_so():
    t = POLICY.thresholds[CreditClass.GENERAL]
    score = t.machine_check + 0.02
    assert decide(POLICY, declaration(), credit(CreditClass.GENERAL), score).action is Action.MACHINE_CHECK
    out = decide(POLICY, declaration(), credit(CreditClass.GENERAL), score, offsets=LaneOffsets(0.05, 0.0))
    assert out.action is Action.RELEASE and out.thresholds[0] == pytest.approx(t.machine_check + 0.05)
    lowered = decide(POLICY, declaration(), credit(CreditClass.GENERAL), t.machine_check - 0.02, offsets=LaneOffsets(-0.05, 0.0))
    assert lowered.action is Action.MACHINE_CHECK and "adapted to port capacity" in lowered.reasons[0]


def test_random_selection_replays_identically_in_any_order():
    policy = load_policy(FIXTURE_POLICY)  # shipped share, shipped seed
    decls = [declaration(declaration_id=f"R{i}") for i in range(3000)]

    def selected(order):
        return {d.declaration_id for d in order
                if decide(policy, d, credit(CreditClass.GENERAL), 0.0).selection_reason is SelectionReason.RANDOM}

    first = selected(decls)
    assert first == selected(list(reversed(decls))) == selected(decls)
    assert 0 < len(first) < 3000 * policy.random_selection.share * 2


# ---- centralised declarations ------------------------------------------------------------------
def test_white_list_batch_gets_one_decision_per_item():
    items = [declaration(declaration_id=f"B1-{i}") for i in range(3)]
    out = decide_items(POLICY, items, credit(CreditClass.WHITE_LIST), [0.0, 0.8, 0.99])
    assert [d.action for d in out] == [Action.RELEASE, Action.MACHINE_CHECK, Action.INSPECT]


@pytest.mark.parametrize("state", [credit(CreditClass.GENERAL), credit(CreditClass.WHITE_LIST, joint_penalty=True)])
def test_batch_from_a_class_not_allowed_is_refused(state):
    with pytest.raises(BatchNotAllowed):
        decide_items(POLICY, [declaration()], state, [0.0])


def test_batch_items_must_share_the_enterprise():
    items = [declaration(declaration_id="B-1"), declaration(declaration_id="B-2", enterprise_id="E2")]
    with pytest.raises(BatchNotAllowed, match="one enterprise"):
        decide_items(POLICY, items, credit(CreditClass.AEO), [0.0, 0.0])


@pytest.mark.parametrize("state, reason, text", [
    (credit(CreditClass.GENERAL), "centralised-not-allowed", "credit class general may not"),
    (credit(CreditClass.WHITE_LIST, joint_penalty=True), "centralised-not-allowed", "joint-penalty (joint penalty) may not"),
])
def test_check_centralised_names_the_reason(state, reason, text):
    with pytest.raises(BatchNotAllowed, match=text.replace("(", r"\(").replace(")", r"\)")) as info:
        check_centralised(POLICY, state, [object()])
    assert info.value.reason_code == reason


@pytest.mark.parametrize("count", [0, POLICY.batch.max_items + 1])
def test_check_centralised_bounds_the_item_count(count):
    with pytest.raises(TooManyItems, match=f"1 to {POLICY.batch.max_items} items, got {count}") as info:
        check_centralised(POLICY, credit(CreditClass.AEO), range(count))
    assert info.value.reason_code == "centralised-too-many-items"
    check_centralised(POLICY, credit(CreditClass.AEO), range(POLICY.batch.max_items))  # the limit itself is fine
