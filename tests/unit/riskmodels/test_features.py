"""One feature definition: identical offline/online scores, and history features that never leak."""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import polars as pl

from riskmodels.data import declarations_from_frame, read_labelled
from riskmodels.features import (
    FEATURES, HISTORY_KEYS, INDEX, build_matrix, columns_from_frame, columns_from_records,
    expanding_history, fit_state, key_values, derived,
)
from riskmodels.serving import ModelRegistry
from riskmodels.train import train_frames

from .conftest import TINY, quiet


def test_offline_and_online_scores_identical(artifact_a, synth_split) -> None:
    valid = synth_split[1]
    reg = ModelRegistry.open(artifact_a)
    offline = reg.score_frame(valid)
    decls = declarations_from_frame(valid)
    online = reg.score(decls)
    as_dicts = reg.score([d.model_dump() for d in decls])
    assert np.max(np.abs(offline.scores - online.scores)) <= 1e-9
    assert np.max(np.abs(offline.scores - as_dicts.scores)) <= 1e-9
    # Micro-batch boundaries must not matter either: one row at a time gives the same numbers.
    singles = np.array([reg.score([d]).scores[0] for d in decls[:40]])
    assert np.max(np.abs(singles - offline.scores[:40])) <= 1e-9
    assert offline.model_versions == online.model_versions


def test_parity_on_kcs_rows(tmp_path, kcs_sample) -> None:
    df = read_labelled(kcs_sample, "kcs")
    train_frames(df.head(220), None, tmp_path / "m", TINY, progress=quiet)
    reg = ModelRegistry.open(tmp_path / "m")
    valid = df.tail(81)
    # Rows the Declaration schema accepts (KCS has some zero masses/values and >100% duty rates).
    ok = valid.filter((pl.col("declared_value") > 0) & (pl.col("net_mass_kg") > 0) & (pl.col("tax_rate") <= 100))
    offline = reg.score_frame(ok).scores
    online = reg.score(declarations_from_frame(ok)).scores
    assert len(ok) > 50
    assert np.max(np.abs(offline - online)) <= 1e-9
    assert np.isfinite(reg.score_frame(valid).scores).all()  # odd rows still score offline


def _brute_force(df: pl.DataFrame, name: str) -> tuple[np.ndarray, np.ndarray]:
    cols = derived(columns_from_frame(df))
    keys = key_values(cols, HISTORY_KEYS[name])
    times = df["event_time"].to_list()
    fraud = df["fraud"].to_list()
    n = np.full(len(keys), np.nan)
    s = np.full(len(keys), np.nan)
    for i, k in enumerate(keys):
        if k is None:
            continue
        earlier = [j for j in range(len(keys)) if keys[j] == k and times[j] < times[i]]
        n[i] = len(earlier)
        s[i] = sum(fraud[j] for j in earlier)
    return n, s


def test_history_uses_only_strictly_earlier_rows(synth) -> None:
    df = synth.head(400)
    # Force ties: several rows share each timestamp (same-instant rows must not see each other).
    df = df.with_columns(pl.col("event_time").dt.truncate("1d"))
    hist = expanding_history(df)
    for name in ("importer", "office_x_importer", "seller", "hs6"):
        n, s = _brute_force(df, name)
        got_n, got_s = hist.counts[name]
        np.testing.assert_array_equal(got_n, n)
        np.testing.assert_array_equal(got_s, s)


def test_history_feature_never_sees_a_later_row(synth) -> None:
    df = synth.head(600)
    state = fit_state(df)
    before = build_matrix(columns_from_frame(df), state, expanding_history(df))
    # Flip every label from the middle on, and add future rows: earlier rows must not change.
    cut = df["event_time"][300]
    flipped = df.with_columns(
        pl.when(pl.col("event_time") >= cut).then(1 - pl.col("fraud")).otherwise(pl.col("fraud")).alias("fraud"))
    future = df.head(50).with_columns(pl.col("event_time") + timedelta(days=999), pl.lit(1, dtype=pl.Int64).alias("fraud"))
    changed = pl.concat([flipped, future])
    after = build_matrix(columns_from_frame(changed), state, expanding_history(changed))
    early = (df["event_time"] < cut).to_numpy()
    hist_cols = [INDEX[f] for f in FEATURES if f.endswith(("_fraud_rate", "_count"))]
    np.testing.assert_array_equal(before[early][:, hist_cols], after[: len(df)][early][:, hist_cols])
    # ...while later rows do see the flipped labels (the test would be vacuous otherwise).
    assert not np.array_equal(before[~early][:, hist_cols], after[: len(df)][~early][:, hist_cols])


def test_unseen_keys_get_the_prior_and_missing_keys_nan(artifact_a, synth_split) -> None:
    reg = ModelRegistry.open(artifact_a)
    art = reg._snapshot.active["general"]
    d = declarations_from_frame(synth_split[1].head(1))[0]
    new = d.model_copy(update={"enterprise_id": "NEVER-SEEN", "seller_id": None})
    X = build_matrix(columns_from_records([new]), art.state)
    assert X[0, INDEX["importer_fraud_rate"]] == art.state.prior
    assert X[0, INDEX["importer_count"]] == 0
    assert np.isnan(X[0, INDEX["seller_fraud_rate"]])
