"""Offshore duty-free shopping on Faust: the purchases folded per shopper and calendar year, the
resale index re-keyed by payer / phone / delivery address, and the standings departures read.

    duty-free-purchases ──> fold_duty_free_purchases ──> duty-free-shoppers (Table, per shopper)
          (key: shopper)         │ ├─> warnings (quota, item limits, identity, repeat goods)
                                 │ ├─> duty-free-standing (GlobalTable: q:<shopper>, flagged ones only)
                                 │ └─> duty-free-shopper-links (re-keyed by link: a repartition step)
    duty-free-shopper-links ──> index_duty_free_links ──> duty-free-links (Table, per link)
                                   ├─> warnings (many shoppers tied to one payer, phone or address)
                                   └─> duty-free-standing (l:<shopper> for each tied shopper)
    (timer) expire_duty_free_years: a year's states deleted ``keep_after_year_days`` after it ends

Purchases are keyed (and partitioned, murmur2) by shopper token, so one worker owns a shopper's
year and its table key; the links topic is keyed by link, and the fold writes each tie on the
link's murmur2 partition, where the link table's key lives (the Kafka Streams repartition, as
``split_centralised_declarations`` does for declarations). Departure declarations are partitioned
by declaration id, so they read the standings from a GlobalTable that every worker holds; it holds
flagged shoppers only, so it stays small.

The per-shopper and per-link tables are in memory, recovered from their compacted changelogs (so
every changelog record feeds the expiry index); their size is one entry per shopper (link) active
in the year, each bounded (``policy.dutyfree``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime
from typing import Any, TypeVar

import faust

from clients import topics
from common.settings import Settings
from decision.dutyfree import shopper_link, standing_of, warning_bytes, with_warnings
from policy.config import Policy
from policy.dutyfree import (
    LINKED_SHOPPERS,
    LinkYear,
    ShopperYear,
    Standing,
    fold_link,
    fold_purchase,
    links_of,
    year_expires_at,
)
from schemas import DutyFreePurchase, ShopperLink
from schemas.partitioning import partition_for
from schemas.validation import WrongPartition, parse_keyed
from streams import metrics
from streams.deadletter import DeadLetterSink
from streams.expiry import TimeIndex
from streams.outputs import OutputBatch
from streams.runtime import tables

log = logging.getLogger(__name__)

R = TypeVar("R", DutyFreePurchase, ShopperLink)
EXPIRY_BUCKET_S = 3600.0  # years end at midnight: an hour's buckets are fine enough


class DutyFreeFlow:
    """The duty-free agents' handlers, tables and expiry timer (wired by ``streams.topology``)."""

    def __init__(self, app: faust.App, settings: Settings, policy: Callable[[], Policy], dead_letters: DeadLetterSink,
                 table: dict[str, Any], clock: Callable[[], float], owned: Callable[[], set[int] | None]) -> None:
        self.settings = settings
        self._policy = policy
        self.dead_letters = dead_letters
        self.clock = clock
        self.owned = owned
        t = settings.topic
        raw: dict[str, Any] = {"key_type": bytes, "value_type": bytes, "key_serializer": "raw", "value_serializer": "raw"}
        self.purchases = app.topic(t(topics.DUTY_FREE_PURCHASES), **raw)
        self.links_topic = app.topic(t(topics.DUTY_FREE_SHOPPER_LINKS), **raw)
        self.links_topic_name = t(topics.DUTY_FREE_SHOPPER_LINKS)
        self.warnings_topic = t(topics.WARNINGS)
        self.shoppers = app.Table(topics.TABLE_DUTY_FREE_SHOPPERS, partitions=settings.partitions, store="memory://",
                                  on_changelog_event=self._on_shopper_changelog, **table)
        self.links = app.Table(topics.TABLE_DUTY_FREE_LINKS, partitions=settings.partitions, store="memory://",
                               on_changelog_event=self._on_link_changelog, **table)
        self.standing = app.GlobalTable(topics.TABLE_DUTY_FREE_STANDING, partitions=1, recovery_buffer_size=1, **table)
        self._shopper_index = TimeIndex(EXPIRY_BUCKET_S)
        self._link_index = TimeIndex(EXPIRY_BUCKET_S)

    def standings(self) -> Any:
        return tables.contents(self.standing)

    def _parsed(self, out: OutputBatch, events: Sequence[Any], model: type[R], key_field: str) -> Iterator[tuple[Any, R]]:
        """The events' records that parse, are keyed by ``key_field`` and sit on that key's
        partition; every other one goes to the dead-letter topic."""
        for event in events:
            msg = event.message
            try:
                record = parse_keyed(model, msg.key, msg.value, key_field)
                _check_partition(getattr(record, key_field), msg.partition, self.settings.partitions)
            except Exception as exc:  # noqa: BLE001 - every bad record goes to the dead-letter topic
                self.dead_letters.add(out, msg, exc)
                continue
            yield msg, record

    # ---- purchases ---------------------------------------------------------------------------
    def handle_purchases(self, events: Sequence[Any]) -> OutputBatch:
        out = OutputBatch()
        policy = self._policy()
        config = policy.duty_free
        now = self.clock()
        held = tables.contents(self.shoppers)
        for msg, purchase in self._parsed(out, events, DutyFreePurchase, "shopper_token"):
            key = purchase.shopper_token.encode()
            raw = held.get(key)
            state = ShopperYear.from_bytes(raw) if raw else None
            folded = fold_purchase(config, state, purchase)
            out.inc(metrics.DUTY_FREE_PURCHASES.labels(folded.outcome))
            if folded.outcome == "duplicate":  # a redelivery: what it sent before, sent again
                for flag in folded.resend:
                    out.add(self.warnings_topic, msg.partition, key, flag.warning)
                assert state is not None
                self._send_links(out, purchase, state.year)
                continue
            new = folded.state
            if new is None:
                continue
            for raw_warning in with_warnings(new, purchase, folded.fired, policy.version, now):
                out.add(self.warnings_topic, msg.partition, key, raw_warning)
            for f in folded.fired:
                out.warned[(f.warning.severity._value_, f.rule)] += 1
            out.set_table(self.shoppers, msg.partition, key, new.to_bytes())
            self._shopper_index.add(msg.partition, year_expires_at(config, new.year), key)
            if folded.fired:
                standing = standing_of(config, new)
                if standing is not None:
                    out.set_table(self.standing, 0, b"q:" + key, standing.to_bytes())
            self._send_links(out, purchase, new.year)
        return out

    def _send_links(self, out: OutputBatch, purchase: DutyFreePurchase, year: int) -> None:
        for link in links_of(purchase):
            key = link.encode()
            out.add(self.links_topic_name, partition_for(key, self.settings.partitions), key, shopper_link(link, purchase, year))

    # ---- the resale index --------------------------------------------------------------------
    def handle_links(self, events: Sequence[Any]) -> OutputBatch:
        out = OutputBatch()
        policy = self._policy()
        config = policy.duty_free
        now = self.clock()
        held = tables.contents(self.links)
        for msg, tie in self._parsed(out, events, ShopperLink, "link"):
            key = tie.link.encode()
            raw = held.get(key)
            state = LinkYear.from_bytes(raw) if raw else None
            folded = fold_link(config, state, tie.link, tie.shopper_token, tie.year)
            if folded.state is None:
                out.inc(metrics.DUTY_FREE_LINKS.labels("late-year" if state is not None and tie.year < state.year else "known"))
                if state is not None and state.flagged and state.warning and tie.shopper_token in state.shoppers:
                    out.add(self.warnings_topic, msg.partition, key, state.warning)  # a redelivery: sent again
                    self._flag_shoppers(out, (tie.shopper_token,), state, config)
                continue
            out.inc(metrics.DUTY_FREE_LINKS.labels("new"))
            new = folded.state
            if folded.fired is not None:
                new.warning = warning_bytes(tie.link, tie.year, folded.fired, datetime.fromtimestamp(now, UTC), policy.version, now)
                out.add(self.warnings_topic, msg.partition, key, new.warning)
                out.warned[(folded.fired.warning.severity._value_, LINKED_SHOPPERS)] += 1
            out.set_table(self.links, msg.partition, key, new.to_bytes())
            self._link_index.add(msg.partition, year_expires_at(config, new.year), key)
            if folded.flag:
                self._flag_shoppers(out, folded.flag, new, config)
        return out

    def _flag_shoppers(self, out: OutputBatch, shoppers: Sequence[str], link: LinkYear, config: Any) -> None:
        if not config.linked_shoppers.hold_at_departure:
            return
        kind = link.link.split(":", 1)[0]
        reason = (f"resale pattern: tied with {link.count()} shoppers to one {kind} in {link.year} "
                  f"(more than {config.max_shoppers_per_link})")
        for shopper in shoppers:
            standing = Standing(shopper=shopper, year=link.year, reasons={LINKED_SHOPPERS: reason})
            out.set_table(self.standing, 0, b"l:" + shopper.encode(), standing.to_bytes())

    # ---- expiry ------------------------------------------------------------------------------
    async def _on_shopper_changelog(self, event: Any) -> None:
        self._index(self._shopper_index, ShopperYear, event.message.partition, event.key, event.message.value)

    async def _on_link_changelog(self, event: Any) -> None:
        self._index(self._link_index, LinkYear, event.message.partition, event.key, event.message.value)

    def _index(self, index: TimeIndex, kind: type[ShopperYear] | type[LinkYear], partition: int, key: bytes,
               value: bytes | None) -> None:
        if not value:
            return
        try:
            year = kind.from_bytes(value).year
        except ValueError:
            return
        index.add(partition, year_expires_at(self._policy().duty_free, year), key)

    def tick_expiry(self) -> OutputBatch:
        """Shopper and link years deleted ``keep_after_year_days`` after their year ended, with the
        standings they wrote; on the partitions this worker owns, at most
        ``state_expiry_max_per_tick`` keys a tick."""
        out = OutputBatch()
        owned = self.owned()
        if owned is None:
            return out
        now = self.clock()
        config = self._policy().duty_free
        budget = self.settings.state_expiry_max_per_tick
        for partition in sorted(owned):
            for key in self._shopper_index.pop_due(partition, now, max(budget, 0)):
                budget -= 1
                # The shopper's standings of a past year: its own, and its resale tie (a link past
                # MAX_LINKED_SHOPPERS does not remember every shopper it flagged, but each one has a year here).
                self._expire_standing(out, b"q:" + key, config, now)
                self._expire_standing(out, b"l:" + key, config, now)
                raw = tables.contents(self.shoppers).get(key)
                if not raw:
                    continue
                shopper = ShopperYear.from_bytes(raw)
                if now < year_expires_at(config, shopper.year):
                    continue  # a later year since: its own index entry is later
                out.set_table(self.shoppers, partition, key, None)
                out.inc(metrics.DUTY_FREE_EXPIRED.labels("shoppers"))
            for key in self._link_index.pop_due(partition, now, max(budget, 0)):
                budget -= 1
                raw = tables.contents(self.links).get(key)
                if not raw:
                    continue
                link = LinkYear.from_bytes(raw)
                if now < year_expires_at(config, link.year):
                    continue
                out.set_table(self.links, partition, key, None)
                for tied in link.shoppers if link.flagged else ():
                    self._expire_standing(out, b"l:" + tied.encode(), config, now)
                out.inc(metrics.DUTY_FREE_EXPIRED.labels("links"))
        metrics.DUTY_FREE_FLAGGED.set(len(self.standings()))
        return out

    def _expire_standing(self, out: OutputBatch, key: bytes, config: Any, now: float) -> None:
        raw = self.standings().get(key)
        if not raw:
            return
        try:
            year = Standing.from_bytes(raw).year
        except ValueError:
            year = 0  # unreadable: nothing a departure can use
        if now >= year_expires_at(config, year) if year else True:
            out.set_table(self.standing, 0, key, None)


def _check_partition(key: str, partition: int, partitions: int) -> None:
    if partition_for(key.encode(), partitions) != partition:
        raise WrongPartition(f"record keyed {key[:80]!r} is on partition {partition}, not on its key's murmur2 partition "
                             "(publish with Kafka's default partitioner)")
