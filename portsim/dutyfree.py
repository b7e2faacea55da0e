"""Simulated offshore duty-free shopping: shops, shoppers and their purchases over a period, with
planted violations and the hidden truth of each, for ``riskctl backtest``.

Most shoppers buy a few things well within the quota and limits, each from their own payer, phone
and address. Planted among them, by a seeded draw: shoppers who go over the yearly quota, over a
category's piece limit, fail the identity check, or buy the same goods again and again; and
resellers whose payer is shared by several shoppers. ``<stem>.duty-free.jsonl`` holds one JSON
object per line: ``{"purchase": DutyFreePurchase}`` in time order, then ``{"truth": {"rule": ...,
"subject": ...}}`` for every planted violation (the subject is the shopper token, or
``payer:<token>`` for a resale ring), never read by the pipeline.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import orjson

from policy.config import DutyFree
from policy.dutyfree import IDENTITY_NOT_MATCHED, ITEM_LIMIT_EXCEEDED, LINKED_SHOPPERS, QUOTA_EXCEEDED, REPEAT_GOODS
from schemas import DutyFreeCategory, DutyFreePurchase

SHOPS = ("HAK-DF-01", "HAK-DF-02", "SYA-DF-01", "SYA-DF-02", "QHI-DF-01")
SHOPPERS_PER_DECLARATIONS = 200  # one simulated shopper per this many history declarations (at least 50)
PLANTED_SHARE = 0.04  # share of shoppers planted with each shopper rule
RING_SIZE = 8  # shoppers on one reseller's payer


@dataclass(frozen=True, slots=True)
class Truth:
    rule: str
    subject: str


def duty_free_path(history: Path) -> Path:
    stem = history.with_suffix("")
    return stem.with_name(stem.name + ".duty-free.jsonl")


def simulate_purchases(seed: int, shoppers: int, start: datetime, span: timedelta,
                       config: DutyFree | None = None) -> tuple[list[DutyFreePurchase], list[Truth]]:
    """Purchases of ``shoppers`` shoppers between ``start`` and ``start + span`` (inside one Beijing
    calendar year is the caller's choice), and what was planted."""
    config = config or DutyFree()
    rng = random.Random(f"duty-free:{seed}")
    bought: list[tuple[datetime, dict]] = []
    truth: list[Truth] = []
    counter = iter(range(10**9))

    def at() -> datetime:
        return start + span * rng.random()

    def buy(shopper: str, lines: list[tuple[DutyFreeCategory, str, int, float]], *, matched: bool = True,
            payer: str | None = None, when: datetime | None = None) -> None:
        n = next(counter)
        items = [{"category": c.value, "goods_code": code, "quantity": q, "unit_price_cny": p} for c, code, q, p in lines]
        bought.append((when or at(), {
            "purchase_id": f"DFP-{seed}-{n:07d}", "shop_id": rng.choice(SHOPS), "shopper_token": shopper,
            "identity_check": {"token": f"IC-{seed}-{n:07d}", "method": rng.choice(("face", "id-document")), "matched": matched},
            "payer_token": payer or f"PAY-{shopper}", "phone_token": f"TEL-{shopper}", "delivery_address_token": f"ADR-{shopper}",
            "items": items, "total_cny": round(sum(q * p for _, _, q, p in lines), 2)}))

    ordinary = (DutyFreeCategory.HANDBAGS, DutyFreeCategory.WATCHES, DutyFreeCategory.OTHER, DutyFreeCategory.ELECTRONICS)
    for s in range(shoppers):
        shopper = f"SHP-{seed}-{s:06d}"
        draw = rng.random()
        plant = None if draw >= 4 * PLANTED_SHARE else (QUOTA_EXCEEDED, ITEM_LIMIT_EXCEEDED, IDENTITY_NOT_MATCHED,
                                                         REPEAT_GOODS)[int(draw / PLANTED_SHARE)]
        if plant == QUOTA_EXCEEDED:  # a few big purchases past the quota
            for k in range(3):
                buy(shopper, [(DutyFreeCategory.WATCHES, f"W-{s}-{k}", 1, round(config.yearly_quota_cny * 0.45, 2))])
        elif plant == ITEM_LIMIT_EXCEEDED:
            category, limit = next(iter(config.item_limits.items()))
            buy(shopper, [(category, f"L-{s}", limit + 1 + rng.randrange(5), 199.0)])
        elif plant == IDENTITY_NOT_MATCHED:
            buy(shopper, [(DutyFreeCategory.OTHER, f"O-{s}", 1, 880.0)], matched=False)
        elif plant == REPEAT_GOODS:
            for _ in range(config.repeat_purchases + rng.randrange(3)):
                buy(shopper, [(DutyFreeCategory.HANDBAGS, "BAG-CLASSIC", 1, 2_400.0)])
        else:  # an ordinary shopper: one to three modest purchases of different goods
            for k in range(1 + rng.randrange(3)):
                buy(shopper, [(rng.choice(ordinary), f"G-{s}-{k}", 1, round(rng.uniform(200, 9_000), 2))])
        if plant is not None:
            truth.append(Truth(plant, shopper))
    for r in range(max(1, shoppers // 500)):  # reseller rings: many shoppers paid for by one payer
        payer = f"PAY-RING-{seed}-{r:04d}"
        for k in range(max(RING_SIZE, config.max_shoppers_per_link + 2)):
            buy(f"SHP-{seed}-R{r:04d}-{k:02d}", [(DutyFreeCategory.OTHER, f"R-{r}-{k}", 1, 1_500.0)], payer=payer)
        truth.append(Truth(LINKED_SHOPPERS, f"payer:{payer}"))
    bought.sort(key=lambda b: b[0])
    purchases = [DutyFreePurchase.model_validate_json(orjson.dumps({**p, "purchased_at": when.isoformat()})) for when, p in bought]
    return purchases, truth


def write_duty_free(path: Path, purchases: list[DutyFreePurchase], truth: list[Truth]) -> None:
    tmp = path.with_name(path.name + ".partial")
    with tmp.open("wb") as fh:
        for p in purchases:
            fh.write(b'{"purchase":' + p.model_dump_json(exclude_none=True).encode() + b"}\n")
        for t in truth:
            fh.write(orjson.dumps({"truth": {"rule": t.rule, "subject": t.subject}}) + b"\n")
    tmp.replace(path)



def write_for_history(seed: int, history: Path, count: int, start: datetime, rate_per_s: float,
                      config: DutyFree | None = None) -> tuple[Path, int, int]:
    """The duty-free file beside a history of ``count`` declarations from ``start`` at
    ``rate_per_s``: one shopper per ``SHOPPERS_PER_DECLARATIONS`` declarations (at least 50),
    purchases over the history's period cut at the end of its first Beijing calendar year (a
    planted violation then lies within one year). Returns the path, purchases and planted truths."""
    config = config or DutyFree()
    offset = timezone(timedelta(hours=config.utc_offset_hours))
    year_end = datetime(start.astimezone(offset).year + 1, 1, 1, tzinfo=offset)
    span = min(timedelta(seconds=count / rate_per_s), year_end - start - timedelta(seconds=1), datetime.now(UTC) - start)
    span = max(span, timedelta(0))  # purchases are never in the future (the schema refuses them)
    purchases, truth = simulate_purchases(seed, max(50, count // SHOPPERS_PER_DECLARATIONS), start, span, config)
    path = duty_free_path(history)
    write_duty_free(path, purchases, truth)
    return path, len(purchases), len(truth)
