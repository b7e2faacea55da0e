"""``python -m bench soak``: one worker decides millions of declarations; its memory stays flat once retention applies.

A fresh broker (Apache Kafka by default), one ``riskctl worker`` with short compaction and retention
settings (seconds instead of minutes and days), and a gateway (the reference
``DeclarationPublisher``: batch records of up to 500 declarations) that publishes the simulator's
declarations under fresh ids at ``--rate`` a second (0: as fast as the worker takes them), never
more than ``--in-flight`` published and not yet read (``--rate 0``: the worker's full rate, where
the expiry timer gets only the event loop's leftovers and the micro-batches' own expiry keeps pace).
Every ``--sample-every`` seconds it samples the worker's resident memory (RSS,
from /proc), the declaration states it holds (``customs_state_retained``; on RocksDB the store's own
estimate), the states compacted and deleted so far and the declarations read, prints a progress
line and keeps the sample. Once the first declarations are past their retention, the number held
is bounded by rate x retention, so memory must stop growing: the summary gives the RSS when
retention started to apply, at its highest after that and at the end, and the slope of RSS against
the declarations decided after that point (MB per million). Results as JSON under bench/results/.
"""

from __future__ import annotations

import argparse
import os
import signal
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import Dataset, finish, log, machine, producer
from bench.procs import rss_mb
from clients.gateway import DeclarationPublisher
from clients.topics import create_topics
from common.settings import Settings
from devkit.brokers import free_port, make_broker
from devkit.launcher import WorkerProcess, metric_value

REPO_ROOT = Path(__file__).resolve().parents[1]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench soak", description=__doc__.splitlines()[0],
                                epilog="Progress (one line per sample) goes to stderr, the summary to stdout, every sample to --out.")
    p.add_argument("--count", type=int, default=5_000_000, help="declarations to decide (default 5,000,000)")
    p.add_argument("--broker", choices=("tansu", "kafka"), default="kafka", help="broker (default kafka: needs `make kafka-fetch`)")
    p.add_argument("--store", choices=("rocksdb", "memory"), default=Settings.model_fields["table_store"].default,
                   help="TABLE_STORE of the worker (default: the settings' default, %(default)s)")
    p.add_argument("--compact-after", type=float, default=5.0, help="STATE_COMPACT_AFTER_S (default 5)")
    p.add_argument("--retention", type=float, default=60.0, help="STATE_RETENTION_S (default 60)")
    p.add_argument("--input-retention", type=float, default=30.0, help="INPUT_TOPIC_RETENTION_S of the topics (default 30)")
    p.add_argument("--rate", type=float, default=5_000.0,
                   help="declarations offered a second (default 5,000; 0: as fast as the worker reads them)")
    p.add_argument("--sample-every", type=float, default=5.0, help="seconds between samples (default 5)")
    p.add_argument("--in-flight", type=int, default=100_000, help="most declarations published and not yet read (default 100,000)")
    p.add_argument("--pool", type=int, default=20_000, help="distinct simulated declarations, sent again under fresh ids (default 20,000)")
    p.add_argument("--enterprises", type=int, default=5_000, help="simulated enterprise population (default 5,000)")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--partitions", type=int, default=Settings.model_fields["partitions"].default)
    p.add_argument("--timeout", type=float, default=600.0, help="most seconds the worker may take to catch up at the end (default 600)")
    p.add_argument("--out", type=Path, default=REPO_ROOT / "bench" / "results" / "soak.json")
    p.add_argument("--keep", action="store_true", help="keep the work directory (worker log)")
    args = p.parse_args(argv)
    if args.count < 1 or args.pool < 1 or args.in_flight < 1 or args.sample_every <= 0:
        p.error("--count, --pool, --in-flight and --sample-every must be positive")
    if not args.compact_after < args.retention or not args.input_retention < args.retention:
        p.error("--retention must be longer than --compact-after and --input-retention (the worker refuses otherwise)")
    return args


class Sampler:
    def __init__(self, worker: WorkerProcess, every_s: float) -> None:
        self.worker = worker
        self.every_s = every_s
        self.started = time.monotonic()
        self.next_at = self.started
        self.samples: list[dict[str, float]] = []
        self.read = 0.0

    def poll(self, published: int) -> None:
        """Refresh the declarations read; take a sample when one is due."""
        text = self.worker.metrics_text()
        self.read = metric_value(text, "customs_events_in_total", type="declaration")
        now = time.monotonic()
        if now < self.next_at:
            return
        self.next_at = now + self.every_s
        sample = {
            "t_s": round(now - self.started, 1), "published": published, "decided": self.read,
            "rss_mb": rss_mb(self.worker.proc.pid), "retained": metric_value(text, "customs_state_retained"),
            "compacted": metric_value(text, "customs_state_expired_total", what="compacted"),
            "deleted": metric_value(text, "customs_state_expired_total", what="deleted"),
            "pending_machine_checks": metric_value(text, "customs_pending_machine_checks"),
        }
        # Exact, whatever the store: every declaration read holds one state until its tombstone (the
        # soak sends no scans, so no orphan scan is deleted); RocksDB's estimate counts deleted keys too.
        sample["held"] = sample["decided"] - sample["deleted"]
        self.samples.append(sample)
        log(f"soak t={sample['t_s']:>6.0f}s decided {sample['decided']:>10,.0f} RSS {sample['rss_mb']:>7.1f} MB "
            f"held {sample['held']:>9,.0f} retained {sample['retained']:>9,.0f} "
            f"compacted {sample['compacted']:>10,.0f} deleted {sample['deleted']:>10,.0f}")


def summarise(samples: list[dict[str, float]], applies_at_s: float) -> dict[str, Any]:
    """RSS and retained states once retention applies: at that point, at most, at the end, and the
    slope of RSS over the declarations decided since (least squares, MB per million)."""
    after = [s for s in samples if s["t_s"] >= applies_at_s]
    if len(after) < 2:
        return {"error": f"fewer than two samples after retention applies ({applies_at_s:.0f} s): run longer"}
    xs = [s["decided"] / 1e6 for s in after]
    ys = [s["rss_mb"] for s in after]
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    var = sum((x - mx) ** 2 for x in xs)
    slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / var if var else 0.0
    return {
        "retention_applies_at_s": applies_at_s,
        "decided_then": after[0]["decided"], "decided_at_end": after[-1]["decided"],
        "rss_mb_then": after[0]["rss_mb"], "rss_mb_max_after": max(ys), "rss_mb_end": after[-1]["rss_mb"],
        "rss_mb_per_million_after": round(slope, 2),
        "retained_then": after[0]["retained"], "retained_max_after": max(s["retained"] for s in after),
        "retained_end": after[-1]["retained"],
        "held_then": after[0]["held"], "held_max_after": max(s["held"] for s in after), "held_end": after[-1]["held"],
        "rss_mb_max_before": max((s["rss_mb"] for s in samples if s["t_s"] < applies_at_s), default=0.0),
    }


def _stopped(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt  # SIGTERM unwinds like Ctrl-C: the worker and the broker are stopped


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _stopped)
    started = time.monotonic()
    workdir = Path(tempfile.mkdtemp(prefix="bench-soak-"))
    results: dict[str, Any] = {"machine": machine(), "config": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}}
    failed = False
    log(f"soak: generating a pool of {args.pool:,} simulated declarations")
    data = Dataset.generate(args.seed, args.enterprises, args.pool)
    pool = data.records
    lifetimes = {"STATE_COMPACT_AFTER_S": str(args.compact_after), "STATE_RETENTION_S": str(args.retention),
                 "INPUT_TOPIC_RETENTION_S": str(args.input_retention), "TABLE_STORE": args.store}
    with make_broker(args.broker) as broker:
        settings = Settings(kafka_bootstrap_servers=broker.bootstrap_servers, partitions=args.partitions, app_id="bench-soak",
                            topic_prefix="bench-soak.", metrics_port=free_port(), data_dir=workdir / "worker",
                            input_topic_retention_s=args.input_retention, state_retention_s=args.retention,
                            state_compact_after_s=args.compact_after)
        create_topics(settings)
        worker = WorkerProcess(settings, workdir / "worker.log", extra_env=lifetimes)
        try:
            log(f"soak: worker ready after {worker.wait_ready():.1f}s ({args.store} store, {args.broker})")
            sampler = Sampler(worker, args.sample_every)
            publisher = DeclarationPublisher(producer(settings), settings, gateway="SOAK-GW")
            published = 0
            offered_from = time.monotonic()
            while published < args.count:
                if args.rate > 0:  # the offered rate: wait for the chunk's time
                    while (due := offered_from + published / args.rate) > time.monotonic():
                        publisher.poll()
                        time.sleep(max(0.0, min(0.05, due - time.monotonic())))  # the offered rate's pacing
                        sampler.poll(published)
                for _ in range(min(500, args.count - published)):
                    record = pool[published % len(pool)]
                    publisher.publish({**record, "declaration_id": f"SOAK-{published:010d}"})
                    published += 1
                publisher.poll()
                sampler.poll(published)
                while published - sampler.read > args.in_flight:  # the worker's pace: wait until it has read enough
                    if not worker.alive():
                        raise RuntimeError(f"worker exited with code {worker.proc.returncode}:\n{worker.log_tail()}")
                    publisher.poll()
                    time.sleep(0.1)  # poll interval of a condition with a deadline (the worker's progress, --timeout below)
                    sampler.poll(published)
            if publisher.flush(120):
                raise RuntimeError("the gateway could not deliver every batch record")
            deadline = time.monotonic() + args.timeout
            while sampler.read < args.count:
                if time.monotonic() > deadline or not worker.alive():
                    raise RuntimeError(f"the worker read {sampler.read:,.0f} of {args.count:,} declarations:\n{worker.log_tail()}")
                time.sleep(0.2)  # poll interval of a condition with a deadline
                sampler.poll(published)
            text = worker.metrics_text()
            results["instructions"] = metric_value(text, "customs_instructions_total")
            results["dead_letters"] = metric_value(text, "customs_dead_letters_total")
            results["decided"] = sampler.read
        except (Exception, KeyboardInterrupt) as exc:  # noqa: BLE001 - the samples so far are still written
            failed = True
            log(f"soak stopped: {exc!r}")
            results["error"] = repr(exc)
            results["decided"] = sampler.read if "sampler" in locals() else 0
        finally:
            results["samples"] = sampler.samples if "sampler" in locals() else []
            worker.stop()
    results["summary"] = summarise(results["samples"], args.retention + args.compact_after + 2 * args.sample_every)
    results["config"]["pid"] = os.getpid()
    return finish(results, args.out, workdir, started, failed, args.keep, print_summary, "worker log")


def print_summary(results: dict[str, Any]) -> None:
    s = results.get("summary", {})
    print(f"soak: {results.get('decided', 0):,.0f} declarations decided on one worker "
          f"({results['config']['store']} store, compaction {results['config']['compact_after']:g} s, "
          f"retention {results['config']['retention']:g} s)")
    if "error" in s:
        print(f"  {s['error']}")
        return
    print(f"  RSS once retention applies ({s['retention_applies_at_s']:.0f} s, {s['decided_then']:,.0f} decided): {s['rss_mb_then']} MB; "
          f"highest after {s['rss_mb_max_after']} MB; at the end ({s['decided_at_end']:,.0f}) {s['rss_mb_end']} MB; "
          f"slope {s['rss_mb_per_million_after']} MB per million decided")
    print(f"  states held (decided - deleted) then {s['held_then']:,.0f}, highest after {s['held_max_after']:,.0f}, "
          f"at the end {s['held_end']:,.0f}; the store's count then {s['retained_then']:,.0f}, highest after "
          f"{s['retained_max_after']:,.0f}, at the end {s['retained_end']:,.0f}")
