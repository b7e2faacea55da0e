"""Intelligent positioning of zero-tariff vehicles and vessels: a small state machine per identifier.

The positioning system publishes position fixes and geofence events (``schemas.PositionEvent``)
keyed by the identifier (VIN, hull number). For goods on the zero-tariff register the worker keeps
one ``TrackedState`` per identifier (where it was last seen, since when it is off the island) and:

* leaving the island (a geofence ``exit-island``, or a fix outside the policy's outline while not
  known to be away) raises ``zero-tariff-left-island``;
* staying away longer than ``zero_tariff.allowed_days_away`` raises ``zero-tariff-away-too-long``,
  of higher severity: at once if the event that shows it is already that late, otherwise from the
  timer (``on_overdue``) at the due time, which the worker keeps in a time index;
* passing a port's gate raises ``zero-tariff-port-passage``.

Events are applied in event-time order per identifier: one older than the last applied (or the
same event again) is ignored, so a late or redelivered event never moves the state back, and the
outcome does not depend on arrival order beyond that rule. Warning ids are deterministic (the
identifier, the time the absence began or the passage happened, the rule): a redelivery or a
replay raises the same id, which consumers deduplicate. Pure functions, no I/O, like
``decision.flow``.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import UTC, datetime

import msgspec

from policy.config import ZeroTariff
from policy.zerotariff import AWAY_TOO_LONG, LEFT_ISLAND, PORT_PASSAGE, RegisteredGoods, on_island
from schemas import EarlyWarning, PositionEvent, PositionEventType, Severity, WarningSource

DAY_S = 86_400.0


class TrackedState(msgspec.Struct, array_like=True):
    """What the worker knows of one tracked identifier (the value of the ``tracked-goods`` table)."""

    last_event_time: float  # epoch seconds of the last event applied
    last_event_id: str
    outside_since: float | None = None  # off the island since (None: on the island, or not known to have left)
    overstay_warned: bool = False  # the away-too-long warning of this absence was raised

    def due(self, config: ZeroTariff) -> float | None:
        """When the away-too-long warning falls due (None: not away, or already warned)."""
        if self.outside_since is None or self.overstay_warned:
            return None
        return self.outside_since + config.allowed_days_away * DAY_S


class PositionOutcome(str, enum.Enum):
    APPLIED = "applied"
    STALE = "stale"  # older than (or the same as) the last event applied
    UNREGISTERED = "unregistered"  # not on the register: ignored


@dataclass(slots=True)
class PositionStep:
    state: TrackedState | None  # to store (None: leave the table as it is)
    outcome: PositionOutcome = PositionOutcome.APPLIED
    warnings: list[bytes] = field(default_factory=list)
    raised: list[tuple[str, str]] = field(default_factory=list)  # (severity, rule)
    due: float | None = None  # index the key for the timer at this time


_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(TrackedState)


def encode_tracked(state: TrackedState) -> bytes:
    return _encoder.encode(state)


def decode_tracked(raw: bytes) -> TrackedState:
    return _decoder.decode(raw)


def _is_outside(config: ZeroTariff, event: PositionEvent, was_outside: bool) -> bool:
    if event.event_type is PositionEventType.EXIT_ISLAND:
        return True
    if event.event_type is PositionEventType.ENTER_ISLAND:
        return False
    if event.latitude is not None and event.longitude is not None:
        return not on_island(config, event.latitude, event.longitude)
    return was_outside  # a port passage without a fix: where it was


def on_position(config: ZeroTariff, state: TrackedState | None, event: PositionEvent, goods: RegisteredGoods,
                policy_version: str, now: float) -> PositionStep:
    """Apply one event of a registered identifier."""
    at = event.event_time.timestamp()
    if state is not None and (at < state.last_event_time or event.event_id == state.last_event_id):
        return PositionStep(None, PositionOutcome.STALE)
    was_outside = state is not None and state.outside_since is not None
    outside = _is_outside(config, event, was_outside)
    new = TrackedState(at, event.event_id)
    step = PositionStep(new)
    if outside:
        new.outside_since = state.outside_since if was_outside and state is not None else at
        new.overstay_warned = was_outside and state is not None and state.overstay_warned
        if not was_outside:
            _warn(step, goods, LEFT_ISLAND, config.exit_severity, at, at, policy_version, now, (
                f"left the island: {event.event_type.value} from tracker {event.tracker_id}{_where(event)}",
                f"allowed away: {config.allowed_days_away:g} days",
            ))
    if event.event_type is PositionEventType.PORT_PASSAGE:
        _warn(step, goods, PORT_PASSAGE, config.port_passage_severity, at, at, policy_version, now, (
            f"passed port {event.port} (tracker {event.tracker_id}){_where(event)}",
        ), port=event.port)
    due = new.due(config)
    if due is not None and at >= due:
        _overstay(step, new, goods, config, policy_version, now)
    else:
        step.due = due
    return step


def on_overdue(config: ZeroTariff, state: TrackedState, goods: RegisteredGoods | None, policy_version: str,
               now: float) -> PositionStep:
    """The timer found the identifier's due time passed: warn once, if it is still away and still registered."""
    due = state.due(config)
    if goods is None:
        return PositionStep(None, PositionOutcome.UNREGISTERED)
    if due is None or now < due:
        return PositionStep(None, due=due)
    new = msgspec.structs.replace(state)
    step = PositionStep(new)
    _overstay(step, new, goods, config, policy_version, now)
    return step


def _overstay(step: PositionStep, state: TrackedState, goods: RegisteredGoods, config: ZeroTariff,
              policy_version: str, now: float) -> None:
    assert state.outside_since is not None
    due = state.outside_since + config.allowed_days_away * DAY_S
    state.overstay_warned = True
    away = (max(now, state.last_event_time) - state.outside_since) / DAY_S
    _warn(step, goods, AWAY_TOO_LONG, config.overstay_severity, state.outside_since, due, policy_version, now, (
        f"off the island since {_iso(state.outside_since)}: {away:.1f} days, more than the {config.allowed_days_away:g} allowed",
        f"last seen {_iso(state.last_event_time)} (event {state.last_event_id})",
    ))


def _warn(step: PositionStep, goods: RegisteredGoods, rule: str, severity: Severity, anchor: float, event_time: float,
          policy_version: str, now: float, lines: tuple[str, ...], port: str | None = None) -> None:
    record = EarlyWarning(
        warning_id=f"{goods.identifier}:{int(anchor)}:{rule}", severity=severity, subject_kind=goods.subject_kind(),
        subject_id=goods.identifier, source=WarningSource.RULE, rule=rule, evidence=(*lines, goods.evidence()),
        event_time=datetime.fromtimestamp(event_time, UTC), raised_at=datetime.fromtimestamp(now, UTC), port=port,
        policy_version=policy_version,
    )
    step.warnings.append(record.model_dump_json(exclude_none=True).encode())
    step.raised.append((severity.value, rule))


def _where(event: PositionEvent) -> str:
    if event.latitude is None or event.longitude is None:
        return ""
    return f" at {event.latitude:.4f}, {event.longitude:.4f}"


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat().replace("+00:00", "Z")
