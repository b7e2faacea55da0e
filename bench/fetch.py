"""``python -m bench fetch``: what one fetch costs the worker's consumer, in full and in fetch sessions, against librdkafka.

The consumer is the worker's own (aiokafka), reading as many partitions as a worker does (its
inputs and the global tables' changelogs), of which a few are busy: a separate process publishes
``--rate`` records a second of ``--record-bytes`` each (a gateway batch of a few declarations) to
two topics' partitions. At moderate load every record is a fetch of its own, so the consumer's CPU
per fetch is the fixed cost per fetch cycle that the headroom targets are about
(docs/benchmark.md, "Headroom at moderate load"). Each round reads for ``--seconds`` in full fetches
(aiokafka's own) and then in sessions (``streams.runtime.fetchsession``) on one Apache Kafka broker;
and then with librdkafka (confluent-kafka's consumer, by assignment as aiokafka here, its fetches
counted from its statistics), the consumer in C that docs/benchmark.md ("Cold caches") points to;
the summary gives the median of the rounds and the ratios against full fetches, with the broker's
CPU beside them. The consumer's CPU is this process's own, every thread (the publisher is another
process). Results as JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from confluent_kafka import OFFSET_END, Consumer
from confluent_kafka import TopicPartition as KafkaPartition

from bench.common import log, machine
from common.settings import Settings
from devkit.brokers import create_topics, ensure_kafka_jars, make_broker
from devkit.launcher import cpu_seconds
from streams.runtime import fetchsession

REPO_ROOT = Path(__file__).resolve().parents[1]

PUBLISHER = r"""
import sys, time
from confluent_kafka import Producer
bootstrap, rate, topics, seconds, size = sys.argv[1], float(sys.argv[2]), sys.argv[3].split(","), float(sys.argv[4]), int(sys.argv[5])
producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 1})
start, n = time.monotonic(), 0
while time.monotonic() - start < seconds:
    wait = start + n / rate - time.monotonic()
    if wait > 0:
        time.sleep(wait)
    producer.produce(topics[n % len(topics)], value=b"x" * size, partition=(n // len(topics)) % 2)
    producer.poll(0)
    n += 1
producer.flush(30)
"""


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench fetch", description=__doc__.splitlines()[0],
                                epilog="Progress (one line per run) goes to stderr, the summary to stdout, every run to --out.")
    p.add_argument("--rounds", type=int, default=5, help="rounds of (full, sessions) runs (default 5)")
    p.add_argument("--seconds", type=float, default=15.0, help="seconds each run reads (default 15)")
    p.add_argument("--rate", type=float, default=300.0,
                   help="records published a second (default 300: about what a worker fetches at 1,000 declarations/s)")
    p.add_argument("--record-bytes", type=int, default=600, help="bytes per record (default 600)")
    p.add_argument("--partitions", type=int, default=39,
                   help="partitions the consumer reads, 4 of them busy (default 39: a worker's on the default topics)")
    p.add_argument("--fetch-max-wait-ms", type=int, default=Settings.model_fields["fetch_max_wait_ms"].default,
                   help="the consumer's longest fetch wait (default: the worker's FETCH_MAX_WAIT_MS default, %(default)s)")
    p.add_argument("--out", type=Path, default=REPO_ROOT / "bench" / "results" / "fetch.json")
    args = p.parse_args(argv)
    if args.partitions < 4 or args.rounds < 1 or args.rate <= 0 or args.seconds <= 0:
        p.error("--partitions at least 4, --rounds at least 1, --rate and --seconds above 0")
    return args


def _layout(partitions: int) -> dict[str, int]:
    """Topics of two partitions (the first two busy) and, for an odd count, one of one."""
    topics = {f"bench-fetch-{i}": 2 for i in range(partitions // 2)}
    if partitions % 2:
        topics[f"bench-fetch-{partitions // 2}"] = 1
    return topics


KINDS = ("full", "sessions", "librdkafka")  # aiokafka's own fetches, in fetch sessions, and librdkafka's


class _Window:
    """One measured read: the publisher's run on the first two topics, and this process's CPU (every
    thread), the broker's and the wall time over it."""

    def __init__(self, args: argparse.Namespace, bootstrap: str, topics: dict[str, int], broker_pid: int) -> None:
        self.publisher = subprocess.Popen([sys.executable, "-c", PUBLISHER, bootstrap, str(args.rate), ",".join(list(topics)[:2]),
                                           str(args.seconds), str(args.record_bytes)])
        self.broker_pid = broker_pid
        self.cpu0, self.broker0, self.t0 = cpu_seconds(os.getpid()), cpu_seconds(broker_pid), time.monotonic()

    def open(self) -> bool:
        return self.publisher.poll() is None

    def close(self) -> tuple[float, float, float]:
        """``(consumer CPU s, broker CPU s, wall s)`` since the window opened; the publisher must have succeeded."""
        measured = (cpu_seconds(os.getpid()) - self.cpu0, cpu_seconds(self.broker_pid) - self.broker0, time.monotonic() - self.t0)
        if self.publisher.returncode:
            raise RuntimeError(f"the publisher exited with {self.publisher.returncode}")
        return measured


def _figures(kind: str, records: int, fetches: float, wall: float, cpu: float, broker: float) -> dict[str, Any]:
    return {"kind": kind, "records": records, "fetches": round(fetches), "fetches_per_s": round(fetches / wall, 1),
            "consumer_cpu_us_per_fetch": round(cpu / max(fetches, 1) * 1e6, 1), "consumer_cores": round(cpu / wall, 3),
            "consumer_cpu_us_per_record": round(cpu / max(records, 1) * 1e6, 1),
            "broker_cpu_us_per_fetch": round(broker / max(fetches, 1) * 1e6, 1), "broker_cores": round(broker / wall, 3)}


def _run_librdkafka(args: argparse.Namespace, bootstrap: str, topics: dict[str, int], broker_pid: int) -> dict[str, Any]:
    """The same partitions read by librdkafka (its own fetcher threads; ``consume`` hands over what
    they fetched). Fetches are counted from its statistics, once a second: the rate between the
    first and the last report while the publisher ran."""
    reports: list[tuple[float, int]] = []

    def on_stats(text: str) -> None:
        brokers = json.loads(text).get("brokers", {}).values()
        reports.append((time.monotonic(), sum(int(b.get("req", {}).get("Fetch", 0)) for b in brokers)))

    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "bench-fetch", "enable.auto.commit": False,
                         "fetch.wait.max.ms": args.fetch_max_wait_ms, "fetch.min.bytes": 1,
                         "statistics.interval.ms": 1000, "stats_cb": on_stats})
    try:
        consumer.assign([KafkaPartition(t, p, OFFSET_END) for t, n in topics.items() for p in range(n)])
        consumer.consume(num_messages=1000, timeout=0.5)  # connected, positions known
        measured, records, first = _Window(args, bootstrap, topics, broker_pid), 0, len(reports)
        while measured.open():
            records += sum(1 for m in consumer.consume(num_messages=1000, timeout=0.1) if m.error() is None)
        cpu, broker, wall = measured.close()
        window = reports[first:]
        if len(window) < 2:
            raise RuntimeError("librdkafka sent fewer than two statistics reports while the publisher ran")
        (ta, fa), (tb, fb) = window[0], window[-1]
        return _figures("librdkafka", records, (fb - fa) / (tb - ta) * wall, wall, cpu, broker)
    finally:
        consumer.close()


async def _run(args: argparse.Namespace, bootstrap: str, topics: dict[str, int], sessions: bool, broker_pid: int) -> dict[str, Any]:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, auto_offset_reset="latest",
                                fetch_max_wait_ms=args.fetch_max_wait_ms, fetch_min_bytes=1)
    await consumer.start()
    try:
        tps = [TopicPartition(t, p) for t, n in topics.items() for p in range(n)]
        consumer.assign(tps)
        await consumer.seek_to_end(*tps)
        opened = fetchsession.install(consumer._fetcher) if sessions else {}
        client = consumer._fetcher._client
        plain_send = client.send
        fetches = 0

        async def counted(node_id: int, request: Any, **kwargs: Any) -> Any:
            nonlocal fetches
            fetches += request.API_KEY == 1  # Fetch
            return await plain_send(node_id, request, **kwargs)

        client.send = counted
        await consumer.getmany(timeout_ms=500)  # connected, positions known, the session (if any) opened
        measured, fetches0, records = _Window(args, bootstrap, topics, broker_pid), fetches, 0
        while measured.open():
            got = await consumer.getmany(timeout_ms=100)
            records += sum(len(batch) for batch in got.values())
        n = fetches - fetches0
        cpu, broker, wall = measured.close()
        return {**_figures("sessions" if sessions else "full", records, n, wall, cpu, broker),
                "incremental_fetches": sum(s.incremental_fetches for s in opened.values())}
    finally:
        await consumer.stop()


SUMMARISED = ("consumer_cpu_us_per_fetch", "consumer_cores", "consumer_cpu_us_per_record", "broker_cpu_us_per_fetch",
              "fetches_per_s")


def summarise(runs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """For each figure: the median of the rounds for each kind, and each kind's ratio to full fetches."""
    summary: dict[str, dict[str, Any]] = {}
    for key in SUMMARISED:
        digits = 3 if key.endswith("_cores") else 1
        row: dict[str, Any] = {kind: round(statistics.median(r[key] for r in runs if r["kind"] == kind), digits) for kind in KINDS}
        for kind in KINDS[1:]:
            row[f"{kind}_ratio"] = round(row[kind] / row["full"], 3) if row["full"] else None
        summary[key] = row
    return summary


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.monotonic()
    ensure_kafka_jars()
    broker = make_broker("kafka")
    broker.start()
    runs: list[dict[str, Any]] = []
    try:
        topics = _layout(args.partitions)
        create_topics(broker.bootstrap_servers, topics)
        assert broker.pid is not None
        for round_ in range(1, args.rounds + 1):
            for kind in KINDS:
                if kind == "librdkafka":
                    run = _run_librdkafka(args, broker.bootstrap_servers, topics, broker.pid)
                else:
                    run = asyncio.run(_run(args, broker.bootstrap_servers, topics, kind == "sessions", broker.pid))
                runs.append({"round": round_, **run})
                log(f"round {round_}/{args.rounds}, {kind}: {run['fetches']} fetches ({run['fetches_per_s']}/s), "
                    f"consumer {run['consumer_cpu_us_per_fetch']:.0f} µs a fetch ({run['consumer_cores']} of a core), "
                    f"broker {run['broker_cpu_us_per_fetch']:.0f} µs a fetch")
    finally:
        broker.stop()

    summary = summarise(runs)
    for key, row in summary.items():
        print(f"{key:28s} " + "   ".join(f"{kind} {row[kind]:>8}" for kind in KINDS) + "   ratios to full "
              + ", ".join(f"{kind} {row[f'{kind}_ratio']}" for kind in KINDS[1:]))
    config = {k: str(v) for k, v in vars(args).items() if k != "out"}
    config.update({"wall_time_s": round(time.monotonic() - started, 1),
                   "load_average_at_end": [round(x, 2) for x in os.getloadavg()]})
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"machine": machine(), "config": config, "summary": summary, "runs": runs}, indent=2) + "\n")
    log(f"wrote {args.out}")
    return 0
