"""Producing the console's records: every send waits for the broker's acknowledgement, so the
console answers an officer only once what they did is on the topic.

A form's business record (an inspection result, a risk-list entry, a credit event, a warning review)
and its console action are produced one after the other, the business record first: it decides what
happened. Not acknowledged: nothing happened, and no action is produced (an audit record of something
that did not happen would be false). Acknowledged: the work is done whatever becomes of its action,
which is retried a bounded number of times; if it still fails, the action is logged in full as an
error and counted (``customs_console_audit_records_missing_total``), and the page says the work is
recorded without its audit record.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from datetime import UTC, datetime
from typing import Protocol

import orjson
from confluent_kafka import KafkaError, Message, Producer
from pydantic import BaseModel

from clients import topics
from clients.producers import producer_config
from common.settings import Settings
from console import metrics
from schemas import ConsoleAction, ConsoleActionKind, ConsoleRole

log = logging.getLogger(__name__)

DELIVERY_TIMEOUT_S = 15.0
AUDIT_ATTEMPTS = 3  # tries of a console action whose business record is acknowledged
AUDIT_RETRY_S = 0.2  # the pause before each further try (the broker's own retries come first)

Record = tuple[str, str, bytes | None]


class PublishError(RuntimeError):
    """A record was not acknowledged by the broker; the message says why."""


class Publisher:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        # Idempotent producer: a retry inside librdkafka never writes a record twice.
        self._producer = Producer(producer_config(settings, **{"linger.ms": 0, "enable.idempotence": True,
                                                               "message.timeout.ms": int(DELIVERY_TIMEOUT_S * 1000)}))
        self._lock = threading.Lock()

    def send_many(self, records: list[tuple[str, str, bytes | None]]) -> None:
        """Produce records (already validated and encoded) and wait until every one is acknowledged."""
        errors: list[str] = []
        done = threading.Event()
        pending = len(records)
        count_lock = threading.Lock()

        def delivered(err: KafkaError | None, msg: Message) -> None:
            nonlocal pending
            if err is not None:
                errors.append(f"{msg.topic()}: {err.str()}")
            with count_lock:
                pending -= 1
                if pending == 0:
                    done.set()

        with self._lock:
            for topic, key, payload in records:
                self._producer.produce(self.settings.topic(topic), key=key.encode(), value=payload, on_delivery=delivered)
        deadline = time.monotonic() + DELIVERY_TIMEOUT_S + 5  # librdkafka gives up after DELIVERY_TIMEOUT_S itself
        while not done.is_set() and time.monotonic() < deadline:
            self._producer.poll(0.05)  # serves the delivery callbacks
        if errors or not done.is_set():
            metrics.PUBLISH_FAILURES.inc()
            raise PublishError("; ".join(errors) or f"no acknowledgement within {DELIVERY_TIMEOUT_S:.0f}s")

    def close(self) -> None:
        self._producer.flush(DELIVERY_TIMEOUT_S)


def console_action(user: str, role: ConsoleRole, action: ConsoleActionKind, subject: str, detail: str = "") -> ConsoleAction:
    """A validated action record (subject and detail cut to their bounds: they describe, they are not data)."""
    return ConsoleAction(action_id=uuid.uuid4().hex, user=user, role=role, action=action, subject=subject[:128] or "-",
                         detail=detail[:2000], at=datetime.now(UTC))


def action_record(action: ConsoleAction) -> tuple[str, str, bytes]:
    return topics.CONSOLE_ACTIONS, action.user, orjson.dumps(action.model_dump(mode="json"))


def record_of(topic: str, key: str, value: BaseModel) -> tuple[str, str, bytes]:
    return topic, key, orjson.dumps(value.model_dump(mode="json"))


class Sends(Protocol):
    def send_many(self, records: list[Record]) -> None: ...


def publish_with_audit(publisher: Sends, record: Record, action: ConsoleAction) -> bool:
    """Produce ``record``, then its console ``action``. Raises PublishError when ``record`` is not
    acknowledged (then nothing was produced on the console's behalf). True when both are acknowledged;
    False when ``action`` is not after ``AUDIT_ATTEMPTS`` tries: ``record`` stands, the action is logged
    and counted, and the caller tells the user their work is recorded without its audit record."""
    publisher.send_many([record])
    audit = action_record(action)
    error: PublishError | None = None
    for attempt in range(AUDIT_ATTEMPTS):
        if attempt:
            time.sleep(AUDIT_RETRY_S * attempt)
        try:
            publisher.send_many([audit])
            return True
        except PublishError as exc:
            error = exc
    metrics.AUDIT_MISSING.labels(action.action.value).inc()
    log.error("console action not acknowledged after %d tries (%s); its %s record stands. The action: %s",
              AUDIT_ATTEMPTS, error, record[0], (audit[2] or b"").decode())
    return False
