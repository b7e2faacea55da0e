"""Processing value-added: the duty-free threshold and the plausibility of the claimed ratio.

The ratio is value added / imported materials (``schemas.Declaration.value_added_ratio``). Under
``processing_value_added.threshold`` duty is due and the goods are not released duty-free. A ratio
far above what the enterprise has declared before (or, without enough history of its own, what the
HS chapter's declarations show) is implausible: understated materials or inflated value added
are the usual ways to reach the threshold, so it raises an early warning and selects the goods.

The history comes with the model's score (``RatioHistory``): statistics of the training data stored
in the model artifact (``riskmodels.features``), so the worker, the backtest and training agree.
"""

from __future__ import annotations

from dataclasses import dataclass

from policy.config import ProcessingValueAdded
from schemas import Action, Declaration, Scenario, Severity, SubjectKind

BELOW_THRESHOLD = "value-added-below-threshold"
IMPLAUSIBLE = "value-added-implausible"
RULES = (BELOW_THRESHOLD, IMPLAUSIBLE)


@dataclass(frozen=True, slots=True)
class RatioHistory:
    """Mean claimed value-added ratio and number of declarations of the enterprise and of the HS
    chapter, as the model artifact learned them (mean None: no history)."""

    enterprise_mean: float | None
    enterprise_rows: int
    chapter_mean: float | None
    chapter_rows: int

    def reference(self, min_rows: int) -> tuple[str, float, int] | None:
        """(whose history, mean, declarations) of the first history with ``min_rows``, or None."""
        if self.enterprise_mean is not None and self.enterprise_rows >= min_rows:
            return "enterprise", self.enterprise_mean, self.enterprise_rows
        if self.chapter_mean is not None and self.chapter_rows >= min_rows:
            return "HS chapter", self.chapter_mean, self.chapter_rows
        return None


@dataclass(frozen=True, slots=True)
class WarningProposal:
    """An early warning a decision raises (``decision.flow`` turns it into an ``EarlyWarning``)."""

    rule: str
    severity: Severity
    subject_kind: SubjectKind
    subject_id: str
    evidence: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Finding:
    rule: str
    action: Action
    reason: str
    warning: WarningProposal | None = None


def check_value_added(config: ProcessingValueAdded, decl: Declaration, history: RatioHistory | None) -> list[Finding]:
    """What the value-added rules say about a processing declaration (nothing for other scenarios)."""
    if decl.scenario is not Scenario.PROCESSING_VALUE_ADDED:
        return []
    ratio = decl.value_added_ratio()
    if ratio is None:  # refused by the schema; a record built around it is not judged here
        return []
    if ratio < config.threshold:
        return [Finding(BELOW_THRESHOLD, config.below_threshold_action,
                        f"duty due: value added {ratio:.1%} of imported materials is below the {config.threshold:.0%} "
                        f"threshold; not released duty-free")]
    reference = history.reference(config.min_history) if history is not None else None
    if reference is None:
        return []
    whose, mean, rows = reference
    if ratio - mean < config.implausible_margin:
        return []
    evidence = (
        f"claimed value-added ratio {ratio:.2f}: value added {decl.value_added:,.2f} on imported materials "
        f"{decl.imported_material_value:,.2f} {decl.currency}",
        f"{whose} history: mean ratio {mean:.2f} over {rows} declarations (hs {decl.hs_code[:2]})",
        f"more than {config.implausible_margin:.2f} above the history",
    )
    warning = WarningProposal(IMPLAUSIBLE, Severity.HIGH, SubjectKind.ENTERPRISE, decl.enterprise_id, evidence)
    return [Finding(IMPLAUSIBLE, config.implausible_action,
                    f"implausible value added: ratio {ratio:.2f} against {mean:.2f} in the {whose}'s history "
                    f"({rows} declarations); early warning raised", warning)]
