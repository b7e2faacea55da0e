"""Offshore duty-free shopping: the per-shopper yearly fold, the resale index, the departure rule."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import orjson
import pytest
from pydantic import ValidationError

from decision.dutyfree import standing_of, with_warnings
from decision.flow import Versions, on_declaration
from policy.config import MAX_LINKED_SHOPPERS, DutyFree, load_policy
from policy.credit import UNKNOWN_ENTERPRISE
from policy.decide import decide
from policy.dutyfree import (
    FLAGGED_DEPARTURE,
    IDENTITY_NOT_MATCHED,
    ITEM_LIMIT_EXCEEDED,
    LINKED_SHOPPERS,
    QUOTA_EXCEEDED,
    RECENT_PURCHASES,
    REPEAT_GOODS,
    LinkYear,
    ShopperYear,
    Standing,
    fold_link,
    fold_purchase,
    links_of,
    purchase_year,
    year_expires_at,
)
from schemas import Action, DutyFreePurchase, EarlyWarning, SelectionReason, Severity, SubjectKind
from tests.unit.factories import FIXTURE_POLICY, declaration

CONFIG = DutyFree()
POLICY = load_policy(FIXTURE_POLICY).model_copy(
    update={"random_selection": load_policy(FIXTURE_POLICY).random_selection.model_copy(update={"share": 0.0})})


def purchase(pid: str, total: float = 1000.0, *, shopper: str = "SH1", category: str = "other", code: str = "G1",
             quantity: int = 1, matched: bool = True, at: str = "2026-06-01T10:00:00+08:00", **over: Any) -> DutyFreePurchase:
    return DutyFreePurchase.model_validate_json(orjson.dumps(dict(
        purchase_id=pid, shop_id="SHOP1", shopper_token=shopper,
        identity_check={"token": f"IC-{pid}", "method": "face", "matched": matched},
        items=[{"category": category, "goods_code": code, "quantity": quantity, "unit_price_cny": round(total / quantity, 2)}],
        total_cny=total, purchased_at=at, **over)))


def fold_all(purchases: list[DutyFreePurchase], config: DutyFree = CONFIG) -> tuple[ShopperYear | None, list[str]]:
    state, fired = None, []
    for p in purchases:
        folded = fold_purchase(config, state, p)
        state = folded.state or state
        fired += [f.rule for f in folded.fired]
    return state, fired


def test_within_the_quota_nothing_fires_and_the_spend_adds_up():
    state, fired = fold_all([purchase(f"P{n}", 20_000.0, code=f"G{n}") for n in range(5)])
    assert fired == [] and state is not None
    assert state.spent_cny == 100_000.0 and state.purchases == 5 and state.flags == {}


def test_over_the_yearly_quota_fires_once_on_the_purchase_that_crosses_it():
    state, fired = fold_all([purchase(f"P{n}", 30_000.0, code=f"G{n}") for n in range(5)])
    assert fired == [QUOTA_EXCEEDED] and state is not None
    assert state.flags[QUOTA_EXCEEDED].purchase_id == "P3"
    assert "120,000.00 CNY spent in 2026 against 100,000 CNY" in state.flags[QUOTA_EXCEEDED].reason


def test_a_redelivered_purchase_is_not_counted_twice_and_resends_its_warning():
    p = [purchase(f"P{n}", 60_000.0, code=f"G{n}") for n in range(2)]
    state, _ = fold_all(p)
    assert state is not None
    sent = with_warnings(state, p[1], fold_purchase(CONFIG, fold_all(p[:1])[0], p[1]).fired, "v1", 0.0)
    again = fold_purchase(CONFIG, state, p[1])
    assert again.state is None and again.outcome == "duplicate" and again.fired == ()
    assert [f.warning for f in again.resend] == sent
    warning = EarlyWarning.model_validate_json(sent[0])
    assert warning.warning_id == "SH1:2026:duty-free-quota-exceeded" and warning.subject_kind is SubjectKind.SHOPPER


def test_the_calendar_year_is_beijing_time_and_a_new_year_starts_afresh():
    late = purchase("P1", 90_000.0, at="2025-12-31T16:30:00+00:00")  # 2026-01-01 in Beijing
    assert purchase_year(CONFIG, late.purchased_at) == 2026
    state, fired = fold_all([purchase("P0", 90_000.0, at="2025-12-31T15:29:00+00:00"), late])
    assert fired == [] and state is not None and state.year == 2026 and state.spent_cny == 90_000.0
    old = fold_purchase(CONFIG, state, purchase("P2", 50_000.0, at="2025-03-01T00:00:00+08:00"))
    assert old.outcome == "late-year" and old.state is None


def test_per_item_limits_are_per_category_and_year():
    state, fired = fold_all([purchase("P1", 500.0, category="mobile-phones", code="PH1", quantity=3),
                             purchase("P2", 300.0, category="mobile-phones", code="PH2", quantity=2)])
    assert fired == [ITEM_LIMIT_EXCEEDED] and state is not None
    assert "mobile-phones 5 pieces (limit 4)" in state.flags[ITEM_LIMIT_EXCEEDED].reason
    _, fired = fold_all([purchase("P1", 500.0, category="watches", code="W1", quantity=40)])  # no limit configured
    assert fired == []


def test_an_identity_mismatch_and_the_same_goods_again_and_again_fire():
    _, fired = fold_all([purchase("P1", matched=False)])
    assert fired == [IDENTITY_NOT_MATCHED]
    _, fired = fold_all([purchase(f"P{n}", 100.0, code="SAME") for n in range(CONFIG.repeat_purchases)])
    assert fired == [REPEAT_GOODS]
    _, fired = fold_all([purchase(f"P{n}", 100.0, code="SAME") for n in range(CONFIG.repeat_purchases - 1)])
    assert fired == []


def test_the_state_a_shop_controls_stays_bounded():
    state, _ = fold_all([purchase(f"P{n}", 1.0, code=f"G{n}") for n in range(RECENT_PURCHASES + 300)])
    assert state is not None and len(state.recent) == RECENT_PURCHASES and len(state.goods) <= 200
    assert state.purchases == RECENT_PURCHASES + 300
    assert ShopperYear.from_bytes(state.to_bytes()) == state
    with pytest.raises(ValueError):
        ShopperYear.from_bytes(b"\x02garbage")


def test_hostile_purchases_are_refused_by_the_schema():
    with pytest.raises(ValidationError, match="not the sum of the items"):
        DutyFreePurchase.model_validate_json(orjson.dumps({**purchase("P1").model_dump(mode="json"), "total_cny": 5.0}))
    with pytest.raises(ValidationError):
        DutyFreePurchase.model_validate_json(orjson.dumps({**purchase("P1").model_dump(mode="json"), "items": [
            {"category": "other", "goods_code": f"G{n}", "quantity": 1, "unit_price_cny": 1.0} for n in range(51)]}))
    with pytest.raises(ValidationError):
        purchase("P1", 1e12)
    with pytest.raises(ValidationError):
        DutyFreePurchase.model_validate_json(orjson.dumps({**purchase("P1").model_dump(mode="json"), "face_image": "..."}))


def test_many_shoppers_on_one_payer_is_a_resale_pattern_once_per_link_and_year():
    assert links_of(purchase("P1", payer_token="PAY1", delivery_address_token="AD1")) == ["payer:PAY1", "address:AD1"]
    state: LinkYear | None = None
    fired = []
    for n in range(CONFIG.max_shoppers_per_link + 2):
        folded = fold_link(CONFIG, state, "payer:PAY1", f"SH{n}", 2026)
        state = folded.state or state
        if folded.fired:
            fired.append(folded.fired)
            assert set(folded.flag) == {f"SH{i}" for i in range(n + 1)}  # every tied shopper is flagged
    assert len(fired) == 1 and fired[0].rule == LINKED_SHOPPERS
    assert fired[0].warning.subject_kind is SubjectKind.SHOPPER_LINK and fired[0].warning.subject_id == "PAY1"
    assert fold_link(CONFIG, state, "payer:PAY1", "SH0", 2026).state is None  # a shopper it knows: unchanged
    assert fold_link(CONFIG, state, "payer:PAY1", "SHX", 2026).flag == ("SHX",)  # a newcomer after: flagged too


def test_the_shoppers_one_link_remembers_are_capped():
    state: LinkYear | None = None
    for n in range(MAX_LINKED_SHOPPERS + 50):
        state = fold_link(CONFIG, state, "phone:PH1", f"SH{n}", 2026).state or state
    assert state is not None and len(state.shoppers) == MAX_LINKED_SHOPPERS and state.count() == MAX_LINKED_SHOPPERS + 50


def test_a_departure_of_a_flagged_shopper_is_inspected_with_the_reason():
    state, _ = fold_all([purchase(f"P{n}", 60_000.0, code=f"G{n}") for n in range(2)])
    assert state is not None
    standing = standing_of(CONFIG, state)
    assert standing is not None and Standing.from_bytes(standing.to_bytes()) == standing
    departure = declaration(scenario="duty-free-shopping", shopper_token="SH1")
    d = decide(POLICY, departure, UNKNOWN_ENTERPRISE, 0.0, duty_free=[standing])
    assert d.action is Action.INSPECT and d.selection_reason is SelectionReason.RULE
    assert d.reasons[0].startswith("duty-free shopper SH1: yearly duty-free quota exceeded") and QUOTA_EXCEEDED in d.rules
    clean = decide(POLICY, departure, UNKNOWN_ENTERPRISE, 0.0, duty_free=[])
    assert clean.action is Action.RELEASE and clean.rules == ()
    last_year = Standing(shopper="SH1", year=2025, reasons=standing.reasons)  # kept until it expires, but stale
    assert decide(POLICY, departure, UNKNOWN_ENTERPRISE, 0.0, duty_free=[last_year]).rules == ()


def test_a_held_departure_raises_one_warning_tied_to_the_departure_declaration():
    state, _ = fold_all([purchase(f"P{n}", 60_000.0, code=f"G{n}") for n in range(2)])
    assert state is not None
    standing = standing_of(CONFIG, state)
    assert standing is not None
    resale = Standing(shopper="SH1", year=state.year, reasons={LINKED_SHOPPERS: "resale pattern: tied with 6 shoppers to one payer"})
    departure = declaration(declaration_id="DEP-1", scenario="duty-free-shopping", shopper_token="SH1")
    d = decide(POLICY, departure, UNKNOWN_ENTERPRISE, 0.0, duty_free=[standing, resale])
    assert d.rules == (QUOTA_EXCEEDED, LINKED_SHOPPERS) and len(d.warnings) == 1
    w = d.warnings[0]
    assert (w.rule, w.severity, w.subject_kind, w.subject_id) == (FLAGGED_DEPARTURE, Severity.HIGH, SubjectKind.SHOPPER, "SH1")
    assert "declaration DEP-1" in w.evidence[0]
    assert w.evidence[1].startswith("yearly duty-free quota exceeded") and w.evidence[2].startswith("resale pattern")
    step = on_declaration(None, departure, d, 0.0, Versions("p1", "m1"), 60.0, 1_000.0)
    (raw,) = step.warnings
    record = EarlyWarning.model_validate_json(raw)  # the strict schema of every warning
    assert record.declaration_id == "DEP-1" and record.revision == departure.revision and record.port == departure.port
    assert record.warning_id == f"DEP-1:{departure.revision}:{FLAGGED_DEPARTURE}" and step.raised == [("high", FLAGGED_DEPARTURE)]
    assert decide(POLICY, departure, UNKNOWN_ENTERPRISE, 0.0, duty_free=[]).warnings == ()  # a clean shopper: none


def test_the_warning_of_a_departure_is_as_severe_as_the_worst_rule_that_holds_it():
    repeat = Standing(shopper="SH1", year=2026, reasons={REPEAT_GOODS: "the same goods bought again and again"})
    departure = declaration(scenario="duty-free-shopping", shopper_token="SH1", event_time=datetime(2026, 6, 1, tzinfo=UTC))
    (w,) = decide(POLICY, departure, UNKNOWN_ENTERPRISE, 0.0, duty_free=[repeat]).warnings
    assert w.severity is Severity.MEDIUM  # repeat goods is a medium rule


def test_a_departure_decided_before_the_flagging_purchase_is_folded_is_not_held():
    """The documented order (policy/README.md): a departure is decided once, on the standings the
    worker holds then; the purchase that flags the shopper at the same instant, folded after it,
    raises the shopper's own warning but does not re-decide the departure."""
    at = datetime(2026, 6, 1, 10, 0, tzinfo=UTC)
    departure = declaration(declaration_id="DEP-2", scenario="duty-free-shopping", shopper_token="SH1", event_time=at)
    before = decide(POLICY, departure, UNKNOWN_ENTERPRISE, 0.0, duty_free=[])  # the standing is not there yet
    state, fired = fold_all([purchase("P0", 60_000.0, code="G0"), purchase("P1", 60_000.0, code="G1")])
    assert fired == [QUOTA_EXCEEDED] and state is not None
    standing = standing_of(CONFIG, state)
    assert standing is not None
    step = on_declaration(None, departure, before, 0.0, Versions("p1", "m1"), 60.0, 1_000.0)
    assert before.action is Action.RELEASE and step.warnings == [] and step.instructions[0].final
    # The same departure redelivered after the fold is a duplicate: the first decision stands.
    again = on_declaration(step.state, departure, None, None, Versions("p1", "m1"), 60.0, 1_001.0)
    assert again.state is None and again.emit == step.emit
    # Decided after the fold (the standing held), it is inspected and warned of.
    after = decide(POLICY, departure, UNKNOWN_ENTERPRISE, 0.0, duty_free=[standing])
    assert after.action is Action.INSPECT and [w.rule for w in after.warnings] == [FLAGGED_DEPARTURE]


def test_a_rule_that_does_not_hold_at_departure_only_warns():
    config = CONFIG.model_copy(update={"quota_exceeded": CONFIG.quota_exceeded.model_copy(update={"hold_at_departure": False})})
    state, fired = fold_all([purchase(f"P{n}", 60_000.0, code=f"G{n}") for n in range(2)], config)
    assert fired == [QUOTA_EXCEEDED] and state is not None and standing_of(config, state) is None


def test_the_shopper_token_belongs_to_duty_free_shopping_only():
    with pytest.raises(ValidationError, match="duty-free-shopping declarations only"):
        declaration(scenario="general-trade", shopper_token="SH1")


def test_a_year_expires_after_its_end_plus_the_grace():
    expires = year_expires_at(CONFIG, 2026)
    assert datetime.fromtimestamp(expires, UTC) == datetime(2027, 1, 31, 16, 0, tzinfo=UTC)  # 2027-02-01 00:00 Beijing
    assert CONFIG.yearly_quota_cny == 100_000.0 and CONFIG.quota_exceeded.severity is Severity.HIGH
