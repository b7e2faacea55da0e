"""Kafka records to archive rows: parsed and validated with the pipeline's own schemas.

:func:`rows_of` turns one record into ``(table, row)`` pairs. A record that does not parse becomes
one ``dead_letters`` row with its original bytes, built by :func:`schemas.deadletters.dead_letter_record`
(the shape the worker writes to the dead-letter topic); a gateway batch with some bad items keeps
its good items and dead-letters each bad one with that item's bytes. Nothing raises for bad input.
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from typing import Any

import orjson

from archive import tables as t
from clients import topics
from schemas import codec
from schemas.creditbatch import parse_credit_event_batch
from schemas.deadletters import dead_letter_record
from schemas.records import (
    CentralisedDeclaration,
    ConsoleAction,
    ControlInstruction,
    CreditEvent,
    DeadLetter,
    Declaration,
    DeclarationBatch,
    DutyFreePurchase,
    EarlyWarning,
    GoodsIdentifier,
    InspectionResult,
    JointFinding,
    PositionEvent,
    RiskListEntry,
    ScanResult,
    ShadowScore,
    WarningReview,
    ZeroTariffImport,
)

Row = dict[str, Any]
Rows = list[tuple[str, Row]]


class InvalidKey(ValueError):
    """A tombstone (null value) on a compacted topic whose key is not the id it removes."""

    reason_code = "invalid-key"


def day_of(moment: datetime) -> date:
    return moment.astimezone(UTC).date()


class Record:
    """One Kafka record as the converters need it (confluent-kafka's Message is not constructible)."""

    __slots__ = ("key", "offset", "partition", "timestamp", "topic", "value")

    def __init__(self, topic: str, partition: int, offset: int, key: bytes | None, value: bytes | None,
                 timestamp: datetime | None) -> None:
        self.topic = topic
        self.partition = partition
        self.offset = offset
        self.key = key
        self.value = value
        self.timestamp = timestamp


def _provenance(rec: Record, item_index: int, archived_at: datetime) -> Row:
    return {"kafka_topic": rec.topic, "kafka_partition": rec.partition, "kafka_offset": rec.offset, "item_index": item_index,
            "kafka_timestamp": rec.timestamp, "archived_at": archived_at}


PLAUSIBLE_RECORD_CLOCK = timedelta(days=1)


def dead_letter_row(rec: Record, value: bytes | None, exc: BaseException, item_index: int, archived_at: datetime) -> Row:
    """The archive's own rejection of ``value`` (a whole record or one batch item), as a dead_letters row."""
    _, payload = dead_letter_record(rec.topic, rec.partition, rec.offset, rec.key, value, exc)
    doc = orjson.loads(payload)
    # Filed under the day its record was published, like the rows the archive accepts, unless the
    # producer's timestamp is implausible (a hostile one must not pick the partition).
    received = datetime.fromisoformat(doc["received_at"])
    if rec.timestamp is not None and abs(rec.timestamp - archived_at) <= PLAUSIBLE_RECORD_CLOCK:
        received = rec.timestamp
    return {"day": day_of(received), "origin": "archive", "source_topic": doc["source_topic"], "source_partition": doc["partition"],
            "source_offset": doc["offset"], "key_b64": doc["key_b64"], "value_b64": doc["value_b64"], "value_size": doc["value_size"],
            "value_sha256": doc["value_sha256"], "truncated": doc["truncated"], "reason": doc["reason"], "error": doc["error"],
            "received_at": received, "schema_version": doc["schema_version"], **_provenance(rec, item_index, archived_at)}


def _declaration(decl: Declaration, rec: Record, item: int, now: datetime, source: str, batch: tuple[str | None, str | None]) -> Row:
    row = dict(decl.__dict__)
    row.update(day=day_of(decl.event_time), source=source, batch_id=batch[0], gateway=batch[1], **_provenance(rec, item, now))
    row["goods_identifiers"] = _identifiers(decl.goods_identifiers)
    return row


def _identifiers(identifiers: tuple[GoodsIdentifier, ...] | None) -> list[str] | None:
    return [f"{i.kind.value}:{i.value}" for i in identifiers] if identifiers is not None else None


def _declarations(rec: Record, now: datetime) -> Rows:
    decl = codec.parse(Declaration, rec.value)
    return [(t.DECLARATIONS, _declaration(decl, rec, 0, now, "declaration", (None, None)))]


def _batch(rec: Record, now: datetime) -> Rows:
    """A gateway batch, item by item when the whole record does not validate (as the worker does)."""
    try:
        batch = codec.parse(DeclarationBatch, rec.value)
    except Exception as exc:  # noqa: BLE001 - any failure of the one-pass parse falls back to item by item
        try:
            raw_items = codec.batch_items(DeclarationBatch, rec.value, "declarations")
        except Exception:  # noqa: BLE001 - the envelope is unusable: the whole record is dead-lettered with the first error
            raise exc from None
        envelope = orjson.loads(rec.value or b"{}")  # valid: batch_items checked every field but the items
        ids = (envelope.get("batch_id"), envelope.get("gateway"))
        out: Rows = []
        for index, raw in enumerate(raw_items):
            try:
                out.append((t.DECLARATIONS, _declaration(codec.parse(Declaration, raw), rec, index, now, "batch", ids)))
            except Exception as item_exc:  # noqa: BLE001 - each bad item is dead-lettered with its own error
                out.append((t.DEAD_LETTERS, dead_letter_row(rec, raw, item_exc, index, now)))
        return out
    ids = (batch.batch_id, batch.gateway)
    return [(t.DECLARATIONS, _declaration(d, rec, i, now, "batch", ids)) for i, d in enumerate(batch.declarations)]


def _credit_batch(rec: Record, now: datetime) -> Rows:
    """A credit-event batch, one credit_events row per event (item_index: its position); a bad
    event is dead-lettered alone, as the worker does."""
    _, items = parse_credit_event_batch(rec.value)
    out: Rows = []
    for index, (event, raw, error) in enumerate(items):
        if event is None:
            assert error is not None
            out.append((t.DEAD_LETTERS, dead_letter_row(rec, raw, error, index, now)))
            continue
        row = dict(event.__dict__)
        row["day"] = day_of(event.event_time)
        row.update(_provenance(rec, index, now))
        out.append((t.CREDIT_EVENTS, row))
    return out


def _centralised(rec: Record, now: datetime) -> Rows:
    doc = codec.parse(CentralisedDeclaration, rec.value)
    header = {k: v for k, v in doc.__dict__.items() if k != "items"}
    header["day"] = day_of(doc.event_time)
    header["items"] = len(doc.items)
    out: Rows = []
    for index, item in enumerate(doc.items):
        row = {**header, **item.__dict__, "declaration_id": doc.item_declaration_id(item), **_provenance(rec, index, now)}
        row["goods_identifiers"] = _identifiers(item.goods_identifiers)
        out.append((t.CENTRALISED_ITEMS, row))
    return out


def _simple(table: str, model: type[Any], time_field: str) -> Callable[[Record, datetime], Rows]:
    def convert(rec: Record, now: datetime) -> Rows:
        record = codec.parse(model, rec.value)
        row = dict(record.__dict__)
        row["day"] = day_of(getattr(record, time_field))
        row.update(_provenance(rec, 0, now))
        return [(table, row)]
    return convert


def _risk_list(rec: Record, now: datetime) -> Rows:
    when = rec.timestamp or now
    if rec.value is None:  # a retraction: the key names the entry
        row: Row = {"entry_id": _tombstone_id(rec, "risk-list retraction"), "retracted": True}
    else:
        row = dict(codec.parse(RiskListEntry, rec.value).__dict__)
        row["retracted"] = False
    row["day"] = day_of(when)
    row.update(_provenance(rec, 0, now))
    return [(t.RISK_LISTS, row)]


def _tombstone_id(rec: Record, what: str) -> str:
    """The id a null value on a compacted topic removes: its key."""
    try:
        ident = (rec.key or b"").decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidKey(f"a {what}'s key is not UTF-8") from None
    if not 0 < len(ident) <= 64:
        raise InvalidKey(f"a {what} needs the id it removes as its key")
    return ident


def _zero_tariff_register(rec: Record, now: datetime) -> Rows:
    if rec.value is None:  # the import leaves the register altogether
        row: Row = {"import_id": _tombstone_id(rec, "zero-tariff register removal"), "removed": True,
                    "day": day_of(rec.timestamp or now)}
    else:
        entry = codec.parse(ZeroTariffImport, rec.value)
        row = dict(entry.__dict__)
        row.update(removed=False, day=day_of(entry.event_time), identifiers=_identifiers(entry.identifiers))
    row.update(_provenance(rec, 0, now))
    return [(t.ZERO_TARIFF_REGISTER, row)]


def _duty_free_purchase(rec: Record, now: datetime) -> Rows:
    purchase = codec.parse(DutyFreePurchase, rec.value)
    check = purchase.identity_check
    header = {k: v for k, v in purchase.__dict__.items() if k not in ("items", "identity_check")}
    header.update(day=day_of(purchase.purchased_at), items=len(purchase.items), identity_token=check.token,
                  identity_method=check.method, identity_matched=check.matched)
    return [(t.DUTY_FREE_PURCHASES, {**header, **item.__dict__, **_provenance(rec, index, now)})
            for index, item in enumerate(purchase.items)]


def _dead_letter(rec: Record, now: datetime) -> Rows:
    letter = codec.parse(DeadLetter, rec.value)
    row = dict(letter.__dict__)
    row.update(day=day_of(letter.received_at), origin="worker", source_partition=row.pop("partition"),
               source_offset=row.pop("offset"), **_provenance(rec, 0, now))
    return [(t.DEAD_LETTERS, row)]


CONVERTERS: dict[str, Callable[[Record, datetime], Rows]] = {
    topics.DECLARATIONS: _declarations,
    topics.DECLARATION_BATCHES: _batch,
    topics.CENTRALISED_DECLARATIONS: _centralised,
    topics.SCANS: _simple(t.SCANS, ScanResult, "event_time"),
    topics.INSTRUCTIONS: _simple(t.INSTRUCTIONS, ControlInstruction, "event_time"),
    topics.INSPECTION_RESULTS: _simple(t.INSPECTION_RESULTS, InspectionResult, "inspected_at"),
    topics.WARNINGS: _simple(t.WARNINGS, EarlyWarning, "event_time"),
    topics.WARNING_REVIEWS: _simple(t.WARNING_REVIEWS, WarningReview, "reviewed_at"),
    topics.JOINT_FINDINGS: _simple(t.JOINT_FINDINGS, JointFinding, "found_at"),
    topics.CREDIT_EVENTS: _simple(t.CREDIT_EVENTS, CreditEvent, "event_time"),
    topics.CREDIT_EVENT_BATCHES: _credit_batch,
    topics.RISK_LISTS: _risk_list,
    topics.DEAD_LETTERS: _dead_letter,
    topics.CONSOLE_ACTIONS: _simple(t.CONSOLE_ACTIONS, ConsoleAction, "at"),
    topics.SHADOW_SCORES: _simple(t.SHADOW_SCORES, ShadowScore, "decided_at"),
    topics.ZERO_TARIFF_REGISTER: _zero_tariff_register,
    topics.POSITIONS: _simple(t.POSITIONS, PositionEvent, "event_time"),
    topics.DUTY_FREE_PURCHASES: _duty_free_purchase,
}
assert set(CONVERTERS) == set(t.PRIMARY_TABLE), "every archived topic has a converter"


def rows_of(logical_topic: str, rec: Record, now: datetime) -> Rows:
    """The rows one record becomes; a record that does not parse becomes one dead letter."""
    try:
        return CONVERTERS[logical_topic](rec, now)
    except Exception as exc:  # noqa: BLE001 - bad input of any kind is archived as a dead letter, never raised
        return [(t.DEAD_LETTERS, dead_letter_row(rec, rec.value, exc, 0, now))]


def original_bytes(row: Row) -> bytes | None:
    """A dead_letters row's original value (its first bytes if ``truncated``)."""
    value = row.get("value_b64")
    return base64.b64decode(value) if value is not None else None
