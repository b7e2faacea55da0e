"""Measure ModelRegistry.score() per row for several batch sizes, and the cost of explanations.

    python -m bench.scoring [--model DIR] [--data FILE [--format kcs]]

Defaults: the bundled starter model on simulated declarations (the office it was trained for). Single-threaded, like a worker.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from portsim.starter import simulated_history
from riskmodels.data import declarations_from_frame, read_labelled
from riskmodels.serving import ModelRegistry


def _per_call(fn, min_seconds: float = 1.0) -> float:  # type: ignore[no-untyped-def]
    fn()
    calls, started = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - started) < min_seconds:
        fn()
        calls += 1
    return elapsed / calls


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, help="artifact or registry directory (default: starter)")
    parser.add_argument("--data", type=Path, help="declarations to score (default: 3000 simulated, the starter's office)")
    parser.add_argument("--format", default="auto", choices=("auto", "project", "kcs"))
    parser.add_argument("--sizes", default="1,64,1000", help="batch sizes (default 1,64,1000)")
    args = parser.parse_args(argv)

    reg = ModelRegistry.open(args.model)
    df = read_labelled(args.data, args.format) if args.data else simulated_history(3000)
    # Only rows the Declaration schema accepts can reach the worker.
    df = df.filter((df["declared_value"] > 0) & (df["net_mass_kg"] > 0) & (df["tax_rate"] <= 100))
    decls = declarations_from_frame(df.head(2000))
    print(f"model {reg.active_versions()}")
    for size in (int(s) for s in args.sizes.split(",")):
        batch = decls[:size]
        sec = _per_call(lambda batch=batch: reg.score(batch))
        print(f"score() batch {size:>5}: {sec * 1e6 / len(batch):8.1f} us/row  {sec * 1e3:8.3f} ms/batch")

    result = reg.score(decls[:1000])
    top = [int(i) for i in np.argsort(-result.scores)[:100]]
    dev = _per_call(lambda: [result.explain(i) for i in top]) / len(top)
    exact = _per_call(lambda: [result.explain(i, method="contrib") for i in top[:20]]) / 20
    group = result._groups[0]
    key = group.keys[0]
    whole = _per_call(lambda: group.artifact.boosters[key].predict(group.X, pred_contrib=True, num_threads=1)) / len(group.X)
    print(f"explain(): deviation-based {dev * 1e6:.1f} us/row; pred_contrib one row {exact * 1e6:.0f} us/row; "
          f"pred_contrib batch of {len(group.X)} {whole * 1e6:.0f} us/row")
    print("example:", result.explain(top[0]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
