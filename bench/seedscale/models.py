"""Section ``models``: a worker scoring with 93 routed models against the same worker with one.

Both registries are trained here, on the same simulated history and with the same small model
size (``riskmodels.routed.ROUTED_CONFIG``): the routed artifact from the office's routing plan
(riskmodels/plans/office.json, 93 models + the general fallback, one shared feature state), the
single-model one as a general model only. Each worker (``MODEL_DIR`` = its registry) is measured
by ``bench.pipeline``'s throughput on a fresh broker of its own, then its resident memory is read.
``--quick`` trains a coarser plan (the same port groups for every scenario: 28 models) on less history.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from bench import pipeline
from bench.common import Dataset, log
from bench.seedscale import Context
from clients.topics import create_topics
from common.settings import Settings
from devkit.brokers import make_broker

PLAN = Path(__file__).resolve().parents[2] / "riskmodels" / "plans" / "office.json"


def add_arguments(group: argparse._ArgumentGroup) -> None:
    group.add_argument("--models-history", type=int, default=1_000_000, metavar="N",
                       help="simulated labelled declarations to train on (default 1,000,000; --quick 300,000)")
    group.add_argument("--models-count", type=int, default=20_000, metavar="N",
                       help="declarations through each worker (default 20,000; --quick 3,000)")
    group.add_argument("--models-plan", type=Path, default=PLAN, metavar="FILE", help="routing plan (default: the office's 93 models)")


def quick_plan(doc: dict[str, Any]) -> dict[str, Any]:
    """A coarser plan with the same port groups: one model per (port group, risk type) for every scenario."""
    groups = sorted(doc["port_groups"])
    types = sorted({r["risk_type"] for r in doc["routes"]})
    routes = [{"scenario": "*", "port_group": g, "risk_type": t, "model": f"any.{g}.{t}"} for g in groups for t in types]
    return {"format": doc["format"], "port_groups": doc["port_groups"], "routes": routes}


def figures(one: dict[str, Any], routed: dict[str, Any], count: int) -> dict[str, Any]:
    """The section's figures from the two runs (throughput in declarations/s, RSS in MB)."""
    extra = routed["models_rss_mb"] - one["models_rss_mb"]
    return {
        "count": count,
        "throughput": round(routed["throughput"], 1),
        "throughput_one_model": round(one["throughput"], 1),
        "throughput_ratio": round(routed["throughput"] / one["throughput"], 3),
        "rss_mb": routed["rss_mb"],
        "rss_mb_one_model": one["rss_mb"],
        # Memory of the opened registry alone (a fresh process: RSS after opening it and scoring a
        # batch, less before), and what the routed one adds per model beyond the first.
        "models_rss_mb": routed["models_rss_mb"],
        "models_rss_mb_one_model": one["models_rss_mb"],
        "rss_mb_per_model": round(extra / max(count - 1, 1), 3),
        "artifact_mb": routed["artifact_mb"],
        "artifact_mb_one_model": one["artifact_mb"],
        "model_files_kb_mean": routed["model_files_kb_mean"],
        "mean_micro_batch": routed.get("mean_micro_batch"),
    }


def _train(ctx: Context) -> tuple[Path, Path, int]:
    from portsim.history import write_history
    from portsim.starter import simulator_fx
    from portsim.traffic import PortOffice
    from riskmodels.data import read_labelled
    from riskmodels.routed import ROUTED_CONFIG, train_routed
    from riskmodels.routing import parse_routing
    from riskmodels.serving import publish
    from riskmodels.train import train_frames

    rows = min(ctx.args.models_history, 300_000) if ctx.quick else ctx.args.models_history
    doc = json.loads(ctx.args.models_plan.read_bytes())
    routing = parse_routing(quick_plan(doc) if ctx.quick else doc)
    history = ctx.workdir / "history.parquet"
    write_history(PortOffice(seed=ctx.args.seed, enterprises=70_000), history, rows, first_index=1_000_000_000)
    df = read_labelled(history, "project")
    df.tail(2000).write_parquet(ctx.workdir / "sample.parquet")  # the batch load_rss_mb scores
    say = lambda m: log(f"models: {m}")  # noqa: E731 - a one-line progress sink
    train_routed(df, routing, ctx.workdir / "routed", ROUTED_CONFIG, progress=say, fx=simulator_fx())
    train_frames(df, None, ctx.workdir / "one", ROUTED_CONFIG, progress=say, fx=simulator_fx())
    registries = []
    for name in ("one", "routed"):
        reg = ctx.workdir / f"registry-{name}"
        publish(reg, ctx.workdir / name)
        registries.append(reg)
    return registries[0], registries[1], len(routing.models)


# Resident memory of a fresh process before and after opening a registry (scoring one batch, so
# LightGBM's lazy buffers count): what the models themselves cost, free of the worker's other state.
_LOAD_RSS = """
import sys
from pathlib import Path
import polars as pl
from bench.procs import rss_mb
from riskmodels.serving import ModelRegistry
from riskmodels.data import read_labelled
frame = read_labelled(Path(sys.argv[2]), "project")
before = rss_mb(__import__("os").getpid())
reg = ModelRegistry.open(Path(sys.argv[1]))
reg.score_frame(frame)
print(rss_mb(__import__("os").getpid()) - before)
"""


def load_rss_mb(registry: Path, history: Path) -> float:
    out = subprocess.run([sys.executable, "-c", _LOAD_RSS, str(registry), str(history)], capture_output=True, text=True,
                         check=True, timeout=600)
    return round(float(out.stdout.strip().splitlines()[-1]), 1)


def _size(artifact: Path) -> tuple[float, float]:
    models = list(artifact.glob("model-*.txt"))
    total = sum(p.stat().st_size for p in artifact.iterdir())
    return round(total / 2**20, 2), round(sum(p.stat().st_size for p in models) / len(models) / 1024, 1)


def _measure(ctx: Context, name: str, registry: Path, data: Dataset, count: int) -> dict[str, Any]:
    from bench.procs import rss_mb

    data.begin_run()
    with make_broker(ctx.args.broker) as broker:
        settings = Settings(kafka_bootstrap_servers=broker.bootstrap_servers, topic_prefix=f"seed-models-{name}.",
                            app_id=f"seed-models-{name}", data_dir=ctx.workdir / f"data-{name}", model_dir=registry)
        create_topics(settings)
        with pipeline.running(settings, data, 1, ctx.workdir, {}, ctx.args.run_timeout) as (workers, watcher):
            result = pipeline.throughput(settings, workers, watcher, data, count, True, ctx.args.run_timeout, None)
            result["rss_mb"] = rss_mb(workers.procs[0].proc.pid)
    result["models_rss_mb"] = load_rss_mb(registry, ctx.workdir / "sample.parquet")
    [version] = [p for p in (registry / "versions").iterdir() if not p.name.startswith(".")]
    result["artifact_mb"], result["model_files_kb_mean"] = _size(version)
    log(f"models: {name}: {result['throughput']:,.0f} declarations/s, RSS {result['rss_mb']} MB")
    return result


def run(ctx: Context) -> dict[str, Any]:
    one_reg, routed_reg, count = _train(ctx)
    n = 3_000 if ctx.quick else ctx.args.models_count
    data = Dataset.generate(ctx.args.seed, 70_000, n)
    one = _measure(ctx, "one", one_reg, data, n)
    routed = _measure(ctx, "routed", routed_reg, data, n)
    out = figures(one, routed, count)
    out["declarations"] = n
    out["history_rows"] = min(ctx.args.models_history, 300_000) if ctx.quick else ctx.args.models_history
    return out
