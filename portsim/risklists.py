"""The office's reference risk characteristic lists: 147 lists, about 300,000 entries in all.

Real lists are few and large or many and small: a national register of dishonest enterprises holds
tens of thousands of entries, a sanctions list of origins a handful. So list sizes follow a skewed
(log-normal) distribution, and a list's kind follows its size: enterprise, seller and declarant
lists are the large ones, HS codes and HS prefixes middling, origins and routes small (there are
only so many countries). Each list has one action (mostly ``watch`` or ``machine-check``, a few
``inspect``) and one source agency.

Most entries name enterprises, sellers, declarants and goods of *other* offices (the registers are
national); a small share names this office's own (the simulator's population and HS catalogue), so
a realistic share of declarations hits a list, not every one. Validity windows are relative to
``now``: most entries are current (open or ending later), some start in the future, some ended in
the last few days (older expired entries are retracted by the agencies, and a worker prunes them).

Deterministic for ``(seed, office, now)``: the bench, the demo and ``riskctl`` publish the same
lists. Records are JSON-ready dicts in ``RiskListEntry``'s shape (producing 300,000 pydantic
models only to serialise them again is slow); every one is valid per the schema.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import numpy as np
import orjson

from portsim import world
from portsim.population import AGENCIES, Population
from schemas import RiskListAction, RiskListKind

REFERENCE_LISTS = 147
REFERENCE_ENTRIES = 300_000
LARGEST_LIST = 45_000
SMALLEST_LIST = 3
EXPIRED_WITHIN = timedelta(days=5)  # expired entries still held ended at most this long ago

# Largest entries a list of each kind plausibly holds (the value space is small for some kinds).
KIND_CAPACITY = {
    RiskListKind.ORIGIN: 40, RiskListKind.ROUTE: 400, RiskListKind.HS_PREFIX: 4_000, RiskListKind.HS_CODE: 12_000,
    RiskListKind.DECLARANT: 15_000, RiskListKind.SELLER: LARGEST_LIST, RiskListKind.ENTERPRISE: LARGEST_LIST,
}
# Share of a list's entries naming this office's own enterprises, declarants, sellers or goods.
# The office has few declarants and HS codes: a small share of those lists already covers many.
LOCAL_SHARE = {
    RiskListKind.ENTERPRISE: 0.02, RiskListKind.DECLARANT: 0.0003, RiskListKind.SELLER: 0.02, RiskListKind.HS_CODE: 0.0003,
    RiskListKind.HS_PREFIX: 0.0005, RiskListKind.ORIGIN: 0.15, RiskListKind.ROUTE: 0.05,
}
ACTIONS = (RiskListAction.WATCH, RiskListAction.MACHINE_CHECK, RiskListAction.INSPECT)
ACTION_WEIGHTS = (0.62, 0.33, 0.05)
# Validity of an entry: (current and open, current with an end, starts later, ended recently).
WINDOW_WEIGHTS = (0.55, 0.30, 0.05, 0.10)

# Registration-code prefixes of other provinces' enterprises (this office's are 460...).
OTHER_REGIONS = ("110", "120", "130", "310", "320", "330", "340", "350", "370", "410", "420", "430", "440", "450",
                 "500", "510", "530", "610", "650")
# Origins on sanctions and watch lists that the simulated office rarely or never trades with.
WATCHED_ORIGINS = ("KP", "IR", "SY", "CU", "VE", "SD", "SS", "LY", "YE", "SO", "ER", "BY", "ZW", "CF", "CD", "ML", "NI",
                   "HT", "LB", "IQ", "AF", "MM", "BO", "PA", "NG", "MZ", "KE", "CM", "GE", "RS")
TITLES = {
    RiskListKind.ENTERPRISE: "enterprise under joint punishment", RiskListKind.DECLARANT: "declarant under review",
    RiskListKind.SELLER: "foreign seller of concern", RiskListKind.HS_CODE: "goods under control",
    RiskListKind.HS_PREFIX: "goods category under control", RiskListKind.ORIGIN: "origin under restriction",
    RiskListKind.ROUTE: "route of smuggling concern",
}
LIST_PREFIX = {
    RiskListKind.ENTERPRISE: "ENT", RiskListKind.DECLARANT: "DCL", RiskListKind.SELLER: "SLR", RiskListKind.HS_CODE: "HSC",
    RiskListKind.HS_PREFIX: "HSP", RiskListKind.ORIGIN: "ORG", RiskListKind.ROUTE: "RTE",
}


@dataclass(frozen=True, slots=True)
class ListPlan:
    """One reference list: its id, kind, size, action and source agency."""

    list_id: str
    kind: RiskListKind
    size: int
    action: RiskListAction
    agency: str


@dataclass(frozen=True, slots=True)
class ReferenceLists:
    """The lists and their entries (``RiskListEntry``-shaped dicts, list by list)."""

    plans: tuple[ListPlan, ...]
    records: list[dict[str, Any]]

    def __len__(self) -> int:
        return len(self.records)

    def key_values(self) -> Iterator[tuple[bytes, bytes]]:
        """(Kafka key, value) of each entry, as the risk-lists topic takes them."""
        for r in self.records:
            yield r["entry_id"].encode(), orjson.dumps(r)

    def held_at(self, when: datetime, prune_after: timedelta) -> int:
        """Entries a worker's index holds at ``when``: all but those it pruned (ended before
        ``when - prune_after``)."""
        horizon = when - prune_after
        return sum(1 for r in self.records if r.get("valid_until") is None or datetime.fromisoformat(r["valid_until"]) > horizon)


def list_sizes(rng: np.random.Generator, lists: int, entries: int) -> list[int]:
    """``lists`` sizes summing to ``entries``: log-normal, between SMALLEST_LIST and LARGEST_LIST
    (scaled down when ``entries`` is small), largest first."""
    if lists < 1 or entries < lists * SMALLEST_LIST:
        raise ValueError(f"{entries} entries cannot fill {lists} lists of at least {SMALLEST_LIST}")
    cap = max(SMALLEST_LIST, min(LARGEST_LIST, entries // 6 if lists > 6 else entries))
    if cap * lists < entries:
        raise ValueError(f"{entries} entries do not fit {lists} lists of at most {cap}")
    raw = rng.lognormal(0.0, 1.9, lists)
    sizes = np.full(lists, SMALLEST_LIST, dtype=np.int64)
    # Scale so that the clipped sizes sum to ``entries`` (bisection on the factor), then put the
    # rounding remainder on the lists with room, largest first.
    lo, hi = 0.0, float(entries) / raw.min()
    for _ in range(100):
        mid = (lo + hi) / 2
        sizes = np.clip(np.round(raw * mid), SMALLEST_LIST, cap).astype(np.int64)
        lo, hi = (mid, hi) if sizes.sum() < entries else (lo, mid)
    sizes = np.clip(np.round(raw * lo), SMALLEST_LIST, cap).astype(np.int64)
    order = np.argsort(-sizes, kind="stable")
    short = entries - int(sizes.sum())
    for i in order:
        if short == 0:
            break
        room = cap - int(sizes[i]) if short > 0 else SMALLEST_LIST - int(sizes[i])
        step = min(short, room) if short > 0 else max(short, room)
        sizes[i] += step
        short -= step
    return sorted((int(s) for s in sizes), reverse=True)


def _kind_for(rng: np.random.Generator, size: int) -> RiskListKind:
    fits = [k for k in RiskListKind if KIND_CAPACITY[k] >= size]
    weights = np.array([{RiskListKind.ENTERPRISE: 4.0, RiskListKind.SELLER: 2.0, RiskListKind.DECLARANT: 2.0,
                         RiskListKind.HS_CODE: 2.0, RiskListKind.HS_PREFIX: 2.0, RiskListKind.ORIGIN: 4.0,
                         RiskListKind.ROUTE: 3.0}[k] for k in fits])
    return fits[int(rng.choice(len(fits), p=weights / weights.sum()))]


class _Values:
    """Draws distinct values of a kind: a share from this office, the rest from elsewhere."""

    def __init__(self, rng: np.random.Generator, population: Population) -> None:
        self.rng = rng
        self.pop = population
        cat = world.catalogue()
        self.codes = [str(c) for c in cat.codes]
        self.local_prefixes = sorted({c[:n] for c in self.codes for n in (6, 8)})
        self.trade_countries = world.COUNTRY_CODES
        self.risky_routes = [f"{dep}->{orig}" for orig, dep in world.RISKY_ROUTE_LIST]

    def local(self, kind: RiskListKind) -> str:
        rng, pop = self.rng, self.pop
        if kind is RiskListKind.ENTERPRISE:
            return str(pop.ids[int(rng.integers(pop.size))])
        if kind is RiskListKind.DECLARANT:
            return str(pop.declarant_ids[int(rng.integers(len(pop.declarant_ids)))])
        if kind is RiskListKind.SELLER:
            return str(pop.seller_ids[int(rng.integers(len(pop.seller_ids)))])
        if kind is RiskListKind.HS_CODE:
            return self.codes[int(rng.integers(len(self.codes)))]
        if kind is RiskListKind.HS_PREFIX:
            return self.local_prefixes[int(rng.integers(len(self.local_prefixes)))]
        if kind is RiskListKind.ORIGIN:
            return WATCHED_ORIGINS[int(rng.integers(len(WATCHED_ORIGINS)))]
        return self.risky_routes[int(rng.integers(len(self.risky_routes)))]

    def elsewhere(self, kind: RiskListKind) -> str:
        rng = self.rng
        n = int(rng.integers(10**7))
        if kind is RiskListKind.ENTERPRISE:
            return f"{OTHER_REGIONS[n % len(OTHER_REGIONS)]}{int(rng.integers(10**7)):07d}"
        if kind is RiskListKind.DECLARANT:
            return f"DCL-{OTHER_REGIONS[n % len(OTHER_REGIONS)]}{int(rng.integers(10**5)):05d}"
        if kind is RiskListKind.SELLER:
            return f"SLR-X{n:07d}"
        if kind is RiskListKind.HS_CODE:
            return f"{_foreign_chapter(rng)}{int(rng.integers(10**6)):06d}" + ("" if n % 3 else f"{n % 100:02d}")
        if kind is RiskListKind.HS_PREFIX:
            digits = (4, 6, 6, 8)[n % 4]
            return f"{_foreign_chapter(rng)}{int(rng.integers(10 ** (digits - 2))):0{digits - 2}d}"
        if kind is RiskListKind.ORIGIN:  # never a country the office trades with: an origin list hits all its trade
            code = f"{chr(65 + n % 26)}{chr(65 + (n // 26) % 26)}"
            return code if code not in world.COUNTRY_INDEX else f"X{code[1]}"
        dep, orig = (f"{chr(65 + m % 26)}{chr(65 + (m // 26) % 26)}" for m in (n, int(rng.integers(10**7))))
        return f"{dep}->{orig}"


def _foreign_chapter(rng: np.random.Generator) -> str:
    """An HS chapter the simulated office does not trade in (so the entry does not hit its goods)."""
    traded = {c.chapter for c in world.CHAPTERS}
    while True:
        chapter = f"{int(rng.integers(1, 98)):02d}"
        if chapter not in traded:
            return chapter


def _iso(t: datetime) -> str:
    return t.isoformat().replace("+00:00", "Z")


def reference_lists(population: Population, now: datetime, *, seed: int = 7, lists: int = REFERENCE_LISTS,
                    entries: int = REFERENCE_ENTRIES) -> ReferenceLists:
    """The office's reference lists (module docstring), for ``population``'s office at ``now``
    (timezone-aware)."""
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    rng = np.random.default_rng(np.random.SeedSequence([seed, 19]))
    values = _Values(rng, population)
    plans: list[ListPlan] = []
    records: list[dict[str, Any]] = []
    seen_kinds: set[RiskListKind] = set()
    sizes = list_sizes(rng, lists, entries)
    for n, size in enumerate(sizes):
        kind = _kind_for(rng, size)
        # The smallest lists take the kinds not drawn yet, so that every kind is present.
        missing = [k for k in RiskListKind if k not in seen_kinds and KIND_CAPACITY[k] >= size]
        if missing and len(sizes) - n <= len([k for k in RiskListKind if k not in seen_kinds]):
            kind = missing[0]
        seen_kinds.add(kind)
        action = ACTIONS[int(rng.choice(len(ACTIONS), p=ACTION_WEIGHTS))]
        if kind is RiskListKind.ORIGIN and size <= 10:
            action = RiskListAction.INSPECT  # sanctions lists are short and strict
        plan = ListPlan(f"{LIST_PREFIX[kind]}-{n + 1:03d}", kind, size, action, AGENCIES[int(rng.integers(len(AGENCIES)))])
        plans.append(plan)
        reason = f"{TITLES[kind]} ({plan.agency}, list {plan.list_id})"
        local_share = LOCAL_SHARE[kind]
        taken: set[str] = set()
        windows = rng.choice(len(WINDOW_WEIGHTS), size=size, p=WINDOW_WEIGHTS)
        days = rng.uniform(0.0, 1.0, size=(size, 2))
        tries = 0
        while len(taken) < size:
            tries += 1
            if tries > 50 * size:
                raise ValueError(f"list {plan.list_id}: cannot draw {size} distinct {kind.value} values")
            value = values.local(kind) if rng.random() < local_share else values.elsewhere(kind)
            if value in taken:
                continue
            i = len(taken)
            taken.add(value)
            window = int(windows[i])
            a, b = float(days[i, 0]), float(days[i, 1])
            if window == 2:  # starts later
                start, end = now + timedelta(days=1 + 60 * a), None
            elif window == 3:  # ended recently
                end = now - EXPIRED_WITHIN * (0.05 + 0.9 * a)
                start = end - timedelta(days=30 + 700 * b)
            else:
                start = now - timedelta(days=1 + 1500 * a)
                end = now + timedelta(days=30 + 700 * b) if window == 1 else None
            record: dict[str, Any] = {"entry_id": f"{plan.list_id}-{i + 1:06d}", "list_id": plan.list_id, "kind": kind.value,
                                      "value": value, "action": action.value, "reason": reason, "source_agency": plan.agency,
                                      "valid_from": _iso(start)}
            if end is not None:
                record["valid_until"] = _iso(end)
            records.append(record)
    return ReferenceLists(tuple(plans), records)
