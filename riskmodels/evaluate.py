"""Customs selection metrics: Precision@n%, Recall@n%, Revenue@n% and ROC AUC.

The n% highest-scored declarations are the ones selected for inspection (inspection capacity is
fixed, so these matter more than AUC). ``k = ceil(rows * n / 100)``; ties in score are broken by
row order (stable sort), so results are reproducible.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.metrics import roc_auc_score

from riskmodels.data import Format, read_labelled
from riskmodels.serving import ModelRegistry

PERCENTS = (1, 2, 5, 10)


def selection_metrics(
    scores: np.ndarray, fraud: np.ndarray, revenue: np.ndarray | None = None, percents: tuple[int, ...] = PERCENTS
) -> dict[str, Any]:
    """Metrics in the ``riskctl evaluate --json`` shape; ``revenue=None`` (or all missing) -> null."""
    scores = np.asarray(scores, dtype=np.float64)
    fraud = np.asarray(fraud, dtype=np.float64)
    n = len(scores)
    order = np.argsort(-scores, kind="stable")
    frauds_total = fraud.sum()
    has_revenue = revenue is not None and not np.all(np.isnan(np.asarray(revenue, dtype=np.float64)))
    if has_revenue:
        rev = np.nan_to_num(np.asarray(revenue, dtype=np.float64), nan=0.0)
        rev_total = rev.sum()
    precision: dict[str, float | None] = {}
    recall: dict[str, float | None] = {}
    revenue_at: dict[str, float | None] = {}
    for p in percents:
        k = max(1, math.ceil(n * p / 100 - 1e-9)) if n else 0
        top = order[:k]
        hits = fraud[top].sum()
        precision[str(p)] = float(hits / k) if k else None
        recall[str(p)] = float(hits / frauds_total) if frauds_total > 0 else None
        if has_revenue:
            revenue_at[str(p)] = float(rev[top].sum() / rev_total) if rev_total > 0 else None
    auc = float(roc_auc_score(fraud, scores)) if 0 < frauds_total < n else None
    return {"rows": n, "auc": auc, "precision_at": precision, "recall_at": recall,
            "revenue_at": revenue_at if has_revenue else None}


def evaluate(model: Path | str, data: Path | str, fmt: Format = "auto") -> dict[str, Any]:
    """Score a labelled file with a model (artifact or registry directory) and compute the metrics."""
    df = read_labelled(data, fmt, need_labels=True)
    registry = ModelRegistry.open(Path(model))
    batch = registry.score_frame(df)
    return selection_metrics(batch.scores, df["fraud"].to_numpy(), df["duty_recoverable"].to_numpy())


def format_table(result: dict[str, Any]) -> str:
    def cell(v: float | None) -> str:
        return "  n/a" if v is None else f"{v:.3f}"
    lines = [f"rows {result['rows']}   ROC AUC {cell(result['auc'])}", "         " + "".join(f"{p:>8}%" for p in PERCENTS)]
    for label, key in (("precision", "precision_at"), ("recall", "recall_at"), ("revenue", "revenue_at")):
        values = result[key] or {}
        lines.append(f"{label:<9}" + "".join(f"{cell(values.get(str(p))):>9}" for p in PERCENTS))
    return "\n".join(lines)
