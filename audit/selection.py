"""``riskctl audit-selection``: the post-clearance audit selection of a period, per enterprise,
weighted by credit class (AEO least: "fewer audits" for good credit) and by the period's activity.

:func:`select` is pure: given the period's population (one :class:`Enterprise` per enterprise
active in it), the policy's ``audit_selection`` and a seed, it draws each enterprise once with a
probability from the weights (``policy.config.AuditSelection``). The draw is a hash of the seed,
the period and the enterprise id, so the same inputs select the same enterprises, and an
enterprise's draw does not depend on who else is in the population.

:func:`population` reads the population from the archive: the declarations of the period per
enterprise, the findings (inspection results that found something, about the period's
declarations), and each enterprise's credit class at the end of the period, folded from the
archive's ``credit_events`` (the credit audit trail with its event times; the enterprise-credit
changelog holds only the current state, not the state at a period's end).
"""

from __future__ import annotations

import hashlib
import math
import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

import orjson

from policy.config import AuditSelection
from policy.credit import EnterpriseCredit, apply_credit_event
from schemas import CreditClass, CreditEvent

PERIOD = re.compile(r"^(\d{4})-(Q[1-4]|H[12]|M(0[1-9]|1[0-2])|Y)$")


def period_days(period: str) -> tuple[date, date]:
    """The first and last day of ``2026-Q4``, ``2026-H1``, ``2026-M03`` or ``2026-Y``."""
    match = PERIOD.match(period)
    if match is None:
        raise ValueError(f"period {period!r} is not YYYY-Qn, YYYY-Hn, YYYY-Mmm or YYYY-Y")
    year, part = int(match.group(1)), match.group(2)
    first_month, months = {"Q": (3 * (int(part[1:] or 0) - 1) + 1, 3), "H": (6 * (int(part[1:] or 0) - 1) + 1, 6),
                           "M": (int(part[1:] or 1), 1), "Y": (1, 12)}[part[0]]
    start = date(year, first_month, 1)
    end_month = first_month + months
    end = (date(year + 1, 1, 1) if end_month > 12 else date(year, end_month, 1)) - timedelta(days=1)
    return start, end


@dataclass(frozen=True)
class Enterprise:
    enterprise_id: str
    credit_class: CreditClass
    declarations: int
    findings: int


@dataclass(frozen=True)
class Selected:
    enterprise: Enterprise
    probability: float
    draw: float

    @property
    def selected(self) -> bool:
        return self.draw < self.probability


def probability(e: Enterprise, config: AuditSelection) -> float:
    activity = 1 + config.activity_weight * math.log10(1 + e.declarations)
    findings = 1 + config.finding_weight * min(e.findings, config.max_findings)
    return min(config.max_rate, config.base_rate * config.class_weights[e.credit_class] * activity * findings)


def draw(seed: int, period: str, enterprise_id: str) -> float:
    """A uniform number in [0, 1) from the seed, the period and the enterprise (deterministic)."""
    digest = hashlib.blake2b(f"{seed}|{period}|{enterprise_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


def select(population: list[Enterprise], config: AuditSelection, seed: int, period: str) -> list[Selected]:
    """Every enterprise with at least ``min_declarations`` in the period, its probability and draw,
    most likely first."""
    rows = [Selected(e, round(probability(e, config), 6), draw(seed, period, e.enterprise_id))
            for e in population if e.declarations >= config.min_declarations]
    return sorted(rows, key=lambda s: (-s.probability, s.enterprise.enterprise_id))


def credit_at(events: list[dict[str, Any]], at: datetime) -> dict[str, CreditClass]:
    """Each enterprise's effective credit class after the events up to ``at`` (in event-time order;
    a redelivered event applies once)."""
    states: dict[str, EnterpriseCredit] = {}
    seen: set[str] = set()
    for row in sorted(events, key=lambda r: (r["event_time"], r["event_id"])):
        if row["event_id"] in seen or datetime.fromisoformat(str(row["event_time"])) > at:
            continue
        seen.add(row["event_id"])
        doc = {k: v for k, v in row.items() if k in CreditEvent.model_fields and v is not None}
        event = CreditEvent.model_validate_json(orjson.dumps(doc))  # strict, as the workers parse it
        states[event.enterprise_id] = apply_credit_event(states.get(event.enterprise_id, EnterpriseCredit()), event)
    return {eid: state.effective_class for eid, state in states.items()}


def population(day_from: date, day_to: date, archive_dir: Any = None) -> list[Enterprise]:
    """The enterprises that declared in ``day_from``..``day_to`` with their declarations, findings and credit class."""
    import polars as pl

    from archive import tables as t
    from archive.queries import Archive, _rows, _unique

    archive = Archive(archive_dir)
    decls = _unique(archive.window(t.DECLARATIONS, day_from, day_to).select("declaration_id", "enterprise_id").collect(),
                    ["declaration_id"])
    results = _unique(archive.window(t.INSPECTION_RESULTS, day_from, None).filter(pl.col("found"))
                      .select("instruction_id", "declaration_id").collect(), ["instruction_id"])
    found = results.join(decls, on="declaration_id", how="inner").group_by("enterprise_id").len()
    counts = decls.group_by("enterprise_id").len()
    events = _rows(archive.scan(t.CREDIT_EVENTS).filter(pl.col("day") <= day_to)
                   .select("event_id", "enterprise_id", "event_type", "credit_class", "qualification", "source_agency",
                           "reason", "event_time", "schema_version").collect())
    classes = credit_at(events, datetime.combine(day_to, datetime.max.time(), UTC))
    findings = dict(found.iter_rows())
    return [Enterprise(str(eid), classes.get(str(eid), CreditClass.GENERAL), int(n), int(findings.get(eid, 0)))
            for eid, n in sorted(counts.iter_rows())]


def report(rows: list[Selected], period: str, seed: int) -> dict[str, Any]:
    """The JSON document: the selected enterprises and the figures per credit class."""
    per_class: dict[str, dict[str, int]] = {}
    for s in rows:
        c = per_class.setdefault(s.enterprise.credit_class.value, {"enterprises": 0, "selected": 0})
        c["enterprises"] += 1
        c["selected"] += s.selected
    return {
        "period": period, "seed": seed, "enterprises": len(rows), "selected": sum(s.selected for s in rows),
        "by_class": {k: {**v, "rate": round(v["selected"] / v["enterprises"], 4)} for k, v in sorted(per_class.items())},
        "selection": [{"enterprise_id": s.enterprise.enterprise_id, "credit_class": s.enterprise.credit_class.value,
                       "declarations": s.enterprise.declarations, "findings": s.enterprise.findings,
                       "probability": s.probability} for s in rows if s.selected],
    }


def format_report(doc: dict[str, Any]) -> str:
    lines = [f"audit selection {doc['period']} (seed {doc['seed']}): {doc['selected']} of {doc['enterprises']} active enterprises",
             "", f"{'credit class':<14} {'enterprises':>11} {'selected':>8} {'rate':>7}"]
    for cls, c in doc["by_class"].items():
        lines.append(f"{cls:<14} {c['enterprises']:>11} {c['selected']:>8} {c['rate']:>7.2%}")
    lines += ["", f"{'enterprise':<24} {'credit class':<14} {'declarations':>12} {'findings':>8} {'probability':>11}"]
    for s in doc["selection"]:
        lines.append(f"{s['enterprise_id']:<24} {s['credit_class']:<14} {s['declarations']:>12} {s['findings']:>8} "
                     f"{s['probability']:>11.4f}")
    return "\n".join(lines)
