"""Small, fast fixtures: a simulated office history (portsim) and tiny trained artifacts."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from portsim.starter import simulated_history
from riskmodels.train import TrainConfig, train_frames
from tests.unit.factories import quiet

DATA = Path(__file__).parent / "data"
# Tiny models: enough to exercise scenario routing (the big scenarios get models of their own, the
# small ones fall back to the general model) and history pruning, fast enough for unit tests.
TINY = TrainConfig(rounds=15, num_leaves=7, learning_rate=0.2, min_data_in_leaf=20,
                   min_scenario_rows=300, min_scenario_frauds=12, history_min_rows=2, history_min_frauds=1,
                   num_threads=1)  # one thread: no OpenMP spinning when the machine is busy
SYNTH_ROWS, SYNTH_TRAIN = 8000, 6400


@pytest.fixture(scope="session")
def synth() -> pl.DataFrame:
    """8,000 declarations of a small simulated office (1,000 enterprises), in time order."""
    return simulated_history(SYNTH_ROWS, seed=13, enterprises=1000)


@pytest.fixture(scope="session")
def synth_split(synth: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
    return synth.head(SYNTH_TRAIN), synth.tail(SYNTH_ROWS - SYNTH_TRAIN)


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


@pytest.fixture(scope="session")
def routed_artifact(tmp_path_factory: pytest.TempPathFactory, synth_split) -> Path:
    """A routed artifact of 6 tiny models (tests/unit/riskmodels/plans.py) plus the general fallback."""
    from riskmodels.routed import train_routed
    from riskmodels.routing import parse_routing
    from tests.unit.riskmodels.plans import small_plan

    out = tmp_path_factory.mktemp("art") / "routed"
    cfg = TrainConfig(**{**TINY.__dict__, "rounds": 5, "min_data_in_leaf": 10})
    train_routed(synth_split[0], parse_routing(small_plan()), out, cfg, progress=quiet)
    return out
