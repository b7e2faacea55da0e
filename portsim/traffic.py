"""The simulated office: declarations with hidden ground truth, credit events, scans, inspections.

Generation is vectorised in chunks of ``CHUNK`` declarations. Chunk ``k`` draws from its own
generator, seeded by ``(seed, k)``, so any declaration can be regenerated from its id alone
(``D{seed}-{index}``): that is how an inspection station in another process finds the ground
truth of a declaration without shared memory (:meth:`PortOffice.truth_for`). Event times come from
a separate sequential clock (Poisson arrivals, with the office's daily rhythm by default).

Fraud patterns and how they show in the declared fields:

- ``undervaluation``: declared value 20-60% of the true value (low unit value for the HS code);
- ``hs-misclassification``: declared as the cheapest-duty code of the same chapter (unit value and
  weight typical of another code);
- ``origin-laundering``: goods from a country with additional duties declared as originating in a
  transit country with preferential rates (unusual origin for the goods, departure = origin,
  preference claimed);
- ``risky-route``: contraband (narcotics, weapons, endangered species, counterfeits, solid waste)
  concealed in cover goods on known smuggling routes (origin/departure pair);
- ``value-added-inflation`` (processing value-added goods): the value added on the island is really
  under the duty-free threshold, but the declaration understates the imported materials so that
  the claimed ratio passes it, mostly far above what the enterprise usually declares;
- repeat offenders: enterprises with a high fraud propensity, a favourite pattern, often a
  complicit customs broker and shell sellers.

Amounts in the ground truth (``duty_recoverable``, ``true_value_usd``) are US dollars.
"""

from __future__ import annotations

import hashlib
import random
import re
import threading
from collections import OrderedDict
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple

import numpy as np
import orjson

from portsim import world
from portsim.population import WHITE, Population
from schemas import (
    ControlInstruction,
    CreditEvent,
    Declaration,
    DeviceType,
    InspectionResult,
    ScanResult,
    ScanVerdict,
)

CHUNK = 4096
# Default clock: the office's history starts here and averages DEFAULT_RATE declarations per second.
DEFAULT_START = datetime(2025, 9, 1, tzinfo=UTC)
DEFAULT_RATE = 1.0
LIFECYCLE_PER_DECLARATION = 1 / 200
# Arrivals by local hour (UTC+8), relative to the daily mean.
HOURLY_SHAPE = np.array([0.15, 0.1, 0.1, 0.1, 0.15, 0.3, 0.6, 1.0, 1.5, 1.9, 2.0, 1.9, 1.3, 1.6, 1.9, 1.9, 1.8, 1.5,
                         1.0, 0.7, 0.5, 0.4, 0.3, 0.2])
LOCAL_OFFSET_S = 8 * 3600

SCENARIOS = ("general-trade", "zero-tariff", "processing-value-added", "duty-free-shopping")
GT, ZT, PVA, DFS = 0, 1, 2, 3
SCENARIO_FRAUD = np.array([1.0, 1.3, 1.0, 0.6])
# Pattern mix by scenario: undervaluation, misclassification, origin laundering, risky route.
PATTERN_MIX = np.array([
    [0.42, 0.28, 0.18, 0.12],
    [0.35, 0.40, 0.15, 0.10],
    [0.45, 0.30, 0.15, 0.10],
    [0.55, 0.35, 0.00, 0.10],
])
UV, MC, OL, RR = 0, 1, 2, 3
PROCEDURE_CODES = ("0110", "6033", "0615", "1239")
TAX_TYPES = ("101", "601", "502", "401")
IMPORT_USES = ("11", "12", "13", "14", "15")
PAYMENT_TYPES = ("TT", "LC", "DP", "DA", "OA")
PAYMENT_PROBS = (0.6, 0.2, 0.08, 0.05, 0.07)
COURIERS = ("EMS", "SF-EXPRESS", "DHL", "FEDEX", "UPS", "JD-LOGISTICS", "YTO", "ZTO")

# Scanners: share of machine-checks that never report (device down, lost result).
SCAN_NO_RESULT = 0.04
SCAN_THRESHOLD = 0.55
SCAN_BETA = {  # anomaly score distribution by what is really in the container
    None: (1.6, 9.0),
    "undervaluation": (2.2, 6.0),
    "hs-misclassification": (4.0, 4.0),
    "origin-laundering": (1.7, 8.0),
    "risky-route": (7.0, 2.5),
}
SCAN_SEEN_AS = {
    "undervaluation": "quantity-mismatch",
    "hs-misclassification": "goods-mismatch",
    "origin-laundering": "goods-mismatch",
}
SCAN_GENERIC = ("dense-object", "organic-anomaly", "concealed-compartment", "quantity-mismatch", "goods-mismatch")
# Physical inspection: chance of finding fraud that is really there.
INSPECTION_DETECTS = {"undervaluation": 0.8, "hs-misclassification": 0.85, "origin-laundering": 0.6, "risky-route": 0.95,
                      "value-added-inflation": 0.7}  # the inspection includes the processing records
# Processing value-added: each enterprise's typical ratio (value added / imported materials) is
# lognormal around VA_MEDIAN; a declaration's true ratio varies around it by VA_SPREAD (log scale).
VA_MEDIAN, VA_SIGMA, VA_SPREAD = 0.8, 0.45, 0.2
VA_THRESHOLD = 0.30  # the duty-free threshold the planted violations cheat on (policy default)
VA_INFLATE = 0.03  # chance that a clean processing declaration inflates its value added (offenders: + VA_INFLATE_OFFENDER)
VA_INFLATE_OFFENDER = 0.25
VA = 4  # pattern index of value-added-inflation
ALL_PATTERNS = (*world.PATTERNS, "value-added-inflation")
SCAN_BETA["value-added-inflation"] = SCAN_BETA[None]  # documents, not goods: the scanner sees nothing unusual
SCAN_SEEN_AS["value-added-inflation"] = "goods-mismatch"

DECLARATION_KEYS = (
    "schema_version", "declaration_id", "revision", "port", "enterprise_id", "declarant_id", "seller_id",
    "scenario", "hs_code", "origin_country", "departure_country", "transport_mode", "declared_value", "currency",
    "quantity", "net_mass_kg", "tax_rate", "event_time", "procedure_code", "import_type", "import_use",
    "payment_type", "tax_type", "origin_indicator", "courier_id", "imported_material_value", "value_added",
)
_ID_RE = re.compile(r"^D(\d+)-(\d+)$")


class GroundTruth(NamedTuple):
    """What is really in a declaration. Hidden from the pipeline; known to the simulator."""

    declaration_id: str
    fraud: bool
    pattern: str | None  # undervaluation | hs-misclassification | origin-laundering | risky-route
    duty_recoverable: float  # USD of duty evaded (0 for clean and for seized contraband)
    category: str | None  # what an inspection finds (None when clean)
    critical: int  # 0 clean, 1 fraud, 2 public-safety contraband (narcotics, weapons)
    repeat_offender: bool
    true_hs_code: str
    true_origin: str
    true_value_usd: float


def declaration_id(seed: int, index: int) -> str:
    return f"D{seed}-{index:010d}"


def parse_declaration_id(value: str) -> tuple[int, int] | None:
    """``(seed, index)`` of a simulated declaration id, or None for any other id."""
    m = _ID_RE.match(value)
    return (int(m.group(1)), int(m.group(2))) if m else None


def _stable_random(*parts: object) -> random.Random:
    digest = hashlib.blake2b(":".join(str(p) for p in parts).encode(), digest_size=8).digest()
    return random.Random(int.from_bytes(digest, "big"))


def _utc(value: datetime | None, default: datetime) -> datetime:
    value = value or default
    if value.tzinfo is None:
        raise ValueError("times must be timezone-aware")
    return value.astimezone(UTC)


class _Clock:
    """Arrival times (epoch seconds): Poisson at a fixed rate, or the office's daily rhythm."""

    def __init__(self, seed: int, start: datetime, rate_per_s: float | None, stream: int = 4) -> None:
        if rate_per_s is not None and rate_per_s <= 0:
            raise ValueError("rate_per_s must be positive")
        self.rng = np.random.default_rng(np.random.SeedSequence([seed, stream]))
        self.rate = rate_per_s
        self.t = start.timestamp()
        if rate_per_s is None:
            shape = HOURLY_SHAPE / HOURLY_SHAPE.mean()
            self.edges = np.arange(25, dtype=float) * 3600.0
            self.levels = np.concatenate([[0.0], np.cumsum(shape * DEFAULT_RATE * 3600.0)])
            self.day_total = self.levels[-1]
            self.tau = self._warp(np.array([self.t]))[0]

    def _warp(self, t: np.ndarray) -> np.ndarray:
        local = t + LOCAL_OFFSET_S
        day = np.floor(local / 86400.0)
        return day * self.day_total + np.interp(local - day * 86400.0, self.edges, self.levels)

    def _unwarp(self, tau: np.ndarray) -> np.ndarray:
        day = np.floor(tau / self.day_total)
        return day * 86400.0 + np.interp(tau - day * self.day_total, self.levels, self.edges) - LOCAL_OFFSET_S

    def next(self, n: int) -> np.ndarray:
        gaps = self.rng.exponential(1.0, n)
        if self.rate is not None:
            times = self.t + np.cumsum(gaps) / self.rate
            self.t = float(times[-1])
            return times
        taus = self.tau + np.cumsum(gaps)
        self.tau = float(taus[-1])
        return self._unwarp(taus)


def iso_times(epoch_s: np.ndarray) -> list[str]:
    """RFC 3339 UTC strings with microseconds, as pydantic serialises them."""
    us = np.round(epoch_s * 1e6).astype("int64").astype("datetime64[us]")
    return [s[:-7] + "Z" if s.endswith(".000000") else s + "Z" for s in np.datetime_as_string(us, unit="us").tolist()]


class PortOffice:
    """A seeded, reproducible customs office: ports, enterprises, traffic and its ground truth."""

    def __init__(self, seed: int = 7, enterprises: int = 70_000) -> None:
        if not 0 <= seed < 2**63:
            raise ValueError("seed must be in [0, 2**63)")
        self.seed = seed
        self.catalogue = world.catalogue()
        self.population = Population(seed, enterprises)
        self.ports = world.PORTS
        self._chunk_cache: OrderedDict[int, dict[str, np.ndarray]] = OrderedDict()
        self._chunk_lock = threading.Lock()
        cat = self.catalogue
        self._pools = [cat.pool(np.ones(cat.n, dtype=bool)), cat.pool(cat.zero_tariff), cat.pool(cat.processing),
                       cat.pool(cat.duty_free)]
        self._eligible = np.stack([np.ones(cat.n, dtype=bool), cat.zero_tariff, cat.processing, cat.duty_free])
        avg_rate = float(np.sum(cat.rate * cat.popularity))
        self._hs_risk = np.clip(0.4 + 0.6 * cat.rate / avg_rate, 0.4, 2.5)
        kinds = [p.kind for p in world.PORTS]
        self._port_kind = np.array([{world.SEA: 0, world.AIR: 1, world.RAIL_ROAD: 2}[k] for k in kinds])
        self._mode_cum = np.cumsum(np.array([world.MODE_PROBS[k] for k in kinds]), axis=1)
        self._mode_cum[:, -1] = 1.0
        port_share = np.array([p.share for p in world.PORTS])
        self._port_cum = np.cumsum(port_share / port_share.sum())
        n_c = len(world.COUNTRY_CODES)
        self._hub_cum = np.zeros((3, n_c))
        for ki, kind in enumerate((world.SEA, world.AIR, world.RAIL_ROAD)):
            w = np.zeros(n_c)
            for c, weight in world.HUBS[kind]:
                w[world.COUNTRY_INDEX[c]] = weight
            self._hub_cum[ki] = np.cumsum(w / w.sum())
            self._hub_cum[ki, -1] = 1.0
        self._land = np.array([c in world.LAND_COUNTRIES for c in world.COUNTRY_CODES])
        self._preferential = np.array([c in world.PREFERENTIAL for c in world.COUNTRY_CODES])
        self._rate_nonpref = cat.rate_by_origin.copy()
        for j, c in enumerate(world.COUNTRY_CODES):
            if c in world.PREFERENTIAL:
                self._rate_nonpref[:, j] = np.round(np.minimum(
                    cat.rate + (cat.rate_by_origin[:, j] - cat.rate * world.PREFERENTIAL[c]), 100.0), 2)
        self._mass_mu = np.log(np.array([m for m, _ in world.MASS_BY_MODE]))
        self._mass_sigma = np.array([s for _, s in world.MASS_BY_MODE])
        self._currency_cum = np.cumsum(world.CURRENCY_PROBS)
        self._currency_cum[-1] = 1.0
        self._fx = np.array([world.FX_PER_USD[c] for c in world.CURRENCIES])
        self._payment_cum = np.cumsum(PAYMENT_PROBS)
        self._payment_cum[-1] = 1.0
        self._routes = np.array([[world.COUNTRY_INDEX[o], world.COUNTRY_INDEX[d]] for o, d in world.RISKY_ROUTE_LIST])
        self._contraband_cum = np.cumsum(world.CONTRABAND_WEIGHTS)
        self._contraband_cum[-1] = 1.0
        # String lookup tables.
        self._s_ports = np.array(world.PORT_IDS, dtype=object)
        self._s_modes = np.array(world.MODES, dtype=object)
        self._s_countries = np.array(world.COUNTRY_CODES, dtype=object)
        self._s_scenarios = np.array(SCENARIOS, dtype=object)
        self._s_currencies = np.array(world.CURRENCIES, dtype=object)
        self._s_procedure = np.array(PROCEDURE_CODES, dtype=object)
        self._s_tax_type = np.array(TAX_TYPES, dtype=object)
        self._s_import_use = np.array((*IMPORT_USES, None), dtype=object)
        self._s_payment = np.array((*PAYMENT_TYPES, None), dtype=object)
        self._s_import_type = np.array(("A", "B"), dtype=object)
        self._s_origin_ind = np.array(("N", "P"), dtype=object)
        self._s_couriers = np.array((*COURIERS, None), dtype=object)
        self._s_patterns = np.array((*ALL_PATTERNS, None), dtype=object)  # -1: None
        self._s_categories = np.array(
            (*(world.PATTERN_CATEGORY[p] for p in world.PATTERNS[:3]), *(c.category for c in world.CONTRABAND), None,
             "value-added-overstated"),
            dtype=object,
        )
        # Each enterprise's typical value-added ratio (its own stream: the other draws stay as they were).
        va_rng = np.random.default_rng(np.random.SeedSequence([seed, 102]))
        self._va_base = np.exp(np.log(VA_MEDIAN) + VA_SIGMA * va_rng.standard_normal(self.population.size))
        pop = self.population
        self._s_declarants = np.concatenate([pop.declarant_ids, pop.ids])  # self-declaring: the enterprise itself
        self._s_sellers = np.concatenate([pop.seller_ids, np.array([None], dtype=object)])

    # ------------------------------------------------------------------ generation of one chunk

    def _chunk(self, k: int) -> dict[str, np.ndarray]:
        with self._chunk_lock:
            cached = self._chunk_cache.get(k)
            if cached is not None:
                self._chunk_cache.move_to_end(k)
                return cached
            data = self._generate_chunk(k)
            self._chunk_cache[k] = data
            if len(self._chunk_cache) > 16:
                self._chunk_cache.popitem(last=False)
            return data

    def _generate_chunk(self, k: int) -> dict[str, np.ndarray]:
        rng = np.random.default_rng(np.random.SeedSequence([self.seed, 100, k]))
        cat = self.catalogue
        pop = self.population
        n = CHUNK
        ent = np.minimum(np.searchsorted(pop.activity_cum, rng.random(n)), pop.size - 1)
        dfo = pop.duty_free_operator[ent]
        # Port and transport mode.
        port = np.where((rng.random(n) < 0.8) | dfo, pop.home_port[ent], np.searchsorted(self._port_cum, rng.random(n)))
        port = np.minimum(port, len(world.PORTS) - 1)
        mode = (rng.random(n)[:, None] > self._mode_cum[port]).sum(axis=1)
        # Scenario: what the enterprise is qualified for.
        u = rng.random(n)
        zt_q, pva_q = pop.zero_tariff[ent], pop.processing[ent]
        scen = np.select(
            [dfo, zt_q & pva_q & (u < 0.35), zt_q & pva_q & (u < 0.7), zt_q & ~pva_q & (u < 0.5), pva_q & ~zt_q & (u < 0.55)],
            [DFS, ZT, PVA, ZT, PVA],
            default=GT,
        )
        # HS code: mostly from the enterprise's portfolio, when eligible for the scenario.
        portfolio_pick = np.minimum(rng.geometric(0.45, n) - 1, pop.portfolio.shape[1] - 1)
        p_code = pop.portfolio[ent, portfolio_pick]
        pool_code = np.empty(n, dtype=np.int64)
        r = rng.random(n)
        for s in range(4):
            mask = scen == s
            idx, cum = self._pools[s]
            pool_code[mask] = idx[np.minimum(np.searchsorted(cum, r[mask]), len(idx) - 1)]
        use_portfolio = (rng.random(n) < 0.85) & self._eligible[scen, p_code]
        hs_true = np.where(use_portfolio, p_code, pool_code)
        # Fraud and its pattern.
        offender = pop.offender[ent]
        p_fraud = np.minimum(pop.propensity[ent] * SCENARIO_FRAUD[scen] * self._hs_risk[hs_true], 0.9)
        fraud = rng.random(n) < p_fraud
        cum_mix = np.cumsum(PATTERN_MIX[scen], axis=1)
        pattern = (rng.random(n)[:, None] > cum_mix).sum(axis=1).clip(0, 3)
        fav = offender & (rng.random(n) < 0.7)
        pattern = np.where(fav, pop.favourite_pattern[ent], pattern)
        infeasible = ((pattern == MC) & (cat.misclass_target[hs_true] < 0)) | (
            (pattern == OL) & (~cat.launderable[hs_true] | (scen == DFS)))
        pattern = np.where(infeasible, UV, pattern)
        pattern = np.where(fraud, pattern, -1)
        # Origins and departure.
        chapter = cat.chapter[hs_true]
        origin_true = (rng.random(n)[:, None] > cat.origin_cum[chapter]).sum(axis=1)
        kind = self._port_kind[port]
        direct = rng.random(n) < np.array([0.7, 0.75, 0.9])[kind]
        direct &= (kind != 2) | self._land[origin_true]
        hub = (rng.random(n)[:, None] > self._hub_cum[kind]).sum(axis=1)
        departure = np.where(direct, origin_true, hub)
        origin_decl = origin_true.copy()
        # Contraband on risky routes: cover goods, route and category.
        contraband = np.full(n, -1, dtype=np.int64)
        rr_rows = np.flatnonzero(pattern == RR)
        if len(rr_rows):
            kinds = np.searchsorted(self._contraband_cum, rng.random(len(rr_rows)))
            picks = rng.random((len(rr_rows), 3))
            for row, ck, (a, b, c) in zip(rr_rows, kinds, picks):
                cb = world.CONTRABAND[ck]
                o, d = cb.routes[int(a * len(cb.routes))]
                codes = cat.chapter_codes[world.CHAPTER_INDEX[cb.cover_chapters[int(b * len(cb.cover_chapters))]]]
                hs_true[row] = codes[int(c * len(codes))]
                origin_true[row] = origin_decl[row] = world.COUNTRY_INDEX[o]
                departure[row] = world.COUNTRY_INDEX[d]
                contraband[row] = ck
        chapter = cat.chapter[hs_true]
        ol_rows = np.flatnonzero(pattern == OL)
        if len(ol_rows):
            picks = rng.random((len(ol_rows), 2))
            for row, (a, b) in zip(ol_rows, picks):
                sources = cat.laundering_sources[chapter[row]]
                origin_true[row] = sources[int(a * len(sources))]
                transits = [world.COUNTRY_INDEX[c] for c in world.TRANSIT_COUNTRIES if world.COUNTRY_INDEX[c] != origin_true[row]]
                transit = transits[int(b * len(transits))]
                origin_decl[row] = departure[row] = transit
        # Legitimate trade on watched routes.
        legit = np.flatnonzero((pattern < 0) & (rng.random(n) < world.LEGIT_ON_RISKY_ROUTE))
        if len(legit):
            routes = self._routes[rng.integers(0, len(self._routes), len(legit))]
            origin_true[legit] = origin_decl[legit] = routes[:, 0]
            departure[legit] = routes[:, 1]
        # Mass, unit price, value of the true goods.
        mass = np.exp(self._mass_mu[mode] + self._mass_sigma[mode] * rng.standard_normal(n)) * cat.bulk[hs_true]
        mass = np.clip(np.round(mass, 3), 0.01, 5e7)
        unit = cat.median_usd_per_kg[hs_true] * pop.price_factor[ent] * np.exp(cat.sigma[hs_true] * rng.standard_normal(n))
        value_true = np.clip(mass * unit, 1.0, 5e10)
        piece = cat.piece_kg[hs_true]
        quantity = np.maximum(np.round(mass / piece * np.exp(0.15 * rng.standard_normal(n))), 1.0)  # NaN for bulk goods
        # What is declared.
        hs_decl = np.where(pattern == MC, cat.misclass_target[hs_true], hs_true)
        uv_factor = rng.uniform(0.2, 0.6, n)
        value_decl_usd = np.where(pattern == UV, value_true * uv_factor, value_true)
        currency = np.searchsorted(self._currency_cum, rng.random(n))
        value_decl = np.clip(np.round(value_decl_usd * self._fx[currency], 2), 0.01, 9e12)
        claims_pref = self._preferential[origin_decl] & ((rng.random(n) < 0.85) | (pattern == OL))
        rates = np.where(claims_pref, cat.rate_by_origin[hs_decl, origin_decl], self._rate_nonpref[hs_decl, origin_decl])
        exempt = (scen == ZT) | (scen == DFS)
        tax_rate = np.where(exempt, 0.0, rates)
        true_rate = np.where(claims_pref & (pattern != OL), cat.rate_by_origin[hs_true, origin_true],
                             self._rate_nonpref[hs_true, origin_true])
        due_true = value_true * true_rate / 100.0
        declared_usd = value_decl / self._fx[currency]
        duty = np.where(exempt, np.where(pattern == UV, (value_true - declared_usd) * true_rate / 100.0, due_true),
                        due_true - declared_usd * tax_rate / 100.0)
        duty = np.where((pattern < 0) | (pattern == RR), 0.0, np.round(np.maximum(duty, 0.0), 2))
        critical = np.where(pattern < 0, 0, 1)
        for ck, cb in enumerate(world.CONTRABAND):
            critical[contraband == ck] = cb.critical
        category = np.where(pattern == RR, 3 + contraband, np.where(pattern < 0, 3 + len(world.CONTRABAND), pattern))
        # Parties: declarant, seller, courier.
        n_decl = len(pop.declarant_ids)
        which = (rng.random(n) < 0.15).astype(np.int64)
        declarant = np.where(pop.self_declaring[ent], n_decl + ent, pop.declarants[ent, which])
        seller = pop.sellers[ent, rng.integers(0, 3, n)]
        shell = fraud & (rng.random(n) < 0.3)
        seller = np.where(shell, rng.choice(pop.shell_sellers, n), seller)
        seller = np.where(rng.random(n) < 0.04, len(self._s_sellers) - 1, seller)
        courier = np.where((mode == 4) | ((mode == 1) & (rng.random(n) < 0.25)), rng.integers(0, len(COURIERS), n), len(COURIERS))
        # Coded attributes.
        trusted = pop.credit_class[ent] <= WHITE
        import_type = (trusted & (rng.random(n) < 0.3)).astype(np.int64)
        import_use = np.where(rng.random(n) < 0.05, len(IMPORT_USES), rng.integers(0, len(IMPORT_USES), n))
        payment = np.where(rng.random(n) < 0.03, len(PAYMENT_TYPES), np.searchsorted(self._payment_cum, rng.random(n)))
        imported, added, va_true = self._value_added(k, ent, scen, offender, pattern, value_decl)
        inflate = np.flatnonzero(~np.isnan(va_true) & (pattern == VA))
        if len(inflate):  # planted violations: the duty is owed on the whole value
            fraud[inflate] = True
            duty[inflate] = np.round(value_true[inflate] * true_rate[inflate] / 100.0, 2)
            critical[inflate] = 1
            category[inflate] = 4 + len(world.CONTRABAND)
        return {
            "ent": ent, "port": port, "mode": mode, "scen": scen, "hs_true": hs_true, "hs_decl": hs_decl,
            "origin_true": origin_true, "origin_decl": origin_decl, "departure": departure, "mass": mass,
            "value_true": np.round(value_true, 2), "value_decl": value_decl, "currency": currency, "quantity": quantity,
            "tax_rate": tax_rate, "fraud": fraud, "pattern": pattern, "category": category, "duty": duty,
            "critical": critical, "offender": offender, "declarant": declarant, "seller": seller, "courier": courier,
            "import_type": import_type, "import_use": import_use, "payment": payment,
            "origin_ind": claims_pref.astype(np.int64),
            "imported": imported, "added": added, "va_true": va_true,
        }

    def _value_added(self, k: int, ent: np.ndarray, scen: np.ndarray, offender: np.ndarray, pattern: np.ndarray,
                     value_decl: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Imported materials and value added as declared, and the true ratio (NaN outside the
        processing scenario), from a stream of their own. Plants value-added inflation: ``pattern``
        becomes VA on the clean processing declarations that inflate it (changed in place)."""
        rng = np.random.default_rng(np.random.SeedSequence([self.seed, 101, k]))
        n = len(ent)
        pva = scen == PVA
        true_ratio = self._va_base[ent] * np.exp(VA_SPREAD * rng.standard_normal(n))
        inflate = pva & (pattern < 0) & (rng.random(n) < VA_INFLATE + VA_INFLATE_OFFENDER * offender)
        cheat = rng.uniform(0.03, VA_THRESHOLD - 0.05, n)
        # Most inflate far beyond their usual ratio; some claim just enough to pass the threshold.
        claim = np.where(rng.random(n) < 0.7, self._va_base[ent] + rng.uniform(0.6, 2.5, n), rng.uniform(VA_THRESHOLD + 0.01, 0.5, n))
        true_ratio = np.where(inflate, cheat, true_ratio)
        claimed = np.where(inflate, claim, true_ratio)
        imported = np.round(value_decl / (1.0 + claimed), 2)
        added = np.round(value_decl - imported, 2)
        pattern[inflate] = VA
        nan = np.full(n, np.nan)
        return np.where(pva, imported, nan), np.where(pva, added, nan), np.where(pva, np.round(true_ratio, 4), nan)

    # ------------------------------------------------------------------ columns and records

    def _columns(self, data: dict[str, np.ndarray], lo: int, hi: int, first: int) -> dict[str, list[Any]]:
        """Python lists (JSON-ready values) for rows ``lo:hi`` of a chunk whose first index is ``first``."""
        sl = slice(lo, hi)
        cat = self.catalogue
        pop = self.population
        seed = self.seed
        scen = data["scen"][sl]
        qty = data["quantity"][sl].tolist()
        return {
            "declaration_id": [f"D{seed}-{i:010d}" for i in range(first + lo, first + hi)],
            "port": self._s_ports[data["port"][sl]].tolist(),
            "enterprise_id": pop.ids[data["ent"][sl]].tolist(),
            "declarant_id": self._s_declarants[data["declarant"][sl]].tolist(),
            "seller_id": self._s_sellers[data["seller"][sl]].tolist(),
            "scenario": self._s_scenarios[scen].tolist(),
            "hs_code": cat.codes[data["hs_decl"][sl]].tolist(),
            "origin_country": self._s_countries[data["origin_decl"][sl]].tolist(),
            "departure_country": self._s_countries[data["departure"][sl]].tolist(),
            "transport_mode": self._s_modes[data["mode"][sl]].tolist(),
            "declared_value": data["value_decl"][sl].tolist(),
            "currency": self._s_currencies[data["currency"][sl]].tolist(),
            "quantity": [None if q != q else q for q in qty],
            "net_mass_kg": data["mass"][sl].tolist(),
            "tax_rate": data["tax_rate"][sl].tolist(),
            "procedure_code": self._s_procedure[scen].tolist(),
            "import_type": self._s_import_type[data["import_type"][sl]].tolist(),
            "import_use": self._s_import_use[data["import_use"][sl]].tolist(),
            "payment_type": self._s_payment[data["payment"][sl]].tolist(),
            "tax_type": self._s_tax_type[scen].tolist(),
            "origin_indicator": self._s_origin_ind[data["origin_ind"][sl]].tolist(),
            "courier_id": self._s_couriers[data["courier"][sl]].tolist(),
            "imported_material_value": [None if v != v else v for v in data["imported"][sl].tolist()],
            "value_added": [None if v != v else v for v in data["added"][sl].tolist()],
        }

    def _truths(self, data: dict[str, np.ndarray], lo: int, hi: int, ids: list[str]) -> list[GroundTruth]:
        sl = slice(lo, hi)
        cat = self.catalogue
        return list(map(GroundTruth._make, zip(
            ids,
            data["fraud"][sl].tolist(),
            self._s_patterns[data["pattern"][sl]].tolist(),
            data["duty"][sl].tolist(),
            self._s_categories[data["category"][sl]].tolist(),
            data["critical"][sl].tolist(),
            data["offender"][sl].tolist(),
            cat.codes[data["hs_true"][sl]].tolist(),
            self._s_countries[data["origin_true"][sl]].tolist(),
            data["value_true"][sl].tolist(),
        )))

    def _segments(
        self, count: int | None, start: datetime | None, rate_per_s: float | None, first_index: int
    ) -> Iterator[tuple[dict[str, np.ndarray], int, int, int, np.ndarray]]:
        """(chunk data, lo, hi, chunk first index, event times) for consecutive declarations."""
        if count is not None and count < 0:
            raise ValueError("count must be >= 0")
        if first_index < 0:
            raise ValueError("first_index must be >= 0")
        clock = _Clock(self.seed, _utc(start, DEFAULT_START), rate_per_s)
        index = first_index
        end = None if count is None else first_index + count
        while end is None or index < end:
            k, lo = divmod(index, CHUNK)
            hi = CHUNK if end is None else min(CHUNK, end - k * CHUNK)
            data = self._generate_chunk(k)
            yield data, lo, hi, k * CHUNK, clock.next(hi - lo)
            index = k * CHUNK + hi

    def declaration_dicts(
        self, count: int | None = None, start: datetime | None = None, rate_per_s: float | None = None,
        first_index: int = 0,
    ) -> Iterator[tuple[dict[str, Any], GroundTruth]]:
        """Fast path: JSON-ready dicts, each valid against :class:`Declaration` (as ``model_dump(mode="json")``
        would give it, less ``centralised_id``, which only items split off a centralised declaration
        carry), with their ground truth. ``count=None`` generates forever."""
        keys = DECLARATION_KEYS
        for data, lo, hi, first, times in self._segments(count, start, rate_per_s, first_index):
            cols = self._columns(data, lo, hi, first)
            m = hi - lo
            rows = zip(
                [1] * m, cols["declaration_id"], [1] * m, cols["port"], cols["enterprise_id"], cols["declarant_id"],
                cols["seller_id"], cols["scenario"], cols["hs_code"], cols["origin_country"],
                cols["departure_country"], cols["transport_mode"], cols["declared_value"], cols["currency"],
                cols["quantity"], cols["net_mass_kg"], cols["tax_rate"], iso_times(times), cols["procedure_code"],
                cols["import_type"], cols["import_use"], cols["payment_type"], cols["tax_type"],
                cols["origin_indicator"], cols["courier_id"], cols["imported_material_value"], cols["value_added"],
            )
            truths = self._truths(data, lo, hi, cols["declaration_id"])
            yield from zip((dict(zip(keys, row)) for row in rows), truths)

    def declarations(
        self, count: int | None = None, start: datetime | None = None, rate_per_s: float | None = None,
        first_index: int = 0,
    ) -> Iterator[tuple[Declaration, GroundTruth]]:
        """Validated :class:`Declaration` records with their ground truth (the slow, checked path)."""
        for d, truth in self.declaration_dicts(count, start, rate_per_s, first_index):
            yield Declaration.model_validate_json(orjson.dumps(d)), truth

    def column_batches(
        self, count: int, start: datetime | None = None, rate_per_s: float | None = None, first_index: int = 0,
    ) -> Iterator[tuple[dict[str, list[Any]], dict[str, np.ndarray]]]:
        """Columnar declarations for files: (declaration columns as lists, label columns as arrays)."""
        for data, lo, hi, first, times in self._segments(count, start, rate_per_s, first_index):
            cols = self._columns(data, lo, hi, first)
            cols["event_time_us"] = np.round(times * 1e6).astype("int64")  # type: ignore[assignment]
            labels = {
                "fraud": data["fraud"][lo:hi].astype(np.int64),
                "critical_fraud": data["critical"][lo:hi].astype(np.int64),
                "duty_recoverable": data["duty"][lo:hi].astype(np.float64),
                "fraud_pattern": self._s_patterns[data["pattern"][lo:hi]],
                "value_added_ratio_true": data["va_true"][lo:hi].astype(np.float64),
            }
            yield cols, labels

    # ------------------------------------------------------------------ ground truth by id

    def truth_for(self, declaration_id: str) -> GroundTruth | None:
        """The ground truth of a declaration this office generated (any process, same seed and size)."""
        row = self._locate(declaration_id)
        if row is None:
            return None
        data, lo, _first = row
        return self._truths(data, lo, lo + 1, [declaration_id])[0]

    def record_for(self, declaration_id: str) -> dict[str, Any] | None:
        """The declared fields (without event time) of a generated declaration, or None."""
        row = self._locate(declaration_id)
        if row is None:
            return None
        data, lo, first = row
        return {k: v[0] for k, v in self._columns(data, lo, lo + 1, first).items()}

    def _locate(self, declaration_id: str) -> tuple[dict[str, np.ndarray], int, int] | None:
        parsed = parse_declaration_id(declaration_id)
        if parsed is None or parsed[0] != self.seed:
            return None
        k, lo = divmod(parsed[1], CHUNK)
        return self._chunk(k), lo, k * CHUNK

    # ------------------------------------------------------------------ credit events

    def credit_population(self, at: datetime | None = None) -> Iterator[CreditEvent]:
        """The credit register's initial state: class, qualifications and joint penalties held."""
        return self.population.initial_events(_utc(at, DEFAULT_START - timedelta(days=1)))

    def lifecycle_events(
        self, count: int | None = None, start: datetime | None = None, rate_per_s: float | None = None,
        first_index: int = 0,
    ) -> Iterator[CreditEvent]:
        """Credit and lifecycle changes over time (by default one per 200 declarations' worth of time)."""
        clock = _Clock(self.seed, _utc(start, DEFAULT_START), rate_per_s or DEFAULT_RATE * LIFECYCLE_PER_DECLARATION, stream=5)

        def times() -> Iterator[datetime]:
            produced = 0
            while count is None or produced < count + first_index:
                for t in clock.next(256).tolist():
                    if count is not None and produced >= count + first_index:
                        return
                    produced += 1
                    yield datetime.fromtimestamp(t, UTC)

        return self.population.lifecycle(times(), first_index=first_index)

    # ------------------------------------------------------------------ equipment and stations

    def scan_for(
        self, declaration_id: str, truth: GroundTruth | None, port: str, *, revision: int = 1,
        at: datetime | None = None,
    ) -> tuple[ScanResult | None, float]:
        """What the port's scanner reports for a machine-check, and how long it takes (seconds).

        Deterministic per declaration. ``None`` means no result ever arrives (device fault)."""
        r = _stable_random(self.seed, "scan", declaration_id, revision)
        spec = next((p for p in self.ports if p.port_id == port), None)
        median = spec.scan_median_s if spec else 60.0
        devices = spec.devices if spec else ((f"{port}-XR01"[:64], "x-ray"),)
        delay = min(max(median * r.lognormvariate(0.0, 0.5), 3.0), 20 * median)
        if r.random() < SCAN_NO_RESULT:
            return None, delay
        device_id, device_type = devices[int(r.random() * len(devices))]
        pattern = truth.pattern if truth is not None and truth.fraud else None
        score = r.betavariate(*SCAN_BETA[pattern])
        if device_type == "ct":  # CT separates better
            score = 1 - (1 - score) * 0.8 if pattern else score * 0.8
        score = round(min(max(score, 0.0), 1.0), 4)
        suspicious = score >= SCAN_THRESHOLD
        categories: tuple[str, ...] = ()
        if suspicious:
            if pattern and r.random() < 0.75:
                seen = truth.category if pattern == "risky-route" else SCAN_SEEN_AS[pattern]  # type: ignore[union-attr]
                categories = (seen,)
            else:
                categories = (SCAN_GENERIC[int(r.random() * len(SCAN_GENERIC))],)
        scan_id = f"SC-{declaration_id}-{revision}"[:64]
        result = ScanResult(
            scan_id=scan_id,
            declaration_id=declaration_id,
            revision=revision,
            port=port,
            device_id=device_id,
            device_type=DeviceType(device_type),
            anomaly_score=score,
            verdict=ScanVerdict.SUSPICIOUS if suspicious else ScanVerdict.CLEAN,
            suspected_categories=categories,
            image_ref=f"img://{device_id}/{scan_id}",
            event_time=at or datetime.now(UTC),
        )
        return result, delay

    def inspection_for(
        self, instruction: ControlInstruction, truth: GroundTruth | None, station_id: str, *,
        at: datetime | None = None,
    ) -> InspectionResult:
        """What a physical inspection finds: a deterministic function of the declaration and the seed.

        Without ground truth (a declaration the simulator did not make) the finding is a
        deterministic draw whose chance grows with the instruction's score."""
        r = _stable_random(self.seed, "inspect", instruction.declaration_id, instruction.revision)
        if truth is None:
            found = r.random() < 0.05 + 0.3 * (instruction.score or 0.0)
            category, duty = ("unspecified-irregularity" if found else None), 0.0
        elif truth.fraud:
            found = r.random() < INSPECTION_DETECTS[truth.pattern or "undervaluation"]
            category, duty = (truth.category, truth.duty_recoverable) if found else (None, 0.0)
        else:
            found, category, duty = False, None, 0.0
        return InspectionResult(
            instruction_id=instruction.instruction_id,
            declaration_id=instruction.declaration_id,
            revision=min(max(instruction.revision, 1), 1000),
            port=instruction.port,
            station_id=station_id,
            found=found,
            category=category,
            duty_recovered=duty,
            inspected_at=at or datetime.now(UTC),
        )
