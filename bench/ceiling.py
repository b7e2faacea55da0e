"""(a) The ceiling: a plain confluent-kafka loop, no Faust and no policy.

consume(2000) -> orjson -> one batched LightGBM call (the same starter model, through the same
ModelRegistry) -> one instruction per declaration -> produce. It reads single declarations and
gateway batch records (for the latency runs, which publish like gateways do). Runs as its own
process (``python -m bench.ceiling``) so that it is measured like the other systems.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import orjson

from bench.common import Dataset, producer, reader, run_child_system, simple_instruction
from clients import topics
from common.settings import Settings
from common.timefmt import utc_iso

BATCH = 2000  # the pipeline's default micro-batch bound (Settings.batch_max)


def run(settings: Settings, data: Dataset, count: int, workdir: Path, timeout_s: float, profile: Path | None,
        load: Any = None) -> dict[str, Any]:
    return run_child_system("ceiling", "bench.ceiling", [], settings, data, count, workdir, timeout_s, profile, load)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="the benchmark's raw-client ceiling loop")
    p.add_argument("--bootstrap", required=True)
    p.add_argument("--prefix", required=True)
    p.add_argument("--timeout", type=float, default=900.0, help="exit after this long in any case (the bench stops it sooner)")
    args = p.parse_args(argv)

    from riskmodels.serving import ModelRegistry

    settings = Settings(kafka_bootstrap_servers=args.bootstrap, topic_prefix=args.prefix)
    registry = ModelRegistry.open(None)  # the bundled starter model, as the worker uses by default
    consumer = reader(settings, [topics.DECLARATIONS, topics.DECLARATION_BATCHES])
    batch_topic = settings.topic(topics.DECLARATION_BATCHES)
    out = producer(settings, **{"linger.ms": 1})
    out_topic = settings.topic(topics.INSTRUCTIONS)
    deadline = time.monotonic() + args.timeout
    while time.monotonic() < deadline:
        msgs = [m for m in consumer.consume(BATCH, timeout=0.005) if m.error() is None]  # up to 2000, within 5 ms
        if not msgs:
            continue
        decided_at = utc_iso()  # batch start, as the pipeline stamps its decisions
        decls, partitions = [], []
        for m in msgs:
            value = orjson.loads(m.value())
            items = value["declarations"] if m.topic() == batch_topic else [value]
            decls += items
            partitions += [m.partition()] * len(items)
        batch = registry.score(decls)
        for d, partition, score, version in zip(decls, partitions, batch.scores.tolist(), batch.model_versions):
            # same partition as the input: instructions stay co-partitioned, and no re-hashing
            out.produce(out_topic, key=d["declaration_id"].encode(), value=simple_instruction(d, score, version, decided_at),
                        partition=partition)
        out.poll(0)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
