"""``python -m bench archive``: the decision archive's figures (sink throughput, query latency, bytes).

1. Sink throughput. On a fresh embedded broker, N records of the pipeline's topics (declarations and
   control instructions, valid against their schemas, generated from the seeded simulator) are
   pre-loaded; then (a) a raw confluent-kafka consumer reads all of them (the ceiling of this run),
   and (b) ``riskctl archive`` (a subprocess, as devkit.launcher starts it) archives them: its clock
   runs from the moment it is ready (owns its partitions, has read their archived positions) until the
   Delta tables hold N rows (counted from the tables' commit log, never from broker watermarks).
2. Queries. An archive of M generated instructions (10 ports, 30 days, the pipeline's stages,
   actions and reasons; declarations and inspection results to match) is written straight into the
   archive's tables with their schemas (write_deltalake, one commit per day); then ``history(id)``
   (what ``riskctl explain`` reads) for a few random ids and ``report(from, to)`` over the month,
   each cold (first call in the process) and warm. Bytes per million instructions = the
   instructions table's size on disk / M * 1e6.
"""

from __future__ import annotations

import argparse
import shutil
import socket
import tempfile
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc
from deltalake import DeltaTable, write_deltalake

from archive import tables as t
from bench.common import BenchError, Dataset, finish, log, machine, producer, reader
from bench.procs import REPO_ROOT
from clients import topics
from clients.topics import create_topics
from common.settings import Settings
from devkit.brokers import make_broker

FULL = {"archive_instructions": 10_000_000, "sink_records": 200_000}
QUICK = {"archive_instructions": 200_000, "sink_records": 20_000}
PORTS = ("YPU-SEA", "HAK-SEA", "XNH-SEA", "BSO-SEA", "QLN-SEA", "SYX-SEA", "NGG-RRX", "HAK-AIR", "SYX-AIR", "BAR-AIR")
PORT_SHARE = np.array([0.16, 0.14, 0.12, 0.1, 0.08, 0.06, 0.06, 0.12, 0.1, 0.06])
DAYS = 30
FIRST_DAY = date(2026, 11, 1)
EXPLAIN_GOAL_S = 1.0
REPORT_GOAL_S = 5.0


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench archive", description=__doc__.splitlines()[0],
                                epilog="Progress goes to stderr; the table to stdout; results to --out.")
    p.add_argument("--quick", action="store_true",
                   help=f"small sizes ({QUICK['sink_records']:,} sink records, {QUICK['archive_instructions']:,} archived instructions): "
                        "checks that it works; the sink's figure is then bound by its 5 s flush interval")
    p.add_argument("--sink-records", type=int,
                   help=f"records pre-loaded for the sink throughput run (default {FULL['sink_records']:,}; 0 skips it)")
    p.add_argument("--archive-instructions", type=int,
                   help=f"instructions in the generated archive for the query figures "
                        f"(default {FULL['archive_instructions']:,}; 0 skips it)")
    p.add_argument("--queries", type=int, default=5, help="history() ids and report() runs timed (default 5)")
    p.add_argument("--archive-dir", type=Path, help="generated archive to reuse (or create) instead of a temporary one; kept")
    p.add_argument("--broker", choices=("tansu", "kafka"), default="tansu", help="embedded Tansu (default) or Apache Kafka")
    p.add_argument("--partitions", type=int, default=Settings.model_fields["partitions"].default,
                   help="partitions of the keyed topics (default %(default)s)")
    p.add_argument("--seed", type=int, default=7, help="generator seed (default 7)")
    p.add_argument("--run-timeout", type=float, default=600.0, help="seconds the sink may take to archive everything (default 600)")
    p.add_argument("--out", type=Path, default=REPO_ROOT / "bench" / "results" / "archive.json", help="result file")
    p.add_argument("--keep", action="store_true", help="keep the work directory (sink log, archives)")
    args = p.parse_args(argv)
    for key, value in (QUICK if args.quick else FULL).items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    if args.sink_records < 0 or args.archive_instructions < 0 or args.queries < 1:
        p.error("sizes must be >= 0 and --queries >= 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.monotonic()
    workdir = Path(tempfile.mkdtemp(prefix="bench-archive-"))
    results: dict[str, Any] = {"machine": machine()}
    log(f"machine: {results['machine']}; work directory {workdir}")
    failed = False
    if args.sink_records:
        try:
            results["sink"] = sink_throughput(args, workdir)
        except Exception as exc:  # noqa: BLE001 - recorded; the query figures still run
            failed = True
            log(f"sink throughput FAILED: {exc}")
            results["sink"] = {"error": str(exc)}
    if args.archive_instructions:
        archive_dir = args.archive_dir or workdir / "generated"
        try:
            results["queries"] = query_figures(args, archive_dir)
        except Exception as exc:  # noqa: BLE001 - recorded in the results
            failed = True
            log(f"query figures FAILED: {exc}")
            results["queries"] = {"error": str(exc)}
    results["config"] = {"broker": args.broker, "partitions": args.partitions, "seed": args.seed,
                         "sink_records": args.sink_records, "archive_instructions": args.archive_instructions,
                         "queries": args.queries, "quick": args.quick}
    return finish(results, args.out, workdir, started, failed, args.keep, print_table, "the work directory")


# ---- 1. sink throughput -------------------------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _instruction(decl: dict[str, Any], rng: np.random.Generator, decided_at: str) -> dict[str, Any]:
    score = float(rng.random())
    action = "inspect" if score > 0.9 else "machine-check" if score > 0.7 else "release"
    return {"schema_version": 1, "instruction_id": f"{decl['declaration_id']}:{decl['revision']}:declaration",
            "declaration_id": decl["declaration_id"], "revision": decl["revision"], "port": decl["port"],
            "enterprise_id": decl["enterprise_id"], "scenario": decl["scenario"], "stage": "declaration", "action": action,
            "final": action != "machine-check", "selection_reason": "none" if action == "release" else "model-threshold",
            "credit_class": "general", "score": score, "model_version": "starter-1", "policy_version": "default-1",
            "reasons": [] if action == "release" else [f"score {score:.3f} above threshold"], "thresholds": [0.7, 0.9],
            "event_time": decl["event_time"], "decided_at": decided_at}


def _archived_rows(archive_dir: Path) -> int:
    total = 0
    for name in (t.DECLARATIONS, t.INSTRUCTIONS, t.DEAD_LETTERS):
        dt = t.open_table(archive_dir, name)
        if dt is not None:
            actions = pa.table(dt.get_add_actions(flatten=True))
            total += int(pc.sum(actions.column("num_records")).as_py() or 0) if actions.num_rows else 0
    return total


def sink_throughput(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    from devkit.launcher import ArchiveProcess, cpu_seconds

    n = args.sink_records
    data = Dataset.generate(args.seed, 3_000, 0)
    decls = data.more(n - n // 2)
    rng = np.random.default_rng(args.seed)
    decided_at = datetime.now(UTC).isoformat().replace("+00:00", "Z")
    instructions = [_instruction(d, rng, decided_at) for d in decls[: n // 2]]
    log(f"sink: generated {len(decls)} declarations and {len(instructions)} instructions")
    with make_broker(args.broker) as broker:
        log(f"sink: fresh {args.broker} broker on {broker.bootstrap_servers}")
        settings = Settings(kafka_bootstrap_servers=broker.bootstrap_servers, partitions=args.partitions,
                            topic_prefix="bench-archive.", app_id="bench-archive", data_dir=workdir / "sink",
                            archive_dir=workdir / "sink-archive", archive_metrics_port=_free_port(),
                            archive_maintenance_interval_s=0)
        create_topics(settings)
        out = producer(settings)
        t0 = time.monotonic()
        for topic, records in ((topics.DECLARATIONS, decls), (topics.INSTRUCTIONS, instructions)):
            name = settings.topic(topic)
            for r in records:
                out.produce(name, key=r["declaration_id"].encode(), value=orjson.dumps(r))
                out.poll(0)
        if out.flush(120) != 0:
            raise BenchError("the pre-load could not be delivered")
        del out
        log(f"sink: pre-loaded {n} records in {time.monotonic() - t0:.1f}s")

        # (a) the ceiling: a raw consumer of every record, no parsing
        consumer = reader(settings, [topics.DECLARATIONS, topics.INSTRUCTIONS])
        seen, t0 = 0, time.monotonic()
        deadline = t0 + args.run_timeout
        while seen < n and time.monotonic() < deadline:
            seen += sum(1 for m in consumer.consume(2000, timeout=0.05) if m.error() is None)
        ceiling_s = time.monotonic() - t0
        consumer.close()
        if seen < n:
            raise BenchError(f"the raw consumer read {seen} of {n} records in {args.run_timeout:.0f}s")
        log(f"sink: raw consume of {n} records in {ceiling_s:.2f}s")

        # (b) the sink, from ready to every record in the tables
        sink = ArchiveProcess(settings, workdir / "archive-sink.log")
        try:
            startup_s = sink.wait_ready(120.0)
            t0, cpu0 = time.monotonic(), cpu_seconds(sink.proc.pid)
            deadline = t0 + args.run_timeout
            archived, timeline = 0, [(0.0, 0)]
            while archived < n:
                if time.monotonic() > deadline:
                    raise BenchError(f"the sink archived {archived} of {n} records in {args.run_timeout:.0f}s; "
                                     f"log tail:\n{sink.log_tail()}")
                if not sink.alive():
                    raise BenchError(f"the sink exited; log tail:\n{sink.log_tail()}")
                time.sleep(0.1)  # poll interval of the tables
                rows = _archived_rows(settings.archive_dir)
                if rows != archived:
                    timeline.append((time.monotonic() - t0, rows))
                archived = rows
            sink_s = time.monotonic() - t0
            cpu = cpu_seconds(sink.proc.pid) - cpu0
        finally:
            sink.stop()
        dead = t.open_table(settings.archive_dir, t.DEAD_LETTERS)
        dead_rows = len(dead.to_pyarrow_table()) if dead is not None else 0
        log(f"sink: archived {archived} rows in {sink_s:.2f}s after {startup_s:.1f}s start-up ({dead_rows} dead letters)")
    ceiling_rate, sink_rate = n / ceiling_s, n / sink_s
    # Between the first and the last commit: the rate without the wait for the first flush (a flush
    # every ARCHIVE_FLUSH_RECORDS rows or ARCHIVE_FLUSH_INTERVAL_S seconds).
    (t_first, r_first), (t_last, r_last) = timeline[1], timeline[-1]
    steady = (r_last - r_first) / (t_last - t_first) if len(timeline) > 2 and t_last > t_first else None
    return {"records": n, "ceiling_records_per_s": round(ceiling_rate), "sink_records_per_s": round(sink_rate),
            "sink/ceiling": round(sink_rate / ceiling_rate, 3),
            "sink_between_commits_records_per_s": round(steady) if steady else None,
            "commits_seen": [(round(s, 2), r) for s, r in timeline[1:]], "ceiling_s": round(ceiling_s, 3), "sink_s": round(sink_s, 3),
            "sink_startup_s": round(startup_s, 2), "sink_cpu_us_per_record": round(1e6 * cpu / n, 1),
            "archived_rows": archived, "dead_letters": dead_rows,
            "flush_records": settings.archive_flush_records, "flush_interval_s": settings.archive_flush_interval_s}


# ---- 2. the generated archive and the queries ---------------------------------------------------
def _ids(first: int, count: int) -> pa.Array:
    return pa.array([f"D-2026-{i:08d}" for i in range(first, first + count)], type=pa.string())


def _ts(day: date, seconds: np.ndarray) -> pa.Array:
    base = int(datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp() * 1e6)
    return pa.array(base + (seconds * 1e6).astype(np.int64), type=t.TS)


def _list_of(values: list[str], lengths: np.ndarray, rng: np.random.Generator, kind: pa.DataType = t.STR) -> pa.Array:
    offsets = np.zeros(len(lengths) + 1, dtype=np.int32)
    np.cumsum(lengths, out=offsets[1:])
    flat = pa.array(np.array(values, dtype=object)[rng.integers(0, len(values), int(offsets[-1]))], type=kind)
    return pa.ListArray.from_arrays(pa.array(offsets), flat)


def _provenance(topic: str, n: int, first_offset: int, stamp: pa.Array) -> dict[str, pa.Array]:
    return {"kafka_topic": pa.array([topic] * n, type=pa.string()),
            "kafka_partition": pa.array(np.arange(n, dtype=np.int32) % 12), "kafka_offset": pa.array(first_offset + np.arange(n)),
            "item_index": pa.array(np.zeros(n, dtype=np.int32)), "kafka_timestamp": stamp, "archived_at": stamp}


def _table(name: str, columns: dict[str, pa.Array], n: int) -> pa.Table:
    schema = t.SPECS[name].schema
    return pa.table([columns[f.name] if f.name in columns else pa.nulls(n, f.type) for f in schema], schema=schema)


def generate_day(day_index: int, decl_first: int, n_decl: int, instr_offset: int,
                 rng: np.random.Generator, first_day: date = FIRST_DAY) -> tuple[pa.Table, pa.Table, pa.Table]:
    """One day: ``n_decl`` declarations (ids in time order), their instructions (one at declaration,
    a second for the machine-checks: after the scan, or a timeout) and the inspections' results."""
    day = first_day + timedelta(days=day_index)
    ports = np.array(PORTS, dtype=object)[rng.choice(len(PORTS), n_decl, p=PORT_SHARE / PORT_SHARE.sum())]
    secs = np.sort(rng.random(n_decl) * 86_399)
    ids = _ids(decl_first, n_decl)
    ent = pa.array([f"46{x:08d}" for x in rng.integers(0, 70_000, n_decl)], type=pa.string())
    scen = np.array(["general-trade", "zero-tariff", "processing-value-added", "duty-free-shopping"], dtype=object)[
        rng.choice(4, n_decl, p=[0.7, 0.1, 0.15, 0.05])]
    event = _ts(day, secs)
    port_arr, scen_arr = pa.array(ports, type=pa.string()), pa.array(scen, type=pa.string())
    day_arr = pa.array([day] * n_decl, type=t.DATE)
    decl = _table(t.DECLARATIONS, {
        "day": day_arr, "declaration_id": ids, "revision": pa.array(np.ones(n_decl, dtype=np.int32)), "port": port_arr,
        "enterprise_id": ent, "declarant_id": ent, "scenario": scen_arr,
        "transport_mode": pa.array(np.where(np.char.endswith(ports.astype(str), "AIR"), "air", "sea"), type=pa.string()),
        "departure_country": pa.array(np.array(["JP", "KR", "US", "DE", "VN", "TH"], dtype=object)[rng.integers(0, 6, n_decl)]),
        "event_time": event, "hs_code": pa.array([f"{x:08d}" for x in rng.integers(1_000_000, 97_000_000, n_decl)], type=pa.string()),
        "declared_value": pa.array(np.round(rng.lognormal(8, 1.5, n_decl), 2)), "currency": pa.array(["CNY"] * n_decl),
        "quantity": pa.array(rng.integers(1, 500, n_decl).astype(float)), "source": pa.array(["batch"] * n_decl),
        "schema_version": pa.array(np.ones(n_decl, dtype=np.int32)),
        **_provenance("bench.declaration-batches", n_decl, decl_first, event)}, n_decl)

    score = rng.beta(1.2, 6, n_decl)
    listed = rng.random(n_decl) < 0.01
    first_action = np.where(listed | (score > 0.55), "inspect", np.where(score > 0.35, "machine-check", "release"))
    mc = np.flatnonzero(first_action == "machine-check")
    timeout = rng.random(len(mc)) < 0.03
    found_scan = rng.random(len(mc)) < 0.2
    second_action = np.where(found_scan & ~timeout, "inspect", "release")
    second_stage = np.where(timeout, "timeout", "scan")
    n_ins = n_decl + len(mc)
    rows = np.concatenate([np.arange(n_decl), mc])
    stage = np.concatenate([np.full(n_decl, "declaration", dtype=object), second_stage.astype(object)])
    action = np.concatenate([first_action.astype(object), second_action.astype(object)])
    final = np.concatenate([first_action != "machine-check", np.ones(len(mc), dtype=bool)])
    reason = np.where(stage == "scan", "scan", np.where(stage == "timeout", "timeout", np.where(
        np.concatenate([listed, np.zeros(len(mc), dtype=bool)]), "risk-list",
        np.where(action == "release", "none", "model-threshold"))))
    ins_ids = pa.array([f"{i}:1:{s}" for i, s in zip(ids.take(pa.array(rows)).to_pylist(), stage)], type=pa.string())
    n_reasons = np.where(action == "release", 0, rng.integers(1, 4, n_ins))
    n_hits = np.where(reason == "risk-list", 1, 0)
    decided = _ts(day, np.concatenate([secs, np.minimum(secs[mc] + rng.random(len(mc)) * 600, 86_399.9)]) + 0.05)
    ins = _table(t.INSTRUCTIONS, {
        "day": pa.array([day] * n_ins, type=t.DATE), "instruction_id": ins_ids, "declaration_id": ids.take(pa.array(rows)),
        "revision": pa.array(np.ones(n_ins, dtype=np.int32)), "port": port_arr.take(pa.array(rows)),
        "enterprise_id": ent.take(pa.array(rows)),
        "scenario": scen_arr.take(pa.array(rows)), "stage": pa.array(stage, type=pa.string()), "action": pa.array(action, type=pa.string()),
        "final": pa.array(final), "selection_reason": pa.array(reason.astype(object), type=pa.string()),
        "credit_class": pa.array(np.array(["aeo", "white-list", "general", "focus-list", "joint-penalty"], dtype=object)[
            rng.choice(5, n_ins, p=[0.1, 0.2, 0.6, 0.08, 0.02])], type=pa.string()),
        "score": pa.array(score[rows]), "model_version": pa.array(["lgbm-2026-11-01"] * n_ins),
        "policy_version": pa.array(["policy-7"] * n_ins),
        "reasons": _list_of(["model score above inspect threshold", "hs code under watch", "declared value below reference",
                             "new enterprise", "origin country risk", "scan anomaly"], n_reasons, rng),
        "risk_hits": _list_of(["RL-SANCTIONS/E-17", "RL-IPR/E-203", "RL-ORIGIN/E-5"], n_hits, rng),
        "thresholds": pa.ListArray.from_arrays(pa.array(np.arange(0, 2 * n_ins + 1, 2, dtype=np.int32)),
                                               pa.array(np.tile([0.35, 0.55], n_ins))),
        "scan_id": pa.array([None] * n_decl + [f"S-{i}" for i in mc], type=pa.string()),
        "event_time": event.take(pa.array(rows)), "decided_at": decided, "schema_version": pa.array(np.ones(n_ins, dtype=np.int32)),
        **_provenance("bench.instructions", n_ins, instr_offset, decided)}, n_ins)

    inspected = np.flatnonzero((action == "inspect") & final)
    n_res = len(inspected)
    found = rng.random(n_res) < 0.12
    when = _ts(day, np.minimum(secs[rows[inspected]] + 3600, 86_399.9))
    res = _table(t.INSPECTION_RESULTS, {
        "day": pa.array([day] * n_res, type=t.DATE), "instruction_id": ins_ids.take(pa.array(inspected)),
        "declaration_id": ids.take(pa.array(rows[inspected])), "revision": pa.array(np.ones(n_res, dtype=np.int32)),
        "port": port_arr.take(pa.array(rows[inspected])), "station_id": pa.array(["ST-1"] * n_res), "found": pa.array(found),
        "category": pa.array(np.where(found, "undervaluation", None).astype(object), type=pa.string()),
        "duty_recovered": pa.array(np.where(found, np.round(rng.lognormal(7, 1, n_res), 2), 0.0)), "inspected_at": when,
        "schema_version": pa.array(np.ones(n_res, dtype=np.int32)),
        **_provenance("bench.inspection-results", n_res, instr_offset, when)}, n_res)
    return decl, ins, res


def generate_archive(archive_dir: Path, instructions: int, seed: int) -> dict[str, Any]:
    """An archive of about ``instructions`` instructions over DAYS days, one commit per table and day."""
    t.ensure_tables(archive_dir)
    rng = np.random.default_rng(seed)
    per_day_decl = max(1, round(instructions / DAYS / 1.09))  # ~9 % of declarations (machine-checks) get a second one
    written = {"declarations": 0, "instructions": 0, "inspection_results": 0}
    t0 = time.monotonic()
    for d in range(DAYS):
        missing = instructions - written["instructions"]
        if missing <= 0:
            break
        n = per_day_decl if d < DAYS - 1 else missing  # the last day fills up to the count
        decl, ins, res = generate_day(d, written["declarations"], n, written["instructions"], rng)
        if d == DAYS - 1 or ins.num_rows > missing:
            ins = ins.slice(0, missing)
        for name, table in ((t.DECLARATIONS, decl), (t.INSTRUCTIONS, ins), (t.INSPECTION_RESULTS, res)):
            write_deltalake(str(t.table_path(archive_dir, name)), table, partition_by=list(t.SPECS[name].partition_by),
                            mode="append")
            written[name] += table.num_rows
        log(f"archive: day {d + 1}/{DAYS}: {written['instructions']:,}/{instructions:,} instructions "
            f"({time.monotonic() - t0:.0f}s)")
    return {**written, "generate_s": round(time.monotonic() - t0, 1)}


def _dir_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def query_figures(args: argparse.Namespace, archive_dir: Path) -> dict[str, Any]:
    import subprocess
    import sys

    n = args.archive_instructions
    marker = archive_dir / "bench-generated.json"
    if marker.exists() and orjson.loads(marker.read_bytes()).get("requested") == n:
        generated = orjson.loads(marker.read_bytes())
        log(f"archive: reusing {archive_dir} ({generated['instructions']:,} instructions)")
    else:
        if archive_dir.exists():
            shutil.rmtree(archive_dir)
        generated = {"requested": n, **generate_archive(archive_dir, n, args.seed)}
        marker.write_bytes(orjson.dumps(generated))
    instr_table = t.table_path(archive_dir, t.INSTRUCTIONS)
    size = _dir_bytes(instr_table)
    files = len(DeltaTable(str(instr_table)).file_uris())
    # The timings run in a fresh process, so that "cold" means a first call in a new process.
    proc = subprocess.run([sys.executable, "-m", "bench.archive_queries", str(archive_dir), str(generated["declarations"]),
                           str(args.queries), str(args.seed), FIRST_DAY.isoformat(), (FIRST_DAY + timedelta(days=DAYS - 1)).isoformat()],
                          cwd=REPO_ROOT, capture_output=True, check=False)
    if proc.returncode != 0:
        raise BenchError(f"the query timings failed:\n{proc.stderr.decode(errors='replace')[-3000:]}")
    timings = orjson.loads(proc.stdout)
    return {**generated, "instructions_bytes": size, "instructions_files": files,
            "bytes_per_million_instructions": round(size / generated["instructions"] * 1e6),
            "archive_bytes": _dir_bytes(archive_dir), **timings,
            "goals_s": {"explain": EXPLAIN_GOAL_S, "report": REPORT_GOAL_S}}


def print_table(results: dict[str, Any]) -> None:
    print()
    sink = results.get("sink")
    if sink is not None:
        if "error" in sink:
            print(f"sink throughput: FAILED {sink['error'].splitlines()[0][:100]}")
        else:
            print(f"{'archive sink':40} {'records/s':>12} {'x ceiling':>10}")
            print(f"{'(a) raw confluent-kafka consume':40} {sink['ceiling_records_per_s']:12,} {1:10.3f}")
            print(f"{'(b) riskctl archive (to Delta tables)':40} {sink['sink_records_per_s']:12,} {sink['sink/ceiling']:10.3f}"
                  f"   ({sink['records']:,} records, {sink['sink_cpu_us_per_record']:,.0f} CPU us/record)")
            if sink.get("sink_between_commits_records_per_s"):
                steady = sink["sink_between_commits_records_per_s"]
                print(f"{'    between its first and last commit':40} {steady:12,} {steady / sink['ceiling_records_per_s']:10.3f}")
    q = results.get("queries")
    if q is not None:
        if "error" in q:
            print(f"queries: FAILED {q['error'].splitlines()[0][:100]}")
        else:
            print(f"\narchive of {q['instructions']:,} instructions ({q['declarations']:,} declarations, "
                  f"{q['inspection_results']:,} inspection results; {q['instructions_files']} instruction files)")
            for name, goal in (("history", EXPLAIN_GOAL_S), ("report", REPORT_GOAL_S)):
                f = q[name]
                verdict = "meets" if f["warm_median_s"] <= goal and f["cold_s"] <= goal else "MISSES"
                print(f"{name + '()':10} cold {f['cold_s']:7.3f} s   warm median {f['warm_median_s']:7.3f} s   "
                      f"max {f['warm_max_s']:7.3f} s   goal {goal:g} s: {verdict}")
            print(f"instructions table: {q['instructions_bytes'] / 1e6:,.1f} MB = "
                  f"{q['bytes_per_million_instructions'] / 1e6:,.1f} MB per million instructions")
    print(f"machine: {results['machine']}")
