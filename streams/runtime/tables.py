"""Direct access to a Faust table's local store, for the hot path.

Faust's table ``__setitem__`` writes the store and sends the changelog record through
``send_soon``, one message at a time. The handlers instead write the store here and put the
changelog record into the micro-batch's output (``streams.outputs.OutputBatch.set_table``), on the
partition of the input record: where Faust itself would write it and where its recovery reads it
back. Reads go to the plain dict inside Faust's memory store: its ``Store`` wrapper costs about a
microsecond per look-up through the generic ``Mapping`` methods.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def contents(table: Any) -> Mapping[bytes, bytes]:
    """A table's key -> value mapping for reads: the plain dict inside Faust's memory store, or
    the store itself for any other store. Read-only by convention: write through ``write``."""
    store = table.data
    inner = getattr(store, "data", None)
    return inner if isinstance(inner, dict) else store


def write(table: Any, key: bytes, value: bytes | None) -> None:
    """Set (or delete, with None) a key in the table's local store only; the caller sends the
    changelog record (to ``changelog_topic(table)``)."""
    if value is None:
        table.data.pop(key, None)
    else:
        table.data[key] = value


def changelog_topic(table: Any) -> str:
    """The name of the table's changelog topic (``<app id>-<table name>-changelog``)."""
    name: str = table.changelog_topic.get_topic_name()
    return name


def is_changelog(topic: str) -> bool:
    """Whether ``topic`` is a table's changelog (Faust names them ``...-changelog``); the worker
    consumes every other topic as input."""
    return topic.endswith("-changelog")
