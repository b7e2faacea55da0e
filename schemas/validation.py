"""Checks on a Kafka record beyond its own schema: its key and its partition.

Declarations, scans and instructions are joined by co-partitioning (same key, same partition
count, Kafka's murmur2 partitioner), so a record whose key is not its own id, or a declaration on
another partition than its id's, would be joined with the wrong state or miss its scans. These
checks raise an exception whose ``reason_code`` becomes the dead-letter reason; nothing here
touches Kafka or Faust, so the worker, the test driver and tools share them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from pydantic import BaseModel

from schemas import codec
from schemas.partitioning import partition_for
from schemas.records import Declaration, DeclarationBatch

R = TypeVar("R", bound=BaseModel)


class KeyMismatch(ValueError):
    """A record whose Kafka key is not its own id would break co-partitioning."""

    reason_code = "key-mismatch"


class WrongPartition(ValueError):
    """A declaration outside its murmur2 partition would miss its scans."""

    reason_code = "wrong-partition"


class UnknownPort(ValueError):
    """A record naming a port that is not in the office's register: per-port state and metric
    series would grow with whatever ids a gateway invents."""

    reason_code = "unknown-port"


class Refused(ValueError):
    """A record refused by a check of the decision engine; ``reason_code`` is one of the engine's
    fixed codes (``decision.guards``), never a value from the record."""

    def __init__(self, reason_code: str, detail: str) -> None:
        super().__init__(detail)
        self.reason_code = reason_code


def check_port(port: str, known: Callable[[str], bool]) -> None:
    """Raise UnknownPort unless ``known(port)`` (the policy's register)."""
    if not known(port):
        raise UnknownPort(f"port {port[:64]!r} is not in the policy's port register")


def parse_keyed(model: type[R], key: bytes | None, value: bytes | None, id_field: str, *, key_optional: bool = False) -> R:
    """Parse ``value`` as ``model`` and check that the record key is its ``id_field`` (a missing key
    is accepted only with ``key_optional``). Raises what ``schemas.codec.parse`` raises, or KeyMismatch."""
    record = codec.parse(model, value)
    if not (key_optional and key is None) and key != getattr(record, id_field).encode():
        raise KeyMismatch(f"record key does not match {id_field}")
    return record


def check_partition(declaration: Declaration, partition: int, partitions: int) -> None:
    """Raise WrongPartition unless ``partition`` is the murmur2 partition of the declaration's id."""
    if partition_for(declaration.declaration_id.encode(), partitions) != partition:
        raise WrongPartition(
            f"declaration {declaration.declaration_id} is on partition {partition}, not on its murmur2 partition: "
            "its scans would be joined elsewhere (publish with Kafka's default partitioner)"
        )


def parse_declaration_batch(
    value: bytes | None, partition: int, partitions: int,
) -> list[tuple[Declaration | None, bytes, Exception | None]]:
    """A gateway batch record, item by item: ``(declaration, b"", None)`` for a good item on this
    partition, ``(None, original item bytes, error)`` for a bad one. The whole record is validated
    in one pass in the normal case; when that fails, each item is validated alone so that only the
    bad ones are rejected. Raises if the envelope itself is unusable (the whole record is bad)."""
    try:
        batch = codec.parse(DeclarationBatch, value)
        items: list[tuple[Declaration | None, bytes, Exception | None]] = [(d, b"", None) for d in batch.declarations]
    except Exception as exc:  # noqa: BLE001 - any failure of the one-pass parse falls back to item by item
        try:
            raw_items = codec.batch_items(DeclarationBatch, value, "declarations")
        except Exception:  # noqa: BLE001 - the envelope is unusable: report the first error, not this one
            raise exc from None
        items = []
        for raw in raw_items:
            try:
                items.append((codec.parse(Declaration, raw), raw, None))
            except Exception as item_exc:  # noqa: BLE001 - each bad item is reported with its own error
                items.append((None, raw, item_exc))
    checked: list[tuple[Declaration | None, bytes, Exception | None]] = []
    for decl, raw, error in items:
        if decl is not None:
            try:
                check_partition(decl, partition, partitions)
            except WrongPartition as exc:
                checked.append((None, decl.model_dump_json().encode(), exc))
                continue
        checked.append((decl, raw, error))
    return checked
