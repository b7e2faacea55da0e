"""Rejected records, bound for the dead-letter topic with their reason, counted and logged."""

from __future__ import annotations

import logging
from typing import Any

from schemas.deadletters import dead_letter_record
from streams import metrics
from streams.outputs import OutputBatch

log = logging.getLogger(__name__)


class DeadLetterSink:
    """Adds rejected records to a micro-batch's output, bound for the dead-letter topic."""

    def __init__(self, topic: str) -> None:
        self.topic = topic

    def add(self, out: OutputBatch, message: Any, exc: BaseException, value: bytes | None = None) -> None:
        """Dead-letter ``message`` (or, with ``value``, one item of the batch ``message`` carried)."""
        original = message.value if value is None else value
        reason, payload = dead_letter_record(message.topic, message.partition, message.offset, message.key, original, exc)
        log.warning("dead letter from %s[%d]@%d: %s", message.topic, message.partition, message.offset, reason)
        out.inc(metrics.DEAD_LETTERS.labels(message.topic, reason))
        out.add(self.topic, 0, message.topic.encode(), payload)
