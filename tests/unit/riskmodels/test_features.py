"""One feature definition: identical offline/online scores, history features that never leak,
amounts compared across currencies."""

from __future__ import annotations

import json
import math
from datetime import timedelta

import numpy as np
import polars as pl
import pytest

from cli.main import main as riskctl
from portsim import world
from portsim.starter import simulated_history, simulator_fx
from riskmodels.data import declarations_from_frame, read_labelled
from riskmodels.features import (
    FEATURES,
    HISTORY_KEYS,
    INDEX,
    VA_MIN_ROWS,
    FxTable,
    History,
    build_matrix,
    columns_from_frame,
    columns_from_records,
    derived,
    expanding_history,
    fit_fx,
    fit_state,
    key_values,
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


def test_offline_and_online_scores_identical_in_every_currency(tmp_path, synth_split) -> None:
    """Parity also holds where amounts are converted (given rates) or have no rate (XAU)."""
    train_frames(synth_split[0], None, tmp_path / "m", TINY, progress=quiet, fx=simulator_fx())
    reg = ModelRegistry.open(tmp_path / "m")
    valid = synth_split[1]
    assert set(valid["currency"].unique()) == set(world.CURRENCIES)
    odd = valid.head(30).with_columns(pl.lit("XAU").alias("currency"))
    for frame in (valid, odd):
        offline = reg.score_frame(frame).scores
        online = reg.score(declarations_from_frame(frame)).scores
        assert np.isfinite(offline).all()
        assert np.max(np.abs(offline - online)) <= 1e-9


# -- currencies -----------------------------------------------------------------------------------

VALUE_FEATURES = ("log_value", "log_uv_kg", "log_uv_qty", "uv_kg_dev", "uv_kg_z", "uv_qty_dev", "uv_qty_z", "value_dev")
VALUE_COLS = [INDEX[f] for f in VALUE_FEATURES]


def test_amounts_are_compared_in_the_base_currency(synth_split) -> None:
    state = fit_state(synth_split[0], simulator_fx())
    usd = synth_split[1].filter((pl.col("currency") == "USD") & pl.col("quantity").is_not_null()).row(0, named=True)
    same = [dict(usd, currency=c, declared_value=usd["declared_value"] * r) for c, r in world.FX_PER_USD.items()]
    X = build_matrix(columns_from_records(same), state)
    for row in X[1:]:  # the same amount invoiced in CNY, EUR, HKD, JPY: the same value features
        np.testing.assert_allclose(row[VALUE_COLS], X[0, VALUE_COLS], rtol=0, atol=1e-9)
    assert len({row[INDEX["currency"]] for row in X}) == len(same)  # the currency itself stays a feature
    # Without a rate the amount is not compared: value features missing, everything else intact.
    odd = build_matrix(columns_from_records([dict(usd, currency="XAU")]), state)[0]
    assert np.isnan(odd[VALUE_COLS]).all()
    others = [i for i in range(len(FEATURES)) if i not in VALUE_COLS and i != INDEX["currency"]]
    np.testing.assert_array_equal(odd[others], X[0, others])
    assert odd[INDEX["currency"]] == 0  # an unseen category


def test_training_statistics_are_in_the_base_currency(synth_split) -> None:
    fx = simulator_fx()
    rate = pl.col("currency").replace_strict(dict(fx.per_base), return_dtype=pl.Float64)
    as_usd = synth_split[0].with_columns(pl.col("declared_value") / rate, pl.lit("USD").alias("currency"))
    as_jpy = as_usd.with_columns(pl.col("declared_value") * 150.0, pl.lit("JPY").alias("currency"))
    a, b = fit_state(synth_split[0], fx), fit_state(as_jpy, fx)
    assert b.data["fx"]["base"] == "USD"
    np.testing.assert_allclose(a.hs_matrix, b.hs_matrix, rtol=1e-9, equal_nan=True)
    np.testing.assert_allclose(fit_state(as_usd, fx).hs_matrix, a.hs_matrix, rtol=1e-9, equal_nan=True)


def test_rates_are_learned_when_not_given() -> None:
    df = simulated_history(40_000, seed=3, enterprises=3000)
    fx = fit_fx(df)
    assert fx["base"] == "USD" and fx["per_base"]["USD"] == 1.0  # the most frequent currency
    for cur in ("CNY", "EUR"):
        assert fx["per_base"][cur] == pytest.approx(world.FX_PER_USD[cur], rel=0.05), cur
        assert fx["source"][cur].startswith("learned")
    # Given rates win; the currencies a table lacks are still learned against it.
    given = fit_fx(df, FxTable("USD", {"CNY": 7.0}))
    assert given["per_base"]["CNY"] == 7.0 and given["source"]["CNY"] == "given"
    assert given["per_base"]["EUR"] == fx["per_base"]["EUR"]
    # A table in another base is anchored on the most frequent currency that has a rate.
    in_cny = fit_fx(df, FxTable("CNY", {"CNY": 1.0, "USD": 1 / 7.1}))
    assert in_cny["base"] == "CNY"
    assert in_cny["per_base"]["EUR"] == pytest.approx(fx["per_base"]["EUR"] / 7.1, rel=1e-3)
    # Too few rows of a currency: no rate (its amounts will not be compared).
    assert fit_fx(df.head(1000))["per_base"].keys() == {"USD"}


def test_single_currency_data_is_left_as_it_is(kcs_sample) -> None:
    df = read_labelled(kcs_sample, "kcs")
    state = fit_state(df)
    assert state.data["fx"] == {"base": "KRW", "per_base": {"KRW": 1.0}, "source": {"KRW": "base"}}
    X = build_matrix(columns_from_frame(df), state)
    value = df["declared_value"].to_numpy()
    with np.errstate(divide="ignore"):
        expected = np.log(np.where(value > 0, value, np.nan))
    np.testing.assert_array_equal(X[:, INDEX["log_value"]], expected)  # bit for bit


def test_fx_table_validation() -> None:
    t = FxTable.from_json({"base": "USD", "per_base": {"CNY": 7.1}})
    assert t.per_base == {"CNY": 7.1, "USD": 1.0}
    for bad in ({"base": "USD", "per_base": {"CNY": 0}}, {"base": "USD", "per_base": {"USD": 2.0}},
                {"base": "USD", "per_base": {"CNY": "7"}}, {"per_base": {}}, [1, 2], {"base": "USD", "per_base": {"X": math.inf}}):
        with pytest.raises(ValueError):
            FxTable.from_json(bad)


def test_fx_file_on_the_command_line(tmp_path, synth_split, capsys) -> None:
    synth_split[0].write_parquet(tmp_path / "train.parquet")
    (tmp_path / "fx.json").write_text(json.dumps({"base": "USD", "per_base": {"CNY": 7.1, "JPY": 150}}))
    assert riskctl(["train", "--train", str(tmp_path / "train.parquet"), "--out", str(tmp_path / "m"),
                    "--rounds", "3", "--fx", str(tmp_path / "fx.json")]) == 0
    assert "units per USD: CNY 7.1 (given)" in capsys.readouterr().err
    fx = json.loads((tmp_path / "m" / "encodings.json").read_text())["fx"]
    assert fx["per_base"]["JPY"] == 150.0 and fx["source"]["JPY"] == "given"


# -- history evidence below the minimum -----------------------------------------------------------

def test_history_minimum_is_the_same_rule_in_training_and_serving(synth_split) -> None:
    train = synth_split[0]
    state = fit_state(train, history_min_rows=5, history_min_frauds=2)
    table = state.data["history"]["importer"]
    assert all(n >= 5 or s >= 2 for n, s in zip(table["n"], table["s"]))
    full = fit_state(train).data["history"]["importer"]
    dropped = [k for k, n, s in zip(full["keys"], full["n"], full["s"]) if n < 5 and s < 2]
    assert dropped and not set(dropped) & set(table["keys"])
    # Serving: a dropped key scores like an unseen one.
    row = train.filter(pl.col("enterprise_id") == dropped[0]).head(1)
    x = build_matrix(columns_from_frame(row), state)[0]
    assert x[INDEX["importer_count"]] == 0 and x[INDEX["importer_fraud_rate"]] == state.prior
    # Training: earlier evidence below the minimum counts as none; NaN (no key) stays NaN.
    n = np.array([0.0, 1.0, 4.0, 5.0, 1.0, np.nan])
    s = np.array([0.0, 0.0, 1.0, 0.0, 2.0, np.nan])
    one = train.head(len(n))
    hist = History({name: (n, s) for name in HISTORY_KEYS}, np.full(len(n), 0.02))
    X = build_matrix(columns_from_frame(one), state, hist)
    np.testing.assert_array_equal(X[:, INDEX["importer_count"]], [0, 0, 0, 5, 1, np.nan])
    assert X[1, INDEX["importer_fraud_rate"]] == X[0, INDEX["importer_fraud_rate"]]  # both "no evidence"


def test_value_added_history_uses_only_strictly_earlier_claims(synth) -> None:
    df = synth.head(3000).with_columns(pl.col("event_time").dt.truncate("5m"))  # ties: rows of one instant do not see each other
    hist = expanding_history(df)
    n, mean = hist.value_added["enterprise"]
    rows = df.select("enterprise_id", "event_time", "scenario", "imported_material_value", "value_added").rows()
    ratios = [None if imp is None else min(add / imp, 10.0) if imp > 0 else 10.0 for *_, imp, add in rows]
    checked = 0
    for i, (ent, t, *_rest) in enumerate(rows):
        if ratios[i] is None:
            continue  # no claim: its value-added features are NaN whatever the history
        earlier = [r for (e, u, *_), r in zip(rows, ratios) if e == ent and u < t and r is not None]
        assert n[i] == len(earlier)
        if earlier:
            assert mean[i] == pytest.approx(sum(earlier) / len(earlier))
            checked += 1
        else:
            assert math.isnan(mean[i])
    assert checked > 10


def test_value_added_features_compare_the_claim_with_the_history(synth_split) -> None:
    train, valid = synth_split
    state = fit_state(train, fx=simulator_fx())
    pva = valid.filter(pl.col("scenario") == "processing-value-added")
    X = build_matrix(columns_from_frame(pva), state)
    decls = declarations_from_frame(pva)
    ratio = np.array([d.value_added_ratio() for d in decls])
    np.testing.assert_allclose(X[:, INDEX["va_ratio"]], ratio)
    stats = train.filter(pl.col("scenario") == "processing-value-added").with_columns(
        (pl.col("value_added") / pl.col("imported_material_value")).clip(upper_bound=10.0).alias("r"))
    by_ent = {e: (n, m) for e, n, m in stats.group_by("enterprise_id").agg(pl.len(), pl.col("r").mean()).rows()}
    by_chapter = {c: (n, m) for c, n, m in stats.group_by(pl.col("hs_code").str.slice(0, 2)).agg(pl.len(), pl.col("r").mean()).rows()}
    chapters = 0
    for i, d in enumerate(decls):
        n, m = by_chapter.get(d.hs_code[:2], (0, None))
        if n >= VA_MIN_ROWS:
            assert X[i, INDEX["va_dev_hs2"]] == pytest.approx(ratio[i] - m, abs=1e-4)
            chapters += 1
    assert chapters > 20
    for i, d in enumerate(decls):
        n, m = by_ent.get(d.enterprise_id, (0, None))
        if n >= VA_MIN_ROWS:  # stored keys only
            assert X[i, INDEX["va_dev_enterprise"]] == pytest.approx(ratio[i] - m, abs=1e-4)
            assert X[i, INDEX["va_enterprise_rows"]] == n
        else:
            assert math.isnan(X[i, INDEX["va_dev_enterprise"]]) and X[i, INDEX["va_enterprise_rows"]] == 0
    others = build_matrix(columns_from_frame(valid.filter(pl.col("scenario") != "processing-value-added").head(50)), state)
    assert np.isnan(others[:, [INDEX[f] for f in ("va_ratio", "va_dev_enterprise", "va_dev_hs2", "va_enterprise_rows")]]).all()
