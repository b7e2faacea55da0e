"""The static world the simulated office lives in: ports, countries, the HS catalogue, duty rates.

Everything here is independent of the simulation seed: two offices with different seeds trade in
the same world (same codes, rates, price levels), so a model trained on one seed's history can be
evaluated on another seed's traffic. The catalogue is drawn once from a fixed generator.

Monetary amounts are US dollars; ``FX_PER_USD`` converts to the declaration currency.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

WORLD_SEED = 20_261_128

# --- Ports ---------------------------------------------------------------------------------------

SEA, AIR, RAIL_ROAD = "sea", "air", "rail-road"
# Transport modes in schema order (index = code used in the generator).
MODES = ("sea", "air", "rail", "road", "post", "other")


@dataclass(frozen=True)
class Port:
    port_id: str
    name: str
    kind: str  # sea | air | rail-road
    share: float  # share of the office's declarations
    devices: tuple[tuple[str, str], ...]  # (device_id, device_type: x-ray | ct)
    scan_median_s: float  # median time from machine-check instruction to scan result


PORTS: tuple[Port, ...] = (
    Port("YPU-SEA", "Yangpu port", SEA, 0.20, (("YPU-SEA-XR01", "x-ray"), ("YPU-SEA-XR02", "x-ray"), ("YPU-SEA-CT01", "ct")), 90.0),
    Port("HAK-SEA", "Haikou Xiuying and Macun port", SEA, 0.16, (("HAK-SEA-XR01", "x-ray"), ("HAK-SEA-CT01", "ct")), 75.0),
    Port("XNH-SEA", "Xinhai ro-ro port", SEA, 0.07, (("XNH-SEA-XR01", "x-ray"),), 60.0),
    Port("BSO-SEA", "Basuo port, Dongfang", SEA, 0.07, (("BSO-SEA-XR01", "x-ray"),), 80.0),
    Port("QLN-SEA", "Qinglan port, Wenchang", SEA, 0.04, (("QLN-SEA-XR01", "x-ray"),), 70.0),
    Port("SYX-SEA", "Sanya port", SEA, 0.05, (("SYX-SEA-XR01", "x-ray"),), 60.0),
    Port("NGG-RRX", "Nangang rail and road crossing", RAIL_ROAD, 0.12, (("NGG-RRX-XR01", "x-ray"), ("NGG-RRX-XR02", "x-ray")), 45.0),
    Port("HAK-AIR", "Haikou Meilan airport", AIR, 0.14, (("HAK-AIR-CT01", "ct"), ("HAK-AIR-XR01", "x-ray")), 25.0),
    Port("SYX-AIR", "Sanya Phoenix airport", AIR, 0.11, (("SYX-AIR-CT01", "ct"), ("SYX-AIR-XR01", "x-ray")), 20.0),
    Port("BAR-AIR", "Qionghai Boao airport", AIR, 0.04, (("BAR-AIR-XR01", "x-ray"),), 20.0),
)
PORT_IDS: tuple[str, ...] = tuple(p.port_id for p in PORTS)
PORT_INDEX = {p: i for i, p in enumerate(PORT_IDS)}

# Probability of each transport mode (MODES order) by port kind.
MODE_PROBS = {
    SEA: (0.97, 0.0, 0.0, 0.0, 0.0, 0.03),
    AIR: (0.0, 0.82, 0.0, 0.0, 0.18, 0.0),
    RAIL_ROAD: (0.0, 0.0, 0.42, 0.58, 0.0, 0.0),
}
# log-normal net mass per declaration line by mode: (median kg, sigma)
MASS_BY_MODE = ((12_000.0, 1.3), (180.0, 1.4), (9_000.0, 1.0), (4_500.0, 1.1), (1.8, 1.0), (600.0, 1.5))

# --- Countries -----------------------------------------------------------------------------------

# (code, weight as a general trading partner)
COUNTRIES: tuple[tuple[str, float], ...] = (
    ("JP", 6), ("KR", 6), ("US", 6), ("DE", 5), ("FR", 3), ("IT", 3), ("GB", 2.5), ("AU", 4), ("NZ", 1.5),
    ("BR", 3), ("AR", 1), ("CL", 1.5), ("PE", 0.8), ("TH", 3), ("VN", 3.5), ("MY", 3), ("ID", 2.5),
    ("SG", 2.5), ("PH", 1), ("IN", 1.5), ("RU", 2.5), ("CA", 2), ("ES", 1.5), ("NL", 1.5), ("CH", 1.5),
    ("SA", 2), ("AE", 1.5), ("QA", 0.8), ("NO", 0.6), ("EC", 0.5), ("CO", 0.4), ("ET", 0.2), ("LK", 0.3),
    ("CI", 0.2), ("GH", 0.2), ("IE", 0.5), ("FI", 0.4), ("SE", 0.5), ("PK", 0.3), ("BD", 0.5), ("TR", 0.5),
    ("KH", 0.6), ("MM", 0.3), ("ZA", 0.6), ("BE", 0.6), ("KZ", 0.5), ("PG", 0.2), ("DK", 0.4), ("LA", 0.3),
    ("MN", 0.3), ("PL", 0.5), ("HK", 1.5), ("MX", 0.6), ("NG", 0.15), ("MZ", 0.1), ("KE", 0.1), ("CM", 0.1),
    ("PA", 0.1), ("BO", 0.1), ("AF", 0.05), ("GE", 0.1), ("RS", 0.1),
)
COUNTRY_CODES: tuple[str, ...] = tuple(c for c, _ in COUNTRIES)
COUNTRY_INDEX = {c: i for i, c in enumerate(COUNTRY_CODES)}

# Free-trade partners: share of the MFN rate that applies to goods of that declared origin.
PREFERENTIAL = {
    **{c: 0.2 for c in ("TH", "VN", "MY", "ID", "SG", "PH", "KH", "MM", "LA")},  # ASEAN
    "KR": 0.35, "AU": 0.15, "NZ": 0.1, "CL": 0.1, "PE": 0.2, "CH": 0.3, "PK": 0.5, "JP": 0.7,
}
# Additional duties (percentage points) by origin and HS chapter: retaliatory and anti-dumping duties.
# These are what origin laundering evades.
SURCHARGES: dict[tuple[str, str], float] = {
    **{("US", ch): 15.0 for ch in ("02", "08", "10", "12", "29", "39", "84", "85", "87", "90")},
    ("JP", "72"): 18.1, ("KR", "72"): 23.1, ("IN", "72"): 20.2, ("ID", "72"): 20.2,
    ("JP", "29"): 13.5, ("IN", "29"): 12.0, ("IN", "73"): 18.0, ("RU", "76"): 12.0,
    ("FR", "22"): 34.9, ("CA", "12"): 75.8, ("IN", "40"): 14.0,
}
# Countries through which goods are laundered to claim a preferential origin.
TRANSIT_COUNTRIES = ("VN", "MY", "TH", "KH", "ID")
# Departure hubs by port kind (transhipment), with weights.
HUBS = {
    SEA: (("SG", 4), ("HK", 4), ("KR", 2), ("MY", 2), ("NL", 1), ("AE", 1)),
    AIR: (("HK", 4), ("SG", 2), ("AE", 2), ("DE", 1), ("KR", 1), ("JP", 1)),
    RAIL_ROAD: (("VN", 3), ("LA", 2), ("KZ", 2), ("RU", 2), ("DE", 1), ("PL", 1), ("MN", 1)),
}
LAND_COUNTRIES = frozenset({"VN", "LA", "KZ", "RU", "DE", "PL", "MN", "MM", "TH", "KH"})

CURRENCIES = ("USD", "CNY", "EUR", "HKD", "JPY")
CURRENCY_PROBS = (0.88, 0.07, 0.03, 0.01, 0.01)
FX_PER_USD = {"USD": 1.0, "CNY": 7.1, "EUR": 0.92, "HKD": 7.8, "JPY": 150.0}

# --- HS catalogue --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Chapter:
    chapter: str
    name: str
    rate: tuple[float, float]  # MFN duty range in percent
    usd_per_kg: float  # median unit price
    piece_kg: float | None  # mass of one piece for goods declared by count; None for bulk goods
    popularity: float
    origins: tuple[str, ...]  # main sources
    zero_tariff: bool = False  # on the zero-tariff positive list (equipment, raw materials)
    processing: bool = False  # typical input or output of processing value-added
    duty_free: bool = False  # sold in duty-free shops
    bulk: float = 1.0  # mass multiplier relative to the mode's typical line


CHAPTERS: tuple[Chapter, ...] = (
    Chapter("02", "meat", (12, 25), 4.5, None, 3, ("BR", "AR", "AU", "US", "NZ", "ES"), bulk=1.2),
    Chapter("03", "fish and seafood", (5, 12), 7.0, None, 3, ("RU", "NO", "EC", "VN", "CA", "IN")),
    Chapter("04", "dairy", (6, 15), 4.0, None, 2, ("NZ", "FR", "DE", "AU", "NL"), processing=True),
    Chapter("08", "fruit and nuts", (10, 30), 2.2, None, 4, ("TH", "CL", "VN", "PE", "NZ", "US")),
    Chapter("09", "coffee, tea and spices", (8, 15), 6.0, None, 1.5, ("BR", "VN", "CO", "ET", "LK", "IN")),
    Chapter("10", "cereals", (1, 9), 0.35, None, 2, ("AU", "CA", "US", "FR", "BR", "AR"), bulk=4.0),
    Chapter("12", "oil seeds", (3, 9), 0.55, None, 2, ("BR", "US", "AR", "CA", "AU"), bulk=4.0),
    Chapter("15", "fats and oils", (9, 30), 1.1, None, 2, ("ID", "MY", "RU", "AR"), processing=True, bulk=2.0),
    Chapter("17", "sugar", (15, 50), 0.5, None, 1, ("BR", "TH", "AU"), bulk=3.0),
    Chapter("18", "cocoa", (8, 10), 5.0, None, 0.7, ("CI", "GH", "ID", "MY", "NL"), processing=True),
    Chapter("21", "food preparations", (10, 20), 4.0, None, 2, ("US", "KR", "JP", "MY", "SG"), processing=True),
    Chapter("22", "beverages and spirits", (5, 20), 6.0, 1.2, 3, ("FR", "GB", "IT", "CL", "AU", "ES", "JP"), duty_free=True),
    Chapter("24", "tobacco", (10, 25), 30.0, 0.2, 0.6, ("BR", "US", "ID", "IN"), duty_free=True, bulk=0.5),
    Chapter("27", "mineral fuels", (0, 6), 0.6, None, 3, ("SA", "RU", "AE", "MY", "AU", "ID", "QA"), zero_tariff=True, bulk=8.0),
    Chapter("28", "inorganic chemicals", (2, 6.5), 1.5, None, 1.5, ("JP", "KR", "US", "DE", "CL"), zero_tariff=True),
    Chapter("29", "organic chemicals", (2, 6.5), 3.0, None, 2.5, ("SA", "KR", "JP", "US", "DE", "SG", "IN"),
            zero_tariff=True, processing=True),
    Chapter("30", "pharmaceuticals", (0, 6), 90.0, 0.1, 2, ("DE", "US", "CH", "FR", "IT", "IE"), processing=True, bulk=0.2),
    Chapter("33", "cosmetics and perfume", (1, 10), 60.0, 0.15, 4, ("FR", "JP", "KR", "US", "IT", "GB"),
            processing=True, duty_free=True, bulk=0.3),
    Chapter("38", "chemical products", (3, 6.5), 4.0, None, 1.5, ("US", "DE", "JP", "KR"), zero_tariff=True),
    Chapter("39", "plastics", (6.5, 10), 2.0, None, 5, ("SA", "KR", "US", "SG", "TH", "JP"), zero_tariff=True, processing=True),
    Chapter("40", "rubber", (7.5, 20), 2.5, None, 2, ("TH", "MY", "ID", "VN", "JP", "IN"), processing=True),
    Chapter("42", "handbags and leather goods", (6, 10), 150.0, 0.8, 2, ("IT", "FR", "ES", "VN"), duty_free=True, bulk=0.1),
    Chapter("44", "wood", (0, 8), 0.45, None, 2, ("NZ", "RU", "US", "CA", "TH", "PG"), zero_tariff=True, bulk=3.0),
    Chapter("47", "pulp and waste paper", (0, 2), 0.7, None, 1, ("BR", "CA", "US", "CL", "ID"), zero_tariff=True, bulk=3.0),
    Chapter("48", "paper", (5, 7.5), 1.0, None, 1.5, ("ID", "US", "FI", "SE", "JP"), processing=True),
    Chapter("52", "cotton", (5, 40), 2.2, None, 1, ("US", "BR", "AU", "IN", "PK"), processing=True),
    Chapter("61", "knitted apparel", (6, 14), 28.0, 0.3, 3, ("VN", "BD", "IT", "KH", "TR"), bulk=0.2),
    Chapter("62", "woven apparel", (6, 14), 32.0, 0.4, 3, ("VN", "IT", "BD", "MM", "FR"), bulk=0.2),
    Chapter("64", "footwear", (10, 24), 30.0, 0.9, 2, ("VN", "IT", "ID", "ES", "KH"), duty_free=True, bulk=0.3),
    Chapter("71", "jewellery and precious metals", (3, 35), 3000.0, 0.05, 1.5, ("CH", "IT", "ZA", "AE", "BE", "IN"),
            processing=True, duty_free=True, bulk=0.002),
    Chapter("72", "iron and steel", (2, 8), 0.8, None, 3, ("JP", "KR", "ID", "IN", "RU", "AU"), zero_tariff=True, bulk=3.0),
    Chapter("73", "articles of steel", (6, 10), 3.5, None, 3, ("JP", "KR", "DE", "US", "VN", "IN"), zero_tariff=True, processing=True),
    Chapter("74", "copper", (0, 8), 9.0, None, 1.5, ("CL", "PE", "JP", "AU", "KZ"), zero_tariff=True, processing=True),
    Chapter("76", "aluminium", (5, 8), 3.2, None, 1.5, ("AU", "MY", "IN", "RU", "AE"), zero_tariff=True, processing=True),
    Chapter("84", "machinery", (0, 12), 25.0, 40.0, 8, ("DE", "JP", "US", "KR", "IT", "CH"), zero_tariff=True, processing=True),
    Chapter("85", "electrical and electronic equipment", (0, 15), 45.0, 2.0, 9, ("JP", "KR", "US", "MY", "VN", "DE", "PH"),
            zero_tariff=True, processing=True, duty_free=True, bulk=0.4),
    Chapter("87", "vehicles and parts", (6, 15), 18.0, 1200.0, 4, ("DE", "JP", "US", "KR", "GB", "IT"), zero_tariff=True),
    Chapter("88", "aircraft parts", (1, 5), 350.0, 50.0, 1, ("US", "FR", "DE", "GB", "CA"), zero_tariff=True, bulk=0.1),
    Chapter("90", "optical and medical instruments", (0, 12), 160.0, 3.0, 3, ("DE", "US", "JP", "CH", "KR"),
            zero_tariff=True, processing=True, duty_free=True, bulk=0.1),
    Chapter("91", "watches", (8, 15), 2500.0, 0.12, 1, ("CH", "JP", "FR", "DE"), duty_free=True, bulk=0.005),
    Chapter("94", "furniture", (0, 8), 5.0, 25.0, 2, ("IT", "VN", "MY", "DE", "ID")),
    Chapter("95", "toys and sports goods", (0, 10), 9.0, 0.6, 2, ("VN", "JP", "US", "DK", "KR"), duty_free=True, bulk=0.3),
)
CHAPTER_INDEX = {c.chapter: i for i, c in enumerate(CHAPTERS)}

# --- Contraband on risky routes ------------------------------------------------------------------


@dataclass(frozen=True)
class Contraband:
    category: str
    critical: int  # 2: public safety (weapons, drugs); 1: other prohibited goods
    routes: tuple[tuple[str, str], ...]  # (origin, departure)
    cover_chapters: tuple[str, ...]  # what the goods are declared as


# Routes are (origin, departure) pairs that ordinary trade rarely takes; legitimate goods do use them
# too (about 1% of clean declarations travel a watched route), so a route alone is a signal, not proof.
CONTRABAND: tuple[Contraband, ...] = (
    Contraband("narcotics", 2, (("CO", "PA"), ("BO", "PE"), ("MM", "LA"), ("AF", "PK"), ("EC", "PA")), ("08", "09", "03", "94", "44")),
    Contraband("weapons", 2, (("TR", "GE"), ("US", "MX"), ("RS", "TR")), ("84", "95", "73", "94")),
    Contraband("endangered-species", 1, (("NG", "NG"), ("MZ", "MZ"), ("KE", "KE"), ("CM", "MY")), ("44", "03", "71", "94")),
    Contraband("counterfeit-goods", 1, (("TR", "AE"), ("HK", "KH"), ("AE", "PA")), ("42", "91", "33", "61", "64")),
    Contraband("solid-waste", 1, (("US", "KH"), ("GB", "ID"), ("JP", "PH")), ("39", "47", "72", "74", "76")),
)
CONTRABAND_WEIGHTS = (0.25, 0.1, 0.15, 0.35, 0.15)
RISKY_ROUTE_LIST: tuple[tuple[str, str], ...] = tuple(dict.fromkeys(r for c in CONTRABAND for r in c.routes))
RISKY_ROUTES: frozenset[tuple[str, str]] = frozenset(RISKY_ROUTE_LIST)
LEGIT_ON_RISKY_ROUTE = 0.01  # share of clean declarations that travel a watched route

# Finding categories of the revenue fraud patterns.
PATTERNS = ("undervaluation", "hs-misclassification", "origin-laundering", "risky-route")
PATTERN_CATEGORY = {
    "undervaluation": "undervaluation",
    "hs-misclassification": "misclassified-goods",
    "origin-laundering": "false-origin",
}


class Catalogue:
    """The HS codes of the world as numpy arrays (index = code number)."""

    def __init__(self) -> None:
        rng = np.random.default_rng(WORLD_SEED)
        codes: list[str] = []
        chapter_of: list[int] = []
        rate: list[float] = []
        median: list[float] = []
        sigma: list[float] = []
        popularity: list[float] = []
        for ci, ch in enumerate(CHAPTERS):
            n_codes = int(4 + round(ch.popularity * 1.5))
            headings = sorted(rng.choice(np.arange(1, 99), size=max(2, n_codes // 3), replace=False))
            seen: set[str] = set()
            while len(seen) < n_codes:
                heading = int(rng.choice(headings))
                sub = int(rng.integers(1, 100))
                nat = int(rng.choice([0, 10, 20, 90, 11, 19]))
                code = f"{ch.chapter}{heading:02d}{sub:02d}{nat:02d}"
                if code in seen:
                    continue
                seen.add(code)
                codes.append(code)
                chapter_of.append(ci)
                lo, hi = ch.rate
                rate.append(float(np.round(rng.uniform(lo, hi) * 2) / 2))
                median.append(float(ch.usd_per_kg * np.exp(rng.normal(0.0, 0.7))))
                sigma.append(float(rng.uniform(0.3, 0.6)))
                popularity.append(float(ch.popularity * rng.lognormal(0.0, 0.8)))
        order = np.argsort(np.array(codes))
        self.codes = np.array(codes, dtype=object)[order]
        self.chapter = np.array(chapter_of, dtype=np.int64)[order]
        self.rate = np.array(rate)[order]
        self.median_usd_per_kg = np.array(median)[order]
        self.sigma = np.array(sigma)[order]
        pop = np.array(popularity)[order]
        self.popularity = pop / pop.sum()
        n = len(self.codes)
        self.n = n
        self.zero_tariff = np.array([CHAPTERS[c].zero_tariff for c in self.chapter])
        self.processing = np.array([CHAPTERS[c].processing for c in self.chapter])
        self.duty_free = np.array([CHAPTERS[c].duty_free for c in self.chapter])
        self.piece_kg = np.array([CHAPTERS[c].piece_kg or np.nan for c in self.chapter])
        self.bulk = np.array([CHAPTERS[c].bulk for c in self.chapter])
        # Misclassification target: the cheapest-duty other code of the same chapter, if cheaper.
        self.misclass_target = np.full(n, -1, dtype=np.int64)
        for i in range(n):
            same = np.flatnonzero((self.chapter == self.chapter[i]) & (np.arange(n) != i))
            if len(same):
                j = same[np.argmin(self.rate[same])]
                if self.rate[j] < self.rate[i] - 0.9:
                    self.misclass_target[i] = j
        # Duty rate by (code, declared origin): MFN x preference + surcharges.
        n_c = len(COUNTRY_CODES)
        pref = np.array([PREFERENTIAL.get(c, 1.0) for c in COUNTRY_CODES])
        self.rate_by_origin = self.rate[:, None] * pref[None, :]
        for (country, chapter), extra in SURCHARGES.items():
            ci = CHAPTER_INDEX[chapter]
            self.rate_by_origin[self.chapter == ci, COUNTRY_INDEX[country]] += extra
        self.rate_by_origin = np.round(np.minimum(self.rate_by_origin, 100.0), 2)
        # Origin distribution per chapter: 70% the chapter's main sources, 30% general partners.
        base = np.array([w for _, w in COUNTRIES], dtype=float)
        base /= base.sum()
        self.origin_cum = np.empty((len(CHAPTERS), n_c))
        for ci, ch in enumerate(CHAPTERS):
            main = np.zeros(n_c)
            for rank, c in enumerate(ch.origins):
                main[COUNTRY_INDEX[c]] = 1.0 / (rank + 1.5)
            p = 0.7 * main / main.sum() + 0.3 * base
            self.origin_cum[ci] = np.cumsum(p / p.sum())
        self.origin_cum[:, -1] = 1.0
        # Chapters whose goods are laundered: those with a surcharged source country.
        self.laundering_sources: list[np.ndarray] = []
        for _ci, ch in enumerate(CHAPTERS):
            src = [COUNTRY_INDEX[c] for (c, chap) in SURCHARGES if chap == ch.chapter]
            self.laundering_sources.append(np.array(sorted(src), dtype=np.int64))
        self.launderable = np.array([len(self.laundering_sources[c]) > 0 for c in self.chapter])
        self.chapter_codes = [np.flatnonzero(self.chapter == ci) for ci in range(len(CHAPTERS))]

    def pool(self, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Codes where ``mask`` holds and their cumulative popularity (for searchsorted draws)."""
        idx = np.flatnonzero(mask)
        cum = np.cumsum(self.popularity[idx])
        cum /= cum[-1]
        return idx, cum


_CATALOGUE: Catalogue | None = None


def catalogue() -> Catalogue:
    global _CATALOGUE
    if _CATALOGUE is None:
        _CATALOGUE = Catalogue()
    return _CATALOGUE
