"""Duty-free shopping: the records the folds of ``policy.dutyfree`` emit (early warnings, shopper
ties for the link index, standings), deterministic so that a redelivery re-sends the same bytes.

A shopper rule fires at most once per shopper and calendar year, a resale pattern once per link
and year, so the warning ids are ``{shopper}:{year}:{rule}`` and ``{kind}:{token}:{year}:{rule}``:
a consumer deduplicates a re-sent warning by it.
"""

from __future__ import annotations

from datetime import UTC, datetime

from policy.config import DutyFree
from policy.dutyfree import Fired, Flag, ShopperYear, Standing, rule_config
from schemas import DutyFreePurchase, EarlyWarning, ShopperLink, WarningSource


def warning_bytes(subject_key: str, year: int, fired: Fired, event_time: datetime, policy_version: str, now: float) -> bytes:
    """The ``EarlyWarning`` of a duty-free rule (validated: warnings are a strict contract)."""
    w = fired.warning
    return EarlyWarning(
        warning_id=f"{subject_key}:{year}:{fired.rule}", severity=w.severity, subject_kind=w.subject_kind,
        subject_id=w.subject_id, source=WarningSource.RULE, rule=fired.rule, evidence=w.evidence,
        event_time=event_time, raised_at=datetime.fromtimestamp(now, UTC), policy_version=policy_version,
    ).model_dump_json(exclude_none=True).encode()


def with_warnings(state: ShopperYear, purchase: DutyFreePurchase, fired: tuple[Fired, ...],
                  policy_version: str, now: float) -> list[bytes]:
    """The warnings of what fired on ``purchase``, each kept in its flag (re-sent on a redelivery)."""
    sent = []
    for f in fired:
        raw = warning_bytes(state.shopper, state.year, f, purchase.purchased_at, policy_version, now)
        state.flags[f.rule] = Flag(purchase.purchase_id, f.reason, raw)
        sent.append(raw)
    return sent


def standing_of(config: DutyFree, state: ShopperYear) -> Standing | None:
    """The standing a departure reads for this shopper's year: the flags that hold at departure."""
    reasons = {rule: flag.reason for rule, flag in state.flags.items() if rule_config(config, rule).hold_at_departure}
    return Standing(shopper=state.shopper, year=state.year, reasons=reasons) if reasons else None


def shopper_link(link: str, purchase: DutyFreePurchase, year: int) -> bytes:
    return ShopperLink(link=link, shopper_token=purchase.shopper_token, purchase_id=purchase.purchase_id,
                       year=year).model_dump_json().encode()
