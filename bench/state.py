"""``python -m bench state``: what the declaration state costs once its lifecycle applies.

1. Memory per retained declaration. In this process, N declarations past their final outcome are
   held as the worker holds them: a fingerprint value (``decision.state``) under its key in a plain
   dict (the memory store's) plus one entry in the expiry index (``streams.expiry``) sharing the
   key object. Bytes per declaration = traced allocations (tracemalloc) / N. The same for full
   states (a release instruction's bytes kept, at most 200,000 of them), for comparison.
2. Restart to ready. On a fresh Apache Kafka broker, the declaration-state changelog is filled
   directly with N fingerprint records by a raw producer (as N decided declarations would leave
   it); then a worker (``riskctl worker``) is started and timed from spawn to ready (tables
   recovered, partitions owned), with its resident memory then. For each store: memory (an empty
   data dir: the whole changelog is read), and RocksDB (a first start fills the data dir; the
   restart over it is timed). With ``--prefill-rocksdb`` the RocksDB data dir is written directly
   instead of by a first start (each key in its partition's database, the persisted offset at the
   changelog's end: what a worker that decided them holds), because a first start reads the whole
   changelog at about 3,000 records a second (half an hour for 5 million).

Decision throughput with each store is the main bench's: ``python -m bench --only pipeline
--worker-env TABLE_STORE=rocksdb``.
"""

from __future__ import annotations

import argparse
import gc
import shutil
import tempfile
import time
import tracemalloc
from pathlib import Path
from typing import Any

from bench.common import finish, log, machine, producer
from bench.procs import rss_mb
from clients import topics
from clients.topics import create_topics
from common.settings import Settings
from decision.state import Fingerprint, encode_fingerprint
from devkit.brokers import free_port, make_broker
from devkit.launcher import WorkerProcess
from schemas.partitioning import partition_for
from streams.expiry import TimeIndex

GOAL_BYTES = 200
GOAL_READY_S = 15.0
RELEASE_BYTES = 700  # about the size of a release instruction's JSON


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench state", description=__doc__.splitlines()[0])
    p.add_argument("--memory-count", type=int, default=1_000_000, help="declarations held for the memory figure")
    p.add_argument("--restart-counts", default="1000000,5000000", help="retained declarations for the restart figures")
    p.add_argument("--stores", default="memory,rocksdb")
    p.add_argument("--partitions", type=int, default=Settings.model_fields["partitions"].default)
    p.add_argument("--prefill-rocksdb", action="store_true",
                   help="write the RocksDB data dir directly instead of timing a first start that fills it")
    p.add_argument("--settle", type=float, default=0.0,
                   help="also sample the worker's RSS this many seconds after ready (RocksDB: its index of what the disk holds fills)")
    p.add_argument("--skip-memory-above", type=int, default=2_000_000,
                   help="no memory-store restart above this many retained declarations (linear: about 5 minutes per million here)")
    p.add_argument("--out", type=Path, default=Path("bench/results/state.json"))
    p.add_argument("--keep", action="store_true", help="keep the work directory")
    return p.parse_args(argv)


# A fingerprint keeps the declaration's HS code and enterprise (streams.joint): sizes as the simulator's.
PARTIES = ("85171200", "E-000123")


def memory_per_declaration(n: int, full: bool) -> float:
    """Traced bytes per declaration of a dict of N values and an index entry per key."""
    gc.collect()
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    store: dict[bytes, bytes] = {}
    index = TimeIndex(600.0)
    t0 = 1_790_000_000
    for i in range(n):
        key = b"DECL-%010d" % i
        value = (b"\x01" + bytes(RELEASE_BYTES)) if full else encode_fingerprint(Fingerprint(t0 + i // 1000, 1, 1, b"01234567", *PARTIES))
        store[key] = value
        index.add(partition_for(key, 24), t0 + i // 1000 + 14 * 86_400, key)
    used = tracemalloc.get_traced_memory()[0] - base
    tracemalloc.stop()
    del store, index
    gc.collect()
    return used / n


def fingerprint_now() -> bytes:
    return encode_fingerprint(Fingerprint(int(time.time()), 1, 1, b"01234567", *PARTIES))


def fill_changelog(settings: Settings, n: int) -> float:
    """N fingerprint records on the declaration-state changelog, each on its key's partition."""
    name = topics.changelog_topic(settings, topics.TABLE_DECLARATION_STATE)
    p = producer(settings)
    t0 = time.monotonic()
    value = fingerprint_now()
    for i in range(n):
        key = b"DECL-%010d" % i
        while True:
            try:
                p.produce(name, key=key, value=value, partition=partition_for(key, settings.partitions))
                break
            except BufferError:
                p.poll(0.05)
        if i % 100_000 == 0:
            p.poll(0)
    if p.flush(300):
        raise RuntimeError("the changelog could not be filled")
    return time.monotonic() - t0


def prefill_rocksdb(settings: Settings, data_dir: Path, n: int) -> float:
    """The N fingerprints written straight into the declaration-state databases a worker on
    ``data_dir`` opens (its first state directory), each partition's persisted offset at the end of
    its changelog partition: as a worker that decided them and had them delivered holds them."""
    from confluent_kafka import Consumer, TopicPartition
    from rocksdict import Options, Rdict, WriteBatch

    name = topics.changelog_topic(settings, topics.TABLE_DECLARATION_STATE)
    consumer = Consumer({**settings.confluent_config(), "group.id": "bench-state-watermarks", "enable.auto.commit": False})
    ends = {p: consumer.get_watermark_offsets(TopicPartition(name, p), timeout=30)[1] for p in range(settings.partitions)}
    consumer.close()
    tables_dir = data_dir / "worker-0" / "v1" / "tables"
    tables_dir.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    value = fingerprint_now()
    dbs = {p: Rdict(str(tables_dir / f"{topics.TABLE_DECLARATION_STATE}-{p}.db"), options=Options(raw_mode=True))
           for p in range(settings.partitions)}
    batches = {p: WriteBatch(raw_mode=True) for p in dbs}
    for i in range(n):
        key = b"DECL-%010d" % i
        partition = partition_for(key, settings.partitions)
        batches[partition].put(key, value)
        if i % 100_000 == 99_999:
            for p, batch in batches.items():
                dbs[p].write(batch)
            batches = {p: WriteBatch(raw_mode=True) for p in dbs}
    for p, db in dbs.items():
        batches[p].put(b"__faust\0offset__", str(max(ends[p] - 1, 0)).encode())  # the last record: Faust refuses one past it
        db.write(batches[p])
        db.close()
    return time.monotonic() - t0


def time_to_ready(settings: Settings, data_dir: Path, log_path: Path, store: str, settle_s: float = 0.0) -> dict[str, float]:
    s = settings.model_copy(update={"metrics_port": free_port(), "data_dir": data_dir})
    started = time.monotonic()
    worker = WorkerProcess(s, log_path, extra_env={"TABLE_STORE": store})
    try:
        worker.wait_ready(timeout_s=1800)
        ready = time.monotonic() - started
        row = {"ready_s": round(ready, 1), "rss_mb": rss_mb(worker.proc.pid)}
        if settle_s > 0:
            time.sleep(settle_s)  # a measurement interval: the RSS that much later, not a synchronisation
            row[f"rss_mb_after_{settle_s:g}s"] = rss_mb(worker.proc.pid)
    finally:
        worker.stop()
    return row


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.monotonic()
    workdir = Path(tempfile.mkdtemp(prefix="bench-state-"))
    results: dict[str, Any] = {"machine": machine(), "config": {"memory_count": args.memory_count, "restart_counts": args.restart_counts,
                                                               "stores": args.stores, "partitions": args.partitions}}
    failed = False
    log(f"memory: {args.memory_count:,} fingerprints and full states in a dict with their index entries")
    results["memory_bytes_per_declaration"] = {
        "fingerprint": round(memory_per_declaration(args.memory_count, full=False), 1),
        "full_state": round(memory_per_declaration(min(args.memory_count, 200_000), full=True), 1),  # only the fingerprints scale
        "goal": GOAL_BYTES,
    }
    restarts: dict[str, Any] = results.setdefault("restart", {})
    for count in [int(c) for c in args.restart_counts.split(",") if c]:
        try:
            with make_broker("kafka") as broker:
                base = Settings(kafka_bootstrap_servers=broker.bootstrap_servers, partitions=args.partitions,
                                app_id=f"bench-state-{count}", topic_prefix=f"bench-state-{count}.")
                create_topics(base)
                log(f"{count:,} retained declarations: filling the changelog")
                fill_s = fill_changelog(base, count)
                row: dict[str, Any] = {"fill_s": round(fill_s, 1)}
                for store in args.stores.split(","):
                    data_dir = workdir / f"{count}-{store}"
                    if store == "memory" and count > args.skip_memory_above:
                        row[store] = {"skipped": f"more than --skip-memory-above {args.skip_memory_above:,}"}
                        log(f"  memory restart skipped: {row[store]['skipped']}")
                        continue
                    if store == "rocksdb" and args.prefill_rocksdb:
                        row["rocksdb_prefill_s"] = round(prefill_rocksdb(base, data_dir, count), 1)
                        log(f"  rocksdb data dir written directly in {row['rocksdb_prefill_s']} s")
                    elif store == "rocksdb":  # the first start reads the whole changelog into the data dir
                        row["rocksdb_first_start"] = time_to_ready(base, data_dir, workdir / f"{count}-{store}-first.log", store)
                        log(f"  rocksdb first start: {row['rocksdb_first_start']}")
                    row[store] = time_to_ready(base, data_dir, workdir / f"{count}-{store}.log", store, args.settle)
                    log(f"  {store} restart: {row[store]}")
                    shutil.rmtree(data_dir, ignore_errors=True)
                restarts[f"{count}"] = row
        except Exception as exc:  # noqa: BLE001 - one failed size must not hide the others
            failed = True
            log(f"restart with {count:,} FAILED: {exc}")
            restarts[f"{count}"] = {"error": str(exc)}
    return finish(results, args.out, workdir, started, failed, args.keep, print_table, "worker logs")


def print_table(results: dict[str, Any]) -> None:
    mem = results["memory_bytes_per_declaration"]
    print(f"memory per retained declaration: fingerprint {mem['fingerprint']:.0f} B, full state {mem['full_state']:.0f} B "
          f"(goal <= {GOAL_BYTES} B)")
    for count, row in results.get("restart", {}).items():
        if "error" in row:
            print(f"{int(count):>10,} retained: FAILED {row['error']}")
            continue
        parts = [f"{store} ready {r['ready_s']} s, RSS {r['rss_mb']} MB" if "ready_s" in r else f"{store} {r}"
                 for store, r in row.items() if isinstance(r, dict)]
        print(f"{int(count):>10,} retained: " + "; ".join(parts) + f" (goal <= {GOAL_READY_S:g} s)")
