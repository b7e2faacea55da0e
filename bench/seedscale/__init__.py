"""``python -m bench seed-scale``: the office's reference volumes, each beside the same run's small case.

Sections, each in its own module and each run on fresh brokers of its own:

- ``credit_reload`` (bench/seedscale/credit.py): a bulk reload of 3.21 million credit entries for
  70,000 enterprises from 20 agencies, folded by one worker while declarations are offered at
  1,000/s; the reload's duration and the declarations' p99 during it.
- ``risk_lists`` (bench/seedscale/risklists.py): 147 risk characteristic lists of realistic sizes
  (about 300,000 entries); decision throughput with them against throughput without them.
- ``models`` (bench/seedscale/models.py): 93 routed models against one; throughput and memory.
- ``headroom`` (bench/seedscale/headroom.py): latency and worker CPU per declaration at moderate
  loads against the raw client's ceiling in the same run.

``--only`` runs a subset; the sections not run keep their previous figures in ``--out``, so one
section can be re-measured without repeating the others.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from bench.common import BenchError, finish, log, machine
from bench.procs import REPO_ROOT

# section name -> module under bench.seedscale; each module has ``add_arguments(parser)`` (its own
# options, prefixed with its name) and ``run(ctx: Context) -> dict`` (its figures).
SECTIONS: dict[str, str] = {
    "risk_lists": "risklists",
    "headroom": "headroom",
    "models": "models",
    "credit_reload": "credit",
}


@dataclass(frozen=True)
class Context:
    """What a section gets: the parsed options, a work directory of its own, the run's seed."""

    args: argparse.Namespace
    workdir: Path

    @property
    def quick(self) -> bool:
        return bool(self.args.quick)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench seed-scale", description=__doc__.splitlines()[0],
                                epilog="Progress goes to stderr; the table to stdout; results to --out. Exit status 1 if any "
                                       "section failed (its entry in the JSON holds the error).")
    p.add_argument("--quick", action="store_true", help="small volumes and short loads: checks that every section works")
    p.add_argument("--only", default=None, help=f"comma-separated subset of the sections ({', '.join(SECTIONS) or 'none yet'})")
    p.add_argument("--broker", choices=("tansu", "kafka"), default="kafka",
                   help="Apache Kafka (default: latency is the broker's on the embedded one) or embedded Tansu")
    p.add_argument("--seed", type=int, default=7, help="simulator seed (default 7)")
    p.add_argument("--run-timeout", type=float, default=600.0, help="seconds any one wait may take before a section fails")
    p.add_argument("--out", type=Path, default=REPO_ROOT / "bench" / "results" / "seed-scale.json", help="result file")
    p.add_argument("--keep", action="store_true", help="keep the work directory (worker logs) even on success")
    for name, module in SECTIONS.items():
        _module(module).add_arguments(p.add_argument_group(name))
    args = p.parse_args(argv)
    only = args.only.split(",") if args.only else list(SECTIONS)
    unknown = set(only) - set(SECTIONS)
    if unknown:
        p.error(f"--only: unknown section(s) {', '.join(sorted(unknown))}")
    args.sections = only
    return args


def _module(name: str) -> Any:
    return importlib.import_module(f"bench.seedscale.{name}")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.monotonic()
    previous: dict[str, Any] = {}
    if args.out.exists():
        try:
            previous = orjson.loads(args.out.read_bytes())
        except orjson.JSONDecodeError:
            log(f"{args.out} is not JSON: starting afresh")
    results: dict[str, Any] = {name: previous[name] for name in SECTIONS if name in previous and name not in args.sections}
    results["machine"] = machine()
    workdir = Path(tempfile.mkdtemp(prefix="bench-seed-scale-"))
    failed = False
    for name in args.sections:
        log(f"{name}: starting")
        section_dir = workdir / name
        section_dir.mkdir()
        try:
            results[name] = _module(SECTIONS[name]).run(Context(args, section_dir))
            results[name]["measured_at"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        except Exception as exc:  # noqa: BLE001 - one failed section must not hide the others
            failed = True
            log(f"{name} FAILED: {exc}")
            if not isinstance(exc, BenchError):
                traceback.print_exc(file=sys.stderr)
            results[name] = {"error": str(exc)}
    results["config"] = {"broker": args.broker, "seed": args.seed, "quick": args.quick, "sections_run": args.sections}
    return finish(results, args.out, workdir, started, failed, args.keep, print_table, "worker logs")


def print_table(results: dict[str, Any]) -> None:
    for name in SECTIONS:
        section = results.get(name)
        if section is None:
            continue
        figures = ", ".join(f"{k}={v}" for k, v in section.items() if isinstance(v, int | float | str) and k != "measured_at")
        print(f"{name:16s} {figures}")
