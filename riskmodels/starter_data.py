"""Deterministic synthetic declarations (project format) and the bundled starter artifact.

The starter model lets the demo run without training. Rebuild it reproducibly with::

    python -m riskmodels.starter_data --out riskmodels/starter

Fraud signal planted in the data: undervaluation against the HS code's usual unit value, a few
risky origins, repeat-offender importers, and somewhat riskier zero-tariff declarations.
"""

from __future__ import annotations

import argparse
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import polars as pl

from riskmodels.data import LABELS, PROJECT_COLUMNS
from riskmodels.train import TrainConfig, TrainResult, train_frames

PORTS = ("CNHAK-SEA", "CNHAK-AIR", "CNYPU-SEA", "CNSYX-SEA", "CNSYX-AIR", "CNBSP-SEA", "CNQLN-SEA",
         "CNHAK-POST", "CNXYG-SEA", "CNLDG-SEA")
PORT_MODE = {"SEA": "sea", "AIR": "air", "POST": "post"}
SCENARIOS = ("general-trade", "zero-tariff", "processing-value-added", "duty-free-shopping")
SCENARIO_P = (0.5, 0.3, 0.12, 0.08)
SCENARIO_RISK = {"general-trade": 0.0, "zero-tariff": 0.6, "processing-value-added": 0.3, "duty-free-shopping": 0.2}
ORIGINS = ("US", "DE", "JP", "KR", "FR", "IT", "GB", "AU", "VN", "TH", "MY", "ID", "IN", "AE", "TR")
RISKY_ORIGINS = frozenset({"AE", "TR", "ID"})
START = datetime(2025, 1, 1, tzinfo=timezone.utc)
STARTER_CONFIG = TrainConfig(rounds=40, num_leaves=15, learning_rate=0.15, min_data_in_leaf=30,
                             min_scenario_rows=1500, min_scenario_frauds=50)


def generate(rows: int = 6000, seed: int = 20250101) -> pl.DataFrame:
    """A labelled project-format frame, identical for the same (rows, seed)."""
    rng = np.random.default_rng(seed)
    n_ent, n_hs = 150, 60
    hs_codes = sorted({f"{rng.integers(1, 98):02d}{rng.integers(1, 99):02d}{rng.integers(10, 99):02d}" for _ in range(n_hs * 2)})[:n_hs]
    hs_uv = rng.normal(4.0, 1.5, n_hs)  # typical log(value per kg)
    hs_tax = rng.choice([0.0, 3.0, 5.0, 8.0, 10.0, 15.0, 20.0], n_hs)
    # Each importer has a home port, a few goods, one or two declarants and a few sellers.
    ent_risky = rng.random(n_ent) < 0.08
    ent_port = rng.integers(0, len(PORTS), n_ent)
    ent_hs = [rng.choice(n_hs, 3, replace=False) for _ in range(n_ent)]
    ent_decl = [rng.choice(40, 2, replace=False) for _ in range(n_ent)]
    ent_sellers = [rng.choice(300, 3, replace=False) for _ in range(n_ent)]
    ent_origin = [rng.choice(len(ORIGINS), 2, replace=False) for _ in range(n_ent)]

    ent = rng.integers(0, n_ent, rows)
    pick = rng.integers(0, 3, rows)
    hs = np.array([ent_hs[e][p] for e, p in zip(ent, pick)])
    port = np.where(rng.random(rows) < 0.85, ent_port[ent], rng.integers(0, len(PORTS), rows))
    origin = np.array([ORIGINS[ent_origin[e][int(r < 0.7)]] for e, r in zip(ent, rng.random(rows))])
    departure = np.where(rng.random(rows) < 0.8, origin, rng.choice(np.array(ORIGINS), rows))
    scenario = rng.choice(np.array(SCENARIOS), rows, p=SCENARIO_P)
    mass = np.round(np.exp(rng.normal(5.0, 1.5, rows)), 1) + 0.1
    true_value = mass * np.exp(hs_uv[hs] + rng.normal(0, 0.5, rows))
    unit_price = np.exp(rng.normal(3.0, 1.0, n_hs))
    quantity = np.maximum(1.0, np.round(true_value / unit_price[hs]))

    logit = (-2.4 + 2.3 * ent_risky[ent] + 1.1 * np.isin(origin, list(RISKY_ORIGINS))
             + np.array([SCENARIO_RISK[s] for s in scenario]) + 0.5 * (origin != departure) + rng.normal(0, 0.5, rows))
    fraud = rng.random(rows) < 1 / (1 + np.exp(-logit))
    undervalued = fraud & (rng.random(rows) < 0.6)
    declared = np.where(undervalued, true_value * rng.uniform(0.2, 0.7, rows), true_value)
    tax = hs_tax[hs]
    duty = np.where(undervalued, (true_value - declared) * tax / 100, np.where(fraud, true_value * 0.03, 0.0))
    seconds = np.sort(rng.uniform(0, 180 * 86400, rows))

    ids = lambda prefix, values: [f"{prefix}-{v:04d}" for v in values]  # noqa: E731
    has_seller = rng.random(rows) < 0.9
    frame = pl.DataFrame({
        "schema_version": [1] * rows,
        "revision": [1] * rows,
        "declaration_id": [f"SD{seed % 10000:04d}-{i:06d}" for i in range(rows)],
        "port": [PORTS[p] for p in port],
        "enterprise_id": ids("ENT", ent),
        "declarant_id": ids("DCL", [ent_decl[e][int(r < 0.3)] for e, r in zip(ent, rng.random(rows))]),
        "seller_id": [f"SEL-{ent_sellers[e][k]:04d}" if s else None
                      for e, k, s in zip(ent, rng.integers(0, 3, rows), has_seller)],
        "scenario": scenario.tolist(),
        "hs_code": [hs_codes[h] for h in hs],
        "origin_country": origin.tolist(),
        "departure_country": departure.tolist(),
        "transport_mode": [PORT_MODE[PORTS[p].split("-")[1]] for p in port],
        "currency": ["CNY"] * rows,
        "procedure_code": rng.choice(["A", "B", "C"], rows, p=[0.6, 0.3, 0.1]).tolist(),
        "import_type": rng.choice(["11", "21", "31"], rows).tolist(),
        "import_use": rng.choice(["10", "20"], rows).tolist(),
        "payment_type": rng.choice(["11", "43"], rows).tolist(),
        "tax_type": ["A"] * rows,
        "origin_indicator": rng.choice(["Y", "N"], rows).tolist(),
        "courier_id": [None] * rows,
        "declared_value": np.round(declared, 2),
        "quantity": quantity,
        "net_mass_kg": mass,
        "tax_rate": tax,
        "event_time": [START + timedelta(seconds=float(s)) for s in np.round(seconds)],
        "fraud": fraud.astype(np.int64),
        "critical_fraud": np.where(fraud & (rng.random(rows) < 0.05), 2, fraud.astype(np.int64)),
        "duty_recoverable": np.round(duty, 2),
    }, schema_overrides={"courier_id": pl.String, "seller_id": pl.String})
    return frame.with_columns(pl.col("event_time").dt.cast_time_unit("us")).select([*PROJECT_COLUMNS, *LABELS])


def build_starter(out: Path, rows: int = 6000, seed: int = 20250101) -> TrainResult:
    """Train the starter artifact on generated data: the first 80% in time, validated on the rest."""
    df = generate(rows, seed)
    cut = int(rows * 0.8)
    return train_frames(df.head(cut), df.tail(rows - cut), out, STARTER_CONFIG,
                        progress=lambda m: print(f"starter: {m}", file=sys.stderr),
                        source={"train": f"starter_data.generate(rows={rows}, seed={seed})", "format": "project"},
                        record_time=False)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m riskmodels.starter_data",
                                     description="Generate synthetic labelled declarations and rebuild the starter model.")
    parser.add_argument("--out", type=Path, required=True, help="artifact directory to (re)write, e.g. riskmodels/starter")
    parser.add_argument("--rows", type=int, default=6000, help="generated declarations (default 6000)")
    parser.add_argument("--seed", type=int, default=20250101, help="generator seed (default 20250101)")
    parser.add_argument("--data-out", type=Path, help="also write the generated data here (.parquet or .csv)")
    args = parser.parse_args(argv)
    if args.data_out:
        df = generate(args.rows, args.seed)
        df.write_parquet(args.data_out) if args.data_out.suffix == ".parquet" else df.write_csv(args.data_out)
    result = build_starter(args.out, args.rows, args.seed)
    print(result.version)
    return 0


if __name__ == "__main__":
    sys.exit(main())
