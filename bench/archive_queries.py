"""The query timings of ``python -m bench archive``, in a process of their own (so that the first
call is cold: imports done, but no table opened yet). Prints one JSON object on stdout.

Arguments: ARCHIVE_DIR DECLARATIONS RUNS SEED FROM TO.
"""

from __future__ import annotations

import statistics
import sys
import time
from datetime import date
from typing import Any

import numpy as np
import orjson

from archive.queries import history, report


def _timed(fn: Any) -> tuple[float, Any]:
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def main(argv: list[str]) -> int:
    archive_dir, declarations, runs, seed = argv[0], int(argv[1]), int(argv[2]), int(argv[3])
    day_from, day_to = date.fromisoformat(argv[4]), date.fromisoformat(argv[5])
    rng = np.random.default_rng(seed + 1)
    ids = [f"D-2026-{i:08d}" for i in rng.integers(0, declarations, runs + 1)]
    cold, first = _timed(lambda: history(ids[0], archive_dir))
    if not first["declarations"] or not first["instructions"]:
        raise SystemExit(f"history({ids[0]}) found nothing: the generated archive is not what the bench expects")
    warm = [_timed(lambda i=i: history(i, archive_dir))[0] for i in ids[1:]]
    r_cold, rep = _timed(lambda: report(day_from, day_to, archive_dir=archive_dir))
    r_warm = [_timed(lambda: report(day_from, day_to, archive_dir=archive_dir))[0] for _ in range(runs)]
    out = {
        "history": {"ids": ids, "cold_s": round(cold, 4), "warm_median_s": round(statistics.median(warm), 4),
                    "warm_max_s": round(max(warm), 4), "instructions_of_first": len(first["instructions"])},
        "report": {"from": day_from.isoformat(), "to": day_to.isoformat(), "cold_s": round(r_cold, 3),
                   "warm_median_s": round(statistics.median(r_warm), 3), "warm_max_s": round(max(r_warm), 3),
                   "declarations": rep["declarations"], "instructions": rep["instructions"]},
    }
    sys.stdout.buffer.write(orjson.dumps(out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
