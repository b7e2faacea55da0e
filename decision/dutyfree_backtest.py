"""The duty-free rules over a simulated period: every purchase folded in time order by the same
code the worker runs (``policy.dutyfree``), and what fired compared with what was planted.

Input: ``<stem>.duty-free.jsonl`` (``portsim.dutyfree``): ``{"purchase": ...}`` lines, then
``{"truth": {"rule", "subject"}}`` lines. Per rule: caught (planted and fired), missed (planted,
not fired), false alarms (fired, not planted). Subjects are shopper tokens, or
``<payer|phone|address>:<token>`` for the resale pattern.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

import orjson
from pydantic import ValidationError

from policy.config import DutyFree
from policy.dutyfree import RULES, LinkYear, ShopperYear, fold_link, fold_purchase, links_of
from schemas import DutyFreePurchase

MAX_LINE_BYTES = 1 << 20


class DutyFreeFileError(ValueError):
    pass


def load_duty_free(path: Path) -> tuple[list[DutyFreePurchase], set[tuple[str, str]]]:
    """The purchases (in file order) and the planted (rule, subject) pairs of a duty-free file."""
    purchases: list[DutyFreePurchase] = []
    truth: set[tuple[str, str]] = set()
    try:
        with path.open("rb") as fh:
            for n, line in enumerate(fh, 1):
                if not line.strip():
                    continue
                if len(line) > MAX_LINE_BYTES:
                    raise DutyFreeFileError(f"{path} line {n}: longer than {MAX_LINE_BYTES} bytes")
                try:
                    doc = orjson.loads(line)
                    if isinstance(doc, dict) and "purchase" in doc:
                        purchases.append(DutyFreePurchase.model_validate_json(orjson.dumps(doc["purchase"])))
                    elif isinstance(doc, dict) and isinstance(doc.get("truth"), dict):
                        truth.add((str(doc["truth"]["rule"]), str(doc["truth"]["subject"])))
                    else:
                        raise DutyFreeFileError(f"{path} line {n}: neither a purchase nor a truth line")
                except (orjson.JSONDecodeError, ValidationError, KeyError) as exc:
                    raise DutyFreeFileError(f"{path} line {n}: {' '.join(str(exc).split())[:300]}") from None
    except OSError as exc:
        raise DutyFreeFileError(f"cannot read duty-free purchases {path}: {exc.strerror}") from None
    return purchases, truth


def fired_rules(config: DutyFree, purchases: list[DutyFreePurchase]) -> set[tuple[str, str]]:
    """(rule, subject) for every rule the worker's folds fire over ``purchases`` in time order."""
    shoppers: dict[str, ShopperYear] = {}
    links: dict[str, LinkYear] = {}
    fired: set[tuple[str, str]] = set()
    for p in sorted(purchases, key=lambda p: p.purchased_at):
        folded = fold_purchase(config, shoppers.get(p.shopper_token), p)
        if folded.state is None:
            continue
        shoppers[p.shopper_token] = folded.state
        fired.update((f.rule, p.shopper_token) for f in folded.fired)
        for link in links_of(p):
            tied = fold_link(config, links.get(link), link, p.shopper_token, folded.state.year)
            if tied.state is not None:
                links[link] = tied.state
            if tied.fired is not None:
                fired.add((tied.fired.rule, link))
    return fired


def duty_free_report(config: DutyFree, purchases: list[DutyFreePurchase], truth: set[tuple[str, str]]) -> dict[str, Any]:
    fired = fired_rules(config, purchases)
    by_rule: dict[str, dict[str, int]] = defaultdict(lambda: {"planted": 0, "caught": 0, "missed": 0, "false_alarms": 0})
    for rule in RULES:
        planted = {s for r, s in truth if r == rule}
        raised = {s for r, s in fired if r == rule}
        by_rule[rule] = {"planted": len(planted), "caught": len(planted & raised), "missed": len(planted - raised),
                         "false_alarms": len(raised - planted)}
    return {"purchases": len(purchases), "shoppers": len({p.shopper_token for p in purchases}), "by_rule": dict(by_rule)}


def format_duty_free(report: dict[str, Any]) -> str:
    lines = [f"duty-free: {report['purchases']:,} purchases by {report['shoppers']:,} shoppers",
             f"  {'rule':<32} {'planted':>8} {'caught':>8} {'missed':>8} {'false alarms':>13}"]
    for rule, f in report["by_rule"].items():
        lines.append(f"  {rule:<32} {f['planted']:>8,} {f['caught']:>8,} {f['missed']:>8,} {f['false_alarms']:>13,}")
    return "\n".join(lines)
