"""Intelligent positioning of registered vehicles and vessels: leaving warns, staying away too long
warns again (from an event or the timer), late and repeated events change nothing."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from decision.positions import DAY_S, PositionOutcome, TrackedState, on_overdue, on_position
from policy.config import ZeroTariff
from policy.zerotariff import AWAY_TOO_LONG, LEFT_ISLAND, PORT_PASSAGE, RegisteredGoods
from schemas import EarlyWarning, PositionEvent

CONFIG = ZeroTariff(allowed_days_away=2)
T = datetime(2026, 6, 1, tzinfo=UTC)
GOODS = RegisteredGoods("LSVAU2180N2183294", "vin", "ZT-1", "E-ZT", "IMP-1", "870323", "passenger car", 1.0, 0.0)
NOW = (T + timedelta(days=10)).timestamp()


def event(event_id: str, event_type: str, days: float, **fix: Any) -> PositionEvent:
    return PositionEvent.model_validate(dict(
        event_id=event_id, identifier=GOODS.identifier, kind="vehicle", event_type=event_type, tracker_id="TR1",
        event_time=(T + timedelta(days=days)).isoformat(), **fix), strict=False)


def warnings(step) -> list[EarlyWarning]:
    return [EarlyWarning.model_validate_json(raw) for raw in step.warnings]


def run(*events: PositionEvent, state: TrackedState | None = None):
    steps = []
    for e in events:
        step = on_position(CONFIG, state, e, GOODS, "p1", NOW)
        state = step.state or state
        steps.append(step)
    return state, steps


def test_leaving_warns_once_and_schedules_the_overstay_check():
    state, (first, second) = run(event("E1", "exit-island", 0), event("E2", "position", 0.5, latitude=21.0, longitude=110.5))
    (left,) = warnings(first)
    assert left.rule == LEFT_ISLAND and left.subject_kind.value == "vehicle" and left.severity.value == "medium"
    assert left.warning_id == f"{GOODS.identifier}:{int(T.timestamp())}:{LEFT_ISLAND}"
    assert first.due == T.timestamp() + 2 * DAY_S and warnings(second) == [] and second.due == first.due
    assert state is not None and state.outside_since == T.timestamp()


def test_the_timer_warns_when_the_allowed_time_runs_out_and_only_once():
    state, _ = run(event("E1", "exit-island", 0))
    assert state is not None
    early = on_overdue(CONFIG, state, GOODS, "p1", T.timestamp() + DAY_S)
    assert early.warnings == [] and early.state is None and early.due == T.timestamp() + 2 * DAY_S
    late = on_overdue(CONFIG, state, GOODS, "p1", T.timestamp() + 2 * DAY_S + 1)
    (away,) = warnings(late)
    assert away.rule == AWAY_TOO_LONG and away.severity.value == "high"
    assert away.event_time == T + timedelta(days=2)  # the due time: a replay raises the same record
    assert late.state is not None and late.state.overstay_warned
    assert on_overdue(CONFIG, late.state, GOODS, "p1", NOW).warnings == []


def test_an_event_already_past_the_allowed_time_warns_at_once():
    _, (_, late) = run(event("E1", "exit-island", 0), event("E2", "position", 3, latitude=21.0, longitude=110.5))
    assert [w.rule for w in warnings(late)] == [AWAY_TOO_LONG] and late.due is None


def test_coming_back_ends_the_absence_and_released_goods_are_not_warned_of():
    state, (_, back) = run(event("E1", "exit-island", 0), event("E2", "enter-island", 1))
    assert state is not None and state.outside_since is None and back.due is None and warnings(back) == []
    gone, _ = run(event("E3", "exit-island", 1.5))
    assert gone is not None
    assert on_overdue(CONFIG, gone, None, "p1", NOW).outcome is PositionOutcome.UNREGISTERED


def test_late_and_repeated_events_change_nothing():
    state, _ = run(event("E1", "exit-island", 1))
    _, (older, same) = run(event("E0", "enter-island", 0.5), event("E1", "exit-island", 1), state=state)
    assert older.outcome is PositionOutcome.STALE and same.outcome is PositionOutcome.STALE
    assert older.state is None and same.state is None and older.warnings == same.warnings == []


def test_fixes_on_the_island_then_at_sea_count_as_leaving_and_a_port_passage_warns():
    _, (inside, outside) = run(event("E1", "position", 0, latitude=20.03, longitude=110.32),
                               event("E2", "position", 0.1, latitude=20.6, longitude=110.4))
    assert warnings(inside) == [] and [w.rule for w in warnings(outside)] == [LEFT_ISLAND]
    _, (passage,) = run(event("E3", "port-passage", 0, port="HAK-SEA"))
    (warning,) = warnings(passage)
    assert warning.rule == PORT_PASSAGE and warning.port == "HAK-SEA"
