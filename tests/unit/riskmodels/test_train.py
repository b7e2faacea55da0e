"""Training: deterministic for a seed, one model per scenario with enough data, progress shown."""

from __future__ import annotations

import json
from dataclasses import replace

import polars as pl
import pytest

from portsim.history import write_history
from portsim.traffic import PortOffice
from riskmodels.data import read_labelled
from riskmodels.features import columns_from_frame
from riskmodels.serving import SCENARIOS, ModelRegistry
from riskmodels.train import train_files, train_frames

from .conftest import TINY, quiet


def test_training_is_deterministic_for_a_seed(tmp_path, synth_split) -> None:
    train, valid = synth_split
    r1 = train_frames(train, valid, tmp_path / "one", TINY, progress=quiet)
    r2 = train_frames(train, valid, tmp_path / "two", TINY, progress=quiet)
    assert r1.version == r2.version
    for f in ("model-general.txt", "encodings.json", "features.json", "thresholds.json", "training.json"):
        assert (tmp_path / "one" / f).read_bytes() == (tmp_path / "two" / f).read_bytes(), f
    r3 = train_frames(train, valid, tmp_path / "three", replace(TINY, seed=12345), progress=quiet)
    assert r3.version != r1.version


def test_scenario_models_and_progress(tmp_path, synth_split) -> None:
    lines: list[str] = []
    result = train_frames(synth_split[0], synth_split[1], tmp_path / "m", TINY, progress=lines.append)
    models = json.loads((tmp_path / "m" / "manifest.json").read_text())["models"]
    # Scenarios with enough rows and frauds get their own model; small ones are covered by the general model.
    assert set(models) == {"general", "general-trade", "zero-tariff", "processing-value-added"}  # planted value-added frauds
    assert any("[zero-tariff] training on" in line for line in lines)
    assert any("tree" in line for line in lines) and any("wrote" in line for line in lines)
    assert any("amounts in USD" in line for line in lines)
    assert result.metrics["valid"]["rows"] == synth_split[1].height
    thresholds = json.loads((tmp_path / "m" / "thresholds.json").read_text())
    assert set(thresholds) == set(models)
    summary = json.loads((tmp_path / "m" / "training.json").read_text())
    assert summary["rows"] == synth_split[0].height and summary["models"]["general"]["trees"] >= 1


def test_single_scenario_data_gets_one_general_model(tmp_path, synth_split) -> None:
    only = synth_split[0].filter(synth_split[0]["scenario"] == "general-trade")
    train_frames(only, None, tmp_path / "m", TINY, progress=quiet)
    models = json.loads((tmp_path / "m" / "manifest.json").read_text())["models"]
    assert models == {"general": "model-general.txt"}


@pytest.mark.parametrize("with_valid", [False, True])
def test_every_scenario_with_its_own_model(tmp_path, with_valid) -> None:
    """Regression: when every scenario gets its own model, no training (or validation) row is
    routed to the general model; its thresholds must not be quantiles of an empty array (a crash)."""
    office = PortOffice(seed=12, enterprises=1000)
    write_history(office, tmp_path / "train.parquet", 6400)
    write_history(office, tmp_path / "valid.parquet", 1600, first_index=6400,
                  start=read_labelled(tmp_path / "train.parquet")["event_time"].max())
    cfg = replace(TINY, min_scenario_rows=300, min_scenario_frauds=3)
    train = read_labelled(tmp_path / "train.parquet")
    stats = train.group_by("scenario").agg(pl.len().alias("n"), pl.col("fraud").sum().alias("s"))
    assert stats.height == 4 and (stats["n"] >= 300).all() and (stats["s"] >= 3).all()  # the precondition

    valid = tmp_path / "valid.parquet" if with_valid else None
    train_files(tmp_path / "train.parquet", valid, tmp_path / "m", cfg=cfg, progress=quiet)
    models = json.loads((tmp_path / "m" / "manifest.json").read_text())["models"]
    assert set(models) == {"general", *SCENARIOS}
    general = json.loads((tmp_path / "m" / "thresholds.json").read_text())["general"]
    # The general model only serves scenarios it never saw: described on all rows, and says so.
    assert "fallback model only" in general["source"]
    assert general["rows"] == (1600 if with_valid else 6400)
    assert general["source"].startswith("valid" if with_valid else "train")
    metrics = json.loads((tmp_path / "m" / "metrics.json").read_text())
    assert ("general" in metrics["valid_by_model"]) is with_valid
    # ...and it does score a scenario the artifact has no model for.
    reg = ModelRegistry.open(tmp_path / "m")
    art = reg._snapshot.active["general"]
    row = train.head(1).with_columns(pl.lit("some-new-scenario").alias("scenario"))
    scores, keys = art.score(row["scenario"].to_list(), art.features(columns_from_frame(row)))
    assert keys.tolist() == ["general"] and 0 <= scores[0] <= 1
