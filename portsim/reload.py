"""Credit events in bulk: the office's register reload and agencies' batches, as ``CreditEventBatch``
records (JSON-ready dicts) for ``credit-event-batches``.

``register_reload`` is the office's credit register exported in enterprise order, every entry with
its agency: per enterprise, customs' class and the qualifications it registered, and the other
agencies' penalty history (each imposed penalty lifted by the agency that imposed it, except the
one an enterprise still carries). Folded, it gives each enterprise the state the initial register
(``Population.initial_events``) gives it, so a reload does not change decisions, only the record.
Deterministic from the population's seed; the entries are spread evenly over the enterprises.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import Any

from portsim.population import AGENCIES, CLASS_VALUES, GENERAL, PENALTY_REASONS, Population

BATCH_EVENTS = 1000  # events per batch record: the worker's default CREDIT_BATCH_MAX_EVENTS
OTHER_AGENCIES = tuple(a for a in AGENCIES if a != "customs")


def _event(event_id: str, enterprise: str, event_type: str, agency: str, at: str, reason: str,
           credit_class: str | None = None, qualification: str | None = None) -> dict[str, Any]:
    event: dict[str, Any] = {"event_id": event_id, "enterprise_id": enterprise, "event_type": event_type, "source_agency": agency,
                             "reason": reason, "event_time": at}
    if credit_class is not None:
        event["credit_class"] = credit_class
    if qualification is not None:
        event["qualification"] = qualification
    return event


def enterprise_entries(pop: Population, i: int, count: int, at: str, prefix: str) -> list[dict[str, Any]]:
    """``count`` (at least 1) register entries of enterprise ``i`` that fold to its initial state."""
    eid = pop.ids[i]
    out: list[dict[str, Any]] = []
    n = 0

    def add(event_type: str, agency: str, reason: str, **kw: Any) -> None:
        nonlocal n
        out.append(_event(f"{prefix}-{i}-{n}", eid, event_type, agency, at, reason, **kw))
        n += 1

    cls = int(pop.credit_class[i])
    add("credit-class-changed", "customs", "register reload", credit_class=CLASS_VALUES[cls].value if cls != GENERAL else "general")
    if pop.zero_tariff[i]:
        add("qualification-registered", "customs", "register reload", qualification="zero-tariff")
    if pop.processing[i]:
        add("qualification-registered", "customs", "register reload", qualification="processing-value-added")
    penalised = bool(pop.joint_penalty[i])
    history = max(0, count - len(out) - (1 if penalised else 0))
    for k in range(history):  # past penalties, imposed and lifted by the same agency
        agency = OTHER_AGENCIES[(i + k // 2) % len(OTHER_AGENCIES)]
        if k % 2 == 0 and k + 1 < history:
            add("joint-penalty-imposed", agency, PENALTY_REASONS[(i + k) % len(PENALTY_REASONS)])
        else:
            add("joint-penalty-lifted", agency, "penalty lifted after rectification")
    if penalised:
        add("joint-penalty-imposed", OTHER_AGENCIES[i % len(OTHER_AGENCIES)], PENALTY_REASONS[i % len(PENALTY_REASONS)])
    return out


def register_reload(pop: Population, entries: int, enterprises: int, at: datetime,
                    batch_events: int = BATCH_EVENTS) -> Iterator[dict[str, Any]]:
    """``entries`` register entries for the first ``enterprises`` enterprises (at least one each),
    in enterprise order, packed ``batch_events`` to a ``CreditEventBatch``."""
    enterprises = min(enterprises, pop.size)
    stamp = at.isoformat()
    prefix = f"RL{pop.seed}"
    base, extra = divmod(max(entries, enterprises), enterprises)
    pending: list[dict[str, Any]] = []
    number = 0
    for i in range(enterprises):
        pending += enterprise_entries(pop, i, base + (1 if i < extra else 0), stamp, prefix)
        while len(pending) >= batch_events:
            yield {"batch_id": f"{prefix}-B{number}", "publisher": "customs", "events": pending[:batch_events]}
            pending = pending[batch_events:]
            number += 1
    if pending:
        yield {"batch_id": f"{prefix}-B{number}", "publisher": "customs", "events": pending}
