"""The decision handler's CPU per micro-batch, in a warm loop and with the caches flushed first.

    python -m bench.handler [--sizes 1,8,27,500] [--per-record 3] [--store memory|rocksdb] [--out FILE]

A worker at moderate load decides a small micro-batch every few milliseconds and runs Faust,
aiokafka and the event loop in between, so each micro-batch starts with little of the handler's
code and data left in the CPU caches. This runs the handler the worker runs (through
``streams.testing.TopologyDriver``: parsing, scoring, the policy, table writes) on fresh simulated
declarations in gateway batch records of ``--per-record``, no broker, and times each micro-batch's
thread CPU two ways: back to back (warm), and after streaming ``--evict-mb`` of memory through the
caches (cold). The cold/warm ratio says how much of a micro-batch's cost at moderate load is cache
misses rather than work (docs/benchmark.md, "Cold caches").
"""

from __future__ import annotations

import argparse
import gc
import itertools
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from bench.common import Dataset, log, machine
from clients import topics
from common.settings import Settings
from decision.services import Services
from streams.testing import TopologyDriver
from streams.worker import tune_gc

Records = list[tuple[str, bytes, dict[str, Any]]]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.handler", description=__doc__.splitlines()[0])
    p.add_argument("--sizes", default="1,8,27,500",
                   help="declarations per micro-batch, comma-separated (default 1,8,27,500: one, 1,000/s and 3,000/s "
                        "as a worker sees them, and a backlog)")
    p.add_argument("--per-record", type=int, default=3, help="declarations per gateway batch record (default 3)")
    p.add_argument("--batches", type=int, default=200, help="micro-batches timed per size and way (default 200; "
                   "fewer for large sizes, at most 20,000 declarations)")
    p.add_argument("--evict-mb", type=int, default=64, help="memory streamed through the caches before a cold "
                   "micro-batch (default 64: more than this machine's last-level cache)")
    p.add_argument("--store", choices=("memory", "rocksdb"), default="rocksdb", help="table store (default rocksdb, as a worker)")
    p.add_argument("--warmup", type=int, default=50, help="micro-batches of 8 decided first, not timed (default 50)")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--out", type=Path, help="write the results as JSON here")
    args = p.parse_args(argv)
    try:
        args.size_list = [int(s) for s in args.sizes.split(",")]
    except ValueError:
        p.error(f"--sizes: comma-separated whole numbers, not {args.sizes!r}")
    if not args.size_list or min(args.size_list) < 1:
        p.error("--sizes: each size at least 1")
    if args.warmup < 0:
        p.error("--warmup: not negative")
    for name in ("per_record", "batches", "evict_mb"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')}: at least 1")
    return args


class Declarations:
    """Fresh simulated declarations (the benchmark's ``Dataset``, never two with the same id: a
    repeated one is not decided again) in gateway batch records."""

    def __init__(self, seed: int) -> None:
        self.data = Dataset.generate(seed, enterprises=5000, count=0)
        self.batch_ids = itertools.count()

    def micro_batch(self, n: int, per_record: int) -> Records:
        decls = self.data.more(n)
        out: Records = []
        for i in range(0, n, per_record):
            bid = f"HB-{next(self.batch_ids)}"
            out.append((topics.DECLARATION_BATCHES, bid.encode(),
                        {"schema_version": 1, "batch_id": bid, "gateway": "BENCH-GW", "declarations": decls[i:i + per_record]}))
        return out


def timed(driver: TopologyDriver, batches: list[Records], evict: np.ndarray | None) -> float:
    """Mean thread CPU seconds per micro-batch (each flushed from the caches first with ``evict``),
    the collector off while it runs, as in the worker (``Topology._run_batch``)."""
    total = 0.0
    for records in batches:
        if evict is not None:
            evict += 1  # reads and writes every cache line of it
        gc.disable()
        started = time.thread_time()
        try:
            driver.send_together(records, partition=0)
        finally:
            total += time.thread_time() - started
            gc.enable()
        driver.outputs.clear()
    return total / len(batches)


def run(args: argparse.Namespace, data_dir: Path) -> dict[str, Any]:
    settings = Settings(app_id="bench-handler", partitions=1, takeover_grace_s=0, table_store=args.store, data_dir=data_dir)
    driver = TopologyDriver(Services.from_settings(settings), settings)
    source = Declarations(args.seed)
    evict = np.zeros(args.evict_mb << 17, dtype=np.int64)  # 8 bytes each
    for _ in range(args.warmup):  # first-call set-up: imports, caches, the model's first predictions
        driver.send_together(source.micro_batch(8, args.per_record), partition=0)
    driver.outputs.clear()
    threshold = gc.get_threshold()
    tune_gc(settings.gc_gen0_threshold)  # as the worker does once it has loaded everything
    try:
        results = []
        for n in args.size_list:
            count = max(5, min(args.batches, 20_000 // n))
            row: dict[str, Any] = {"declarations": n, "records": -(-n // args.per_record), "batches": count}
            for way, flush in (("warm", None), ("cold", evict)):
                per_batch = timed(driver, [source.micro_batch(n, args.per_record) for _ in range(count)], flush)
                row[f"{way}_us_per_batch"] = round(per_batch * 1e6, 1)
                row[f"{way}_us_per_declaration"] = round(per_batch * 1e6 / n, 1)
            row["cold_over_warm"] = round(row["cold_us_per_batch"] / row["warm_us_per_batch"], 2)
            log(f"{n:>4} declarations ({row['records']} records): warm {row['warm_us_per_batch']:8.0f} µs, "
                f"cold {row['cold_us_per_batch']:8.0f} µs per micro-batch ({row['cold_over_warm']}x); "
                f"{row['warm_us_per_declaration']:.0f} / {row['cold_us_per_declaration']:.0f} µs per declaration")
            results.append(row)
    finally:  # the process's own collector settings back (a test runs this in-process)
        gc.unfreeze()
        gc.set_threshold(*threshold)
    dead = len(driver.dead_letters())
    if dead:
        raise SystemExit(f"bench.handler: {dead} dead letters: the simulated records should all be decided")
    return {"machine": machine(), "config": {"sizes": args.size_list, "per_record": args.per_record, "evict_mb": args.evict_mb,
                       "store": args.store, "seed": args.seed, "warmup": args.warmup},
            "results": results}


def iter_rows(results: dict[str, Any]) -> Iterator[str]:
    yield "| declarations | warm µs/batch | cold µs/batch | cold/warm | warm µs/decl. | cold µs/decl. |"
    yield "| --- | --- | --- | --- | --- | --- |"
    for r in results["results"]:
        yield (f"| {r['declarations']} | {r['warm_us_per_batch']:.0f} | {r['cold_us_per_batch']:.0f} | {r['cold_over_warm']} "
               f"| {r['warm_us_per_declaration']:.0f} | {r['cold_us_per_declaration']:.0f} |")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-handler-") as tmp:
        results = run(args, Path(tmp))
    print("\n".join(iter_rows(results)))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_bytes(orjson.dumps(results, option=orjson.OPT_INDENT_2) + b"\n")
        log(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
