"""Zero-tariff goods in the topology: the register's fold and the positioning agent and timer.

    zero-tariff-register ──> fold_zero_tariff_register ──> zero-tariff-register (GlobalTable)
    positions ──> track_zero_tariff_goods ──> tracked-goods (Table, per identifier) ──> warnings
    (timer, 1 s) check_zero_tariff_absences ──> warnings (away longer than allowed)

The register is a GlobalTable, like the credit register: declarations are partitioned by
declaration id, so the worker deciding one may need any identifier's entry. Positions are keyed by
identifier and co-partitioned with the ``tracked-goods`` table, whose changelog partition is the
murmur2 partition of the identifier (a position on another partition is dead-lettered as
``wrong-partition``). The timer reads an index of identifiers by due time (``streams.expiry``),
fed by every write and by the changelog records Faust recovers, never a walk of the table.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

import faust

from decision.positions import (
    PositionOutcome,
    PositionStep,
    TrackedState,
    decode_tracked,
    encode_tracked,
    on_overdue,
    on_position,
)
from policy.zerotariff import GOODS_PREFIX, RegisteredGoods, decode_goods, fold_import, goods_key
from schemas import PositionEvent, ZeroTariffImport
from schemas.partitioning import partition_for
from schemas.validation import KeyMismatch, WrongPartition, check_port, parse_keyed
from streams import metrics
from streams.deadletter import DeadLetterSink
from streams.expiry import TimeIndex
from streams.outputs import OutputBatch
from streams.runtime import status, tables

log = logging.getLogger(__name__)

DAY_S = 86_400.0
TICK_MAX_KEYS = 10_000  # identifiers a timer tick looks at, at most: the rest wait for the next tick


class ZeroTariffStreams:
    """The zero-tariff agents' handlers and timer, with their tables (one instance per worker)."""

    def __init__(self, app: faust.App, topic: Callable[[str], str], partitions: int, table: dict[str, Any],
                 dead_letters: DeadLetterSink, warnings_topic: str, policy: Any, clock: Callable[[], float],
                 register_topic: str, positions_topic: str, register_table: str, tracked_table: str) -> None:
        raw: dict[str, Any] = {"key_type": bytes, "value_type": bytes, "key_serializer": "raw", "value_serializer": "raw"}
        self.app = app
        self.partitions = partitions
        self.policy = policy
        self.clock = clock
        self.dead_letters = dead_letters
        self.warnings_topic = warnings_topic
        self.register_topic = app.topic(topic(register_topic), **raw)
        self.positions_topic_name = topic(positions_topic)
        self.positions_topic = app.topic(self.positions_topic_name, **raw)
        self.register = app.GlobalTable(register_table, partitions=1, recovery_buffer_size=1,
                                        on_changelog_event=self._on_register_changelog, **table)
        self.registered = 0  # goods keys in the register: counted as they are written, never by a walk
        self.tracked = app.Table(tracked_table, partitions=partitions, on_changelog_event=self._on_tracked_changelog, **table)
        self.due_index = TimeIndex(1.0)

    def agents(self) -> dict[str, tuple[faust.TopicT, Callable[[Sequence[Any]], OutputBatch]]]:
        return {"fold_zero_tariff_register": (self.register_topic, self.handle_register),
                "track_zero_tariff_goods": (self.positions_topic, self.handle_positions)}

    def timers(self) -> dict[str, tuple[float, Callable[[], OutputBatch | None]]]:
        return {"check_zero_tariff_absences": (1.0, self.tick_absences)}

    def contents(self) -> Any:
        """The register's key -> value mapping (``policy.zerotariff``), for the declaration references."""
        return tables.contents(self.register)

    # ---- the register ---------------------------------------------------------------------------
    def handle_register(self, events: Sequence[faust.EventT]) -> OutputBatch:
        out = OutputBatch()
        contents = tables.contents(self.register)
        for event in events:
            msg = event.message
            try:
                if msg.key is None:
                    raise KeyMismatch("zero-tariff register record without a key (import_id)")
                record = parse_keyed(ZeroTariffImport, msg.key, msg.value, "import_id") if msg.value is not None else None
                import_id = record.import_id if record is not None else bytes(msg.key).decode("ascii")
                if record is None and not import_id.isprintable():
                    raise KeyMismatch("zero-tariff register tombstone with a key that is not an import id")
            except Exception as exc:  # noqa: BLE001 - every bad record goes to the dead-letter topic
                self.dead_letters.add(out, msg, exc)
                continue
            change = fold_import(import_id, record, contents.get)
            for key, value in change.writes.items():
                self._count(key, key in contents, value is not None)
                out.set_table(self.register, 0, key, value)
            out.inc(metrics.ZERO_TARIFF_REGISTER_EVENTS.labels(change.outcome))
            if change.conflicts:
                out.inc(metrics.ZERO_TARIFF_REGISTER_EVENTS.labels("identifier-conflict"), change.conflicts)
        return out

    def _count(self, key: bytes, was: bool, present: bool) -> None:
        if key.startswith(GOODS_PREFIX) and was != present:
            self.registered += 1 if present else -1

    async def _on_register_changelog(self, event: Any) -> None:
        """Another worker's write (or one recovered), just before the table applies it."""
        key = event.key
        if key is not None:
            self._count(bytes(key), bytes(key) in tables.contents(self.register), event.message.value is not None)

    def goods(self, identifier: str) -> RegisteredGoods | None:
        raw = tables.contents(self.register).get(goods_key(identifier))
        return decode_goods(raw) if raw else None

    # ---- positions ------------------------------------------------------------------------------
    def handle_positions(self, events: Sequence[faust.EventT]) -> OutputBatch:
        out = OutputBatch()
        now = self.clock()
        policy = self.policy()
        config = policy.zero_tariff
        tracked = tables.contents(self.tracked)
        for event in events:
            msg = event.message
            try:
                position = parse_keyed(PositionEvent, msg.key, msg.value, "identifier")
                key = position.identifier.encode()  # the record's key (parse_keyed checked it)
                if partition_for(key, self.partitions) != msg.partition:
                    raise WrongPartition(f"position of {position.identifier} on partition {msg.partition}, "
                                         f"its identifier's is {partition_for(key, self.partitions)}")
                if position.port is not None:
                    check_port(position.port, policy.knows_port)
            except Exception as exc:  # noqa: BLE001 - every bad record goes to the dead-letter topic
                self.dead_letters.add(out, msg, exc)
                continue
            goods = self.goods(position.identifier)
            if goods is None:  # not on the register (or released): nothing to supervise
                out.inc(metrics.POSITIONS.labels(PositionOutcome.UNREGISTERED.value))
                if key in tracked:
                    out.set_table(self.tracked, msg.partition, key, None)
                continue
            raw = tracked.get(key)
            step = on_position(config, decode_tracked(raw) if raw else None, position, goods, policy.version, now)
            self._apply(out, msg.partition, key, step)
            out.inc(metrics.POSITIONS.labels(step.outcome.value))
        return out

    def _apply(self, out: OutputBatch, partition: int, key: bytes, step: PositionStep) -> None:
        for raw in step.warnings:  # keyed by the identifier, on its partition
            out.add(self.warnings_topic, partition, key, raw)
        out.warned.update(step.raised)
        if step.state is not None:
            out.set_table(self.tracked, partition, key, encode_tracked(step.state))
        if step.due is not None:
            self.due_index.add(partition, step.due, key)

    async def _on_tracked_changelog(self, event: Any) -> None:
        """A recovered (or another worker's) state joins the due index."""
        value = event.message.value
        if value:
            try:
                due = decode_tracked(value).due(self.policy().zero_tariff)
            except ValueError:
                return
            if due is not None:
                self.due_index.add(event.message.partition, due, bytes(event.key))

    def tick_absences(self) -> OutputBatch:
        """Identifiers whose allowed time away has passed: warned once each, if still away and still
        registered (a state whose goods left the register is deleted). Actively owned partitions only."""
        out = OutputBatch()
        owned = self.owned_partitions()
        if owned is None:
            return out
        for partition in self.due_index.partitions() - owned:
            self.due_index.drop_partition(partition)
        now = self.clock()
        policy = self.policy()
        tracked = tables.contents(self.tracked)
        budget = TICK_MAX_KEYS
        for partition in sorted(owned):
            for key in self.due_index.pop_due(partition, now, budget):
                budget -= 1
                raw = tracked.get(key)
                if not raw:
                    continue
                state: TrackedState = decode_tracked(raw)
                goods = self.goods(key.decode())
                step = on_overdue(policy.zero_tariff, state, goods, policy.version, now)
                if step.outcome is PositionOutcome.UNREGISTERED:
                    out.set_table(self.tracked, partition, key, None)
                    continue
                self._apply(out, partition, key, step)
        return out

    def owned_partitions(self) -> set[int] | None:
        """The positions partitions this worker actively owns, or None while it is not ready (the
        test driver replaces this)."""
        if not status.ready(self.app):
            return None
        return {tp.partition for tp in status.active_partitions(self.app) if tp.topic == self.positions_topic_name}

    def publish_gauges(self) -> None:
        metrics.ZERO_TARIFF_REGISTERED.set(self.registered)
        metrics.ZERO_TARIFF_PENDING_ABSENCES.set(self.due_index.size())
