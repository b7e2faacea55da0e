"""A handler exception pinned on the records that cause it (issue 15, item 6).

A handler that raises must neither stall its partition nor lose a declaration. Its table writes
are undone (``streams.outputs.TableJournal``: a handler writes the tables' local stores at once),
then the batch is handled again one record at a time, each attempt undone on its own if it raises.
The records that succeed are decided as usual; the caller (``Topology._run_batch``) dead-letters
the records that fail on their own (``handler-error``), or stops the worker when the failure cannot
be pinned on records. Metrics are counted in each attempt's output and published with it, so the
records of a retried batch are counted once.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from streams.outputs import OutputBatch, recording

log = logging.getLogger(__name__)


class HandlerFailed(RuntimeError):
    """The handler raised on this record when it was handled alone."""

    reason_code = "handler-error"

    @classmethod
    def of(cls, agent: str, exc: BaseException) -> HandlerFailed:
        return cls(f"{type(exc).__name__} in {agent}: {exc}")


@dataclass
class Attempt:
    """What a micro-batch gave: its output, and the events that failed alone (with the exception)."""

    out: OutputBatch
    retried: bool = False  # the batch as a whole raised and was handled record by record
    failed: list[tuple[Any, BaseException]] = field(default_factory=list)
    failed_since_success: int = 0  # of the events handled alone, those after the last that succeeded


def handle_isolating(agent: str, handler: Callable[[Sequence[Any]], OutputBatch], events: Sequence[Any]) -> Attempt:
    """``handler(events)``; if it raises, undo it and handle each event alone (undoing each one that
    raises)."""
    with recording() as journal:
        try:
            return Attempt(handler(events))
        except Exception:
            journal.rollback()
            log.exception("%s: handler raised on a micro-batch of %d records; retrying them one by one", agent, len(events))
    attempt = Attempt(OutputBatch(), retried=True)
    for event in events:
        with recording() as journal:
            try:
                out = handler([event])
            except Exception as exc:  # noqa: BLE001 - this record fails on its own
                journal.rollback()
                attempt.failed.append((event, exc))
                attempt.failed_since_success += 1
                continue
        attempt.failed_since_success = 0
        attempt.out.extend(out)
    return attempt
