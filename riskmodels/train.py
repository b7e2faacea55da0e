"""Training: labelled declarations -> features -> LightGBM models -> a verified artifact.

One general model on all rows, plus one model per supervision scenario that has enough rows and
frauds of its own (the worker falls back to the general model for the others). Training history
features are time-ordered (each row sees only strictly earlier labels); the statistics stored for
scoring are learned from the whole training set.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import date
from pathlib import Path
from typing import Any

import lightgbm as lgb
import numpy as np
import polars as pl

from riskmodels.artifact import GENERAL, Artifact, write_artifact
from riskmodels.data import Format, read_labelled
from riskmodels.errors import DataError
from riskmodels.evaluate import selection_metrics
from riskmodels.features import (
    CATEGORICAL,
    FEATURES,
    FxTable,
    build_matrix,
    columns_from_frame,
    expanding_history,
    fit_state,
)

Progress = Callable[[str], None]
QUANTILES = (0.5, 0.8, 0.9, 0.95, 0.98, 0.99, 0.999)


@dataclass(frozen=True)
class TrainConfig:
    seed: int = 7
    rounds: int = 300  # upper bound; early stopping on --valid may stop sooner
    early_stopping: int = 50
    learning_rate: float = 0.1
    num_leaves: int = 63
    min_data_in_leaf: int = 20
    feature_fraction: float = 0.7
    bagging_fraction: float = 0.8
    lambda_l2: float = 5.0
    num_threads: int = 2  # fixed: LightGBM results depend on the thread count
    min_scenario_rows: int = 2000
    min_scenario_frauds: int = 50
    # History keys stored in the artifact: at least this many labelled rows or frauds (1: all keys).
    history_min_rows: int = 1
    history_min_frauds: int = 1


def lgb_params(cfg: TrainConfig) -> dict[str, Any]:
    return {
        "objective": "binary",
        "metric": "auc",
        "learning_rate": cfg.learning_rate,
        "num_leaves": cfg.num_leaves,
        "min_data_in_leaf": cfg.min_data_in_leaf,
        "feature_fraction": cfg.feature_fraction,
        "bagging_fraction": cfg.bagging_fraction,
        "bagging_freq": 1,
        "lambda_l2": cfg.lambda_l2,
        "cat_smooth": 20.0,
        "cat_l2": 10.0,
        "max_cat_to_onehot": 8,
        "seed": cfg.seed,
        "num_threads": cfg.num_threads,
        "deterministic": True,
        "force_row_wise": True,  # with deterministic=True: same trees on every run
        "verbose": -1,
    }


def stderr_progress(message: str) -> None:
    print(f"riskctl train: {message}", file=sys.stderr, flush=True)


def _model_keys(df: pl.DataFrame, cfg: TrainConfig) -> list[str]:
    """General first, then scenarios with enough rows and frauds for a model of their own."""
    stats = df.group_by("scenario").agg(pl.len().alias("rows"), pl.col("fraud").sum().alias("frauds")).sort("scenario")
    if stats.height < 2:
        return [GENERAL]
    own = [r["scenario"] for r in stats.iter_rows(named=True)
           if r["rows"] >= cfg.min_scenario_rows and cfg.min_scenario_frauds <= r["frauds"] <= r["rows"] - cfg.min_scenario_frauds]
    return [GENERAL, *own]


def _progress_callback(key: str, total: int, emit: Progress, every: int) -> Callable[[Any], None]:
    def callback(env: Any) -> None:
        it = env.iteration + 1
        if it % every == 0 or it == total:
            evals = " ".join(f"{data} {name} {value:.4f}" for data, name, value, _ in env.evaluation_result_list)
            emit(f"[{key}] tree {it}/{total} {evals}".rstrip())
    return callback


def _quantiles(scores: np.ndarray, source: str) -> dict[str, Any]:
    if len(scores) == 0:
        raise ValueError("no scores to take quantiles of")
    return {
        "source": source,
        "rows": len(scores),
        "quantiles": {str(q): float(np.quantile(scores, q)) for q in QUANTILES},
        # Score at or above which a declaration is in the top n% of this population.
        "top_percent": {str(p): float(np.quantile(scores, 1 - p / 100)) for p in (1, 2, 5, 10)},
    }


@dataclass(frozen=True)
class _Holdout:
    """The validation rows: the frame, its feature matrix, labels and scenarios."""

    frame: pl.DataFrame
    X: np.ndarray
    y: np.ndarray
    scenarios: np.ndarray


@dataclass
class TrainResult:
    version: str
    summary: dict[str, Any]
    metrics: dict[str, Any]


def train_frames(
    train_df: pl.DataFrame,
    valid_df: pl.DataFrame | None,
    out: Path,
    cfg: TrainConfig = TrainConfig(),
    progress: Progress = stderr_progress,
    source: dict[str, Any] | None = None,
    record_time: bool = True,
    fx: FxTable | None = None,
) -> TrainResult:
    """Train and write an artifact. ``record_time=False`` leaves wall-clock facts out of the files
    (the bundled starter artifact must be byte-reproducible). ``fx``: exchange rates to use (others
    are learned from the training data, see :func:`riskmodels.features.fit_fx`)."""
    started = time.perf_counter()
    if train_df["fraud"].n_unique() < 2:
        raise DataError("training data needs both fraud and non-fraud rows")
    progress(f"{train_df.height} training rows, {int(train_df['fraud'].sum())} frauds; computing features")
    state = fit_state(train_df, fx, cfg.history_min_rows, cfg.history_min_frauds)
    fx_doc = state.data["fx"]
    progress(f"amounts in {fx_doc['base']}; units per {fx_doc['base']}: "
             + ", ".join(f"{c} {r:g} ({fx_doc['source'][c]})" for c, r in fx_doc["per_base"].items()))
    X = build_matrix(columns_from_frame(train_df), state, expanding_history(train_df))
    y = train_df["fraud"].to_numpy().astype(np.float64)
    scen = train_df["scenario"].to_numpy()
    hold = None
    if valid_df is not None:
        hold = _Holdout(
            valid_df,
            build_matrix(columns_from_frame(valid_df), state),  # the serving path: whole-train statistics
            valid_df["fraud"].to_numpy().astype(np.float64),
            valid_df["scenario"].to_numpy(),
        )
    progress(f"{len(FEATURES)} features in {time.perf_counter() - started:.1f}s")

    params = lgb_params(cfg)
    keys = _model_keys(train_df, cfg)
    texts: dict[str, str] = {}
    model_info: dict[str, Any] = {}
    for key in keys:
        rows = np.ones(len(y), bool) if key == GENERAL else scen == key
        dtrain = lgb.Dataset(X[rows], y[rows], feature_name=list(FEATURES), categorical_feature=list(CATEGORICAL),
                             free_raw_data=True)
        valid_sets, callbacks = [], [_progress_callback(key, cfg.rounds, progress, max(cfg.rounds // 6, 10))]
        if hold is not None:
            vrows = np.ones(len(hold.y), bool) if key == GENERAL else hold.scenarios == key
            if vrows.sum() >= 50 and 0 < hold.y[vrows].sum() < vrows.sum():
                valid_sets = [lgb.Dataset(hold.X[vrows], hold.y[vrows], reference=dtrain)]
                callbacks.append(lgb.early_stopping(cfg.early_stopping, verbose=False))
        progress(f"[{key}] training on {int(rows.sum())} rows ({int(y[rows].sum())} frauds)")
        booster = lgb.train(params, dtrain, num_boost_round=cfg.rounds, valid_sets=valid_sets,
                            valid_names=["valid"] * len(valid_sets), callbacks=callbacks)
        best = booster.best_iteration if valid_sets and booster.best_iteration > 0 else booster.current_iteration()
        texts[key] = booster.model_to_string(num_iteration=best)
        model_info[key] = {"rows": int(rows.sum()), "frauds": int(y[rows].sum()), "trees": int(best)}

    # Score through the same routing the worker uses: models rebuilt from their text form.
    art = Artifact(version="unsaved", state=state, boosters={k: lgb.Booster(model_str=t) for k, t in texts.items()})
    thresholds: dict[str, Any] = {}
    metrics: dict[str, Any] = {"valid": None, "valid_by_model": {}}
    if hold is not None:
        valid_scores, valid_keys = art.score(hold.frame["scenario"].to_list(), hold.X)
        valid_rev = hold.frame["duty_recoverable"].to_numpy()
        metrics["valid"] = selection_metrics(valid_scores, hold.y, valid_rev)
    train_scores, train_keys = art.score(train_df["scenario"].to_list(), X)
    for key in keys:
        if hold is not None and (valid_keys == key).sum() >= 100:
            sel = valid_keys == key
            thresholds[key] = _quantiles(valid_scores[sel], "valid")
            metrics["valid_by_model"][key] = selection_metrics(valid_scores[sel], hold.y[sel], valid_rev[sel])
        elif (train_keys == key).any():
            thresholds[key] = _quantiles(train_scores[train_keys == key], "train (in-sample)")
        else:
            # Every training scenario has a model of its own: the general model only scores
            # scenarios it has never seen, so describe it on all rows (what it would face).
            if hold is not None and len(hold.y) >= 100:
                general_valid = art.predict(key, hold.X)
                thresholds[key] = _quantiles(general_valid, "valid (all rows; fallback model only)")
                metrics["valid_by_model"][key] = selection_metrics(general_valid, hold.y, valid_rev)
            else:
                thresholds[key] = _quantiles(art.predict(key, X), "train (in-sample, all rows; fallback model only)")
    elapsed = time.perf_counter() - started
    if record_time:
        metrics["training_seconds"] = round(elapsed, 2)

    t = train_df["event_time"]
    first, last = t.min(), t.max()
    assert isinstance(first, date) and isinstance(last, date)  # a Datetime column (riskmodels.data), not empty
    period = [first.isoformat(), last.isoformat()]
    summary = {
        "rows": train_df.height,
        "frauds": int(y.sum()),
        "fraud_rate": float(y.mean()),
        "period": period,
        "scenarios": {s: int(c) for s, c in train_df["scenario"].value_counts().sort("scenario").iter_rows()},
        "valid_rows": None if valid_df is None else valid_df.height,
        "models": model_info,
        "config": asdict(cfg),
        "params": params,
        "source": source or {},
    }
    created = None if record_time else period[1]
    version = write_artifact(out, state, texts, summary, metrics, thresholds, created_at=created)
    progress(f"wrote {out} (version {version}) in {elapsed:.1f}s")
    return TrainResult(version, summary, metrics)


def train_files(
    train: Path, valid: Path | None, out: Path, fmt: Format = "auto", cfg: TrainConfig = TrainConfig(),
    progress: Progress = stderr_progress, fx: FxTable | None = None,
) -> TrainResult:
    progress(f"reading {train}")
    train_df = read_labelled(train, fmt)
    valid_df = None
    if valid is not None:
        progress(f"reading {valid}")
        valid_df = read_labelled(valid, fmt)
    source = {"train": Path(train).name, "valid": Path(valid).name if valid else None, "format": fmt}
    return train_frames(train_df, valid_df, out, cfg, progress, source, fx=fx)
