"""The reference events a simulated history was decided with: the office's credit register and
risk lists, written beside the history file so that ``riskctl backtest`` reproduces its figures.

``<stem>.credit.jsonl``: the credit register as it stood a day before the history starts, then the
credit and lifecycle changes over the history's period (as the live simulator publishes them,
one per ``LIFECYCLE_PER_DECLARATION`` declarations), as ``CreditEvent`` JSON lines.
``<stem>.risk-lists.jsonl``: the office's risk characteristic lists and other agencies' alerts
(``OFFICE_RISK_LISTS``, the ones the demo publishes too), as ``RiskListEntry`` JSON lines.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from portsim.traffic import DEFAULT_RATE, DEFAULT_START, LIFECYCLE_PER_DECLARATION, PortOffice
from schemas import RiskListEntry

OFFICE_RISK_LISTS = (
    # (entry id, list, kind, value, action, reason, agency)
    ("JASC-0001", "JASC-ALERTS", "hs-prefix", "9303", "inspect", "firearms: joint anti-smuggling alert", "public security bureau"),
    ("RL-ORIGIN-0001", "SANCTIONS", "origin", "KP", "inspect", "origin under sanctions", "customs"),
    ("RL-WATCH-0001", "VALUATION-WATCH", "hs-prefix", "8471", "watch", "computers: valuation watch", "customs"),
)
RISK_LISTS_VALID_FROM = datetime(2020, 1, 1, tzinfo=UTC)


def office_risk_lists() -> list[RiskListEntry]:
    return [RiskListEntry.model_validate({"entry_id": entry_id, "list_id": list_id, "kind": kind, "value": value, "action": action,
                                          "reason": reason, "source_agency": agency, "valid_from": RISK_LISTS_VALID_FROM},
                                         strict=False)
            for entry_id, list_id, kind, value, action, reason, agency in OFFICE_RISK_LISTS]


def reference_paths(history: Path) -> tuple[Path, Path]:
    """(credit events, risk lists) beside a history file: ``<stem>.credit.jsonl``, ``<stem>.risk-lists.jsonl``."""
    stem = history.with_suffix("")
    return stem.with_name(stem.name + ".credit.jsonl"), stem.with_name(stem.name + ".risk-lists.jsonl")


def write_references(office: PortOffice, history: Path, count: int, start: datetime | None = None,
                     rate_per_s: float | None = None) -> tuple[Path, Path, int, int]:
    """Write both files for a history of ``count`` declarations from ``start`` at ``rate_per_s``;
    returns their paths and the credit events and entries written."""
    start = start or DEFAULT_START
    credit, lists = reference_paths(history)
    changes = office.lifecycle_events(max(1, round(count * LIFECYCLE_PER_DECLARATION)), start=start,
                                      rate_per_s=(rate_per_s or DEFAULT_RATE) * LIFECYCLE_PER_DECLARATION)
    events = 0
    tmp = credit.with_name(credit.name + ".partial")
    with tmp.open("wb") as fh:
        for event in (*office.credit_population(start - timedelta(days=1)), *changes):
            fh.write(event.model_dump_json(exclude_none=True).encode() + b"\n")
            events += 1
    tmp.replace(credit)
    entries = office_risk_lists()
    lists.write_bytes(b"".join(e.model_dump_json(exclude_none=True).encode() + b"\n" for e in entries))
    return credit, lists, events, len(entries)
