"""A credit-event batch record, event by event, as the worker and the archive read it.

Like a gateway's declaration batch (``schemas.validation.parse_declaration_batch``): the whole
record is validated in one pass in the normal case; when that fails, each event is validated alone
so that only the bad ones are rejected, each with its original bytes. Only an unusable envelope
(not JSON, a wrong field, too many events, a duplicated key outside the events) rejects the record.
"""

from __future__ import annotations

from schemas import codec
from schemas.records import CreditEvent, CreditEventBatch

# (event, b"", None) for a good event; (None, the event's original bytes, its error) for a bad one.
BatchItem = tuple[CreditEvent | None, bytes, Exception | None]


def parse_credit_event_batch(value: bytes | None) -> tuple[str | None, list[BatchItem]]:
    """The batch's publisher (None when only the events could be read one by one) and its events.
    Raises what ``schemas.codec.parse`` raises when the envelope itself is unusable."""
    try:
        batch = codec.parse(CreditEventBatch, value)
    except Exception as exc:  # noqa: BLE001 - any failure of the one-pass parse falls back to event by event
        try:
            raw_items = codec.batch_items(CreditEventBatch, value, "events")
        except Exception:  # noqa: BLE001 - the envelope is unusable: report the first error, not this one
            raise exc from None
        items: list[BatchItem] = []
        for raw in raw_items:
            try:
                items.append((codec.parse(CreditEvent, raw), b"", None))
            except Exception as item_exc:  # noqa: BLE001 - each bad event is reported with its own error
                items.append((None, raw, item_exc))
        return None, items
    return batch.publisher, [(event, b"", None) for event in batch.events]
