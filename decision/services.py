"""What a worker decides with: the active policy and the model registry, behind one small facade."""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol

from common.settings import Settings
from policy.config import Policy, load_policy
from policy.valueadded import RatioHistory
from riskmodels.routing import RISK_TYPES
from riskmodels.serving import ModelRegistry
from schemas import Action, Declaration, Scenario

log = logging.getLogger(__name__)


class ScoreBatchLike(Protocol):
    """What a model call returns (``riskmodels.serving.ScoreBatch``): a score and the version of
    the model that gave it for every declaration, in order, and explanations on demand."""

    @property
    def scores(self) -> Iterable[float]: ...

    @property
    def model_versions(self) -> Sequence[str]: ...

    def explain(self, i: int, top: int = 3) -> list[str]: ...


class Scorer(Protocol):
    def score(self, declarations: Sequence[Declaration]) -> ScoreBatchLike: ...

    def active_versions(self) -> dict[str, str]: ...

    def shadow_versions(self) -> dict[str, str]: ...

    def refresh(self) -> bool: ...


@dataclass(frozen=True, slots=True)
class ScoreResult:
    score: float
    model_version: str
    _explain: Callable[[], list[str]]
    # The shadow (challenger) model's (version, score), where one covers the declaration's scenario.
    shadow: tuple[str, float] | None = None
    value_added: RatioHistory | None = None  # processing declarations: the ratio history the model knows
    # (risk type, score) of each risk type a routed model scored (riskmodels.routing); empty otherwise.
    risk_scores: tuple[tuple[str, float], ...] = ()

    def explain(self) -> tuple[str, ...]:
        return tuple(self._explain())


class Services:
    def __init__(self, policy: Policy, scorer: Scorer) -> None:
        self.policy = policy
        self.scorer = scorer

    @classmethod
    def from_settings(cls, settings: Settings) -> Services:
        return cls(load_policy(settings.policy_file), ModelRegistry.open(settings.model_dir))

    def score(self, declarations: Sequence[Declaration]) -> dict[tuple[str, int], ScoreResult]:
        """Score a micro-batch in one model call per scenario; keyed by (declaration id, revision)."""
        if not declarations:
            return {}
        batch = self.scorer.score(declarations)
        out: dict[tuple[str, int], ScoreResult] = {}
        scores = [float(s) for s in batch.scores]
        shadows = _shadows(batch)
        # (n, 4) rows: enterprise mean, rows, HS chapter mean, rows (riskmodels.features.value_added_reference).
        history = getattr(batch, "value_added", None)
        risk = getattr(batch, "risk_scores", None)  # (n, len(RISK_TYPES)), nan where a type does not apply
        for i, decl in enumerate(declarations):
            shadow = shadows[i] if shadows is not None else None
            va = None
            if history is not None and decl.scenario is Scenario.PROCESSING_VALUE_ADDED:
                va = ratio_history(history[i])
            types = () if risk is None else tuple((t, float(v)) for t, v in zip(RISK_TYPES, risk[i]) if math.isfinite(v))
            out[(decl.declaration_id, decl.revision)] = ScoreResult(scores[i], batch.model_versions[i], _explainer(batch, i),
                                                                    shadow, va, types)
        return out

    def refresh_models(self) -> bool:
        """Swap in a newly activated, verified model; True when the active versions changed."""
        return self.scorer.refresh()


def _shadows(batch: ScoreBatchLike) -> list[tuple[str, float] | None] | None:
    """Per declaration, the shadow model's (version, score) or None where no shadow model covers
    its scenario; None for the whole batch when no shadow model is loaded. A scorer without shadow
    models (a test's, the backtest's) need not have the attributes at all."""
    scores = getattr(batch, "shadow_scores", None)
    versions: Sequence[str | None] | None = getattr(batch, "shadow_versions", None)
    if scores is None or versions is None:
        return None
    return [(v, float(s)) if v is not None and math.isfinite(s) else None for v, s in zip(versions, scores)]


def ratio_history(row: Sequence[float]) -> RatioHistory:
    e_mean, e_rows, c_mean, c_rows = (float(v) for v in row)
    return RatioHistory(None if e_mean != e_mean else e_mean, 0 if e_rows != e_rows else int(e_rows),
                        None if c_mean != c_mean else c_mean, 0 if c_rows != c_rows else int(c_rows))


def _explainer(batch: ScoreBatchLike, i: int) -> Callable[[], list[str]]:
    return lambda: batch.explain(i, top=3)


def selected_risk_types(
    risk_scores: Iterable[tuple[str, float]], action: Action, thresholds: tuple[float, float] | None,
) -> tuple[str, ...]:
    """The risk types that selected a declaration: those whose model's score reached the
    machine-check threshold the decision used. The declaration's score is the highest of them, so
    a declaration selected by its score names at least one; a release names none."""
    if action is Action.RELEASE or thresholds is None:
        return ()
    return tuple(t for t, s in risk_scores if s >= thresholds[0])
