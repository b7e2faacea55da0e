"""Small, fast fixtures: generated project-format data and tiny trained artifacts."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from riskmodels.starter_data import generate
from riskmodels.train import TrainConfig, train_frames

DATA = Path(__file__).parent / "data"
# Tiny models: enough to exercise scenario routing, fast enough for unit tests.
TINY = TrainConfig(rounds=15, num_leaves=7, learning_rate=0.2, min_data_in_leaf=20,
                   min_scenario_rows=300, min_scenario_frauds=30)


def quiet(_: str) -> None:
    pass


@pytest.fixture(scope="session")
def synth() -> pl.DataFrame:
    return generate(rows=1500, seed=11)


@pytest.fixture(scope="session")
def synth_split(synth: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
    return synth.head(1200), synth.tail(300)


@pytest.fixture(scope="session")
def artifact_a(tmp_path_factory: pytest.TempPathFactory, synth_split) -> Path:
    out = tmp_path_factory.mktemp("art") / "a"
    train_frames(synth_split[0], synth_split[1], out, TINY, progress=quiet)
    return out


@pytest.fixture(scope="session")
def artifact_b(tmp_path_factory: pytest.TempPathFactory, synth_split) -> Path:
    """A different model (other seed) on the same features: for swaps and shadows."""
    out = tmp_path_factory.mktemp("art") / "b"
    train_frames(synth_split[0], None, out, TrainConfig(**{**TINY.__dict__, "seed": 99, "rounds": 10}), progress=quiet)
    return out


@pytest.fixture(scope="session")
def kcs_sample() -> Path:
    return DATA / "kcs_sample.csv"
