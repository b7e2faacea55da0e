"""Training: deterministic for a seed, one model per scenario with enough data, progress shown."""

from __future__ import annotations

import json
from dataclasses import replace

from riskmodels.train import train_frames

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
    # Scenarios with enough rows get their own model; small ones are covered by the general model.
    assert set(models) == {"general", "general-trade", "zero-tariff"}
    assert any("[zero-tariff] training on" in line for line in lines)
    assert any("tree" in line for line in lines) and any("wrote" in line for line in lines)
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
