"""Bounds on what one record and one micro-batch may hold (issue 15, item 5).

``batch_max`` counts declarations, not Kafka records: a gateway batch record carries up to the
schema's 5,000 declarations and a centralised declaration up to 999 goods items, so a micro-batch
of records counted one each could hold millions. An agent's micro-batches are therefore weighed
(``streams.runtime.batching.take_batches``): a record that carries declarations weighs as many as
it may carry, counted without parsing it (see ``carried``), and a gateway batch record with more
declarations than ``gateway_batch_max_declarations`` is refused whole (``BatchTooLarge``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


class BatchTooLarge(ValueError):
    """A gateway batch record with more declarations than the worker accepts in one record."""

    reason_code = "batch-too-large"


def carried(value: bytes | None, cap: int) -> int:
    """An upper bound, capped at ``cap``, on the objects in a JSON array record of objects: its
    ``{`` characters less the envelope's. A JSON object cannot be written without a literal ``{``
    (escapes exist only inside strings), so no record carries more items than this counts; a
    ``{`` inside a string only makes its record look heavier. One byte scan, no parse."""
    if not value:
        return 1
    return max(1, min(value.count(b"{") - 1, cap))


def record_weight(topic_caps: dict[str, int]) -> Callable[[Any], int]:
    """A ``take_batches`` weight: a record on a topic in ``topic_caps`` weighs the items it may carry
    (at most the topic's cap: a record over it is refused, never decided); any other record 1."""

    def weight(event: Any) -> int:
        message = event.message
        cap = topic_caps.get(message.topic)
        return 1 if cap is None else carried(message.value, cap)

    return weight
