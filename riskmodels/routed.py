"""Training a routed artifact: one small model per (scenario, port group, risk type) route.

The plan is a routing table (:mod:`riskmodels.routing`, the same JSON an artifact carries). Every
model it names is trained on the training rows routed to it, with the label "fraud of this risk
type" taken from the simulator's hidden truth (``fraud_pattern``, see ``PATTERN_RISK_TYPE``); the
general model (the fallback of routes no rule covers) on all rows with "any fraud". All models
share one feature state, fitted once on all rows, and one feature matrix: a routed artifact holds
one ``encodings.json`` however many models it has.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from datetime import date
from pathlib import Path
from typing import Any

import lightgbm as lgb
import numpy as np
import polars as pl

from riskmodels.artifact import GENERAL, Artifact, write_artifact
from riskmodels.errors import DataError
from riskmodels.evaluate import selection_metrics
from riskmodels.features import CATEGORICAL, FEATURES, FxTable, build_matrix, columns_from_frame, expanding_history, fit_state
from riskmodels.routing import PATTERN_RISK_TYPE, RISK_TYPES, Routing
from riskmodels.serving import score_routed
from riskmodels.train import Progress, TrainConfig, TrainResult, _quantiles, lgb_params, stderr_progress

# Small models: 93 of them train in minutes on two cores and score in a few µs per row each.
# History keys as the starter keeps them (at least 100 rows or 3 frauds): a small shared feature state.
ROUTED_CONFIG = TrainConfig(rounds=25, num_leaves=8, min_data_in_leaf=50, learning_rate=0.2, min_scenario_rows=10**9,
                            history_min_rows=100, history_min_frauds=3)


@dataclass(frozen=True)
class _Assignment:
    """Training rows of one model: row indices and, per row, the risk type it is the model of."""

    rows: np.ndarray
    types: np.ndarray  # index into RISK_TYPES


def risk_labels(df: pl.DataFrame) -> np.ndarray:
    """(n, 4) 0/1 labels: fraud of each risk type, from the simulator's ``fraud_pattern``."""
    if "fraud_pattern" not in df.columns or (df["fraud_pattern"].null_count() == df.height and int(df["fraud"].sum())):
        raise DataError("routed training needs the simulator's fraud_pattern column (the risk type of each fraud)")
    pattern = df["fraud_pattern"].to_list()
    fraud = df["fraud"].to_numpy()
    out = np.zeros((df.height, len(RISK_TYPES)), dtype=np.float64)
    index = {t: i for i, t in enumerate(RISK_TYPES)}
    for r, (p, f) in enumerate(zip(pattern, fraud)):
        t = PATTERN_RISK_TYPE.get(p) if f and p else None
        if t is not None:
            out[r, index[t]] = 1.0
    return out


def assignments(routing: Routing, scenarios: list[str], ports: list[str]) -> dict[str, _Assignment]:
    """Which rows (and as which risk type) each routed model is trained on: the rows the worker
    would route to it. Rows left to the general fallback are not listed (it trains on all rows)."""
    parts: dict[str, list[tuple[int, int]]] = {}
    for r, (s, p) in enumerate(zip(scenarios, ports)):
        for t, key in enumerate(routing.models_for(s, p, GENERAL)):
            if key is not None and key != GENERAL:
                parts.setdefault(key, []).append((r, t))
    return {k: _Assignment(np.array([r for r, _ in v], dtype=np.intp), np.array([t for _, t in v], dtype=np.intp))
            for k, v in sorted(parts.items())}


def train_routed(
    train_df: pl.DataFrame, routing: Routing, out: Path, cfg: TrainConfig = ROUTED_CONFIG,
    progress: Progress = stderr_progress, fx: FxTable | None = None, valid_df: pl.DataFrame | None = None,
    source: dict[str, Any] | None = None, record_time: bool = True,
) -> TrainResult:
    started = time.perf_counter()
    if train_df["fraud"].n_unique() < 2:
        raise DataError("training data needs both fraud and non-fraud rows")
    labels = risk_labels(train_df)
    progress(f"{train_df.height} training rows, {int(train_df['fraud'].sum())} frauds; "
             + ", ".join(f"{t} {int(labels[:, i].sum())}" for i, t in enumerate(RISK_TYPES)))
    state = fit_state(train_df, fx, cfg.history_min_rows, cfg.history_min_frauds)
    X = build_matrix(columns_from_frame(train_df), state, expanding_history(train_df))
    y = train_df["fraud"].to_numpy().astype(np.float64)
    scen, ports = train_df["scenario"].to_list(), train_df["port"].to_list()
    plan = assignments(routing, scen, ports)
    missing = sorted(routing.models - plan.keys() - {GENERAL})
    if missing:
        raise DataError(f"no training rows are routed to {len(missing)} models: {', '.join(missing[:5])}")
    progress(f"{len(FEATURES)} features in {time.perf_counter() - started:.1f}s; training {len(plan)} routed models + general")
    params = lgb_params(cfg)
    texts: dict[str, str] = {}
    info: dict[str, Any] = {}
    jobs: list[tuple[str, np.ndarray, np.ndarray]] = [(GENERAL, np.arange(len(y)), y)]
    jobs += [(k, a.rows, labels[a.rows, a.types]) for k, a in plan.items()]
    for key, rows, target in jobs:
        positives = int(target.sum())
        if positives == 0 or positives == len(rows):
            raise DataError(f"model {key}: its {len(rows)} training rows need both frauds of its risk type and others")
        dtrain = lgb.Dataset(X[rows], target, feature_name=list(FEATURES), categorical_feature=list(CATEGORICAL),
                             free_raw_data=True)
        booster = lgb.train(params, dtrain, num_boost_round=cfg.rounds)
        texts[key] = booster.model_to_string()
        info[key] = {"rows": len(rows), "frauds": positives, "trees": booster.current_iteration()}
    progress(f"trained {len(texts)} models in {time.perf_counter() - started:.1f}s")

    art = Artifact(version="unsaved", state=state, boosters={k: lgb.Booster(model_str=t) for k, t in texts.items()},
                   routing=routing)

    train_scores, _best, risk = score_routed(art, scen, ports, X)
    thresholds: dict[str, Any] = {GENERAL: _quantiles(art.predict(GENERAL, X), "train (in-sample, all rows; fallback model only)")}
    for key, a in plan.items():
        thresholds[key] = _quantiles(risk[a.rows, a.types], "train (in-sample)")
    metrics: dict[str, Any] = {"train_in_sample": selection_metrics(train_scores, y, train_df["duty_recoverable"].to_numpy())}
    if valid_df is not None:
        vX = build_matrix(columns_from_frame(valid_df), state)
        vs, _, _ = score_routed(art, valid_df["scenario"].to_list(), valid_df["port"].to_list(), vX)
        metrics["valid"] = selection_metrics(vs, valid_df["fraud"].to_numpy().astype(np.float64),
                                             valid_df["duty_recoverable"].to_numpy())
    elapsed = time.perf_counter() - started
    if record_time:
        metrics["training_seconds"] = round(elapsed, 2)
    t = train_df["event_time"]
    first, last = t.min(), t.max()
    assert isinstance(first, date) and isinstance(last, date)
    period = [first.isoformat(), last.isoformat()]
    summary = {
        "rows": train_df.height, "frauds": int(y.sum()), "fraud_rate": float(y.mean()),
        "period": period,
        "scenarios": {s: int(c) for s, c in train_df["scenario"].value_counts().sort("scenario").iter_rows()},
        "risk_type_frauds": {tname: int(labels[:, i].sum()) for i, tname in enumerate(RISK_TYPES)},
        "routed_models": len(plan), "models": info, "config": asdict(cfg), "params": params, "source": source or {},
    }
    created = None if record_time else period[1]
    version = write_artifact(out, state, texts, summary, metrics, thresholds, created_at=created, routing=routing)
    progress(f"wrote {out} (version {version}, {len(plan)} routed models) in {elapsed:.1f}s")
    return TrainResult(version, summary, metrics)
