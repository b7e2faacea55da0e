"""The credit fold: single credit events and agencies' event batches into the enterprise-credit table.

One agent (``fold_credit_events``) reads ``credit-events`` (one event per record) and
``credit-event-batches`` (up to ``CREDIT_BATCH_MAX_EVENTS`` per record). A micro-batch is parsed
first, then grouped by enterprise in arrival order, and each enterprise's events are folded at once
(``policy.credit.fold_credit_events``): ONE table write, so one changelog record, per enterprise
per micro-batch, however many events it had. The changelog record is what every worker reads back
(Faust pays per record), so a bulk reload in enterprise order costs about one record per
enterprise instead of one per event.

The agent's micro-batch is weighed in events (``streams.limits.record_weight``): at most
``BATCH_MAX`` events unless one batch record is heavier on its own, so a reload hands the event
loop back to the declarations between micro-batches.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

from decision.batch import CreditBook
from policy.credit import fold_credit_events
from schemas import CreditEvent
from schemas.creditbatch import parse_credit_event_batch
from schemas.validation import parse_keyed
from streams import metrics
from streams.deadletter import DeadLetterSink
from streams.limits import BatchTooLarge
from streams.outputs import OutputBatch

# An event waiting to be folded: the record it came in and whether it is an item of a batch record.
Pending = tuple[CreditEvent, Any, bool]


class CreditFold:
    """The handler of ``fold_credit_events`` over the worker's credit table and book."""

    def __init__(self, table: Any, book: CreditBook, dead_letters: DeadLetterSink, batch_topic: str,
                 max_batch_events: Callable[[], int]) -> None:
        self.table = table
        self.book = book
        self.dead_letters = dead_letters
        self.batch_topic = batch_topic
        self._max_batch_events = max_batch_events

    def handle(self, events: Sequence[Any]) -> OutputBatch:
        out = OutputBatch()
        by_enterprise: dict[str, list[Pending]] = {}
        for event in events:
            msg = event.message
            pending = self._batch_events(out, msg) if msg.topic == self.batch_topic else self._single_event(out, msg)
            for item in pending:
                by_enterprise.setdefault(item[0].enterprise_id, []).append(item)
        applied: Counter[str] = Counter()
        for enterprise_id, group in by_enterprise.items():
            state = self.book.record_of(enterprise_id)
            folded = fold_credit_events(state, [credit_event for credit_event, _, _ in group])
            for credit_event, exc in folded.refused:
                msg, in_batch = next((m, b) for e, m, b in group if e is credit_event)
                self.dead_letters.add(out, msg, exc, value=_original(credit_event) if in_batch else None)
            if folded.state is not state:
                out.set_table(self.table, 0, enterprise_id.encode(), folded.state.to_bytes())
                out.inc(metrics.CREDIT_TABLE_WRITES)
                applied.update(folded.applied)
        for event_type, count in applied.items():
            out.inc(metrics.CREDIT_EVENTS_APPLIED.labels(event_type), count)
        return out

    def _single_event(self, out: OutputBatch, msg: Any) -> list[Pending]:
        try:
            return [(parse_keyed(CreditEvent, msg.key, msg.value, "enterprise_id", key_optional=True), msg, False)]
        except Exception as exc:  # noqa: BLE001 - every bad record goes to the dead-letter topic
            self.dead_letters.add(out, msg, exc)
            return []

    def _batch_events(self, out: OutputBatch, msg: Any) -> list[Pending]:
        """A batch record's good events; each bad one (or the whole record, if its envelope is
        unusable or it holds more events than the worker accepts) dead-lettered with its bytes."""
        try:
            _, items = parse_credit_event_batch(msg.value)
        except Exception as exc:  # noqa: BLE001 - the envelope itself is unusable
            self.dead_letters.add(out, msg, exc)
            return []
        limit = self._max_batch_events()
        if len(items) > limit:  # refused whole, folded not at all
            self.dead_letters.add(out, msg, BatchTooLarge(f"{len(items)} credit events in one batch record; at most {limit} accepted"))
            return []
        good: list[Pending] = []
        for credit_event, raw, error in items:
            if credit_event is not None:
                good.append((credit_event, msg, True))
            else:
                assert error is not None
                self.dead_letters.add(out, msg, error, value=raw)
        out.observe(metrics.CREDIT_BATCH_EVENTS, [float(len(items))])
        return good


def _original(credit_event: CreditEvent) -> bytes:
    """A batch item's bytes for its dead letter (the batch parsed in one pass keeps no item bytes)."""
    return credit_event.model_dump_json(exclude_none=True).encode()
