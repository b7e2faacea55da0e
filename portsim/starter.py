"""The bundled starter artifact (``riskmodels/starter/``), trained on the port simulator's history.

The demo feeds the worker the simulator's traffic (``PortOffice(seed=7, enterprises=70_000)``), so
the starter learns from that same office's past: its enterprises, declarants, sellers, goods and
currencies. Rebuild it byte-identically with::

    python -m portsim.starter --out riskmodels/starter [--evaluate 300000]

Training history: ``ROWS`` declarations of the office from index ``TRAIN_FIRST_INDEX`` on, starting
``TRAIN_START`` (before the simulator's default history, which starts 2025-09-01 at index 0 and is
what the demo streams); the last ``VALID_SHARE`` of it (in time) is held out for early stopping,
thresholds and metrics. ``--evaluate N`` also scores N declarations of a later period (index 0 on,
from 2025-09-01: ``riskctl simulate --history`` with its defaults) and prints the metrics.

The artifact is kept small (see ``STARTER_CONFIG``): one general model of at most 130 trees of 10
leaves, and history statistics only for keys with at least ``history_min_rows`` labelled
declarations or ``history_min_frauds`` frauds.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import polars as pl

from riskmodels.data import read_labelled
from riskmodels.features import FxTable
from riskmodels.train import TrainConfig, TrainResult, train_frames

SEED = 7  # the demo's office (devkit/demo.py and riskctl simulate defaults)
ENTERPRISES = 70_000
ROWS = 400_000
TRAIN_FIRST_INDEX = 1_000_000_000  # ids D7-1000000000...: never the ones the demo streams (index 0 on)
TRAIN_START = datetime(2025, 8, 1, tzinfo=UTC)
VALID_SHARE = 0.15
EVAL_FIRST_INDEX = 0
EVAL_START = datetime(2025, 9, 1, tzinfo=UTC)
STARTER_CONFIG = TrainConfig(
    rounds=130, early_stopping=30, learning_rate=0.12, num_leaves=10, min_data_in_leaf=100,
    min_scenario_rows=10**9,  # one general model: the scenario is a feature; trees are the size budget
    history_min_rows=100, history_min_frauds=3,  # ~6,100 history keys instead of ~493,000
)


def simulator_fx() -> FxTable:
    """The simulator's exchange rates (its amounts are US dollars converted at these rates)."""
    from portsim import world

    return FxTable("USD", dict(world.FX_PER_USD))


def simulated_history(
    rows: int, seed: int = SEED, enterprises: int = ENTERPRISES, first_index: int = 0,
    start: datetime | None = None,
) -> pl.DataFrame:
    """``rows`` labelled declarations of a simulated office, as ``riskctl simulate --history`` writes
    them, read back as a project-format frame (same arguments, same frame)."""
    from portsim.history import write_history
    from portsim.traffic import PortOffice

    office = PortOffice(seed=seed, enterprises=enterprises)
    with tempfile.TemporaryDirectory(prefix="riskmodels-sim-") as tmp:
        path = Path(tmp) / "history.parquet"
        write_history(office, path, rows, start=start, first_index=first_index)
        return read_labelled(path, "project")


def _progress(message: str) -> None:
    print(f"starter: {message}", file=sys.stderr, flush=True)


def build_starter(
    out: Path, rows: int = ROWS, cfg: TrainConfig = STARTER_CONFIG, enterprises: int = ENTERPRISES,
    progress: Any = _progress,
) -> TrainResult:
    """Train the starter artifact on the office's history: earlier (1 - VALID_SHARE) trains, the rest validates."""
    progress(f"simulating {rows} declarations (seed {SEED}, {enterprises} enterprises, from index {TRAIN_FIRST_INDEX})")
    df = simulated_history(rows, SEED, enterprises, TRAIN_FIRST_INDEX, TRAIN_START)
    cut = rows - int(rows * VALID_SHARE)
    source = {
        "train": f"portsim PortOffice(seed={SEED}, enterprises={enterprises}) history: {rows} declarations "
                 f"from index {TRAIN_FIRST_INDEX}, start {TRAIN_START.isoformat()}; first {cut} train, rest valid",
        "format": "project",
        "fx": "portsim.world.FX_PER_USD",
    }
    return train_frames(df.head(cut), df.tail(rows - cut), out, cfg, progress=progress, source=source,
                        record_time=False, fx=simulator_fx())


def evaluate_later(model: Path, rows: int, enterprises: int = ENTERPRISES) -> dict[str, Any]:
    """Metrics of ``model`` on a later period of the office (index 0 on, from 2025-09-01)."""
    from riskmodels.evaluate import selection_metrics
    from riskmodels.serving import ModelRegistry

    df = simulated_history(rows, SEED, enterprises, EVAL_FIRST_INDEX, EVAL_START)
    scores = ModelRegistry.open(model).score_frame(df).scores
    return selection_metrics(scores, df["fraud"].to_numpy(), df["duty_recoverable"].to_numpy())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m portsim.starter",
                                     description="Rebuild the bundled starter model from the port simulator's history.")
    parser.add_argument("--out", type=Path, required=True, help="artifact directory to (re)write, e.g. riskmodels/starter")
    parser.add_argument("--rows", type=int, default=ROWS, help=f"simulated training declarations (default {ROWS})")
    parser.add_argument("--evaluate", type=int, metavar="N", help="also evaluate on N declarations of a later period")
    args = parser.parse_args(argv)
    result = build_starter(args.out, args.rows)
    print(result.version)
    if args.evaluate:
        print(json.dumps({"later_period": evaluate_later(args.out, args.evaluate)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
