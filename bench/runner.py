"""Run every system under test, each on a fresh broker (embedded by default), with one data set; write JSON, print a table.

Throughput at saturation: each system is started and warmed up (200 declarations decided), then
paused (SIGSTOP) while a backlog of N declarations is written to its input, and resumed; the clock
runs from the resume to its last decision seen by a reader of its instructions topic (records
counted, never watermarks). Start-up (process start, group join, credit table fill) is never
timed. Latency: the pipeline at fixed offered loads, publish -> instruction consumed. CPU time per
declaration (system, broker, this process) is recorded too: it is steadier than wall time on a
shared machine.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench import ceiling, naive_faust, pipeline
from bench.common import BenchError, Dataset, finish, log, machine, offered_load, split_text
from bench.procs import CPU_ALSO, REPO_ROOT
from clients.topics import create_topics
from common.settings import Settings
from devkit.brokers import make_broker

SYSTEMS = ("ceiling", "naive_faust", "pipeline", "pipeline_single_records", "pipeline_two_workers")
FULL = {"count": 100_000, "single_count": 30_000, "naive_count": 8_000, "duration": 15.0, "warmup": 2.0, "enterprises": 70_000}
QUICK = {"count": 4_000, "single_count": 1_500, "naive_count": 500, "duration": 4.0, "warmup": 1.0, "enterprises": 3_000}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0],
                                epilog="`python -m bench archive [--help]`: the decision archive's figures instead (sink throughput "
                                       "against the raw consume ceiling, history/report latency, bytes per instruction); "
                                       "`python -m bench state [--help]`: the declaration state's (memory per retained declaration, "
                                       "restart to ready with each table store); "
                                       "`python -m bench seed-scale [--help]`: the office's reference volumes (3.21 million credit "
                                       "entries, 147 risk lists, 93 models, moderate-load headroom) beside the small case; "
                                       "`python -m bench soak [--help]`: one worker decides millions of declarations with short "
                                       "state lifetimes, its memory sampled; `python -m bench fetch [--help]`: one fetch's CPU cost to the "
                                       "worker's consumer, in full fetches and in fetch sessions, and librdkafka's beside them; "
                                       "`python -m bench console [--help]`: "
                                       "the console's (instruction -> visible in the officer's live queue at 3,000 declarations/s, "
                                       "page loads over a month of decisions). "
                                       "Progress goes to stderr; the table to stdout; results to --out. "
                                       "Exit status 1 if any run failed (its entry in the JSON holds the error).")
    p.add_argument("--quick", action="store_true", help="small counts and short loads: checks that everything works (about a minute)")
    p.add_argument("--count", type=int, help=f"declarations for the ceiling and the batched pipeline runs (default {FULL['count']})")
    p.add_argument("--single-count", type=int, help=f"declarations for the single-record pipeline run (default {FULL['single_count']})")
    p.add_argument("--naive-count", type=int, help=f"declarations for the naive Faust agent (default {FULL['naive_count']})")
    p.add_argument("--rates", default="1000,3000", help="offered loads for the latency runs, declarations/s (default 1000,3000)")
    p.add_argument("--duration", type=float, help=f"seconds per offered load (default {FULL['duration']:.0f})")
    p.add_argument("--warmup", type=float, help=f"seconds at the start of each load not counted (default {FULL['warmup']:.0f})")
    p.add_argument("--enterprises", type=int, help=f"simulated enterprise population (default {FULL['enterprises']})")
    p.add_argument("--gateway-linger-ms", type=float, default=5.0,
                   help="latency runs: how long the gateway publisher (and its Kafka producer) lets a batch fill (default 5)")
    p.add_argument("--broker", choices=("tansu", "kafka"), default="tansu",
                   help="embedded Tansu (default) or Apache Kafka (needs `make kafka-fetch`)")
    p.add_argument("--kafka-latency", choices=("auto", "yes", "no"), default="auto",
                   help="also measure ceiling and pipeline latency on Apache Kafka (KRaft, one node), where the broker is not "
                        "the bottleneck: 'auto' (default) when `make kafka-fetch` has fetched the jars")
    p.add_argument("--seed", type=int, default=7, help="simulator seed (default 7)")
    p.add_argument("--partitions", type=int, default=Settings.model_fields["partitions"].default,
                   help="partitions of the keyed topics (default: the settings' default, %(default)s)")
    p.add_argument("--only", default=",".join(SYSTEMS), help=f"comma-separated subset of {','.join(SYSTEMS)}")
    p.add_argument("--worker-env", action="append", default=[], metavar="KEY=VALUE",
                   help="extra environment for the pipeline workers, e.g. BATCH_MAX=4000 (repeatable; recorded in the JSON)")
    p.add_argument("--run-timeout", type=float, default=180.0, help="seconds any one wait may take before the run fails (default 180)")
    p.add_argument("--profile", action="store_true", help="sample each system with py-spy during its throughput run "
                                                          "(the pipeline also at each offered load) "
                                                          "(raw stacks next to --out; slows the measured process a little; "
                                                          "runs shorter than a second or two, as in --quick, may get no samples)")
    p.add_argument("--out", type=Path, default=REPO_ROOT / "bench" / "results" / "latest.json", help="result file")
    p.add_argument("--keep", action="store_true", help="keep the work directory (worker logs) even on success")
    args = p.parse_args(argv)
    for key, value in (QUICK if args.quick else FULL).items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    if min(args.count, args.single_count, args.naive_count, args.enterprises) < 1 or not 0 <= args.warmup < args.duration:
        p.error("counts and --enterprises must be >= 1, and 0 <= --warmup < --duration")
    unknown = set(args.only.split(",")) - set(SYSTEMS)
    if unknown:
        p.error(f"--only: unknown system(s) {', '.join(sorted(unknown))}")
    for item in args.worker_env:
        if "=" not in item:
            p.error(f"--worker-env {item!r} is not KEY=VALUE")
    try:
        args.rate_list = [float(r) for r in args.rates.split(",") if r]
    except ValueError:
        p.error(f"--rates {args.rates!r} is not a comma-separated list of numbers")
    return args


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["archive"]:  # the decision archive's figures: a mode of its own (bench/archive.py)
        from bench import archive

        return archive.main(argv[1:])
    if argv[:1] == ["console"]:  # the console's figures: live queue latency, page loads (bench/console.py)
        from bench import console

        return console.main(argv[1:])
    if argv[:1] == ["state"]:  # the declaration state's figures: memory per declaration, restart (bench/state.py)
        from bench import state

        return state.main(argv[1:])
    if argv[:1] == ["seed-scale"]:  # the office's reference volumes beside the small case (bench/seedscale)
        from bench import seedscale

        return seedscale.main(argv[1:])
    if argv[:1] == ["fetch"]:  # one fetch's cost to the consumer, in full and in sessions (bench/fetch.py)
        from bench import fetch

        return fetch.main(argv[1:])
    if argv[:1] == ["soak"]:  # millions of declarations on one worker, memory sampled (bench/soak.py)
        from bench import soak

        return soak.main(argv[1:])
    args = parse_args(argv)
    started = time.monotonic()
    results: dict[str, Any] = {"machine": machine()}
    only = args.only.split(",")
    extra_env = dict(item.split("=", 1) for item in args.worker_env)
    workdir = Path(tempfile.mkdtemp(prefix="bench-"))
    failed = False
    log(f"machine: {results['machine']}; work directory {workdir}")
    data = Dataset.generate(args.seed, args.enterprises, max(args.count, args.single_count, args.naive_count))
    log(f"generated {len(data.records)} declarations and {data.credit_events} credit events (seed {args.seed})")

    def settings_for(base: Settings, name: str) -> Settings:
        s = base.model_copy(update={"topic_prefix": f"bench-{name}.", "app_id": f"bench-{name}", "data_dir": workdir / name})
        create_topics(s)
        return s

    def profile_for(name: str) -> Path | None:
        return args.out.with_name(f"profile-{name}.txt") if args.profile else None

    def attempt(name: str, fn: Callable[[Settings], dict[str, Any]]) -> None:
        """One system on a broker of its own: what earlier systems left on a broker must not slow
        the next one down (Tansu's per-request cost grows with the data it holds)."""
        nonlocal failed
        if name not in only:
            return
        data.begin_run()
        try:
            with make_broker(args.broker) as broker:
                log(f"{name}: fresh {args.broker} broker on {broker.bootstrap_servers}")
                CPU_ALSO.update({"broker": [broker.pid], "bench": [os.getpid()]})
                results[name] = fn(settings_for(Settings(kafka_bootstrap_servers=broker.bootstrap_servers,
                                                         partitions=args.partitions), name))
        except Exception as exc:  # noqa: BLE001 - one failed run must not hide the others
            failed = True
            log(f"{name} FAILED: {exc}")
            if not isinstance(exc, BenchError):
                traceback.print_exc(file=sys.stderr)
            results[name] = {"error": str(exc)}

    def ceiling_load(settings: Settings) -> Callable[..., dict[str, Any]] | None:
        # The same offered loads as the pipeline's: the baseline its latency is compared with.
        if not args.rate_list:
            return None
        return lambda watcher, pids, alive: {f"{r:g}": offered_load("ceiling", settings, watcher, data, r, args.duration, args.warmup,
                                                                     args.run_timeout, args.gateway_linger_ms, pids, alive)
                                             for r in args.rate_list}

    attempt("ceiling", lambda s: ceiling.run(s, data, args.count, workdir, args.run_timeout, profile_for("ceiling"), ceiling_load(s)))
    attempt("naive_faust", lambda s: naive_faust.run(s, data, args.naive_count, workdir, args.run_timeout, profile_for("naive_faust")))
    attempt("pipeline", lambda s: run_pipeline(args, s, data, workdir, extra_env, 1, True, profile_for("pipeline")))
    attempt("pipeline_single_records", lambda s: run_pipeline(args, s, data, workdir, extra_env, 1, False,
                                                              profile_for("pipeline_single_records")))
    attempt("pipeline_two_workers", lambda s: run_pipeline(args, s, data, workdir, extra_env, 2, True,
                                                           profile_for("pipeline_two_workers")))

    if args.rate_list and _want_kafka_latency(args.kafka_latency) and args.broker != "kafka":
        failed |= kafka_latency(args, data, workdir, extra_env, results)

    results["ratios"] = ratios(results)
    results["config"] = {
        "broker": {"tansu": "embedded Tansu (memory storage)", "kafka": "Apache Kafka (KRaft, one node)"}[args.broker]
        + ", loopback, a fresh one per system",
        "gateway_linger_ms": args.gateway_linger_ms, "seed": args.seed, "enterprises": args.enterprises,
        "credit_events": data.credit_events, "partitions": args.partitions, "count": args.count, "single_count": args.single_count,
        "naive_count": args.naive_count, "latency_rates": args.rate_list, "latency_duration_s": args.duration,
        "latency_warmup_s": args.warmup, "worker_env": extra_env, "quick": args.quick, "profiled": args.profile,
        "model": "bundled starter model (riskmodels ModelRegistry.open(None))", "policy": "shipped default policy",
    }
    return finish(results, args.out, workdir, started, failed, args.keep, print_table, "worker and agent logs")


def _want_kafka_latency(choice: str) -> bool:
    if choice == "auto":
        lib = os.environ.get("RISKCTL_KAFKA_LIB") or REPO_ROOT / "deploy" / "kafka" / "target" / "lib"
        if shutil.which("java") is None or not any(Path(lib).glob("kafka_2.13-*.jar")):
            log("no Java or no Apache Kafka jars (`make kafka-fetch`): skipping the latency runs on Apache Kafka")
            return False
    return choice != "no"


def kafka_latency(args: argparse.Namespace, data: Dataset, workdir: Path, extra_env: dict[str, str],
                  results: dict[str, Any]) -> bool:
    """Ceiling and pipeline latency at the same offered loads on Apache Kafka: on the embedded
    broker every system's latency at 3,000/s is bound by the broker's own CPU (docs/benchmark.md).
    A short throughput run first warms each system; only the latency figures are reported."""
    section: dict[str, Any] = {}
    failed = False
    with make_broker("kafka") as broker:
        log(f"apache kafka broker on {broker.bootstrap_servers} (latency runs)")
        CPU_ALSO.update({"broker": [broker.pid]})
        base = Settings(kafka_bootstrap_servers=broker.bootstrap_servers, partitions=args.partitions)
        warm = min(args.count, KAFKA_WARM_COUNT)
        for name in ("ceiling", "pipeline"):
            if name not in args.only.split(","):
                continue
            s = base.model_copy(update={"topic_prefix": f"bench-kafka-{name}.", "app_id": f"bench-kafka-{name}",
                                        "data_dir": workdir / f"kafka-{name}"})
            create_topics(s)
            data.begin_run()
            try:
                if name == "ceiling":
                    load = lambda watcher, pids, alive, s=s: {f"{r:g}": offered_load("ceiling (kafka)", s, watcher, data, r, args.duration,  # noqa: E731 - one expression, with this system's settings bound (s=s)
                                                                                    args.warmup, args.run_timeout, args.gateway_linger_ms,
                                                                                    pids, alive) for r in args.rate_list}
                    run = ceiling.run(s, data, warm, workdir, args.run_timeout, None, load)
                else:
                    run = run_pipeline(args, s, data, workdir, extra_env, 1, True, None, count=warm)
                section[name] = {"latency_ms": run["latency_ms"]}
            except Exception as exc:  # noqa: BLE001 - a failed system is recorded in the results and the others still run
                failed = True
                log(f"{name} on apache kafka FAILED: {exc}")
                section[name] = {"error": str(exc)}
    results["apache_kafka"] = section
    return failed


def run_pipeline(args: argparse.Namespace, settings: Settings, data: Dataset, workdir: Path, extra_env: dict[str, str],
                 n_workers: int, batching: bool, profile: Path | None, count: int | None = None) -> dict[str, Any]:
    count = count or (args.count if batching else args.single_count)
    with pipeline.running(settings, data, n_workers, workdir, extra_env, args.run_timeout) as (workers, watcher):
        result = pipeline.throughput(settings, workers, watcher, data, count, batching, args.run_timeout, profile)
        if batching and n_workers == 1 and args.rate_list:
            result["latency_ms"] = {f"{r:g}": pipeline.latency(settings, workers, watcher, data, r, args.duration, args.warmup,
                                                                args.run_timeout, args.gateway_linger_ms,
                                                                profile and profile.with_name(f"{profile.stem}-{r:g}.txt"))
                                    for r in args.rate_list}
        return result


KAFKA_WARM_COUNT = 20_000  # declarations through each system on Apache Kafka before its latency runs


def ratios(results: dict[str, Any]) -> dict[str, float]:
    tp = {k: v.get("throughput") for k, v in results.items() if isinstance(v, dict) and v.get("throughput")}
    pairs = [("pipeline", "ceiling"), ("pipeline", "naive_faust"), ("pipeline_single_records", "ceiling"),
             ("pipeline_single_records", "naive_faust"), ("pipeline_two_workers", "pipeline"), ("naive_faust", "ceiling")]
    out = {f"{a}/{b}": round(tp[a] / tp[b], 3) for a, b in pairs if a in tp and b in tp}
    for where, section in (("", results), (" (apache kafka)", results.get("apache_kafka") or {})):
        ceiling_lat = (section.get("ceiling") or {}).get("latency_ms") or {}
        for rate, lat in ((section.get("pipeline") or {}).get("latency_ms") or {}).items():
            if rate in ceiling_lat and ceiling_lat[rate]["p99"]:
                out[f"pipeline/ceiling p99 latency at {rate}/s{where}"] = round(lat["p99"] / ceiling_lat[rate]["p99"], 2)
    return out


def print_table(results: dict[str, Any]) -> None:
    labels = {"ceiling": "(a) ceiling: confluent-kafka loop", "naive_faust": "(b) naive Faust agent",
              "pipeline": "(c) pipeline, gateway batches", "pipeline_single_records": "(c) pipeline, single records",
              "pipeline_two_workers": "(c) pipeline, 2 workers, batches"}
    ceiling_tp = (results.get("ceiling") or {}).get("throughput")
    print(f"\n{'system':36} {'declarations/s':>14} {'x ceiling':>10} {'CPU us/decl':>12} {'broker us/decl':>15}")
    for key, label in labels.items():
        r = results.get(key)
        if r is None:
            continue
        if "error" in r:
            print(f"{label:36} {'FAILED':>14}  {r['error'].splitlines()[0][:80]}")
            continue
        rel = f"{r['throughput'] / ceiling_tp:10.3f}" if ceiling_tp else f"{'-':>10}"
        cpu = r.get("cpu_us_per_declaration", {})
        print(f"{label:36} {r['throughput']:14,.0f} {rel} {cpu.get('system', float('nan')):12,.0f}"
              f" {cpu.get('broker', float('nan')):15,.0f}")
    for where, section in (("", results), (", apache kafka", results.get("apache_kafka") or {})):
      for system in ("ceiling", "pipeline"):
        for rate, lat in ((section.get(system) or {}).get("latency_ms") or {}).items():
            print(f"latency at {float(rate):,.0f}/s offered ({system}{where}):"
                  f" p50 {lat['p50']} ms, p95 {lat['p95']} ms, p99 {lat['p99']} ms"
                  f"  ({lat['measured']} declarations; CPU {lat['cpu_us_per_declaration']['system']:,.0f} us/decl,"
                  f" broker {lat['cpu_busy'].get('broker', float('nan')):.2f} busy)")
            if lat.get("split_ms"):
                print(f"    {split_text(lat['split_ms'])}")
    for name, value in results.get("ratios", {}).items():
        print(f"ratio {name:40} {value:8.3f}")
    print(f"machine: {results['machine']}")
