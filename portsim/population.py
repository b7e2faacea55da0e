"""The enterprises, declarants and sellers of the simulated office, and their credit events.

A population is a set of numpy arrays indexed by enterprise number, drawn from the office seed.
Credit classes follow the office's shares (AEO about 3%, white list about 10%, focus list about 5%,
the rest general); qualifications for zero-tariff and processing value-added trade; a few duty-free
operators; and hidden attributes that drive fraud: a propensity per enterprise, repeat offenders
(high propensity, a favourite fraud pattern, often a complicit declarant).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta

import numpy as np

from portsim import world
from schemas import CreditClass, CreditEvent, CreditEventType, Qualification

# Credit class codes used in the arrays.
AEO, WHITE, GENERAL, FOCUS = 0, 1, 2, 3
CLASS_VALUES = (CreditClass.AEO, CreditClass.WHITE_LIST, CreditClass.GENERAL, CreditClass.FOCUS_LIST)
CLASS_SHARES = (0.03, 0.10, 0.82, 0.05)
CLASS_ACTIVITY = (5.0, 2.5, 1.0, 0.8)  # relative declaration volume
BASE_PROPENSITY = (0.003, 0.008, 0.022, 0.06)  # chance that one declaration is fraudulent
OFFENDER_SHARE = (0.0, 0.002, 0.012, 0.20)  # share of repeat offenders within the class
DUTY_FREE_OPERATORS = 12
DUTY_FREE_SHARE = 0.06  # of all declarations
PORTFOLIO = 6  # HS codes an enterprise usually trades

AGENCIES = (
    "customs", "taxation", "market-regulation", "commerce", "ecology-environment", "emergency-management",
    "courts", "public-security", "finance", "peoples-bank", "human-resources", "transport", "maritime",
    "housing", "agriculture", "health", "drug-administration", "statistics", "foreign-exchange",
    "development-reform",
)
PENALTY_REASONS = (
    "tax arrears", "court judgment unfulfilled", "serious dishonesty listed by market regulation",
    "environmental violation", "smuggling conviction", "fraudulent tax rebate claim",
    "unpaid social insurance", "safety production violation",
)


def enterprise_id(index: int) -> str:
    """Customs registration code of enterprise ``index`` (10 digits, Hainan prefix)."""
    return f"460{index:07d}"


def declarant_id(index: int) -> str:
    return f"DCL-{index:05d}"


def seller_id(index: int) -> str:
    return f"SLR-{index:06d}"


class Population:
    """Enterprises and their hidden attributes; deterministic for ``(seed, size)``."""

    def __init__(self, seed: int, size: int = 70_000) -> None:
        if size < 100:
            raise ValueError("the population needs at least 100 enterprises")
        cat = world.catalogue()
        rng = np.random.default_rng(np.random.SeedSequence([seed, 1]))
        n = size
        self.seed = seed
        self.size = n
        self.ids = np.array([enterprise_id(i) for i in range(n)], dtype=object)
        self.credit_class = rng.choice(4, size=n, p=CLASS_SHARES)
        cls = self.credit_class
        # Qualifications: commoner among trusted enterprises.
        zt_p = np.array([0.45, 0.35, 0.15, 0.08])[cls]
        pva_p = np.array([0.30, 0.20, 0.08, 0.04])[cls]
        self.zero_tariff = rng.random(n) < zt_p
        self.processing = rng.random(n) < pva_p
        # Hidden fraud attributes.
        self.offender = rng.random(n) < np.array(OFFENDER_SHARE)[cls]
        self.propensity = np.array(BASE_PROPENSITY)[cls] * rng.lognormal(0.0, 0.5, n)
        self.propensity[self.offender] = rng.uniform(0.2, 0.45, int(self.offender.sum()))
        self.favourite_pattern = rng.choice(4, size=n, p=(0.45, 0.3, 0.15, 0.1))
        # Joint penalties from other agencies: rare, much commoner among offenders.
        self.joint_penalty = rng.random(n) < np.where(self.offender, 0.15, np.where(cls == FOCUS, 0.03, 0.002))
        self.joint_penalty[cls == AEO] = False
        # Activity: heavy-tailed volume; duty-free operators get a fixed share of all traffic.
        activity = rng.lognormal(0.0, 1.4, n) * np.array(CLASS_ACTIVITY)[cls]
        self.duty_free_operator = np.zeros(n, dtype=bool)
        dfo = rng.choice(np.flatnonzero(cls <= WHITE), size=DUTY_FREE_OPERATORS, replace=False)
        self.duty_free_operator[dfo] = True
        self.offender[dfo] = False
        self.joint_penalty[dfo] = False
        self.propensity[dfo] = np.array(BASE_PROPENSITY)[cls[dfo]]
        activity[dfo] = 0.0
        activity *= (1.0 - DUTY_FREE_SHARE) / activity.sum()
        activity[dfo] = DUTY_FREE_SHARE * rng.dirichlet(np.full(DUTY_FREE_OPERATORS, 3.0))
        self.activity = activity
        self.activity_cum = np.cumsum(activity)
        self.activity_cum /= self.activity_cum[-1]
        # Home port (80% of an enterprise's declarations go through it).
        shares = np.array([p.share for p in world.PORTS])
        self.home_port = rng.choice(len(world.PORTS), size=n, p=shares / shares.sum())
        dfs_ports = np.array([world.PORT_INDEX[p] for p in ("SYX-AIR", "HAK-AIR", "SYX-SEA", "BAR-AIR")])
        self.home_port[dfo] = dfs_ports[np.arange(DUTY_FREE_OPERATORS) % len(dfs_ports)]
        self.price_factor = rng.lognormal(0.0, 0.12, n)
        # Portfolio: mostly codes of one primary chapter, the rest from the enterprise's trade.
        self.portfolio = self._portfolio(rng, cat)
        # Declarants (customs brokers); some enterprises declare themselves; a few brokers are complicit.
        n_decl = max(50, n // 90)
        self.declarant_ids = np.array([declarant_id(i) for i in range(n_decl)], dtype=object)
        complicit = rng.choice(n_decl, size=max(2, n_decl // 50), replace=False)
        self.declarants = rng.integers(0, n_decl, size=(n, 2))
        use_complicit = self.offender & (rng.random(n) < 0.6)
        self.declarants[use_complicit, 0] = rng.choice(complicit, size=int(use_complicit.sum()))
        self.self_declaring = (rng.random(n) < np.array([0.5, 0.3, 0.1, 0.05])[cls]) & ~use_complicit
        # Foreign sellers: three per enterprise from a shared pool, plus shell sellers used in fraud.
        n_sellers = max(100, n // 2)
        self.sellers = rng.integers(0, n_sellers, size=(n, 3))
        self.shell_sellers = np.arange(n_sellers, n_sellers + max(20, n // 250))
        self.seller_ids = np.array([seller_id(i) for i in range(int(self.shell_sellers[-1]) + 1)], dtype=object)

    def _portfolio(self, rng: np.random.Generator, cat: world.Catalogue) -> np.ndarray:
        n = self.size
        out = np.empty((n, PORTFOLIO), dtype=np.int64)
        general_idx, general_cum = cat.pool(np.ones(cat.n, dtype=bool))
        pools = {
            "zt": cat.pool(cat.zero_tariff),
            "pva": cat.pool(cat.processing),
            "dfs": cat.pool(cat.duty_free),
        }
        # Primary code, drawn from the pool that matches the enterprise's main trade.
        kind = np.where(self.duty_free_operator, 3, np.where(self.processing, 2, np.where(self.zero_tariff, 1, 0)))
        primary = general_idx[np.searchsorted(general_cum, rng.random(n))]
        for k, name in ((1, "zt"), (2, "pva"), (3, "dfs")):
            mask = kind == k
            idx, cum = pools[name]
            primary[mask] = idx[np.searchsorted(cum, rng.random(int(mask.sum())))]
        out[:, 0] = primary
        chapter = cat.chapter[primary]
        # Four more codes from the same chapter.
        for ci in range(len(cat.chapter_codes)):
            mask = chapter == ci
            m = int(mask.sum())
            if m:
                codes = cat.chapter_codes[ci]
                p = cat.popularity[codes] / cat.popularity[codes].sum()
                out[mask, 1:5] = rng.choice(codes, size=(m, 4), p=p)
        # One code from anywhere in the enterprise's trade.
        out[:, 5] = general_idx[np.searchsorted(general_cum, rng.random(n))]
        dfs_idx, dfs_cum = pools["dfs"]
        dfo = self.duty_free_operator
        out[dfo, 1:] = dfs_idx[np.searchsorted(dfs_cum, rng.random((int(dfo.sum()), PORTFOLIO - 1)))]
        return out

    # --- credit events -------------------------------------------------------------------------

    def initial_events(self, at: datetime) -> Iterator[CreditEvent]:
        """The register as it stands at ``at``: one event per class, qualification and penalty held."""
        rng = np.random.default_rng(np.random.SeedSequence([self.seed, 2]))
        agencies = rng.integers(0, len(AGENCIES), size=self.size)
        reasons = rng.integers(0, len(PENALTY_REASONS), size=self.size)
        k = 0
        for i in range(self.size):
            events: list[tuple[CreditEventType, CreditClass | None, Qualification | None, str, str]] = []
            cls = int(self.credit_class[i])
            if cls != GENERAL:
                events.append((CreditEventType.CREDIT_CLASS_CHANGED, CLASS_VALUES[cls], None, "customs", "initial classification"))
            if self.zero_tariff[i]:
                events.append((CreditEventType.QUALIFICATION_REGISTERED, None, Qualification.ZERO_TARIFF, "customs",
                               "registered for zero-tariff goods"))
            if self.processing[i]:
                events.append((CreditEventType.QUALIFICATION_REGISTERED, None, Qualification.PROCESSING_VALUE_ADDED, "customs",
                               "registered for processing value-added"))
            if self.joint_penalty[i]:
                events.append((CreditEventType.JOINT_PENALTY_IMPOSED, None, None, AGENCIES[int(agencies[i])],
                               PENALTY_REASONS[int(reasons[i])]))
            for j, (etype, cc, qual, agency, reason) in enumerate(events):
                yield CreditEvent(
                    event_id=f"CP{self.seed}-{i}-{j}",
                    enterprise_id=self.ids[i],
                    event_type=etype,
                    credit_class=cc,
                    qualification=qual,
                    source_agency=agency,
                    reason=reason,
                    event_time=at + timedelta(milliseconds=k),
                )
                k += 1

    def lifecycle(self, times: Iterator[datetime], first_index: int = 0) -> Iterator[CreditEvent]:
        """Changes over time, one event per time in ``times``: class up- and downgrades,
        qualifications registered, suspended and revoked, joint penalties imposed and lifted.
        Offenders are downgraded and penalised more. Events before ``first_index`` are skipped
        (the state still evolves through them, so numbering and content stay reproducible)."""
        rng = np.random.default_rng(np.random.SeedSequence([self.seed, 3]))
        state = _LifecycleState(self)
        batch = 1024
        pos = batch
        for index, at in enumerate(times):
            if pos == batch:
                pick_active = rng.random(batch) < 0.5
                ent = np.where(pick_active, np.searchsorted(self.activity_cum, rng.random(batch)), rng.integers(0, self.size, batch))
                kinds = rng.random(batch)
                us = rng.random(batch)
                agency = rng.integers(0, len(AGENCIES), batch)
                reason = rng.integers(0, len(PENALTY_REASONS), batch)
                pos = 0
            i = int(min(ent[pos], self.size - 1))
            while self.duty_free_operator[i]:
                i = (i + 1) % self.size
            etype, cc, qual, source, why = state.transition(
                i, float(kinds[pos]), float(us[pos]), AGENCIES[int(agency[pos])], PENALTY_REASONS[int(reason[pos])]
            )
            pos += 1
            if index < first_index:
                continue
            yield CreditEvent(
                event_id=f"LC{self.seed}-{index}",
                enterprise_id=self.ids[i],
                event_type=etype,
                credit_class=cc,
                qualification=qual,
                source_agency=source,
                reason=why,
                event_time=at,
            )


class _LifecycleState:
    """The register as the lifecycle stream has changed it so far."""

    def __init__(self, pop: Population) -> None:
        self.cls = pop.credit_class.copy()
        self.zt = pop.zero_tariff.copy()
        self.pva = pop.processing.copy()
        self.penalty = pop.joint_penalty.copy()
        self.offender = pop.offender
        # Who imposed each standing penalty: only that agency lifts it (policy.credit). The initial
        # register's imposers are initial_events' first draw.
        first = np.random.default_rng(np.random.SeedSequence([pop.seed, 2])).integers(0, len(AGENCIES), size=pop.size)
        self.imposed_by: dict[int, str] = {int(i): AGENCIES[int(first[i])] for i in np.flatnonzero(pop.joint_penalty)}

    def transition(
        self, i: int, kind: float, u: float, agency: str, penalty_reason: str
    ) -> tuple[CreditEventType, CreditClass | None, Qualification | None, str, str]:
        T = CreditEventType
        bad = bool(self.offender[i])
        if 0.75 <= kind < 0.9 or (kind >= 0.9 and (bad or self.penalty[i] or u < 0.3)):  # joint penalties
            if self.penalty[i]:
                self.penalty[i] = False
                return T.JOINT_PENALTY_LIFTED, None, None, self.imposed_by.pop(i, agency), "penalty lifted after rectification"
            if bad or kind >= 0.9:
                self.penalty[i] = True
                self.imposed_by[i] = agency
                return T.JOINT_PENALTY_IMPOSED, None, None, agency, penalty_reason
        if 0.35 <= kind < 0.75:  # qualifications
            which = self.zt if u < 0.6 else self.pva
            qual = Qualification.ZERO_TARIFF if which is self.zt else Qualification.PROCESSING_VALUE_ADDED
            if not which[i]:
                which[i] = True
                return T.QUALIFICATION_REGISTERED, None, qual, "customs", f"registered for {qual.value}"
            which[i] = False
            if bad and (u * 7.0) % 1.0 < 0.5:
                return T.QUALIFICATION_REVOKED, None, qual, "customs", "qualification revoked after a violation"
            return T.QUALIFICATION_SUSPENDED, None, qual, agency, "qualification suspended pending review"
        # credit class review
        c = int(self.cls[i])
        if bad or self.penalty[i]:
            new = FOCUS if c != FOCUS or u < 0.5 else GENERAL
            why = "downgraded after violations" if new == FOCUS else "reviewed after rectification"
        elif c == GENERAL:
            new = WHITE if u < 0.6 else (FOCUS if u < 0.75 else AEO)
            why = {WHITE: "added to white list", FOCUS: "added to focus list after an audit finding", AEO: "AEO certification granted"}[new]
        elif c == WHITE:
            new = AEO if u < 0.4 else GENERAL
            why = "AEO certification granted" if new == AEO else "white-list status expired"
        elif c == AEO:
            new = GENERAL if u < 0.7 else WHITE
            why = "AEO certification lapsed"
        else:
            new = GENERAL
            why = "removed from focus list after review"
        self.cls[i] = new
        return T.CREDIT_CLASS_CHANGED, CLASS_VALUES[new], None, "customs", why
