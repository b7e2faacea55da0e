"""Offshore duty-free shopping: each shopper's calendar year, folded from the shops' purchases,
the resale patterns across shoppers, and what a departure of the shopper's goods gets.

Pure functions over the policy's ``duty_free`` section and typed state (no Kafka, no clock): the
worker's agents (``streams.dutyfree``), the backtest and the tests call the same code.

* ``fold_purchase``: one purchase into the shopper's ``ShopperYear`` (quota, per-category pieces,
  identity check, the same goods again and again). Each rule fires at most once per shopper and
  year; what fired is kept in the state (``flags``) and is what a departure is held for.
* ``fold_link``: one (payer, phone or delivery address) -> shopper tie into the link's
  ``LinkYear``: more distinct shoppers than ``max_shoppers_per_link`` is a resale pattern.
* ``departure_findings``: what a duty-free-shopping declaration of a flagged shopper gets: held
  (``departure_action``) and warned of (``FLAGGED_DEPARTURE``, one warning tied to the declaration).

Every count a shop controls is bounded: the purchase ids kept for idempotence
(``RECENT_PURCHASES``), the goods codes tracked for repeats (``MAX_TRACKED_GOODS``), the shoppers
remembered per link (``MAX_LINKED_SHOPPERS``); the record schema bounds the items per purchase.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone

import msgspec

from policy.config import MAX_LINKED_SHOPPERS, DutyFree, DutyFreeRule
from policy.valueadded import Finding, WarningProposal
from schemas import Declaration, DutyFreePurchase, Scenario, Severity, SubjectKind

QUOTA_EXCEEDED = "duty-free-quota-exceeded"
ITEM_LIMIT_EXCEEDED = "duty-free-item-limit-exceeded"
IDENTITY_NOT_MATCHED = "duty-free-identity-not-matched"
REPEAT_GOODS = "duty-free-repeat-goods"
LINKED_SHOPPERS = "duty-free-linked-shoppers"
RULES = (QUOTA_EXCEEDED, ITEM_LIMIT_EXCEEDED, IDENTITY_NOT_MATCHED, REPEAT_GOODS, LINKED_SHOPPERS)
# The warning a held departure raises: tied to the departure declaration (its id, port and
# revision), so analysts see the departure itself and ``riskctl explain`` of it lists the warning.
FLAGGED_DEPARTURE = "duty-free-flagged-departure"
MAX_DEPARTURE_EVIDENCE = 8  # reasons quoted in a departure's warning (one per rule; the rules are fewer)
SEVERITY_RANK = {Severity.LOW: 0, Severity.MEDIUM: 1, Severity.HIGH: 2}

RECENT_PURCHASES = 256  # purchase ids a shopper's year remembers: a redelivery is never further back
MAX_TRACKED_GOODS = 200  # distinct goods codes per shopper and year counted for repeats; more are not tracked

LINK_KINDS = ("payer", "phone", "address")

_FORMAT = b"\x01"  # one format byte, then msgpack; a reader refuses another


def rule_config(config: DutyFree, rule: str) -> DutyFreeRule:
    return {QUOTA_EXCEEDED: config.quota_exceeded, ITEM_LIMIT_EXCEEDED: config.item_limit_exceeded,
            IDENTITY_NOT_MATCHED: config.identity_not_matched, REPEAT_GOODS: config.repeat_goods,
            LINKED_SHOPPERS: config.linked_shoppers}[rule]


class Flag(msgspec.Struct, frozen=True):
    """A rule that fired for a shopper this year: the purchase that made it fire, why, and the
    bytes of the warning it raised (re-sent as they are when that purchase is redelivered)."""

    purchase_id: str
    reason: str
    warning: bytes = b""


class ShopperYear(msgspec.Struct, kw_only=True):
    """One shopper's calendar year of duty-free purchases (the value of ``duty-free-shoppers``)."""

    shopper: str
    year: int
    spent_cny: float = 0.0
    purchases: int = 0
    pieces: dict[str, int] = {}  # category -> pieces bought this year
    goods: dict[str, int] = {}  # goods code -> purchases that contained it (at most MAX_TRACKED_GOODS codes)
    recent: list[str] = []  # the last RECENT_PURCHASES purchase ids, oldest first
    flags: dict[str, Flag] = {}  # rule -> why it fired

    def to_bytes(self) -> bytes:
        return _FORMAT + msgspec.msgpack.encode(self)

    @classmethod
    def from_bytes(cls, raw: bytes) -> ShopperYear:
        if raw[:1] != _FORMAT:
            raise ValueError("unknown shopper-year format")
        return msgspec.msgpack.decode(raw[1:], type=cls)


class LinkYear(msgspec.Struct, kw_only=True):
    """The shoppers one payer, phone or delivery address was used by in a year (``duty-free-links``)."""

    link: str  # "<kind>:<token>"
    year: int
    shoppers: list[str] = []  # distinct, at most MAX_LINKED_SHOPPERS
    more: int = 0  # ties to shoppers seen after the list was full (not deduplicated)
    flagged: bool = False
    warning: bytes = b""  # the resale warning once raised (re-sent as it is on a redelivery)

    def count(self) -> int:
        return len(self.shoppers) + self.more

    def to_bytes(self) -> bytes:
        return _FORMAT + msgspec.msgpack.encode(self)

    @classmethod
    def from_bytes(cls, raw: bytes) -> LinkYear:
        if raw[:1] != _FORMAT:
            raise ValueError("unknown link-year format")
        return msgspec.msgpack.decode(raw[1:], type=cls)


class Standing(msgspec.Struct, kw_only=True, frozen=True):
    """What a departure needs to know of a flagged shopper (the value of ``duty-free-standing``,
    read by every worker's decisions): the year and why the shopper is flagged."""

    shopper: str
    year: int
    reasons: dict[str, str]  # rule -> reason

    def to_bytes(self) -> bytes:
        return msgspec.json.encode(self)

    @classmethod
    def from_bytes(cls, raw: bytes) -> Standing:
        return msgspec.json.decode(raw, type=cls)


def purchase_year(config: DutyFree, at: datetime) -> int:
    """The calendar year of a moment at the policy's UTC offset (Beijing time by default)."""
    return at.astimezone(timezone(timedelta(hours=config.utc_offset_hours))).year


def year_expires_at(config: DutyFree, year: int) -> float:
    """When a year's state may be deleted (epoch seconds): the year's end plus ``keep_after_year_days``."""
    end = datetime(year + 1, 1, 1, tzinfo=timezone(timedelta(hours=config.utc_offset_hours)))
    return (end + timedelta(days=config.keep_after_year_days)).astimezone(UTC).timestamp()


@dataclass(frozen=True, slots=True)
class Fired:
    """A rule that fired on a purchase (or a link): the finding and the early warning it raises."""

    rule: str
    reason: str
    warning: WarningProposal


@dataclass(frozen=True, slots=True)
class Folded:
    """The outcome of one purchase: the new state (None: the table is left as it is), what fired,
    and the flags whose warnings this purchase raised before (re-sent on a redelivery)."""

    state: ShopperYear | None
    fired: tuple[Fired, ...] = ()
    outcome: str = "folded"  # "folded", "duplicate", "late-year"
    resend: tuple[Flag, ...] = ()


def fold_purchase(config: DutyFree, state: ShopperYear | None, purchase: DutyFreePurchase) -> Folded:
    """Fold one purchase into its shopper's year. A purchase seen before changes nothing (its
    warnings are re-sent); a purchase of a year before the state's is too late to count."""
    year = purchase_year(config, purchase.purchased_at)
    if state is not None and year < state.year:
        return Folded(None, outcome="late-year")
    if state is None or year > state.year:  # a new year starts afresh: the old one is closed
        state = ShopperYear(shopper=purchase.shopper_token, year=year)
    if purchase.purchase_id in state.recent:
        return Folded(None, outcome="duplicate",
                      resend=tuple(f for f in state.flags.values() if f.purchase_id == purchase.purchase_id and f.warning))
    new = msgspec.structs.replace(state, pieces=dict(state.pieces), goods=dict(state.goods),
                                  recent=[*state.recent[-(RECENT_PURCHASES - 1):], purchase.purchase_id], flags=dict(state.flags))
    new.spent_cny = round(state.spent_cny + purchase.total_cny, 2)
    new.purchases = state.purchases + 1
    for item in purchase.items:
        category = item.category._value_
        new.pieces[category] = new.pieces.get(category, 0) + item.quantity
    for code in dict.fromkeys(item.goods_code for item in purchase.items):  # once per purchase
        if code in new.goods or len(new.goods) < MAX_TRACKED_GOODS:
            new.goods[code] = new.goods.get(code, 0) + 1
    fired = [f for f in _check(config, new, purchase) if f.rule not in state.flags]
    for f in fired:
        new.flags[f.rule] = Flag(purchase.purchase_id, f.reason)
    return Folded(new, tuple(fired))


def _check(config: DutyFree, year: ShopperYear, purchase: DutyFreePurchase) -> Iterable[Fired]:
    shopper = purchase.shopper_token
    where = f"purchase {purchase.purchase_id} at shop {purchase.shop_id}"
    if year.spent_cny > config.yearly_quota_cny:
        reason = (f"yearly duty-free quota exceeded: {year.spent_cny:,.2f} CNY spent in {year.year} "
                  f"against {config.yearly_quota_cny:,.0f} CNY")
        yield _fired(config, QUOTA_EXCEEDED, shopper, reason, (reason, f"{where}: {purchase.total_cny:,.2f} CNY",
                                                             f"{year.purchases} purchases this year"))
    over = [(c, n, config.item_limits[c]) for c in config.item_limits if (n := year.pieces.get(c._value_, 0)) > config.item_limits[c]]
    if over:
        text = ", ".join(f"{c._value_} {n} pieces (limit {limit})" for c, n, limit in over)
        reason = f"per-item limit exceeded in {year.year}: {text}"
        yield _fired(config, ITEM_LIMIT_EXCEEDED, shopper, reason, (reason[:200], where))
    if not purchase.identity_check.matched:
        check = purchase.identity_check
        reason = f"identity not matched at the shop: {check.method._value_} check {check.token} failed"
        yield _fired(config, IDENTITY_NOT_MATCHED, shopper, reason, (reason, f"{where}: {purchase.total_cny:,.2f} CNY"))
    repeated = [(code, n) for code, n in year.goods.items() if n >= config.repeat_purchases]
    if repeated:
        code, n = max(repeated, key=lambda r: r[1])
        reason = f"the same goods bought again and again: {code} in {n} purchases in {year.year}"
        yield _fired(config, REPEAT_GOODS, shopper, reason, (reason, where))


def _fired(config: DutyFree, rule: str, subject: str, reason: str, evidence: tuple[str, ...]) -> Fired:
    severity = rule_config(config, rule).severity
    return Fired(rule, reason, WarningProposal(rule, severity, SubjectKind.SHOPPER, subject, evidence))


def links_of(purchase: DutyFreePurchase) -> list[str]:
    """The link keys ("<kind>:<token>") a purchase ties its shopper to."""
    tokens = (purchase.payer_token, purchase.phone_token, purchase.delivery_address_token)
    return [f"{kind}:{token}" for kind, token in zip(LINK_KINDS, tokens) if token is not None]


@dataclass(frozen=True, slots=True)
class LinkFolded:
    state: LinkYear | None  # None: unchanged
    fired: Fired | None = None  # the resale pattern, once per link and year
    flag: tuple[str, ...] = ()  # shoppers to flag (all of them when it fires, the newcomer after)


def fold_link(config: DutyFree, state: LinkYear | None, link: str, shopper: str, year: int) -> LinkFolded:
    """Tie ``shopper`` to ``link`` for ``year``. Idempotent for a shopper the link remembers."""
    if state is not None and year < state.year:
        return LinkFolded(None)
    if state is None or year > state.year:
        state = LinkYear(link=link, year=year)
    if shopper in state.shoppers:
        return LinkFolded(None)
    new = msgspec.structs.replace(state, shoppers=list(state.shoppers))
    if len(new.shoppers) < MAX_LINKED_SHOPPERS:
        new.shoppers.append(shopper)
    else:
        new.more += 1
    if new.count() <= config.max_shoppers_per_link:
        return LinkFolded(new)
    if state.flagged:  # already reported: the newcomer is flagged too
        return LinkFolded(new, None, (shopper,))
    new.flagged = True
    kind = link.split(":", 1)[0]
    reason = (f"resale pattern: {new.count()} shoppers tied to one {_LINK_NAMES.get(kind, kind)} in {year} "
              f"(more than {config.max_shoppers_per_link})")
    evidence = (reason, f"{kind} token {link.split(':', 1)[1]}", "shoppers: " + ", ".join(new.shoppers[:6])[:180])
    proposal = WarningProposal(LINKED_SHOPPERS, config.linked_shoppers.severity, SubjectKind.SHOPPER_LINK, link.split(":", 1)[1], evidence)
    return LinkFolded(new, Fired(LINKED_SHOPPERS, reason, proposal), tuple(new.shoppers))


_LINK_NAMES = {"payer": "payer", "phone": "phone number", "address": "delivery address"}


def departure_findings(config: DutyFree, decl: Declaration, standings: Iterable[Standing]) -> list[Finding]:
    """A duty-free-shopping declaration (pick-up and departure of the traveller's goods) of a
    shopper flagged, in the declaration's calendar year, by a rule that holds at departure ->
    ``departure_action``, with the reasons; the first finding carries the departure's early
    warning (``FLAGGED_DEPARTURE``, as severe as the most severe rule that flagged the shopper).

    The standings are the ones the deciding worker holds: a purchase folded after the departure is
    decided (even one made earlier, or at the same instant) does not hold it (see policy/README.md)."""
    if decl.scenario is not Scenario.DUTY_FREE_SHOPPING or decl.shopper_token is None:
        return []
    year = purchase_year(config, decl.event_time)
    findings: list[Finding] = []
    severities: list[Severity] = []
    for standing in standings:
        if standing.year != year:  # last year's flags are kept until they expire, but a new year starts clean
            continue
        for rule, reason in standing.reasons.items():
            if rule in RULES and rule_config(config, rule).hold_at_departure:
                findings.append(Finding(rule, config.departure_action, f"duty-free shopper {decl.shopper_token}: {reason}"))
                severities.append(rule_config(config, rule).severity)
    if not findings:
        return findings
    evidence = ((f"departure declared at {decl.port}, declaration {decl.declaration_id}, of duty-free shopper {decl.shopper_token} "
                f"flagged in {year}")[:200],
                *(f.reason.split(": ", 1)[-1][:200] for f in findings[:MAX_DEPARTURE_EVIDENCE]))
    warning = WarningProposal(FLAGGED_DEPARTURE, max(severities, key=SEVERITY_RANK.__getitem__), SubjectKind.SHOPPER,
                              decl.shopper_token, evidence)
    return [dataclasses.replace(findings[0], warning=warning), *findings[1:]]

