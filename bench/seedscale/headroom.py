"""Section ``headroom``: latency and worker CPU per declaration at moderate loads, against the raw client.

On one broker (Apache Kafka by default), in the same run: the raw-client ceiling (``bench.ceiling``)
and the pipeline (one worker) each decide a backlog at saturation, then take the same offered loads
of 1,000/s and 3,000/s (``bench.common.offered_load``). Reported: the pipeline's p99 at each load
beside the ceiling's and their ratio, and the worker's CPU per declaration at each load and at
saturation, with the part of it its handlers spent deciding (``handler_cpu_us_per_decl_*``). The
issue's targets (``TARGETS``) are reported with whether this run met them: on a shared machine the
ratios of the same run are the figures to read, not the absolute ones.
"""

from __future__ import annotations

import argparse
import os
from typing import Any

from bench import ceiling
from bench.common import Dataset, log, offered_load
from bench.procs import CPU_ALSO
from bench.runner import run_pipeline
from bench.seedscale import Context
from clients.topics import create_topics
from common.settings import Settings
from devkit.brokers import make_broker

RATES = (1000.0, 3000.0)
FULL = {"count": 20_000, "duration": 15.0, "warmup": 2.0, "enterprises": 20_000}
QUICK = {"count": 3_000, "duration": 5.0, "warmup": 1.0, "enterprises": 2_000}
# The targets: p99 at 3,000/s at most 1.5x the same run's ceiling p99; worker CPU per
# declaration at most 150 us at 3,000/s and 250 us at 1,000/s.
TARGETS = {"p99_ratio_3k": 1.5, "cpu_us_per_decl_3k": 150.0, "cpu_us_per_decl_1k": 250.0}


def add_arguments(group: argparse._ArgumentGroup) -> None:
    group.add_argument("--headroom-count", type=int, help=f"declarations of the saturation backlog (default {FULL['count']})")
    group.add_argument("--headroom-duration", type=float, help=f"seconds per offered load (default {FULL['duration']:.0f})")
    group.add_argument("--headroom-warmup", type=float,
                       help=f"seconds at the start of each load not counted (default {FULL['warmup']:.0f})")
    group.add_argument("--headroom-enterprises", type=int, help=f"simulated enterprise population (default {FULL['enterprises']})")
    group.add_argument("--headroom-worker-env", action="append", default=[], metavar="KEY=VALUE",
                       help="extra environment for the pipeline worker, e.g. BATCH_WITHIN_S=0.01 (repeatable; recorded)")


def options(args: argparse.Namespace) -> dict[str, Any]:
    """The section's sizes: the options given, else the quick or full defaults."""
    defaults = QUICK if args.quick else FULL
    out = {k: getattr(args, f"headroom_{k}") if getattr(args, f"headroom_{k}") is not None else v for k, v in defaults.items()}
    if min(out["count"], out["enterprises"]) < 1 or not 0 <= out["warmup"] < out["duration"]:
        raise ValueError("--headroom-count and --headroom-enterprises must be >= 1, and 0 <= --headroom-warmup < --headroom-duration")
    for item in args.headroom_worker_env:
        if "=" not in item:
            raise ValueError(f"--headroom-worker-env {item!r} is not KEY=VALUE")
    return out


def run(ctx: Context) -> dict[str, Any]:
    args, opts = ctx.args, options(ctx.args)
    extra_env = dict(item.split("=", 1) for item in args.headroom_worker_env)
    data = Dataset.generate(args.seed, opts["enterprises"], opts["count"])
    # The options bench.runner.run_pipeline reads, for one worker reading gateway batches.
    run_args = argparse.Namespace(count=opts["count"], single_count=opts["count"], rate_list=list(RATES),
                                  duration=opts["duration"], warmup=opts["warmup"], run_timeout=args.run_timeout,
                                  gateway_linger_ms=5.0)
    load_before = os.getloadavg()
    with make_broker(args.broker) as broker:
        log(f"headroom: {args.broker} broker on {broker.bootstrap_servers}")
        CPU_ALSO.update({"broker": [broker.pid], "bench": [os.getpid()]})
        base = Settings(kafka_bootstrap_servers=broker.bootstrap_servers)

        def settings_for(name: str) -> Settings:
            s = base.model_copy(update={"topic_prefix": f"headroom-{name}.", "app_id": f"headroom-{name}",
                                        "data_dir": ctx.workdir / name})
            create_topics(s)
            data.begin_run()  # both systems decide the same declarations against the same credit changes
            return s

        s = settings_for("ceiling")

        def load(watcher: Any, pids: list[int], alive: Any) -> dict[str, Any]:
            return {f"{r:g}": offered_load("ceiling", s, watcher, data, r, opts["duration"], opts["warmup"], args.run_timeout,
                                           run_args.gateway_linger_ms, pids, alive) for r in RATES}

        raw = ceiling.run(s, data, opts["count"], ctx.workdir, args.run_timeout, None, load)
        pipe = run_pipeline(run_args, settings_for("pipeline"), data, ctx.workdir, extra_env, 1, True, None)
    result = figures(raw, pipe)
    result.update({"broker": args.broker, "worker_env": extra_env, **opts,
                   "load_average_before": [round(x, 2) for x in load_before],
                   "load_average_after": [round(x, 2) for x in os.getloadavg()],
                   "ceiling": raw, "pipeline": pipe})
    log("headroom: " + ", ".join(f"{k}={result[k]}" for k in ("p99_ms_3k", "ceiling_p99_ms_3k", "p99_ratio_3k",
                                                             "cpu_us_per_decl_3k", "cpu_us_per_decl_1k", "cpu_us_per_decl_saturation",
                                                             "handler_cpu_us_per_decl_3k", "handler_cpu_us_per_decl_1k")))
    return result


def figures(raw: dict[str, Any], pipe: dict[str, Any]) -> dict[str, Any]:
    """The section's headline figures from the ceiling's and the pipeline's results (as
    ``bench.ceiling.run`` and ``bench.runner.run_pipeline`` return them)."""
    out: dict[str, Any] = {}
    for rate, suffix in ((RATES[1], "3k"), (RATES[0], "1k")):
        mine, theirs = pipe["latency_ms"][f"{rate:g}"], raw["latency_ms"][f"{rate:g}"]
        out[f"p99_ms_{suffix}"] = mine["p99"]
        out[f"ceiling_p99_ms_{suffix}"] = theirs["p99"]
        out[f"p99_ratio_{suffix}"] = round(mine["p99"] / theirs["p99"], 2) if theirs["p99"] > 0 else None
        out[f"p50_ms_{suffix}"] = mine["p50"]
        out[f"ceiling_p50_ms_{suffix}"] = theirs["p50"]
        out[f"cpu_us_per_decl_{suffix}"] = mine["cpu_us_per_declaration"]["system"]
        out[f"ceiling_cpu_us_per_decl_{suffix}"] = theirs["cpu_us_per_declaration"]["system"]
        out[f"handler_cpu_us_per_decl_{suffix}"] = mine["handler_cpu_us_per_declaration"]
    out["cpu_us_per_decl_saturation"] = pipe["cpu_us_per_declaration"]["system"]
    out["handler_cpu_us_per_decl_saturation"] = pipe["handler_cpu_us_per_declaration"]
    out["ceiling_cpu_us_per_decl_saturation"] = raw["cpu_us_per_declaration"]["system"]
    out["throughput"] = pipe["throughput"]
    out["ceiling_throughput"] = raw["throughput"]
    out["mean_micro_batch_saturation"] = pipe.get("mean_micro_batch")
    out["targets"] = TARGETS
    out["targets_met"] = {k: out[k] is not None and out[k] <= limit for k, limit in TARGETS.items()}
    return out
