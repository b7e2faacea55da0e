"""(b) A naive Faust agent: what a first Faust version of this service looks like.

One event at a time, one model call per event (``registry.score([decl])``: a one-row LightGBM
predict), one ``await topic.send()`` per event. Same input records, same model, same instruction
as the ceiling. Runs as its own Faust worker process (``python -m bench.naive_faust``).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import orjson

from bench.common import Dataset, run_child_system, simple_instruction
from clients import topics
from common.settings import Settings
from common.timefmt import utc_iso


def run(settings: Settings, data: Dataset, count: int, workdir: Path, timeout_s: float, profile: Path | None) -> dict[str, Any]:
    args = ["--app-id", settings.app_id, "--datadir", str(workdir / "naive-data")]
    return run_child_system("naive Faust", "bench.naive_faust", args, settings, data, count, workdir, timeout_s, profile)


def build_app(bootstrap: str, prefix: str, app_id: str, datadir: str) -> Any:
    import faust

    from riskmodels.serving import ModelRegistry
    from streams.runtime.consumer import in_order_consumer

    app = faust.App(
        app_id, broker=f"kafka://{bootstrap}", store="memory://", datadir=datadir, web_enabled=False,
        topic_allow_declare=False, topic_partitions=8, consumer_auto_offset_reset="earliest",
        # Short group timeouts, as the pipeline's settings use: otherwise Tansu delays the join ~30 s.
        broker_session_timeout=10, broker_heartbeat_interval=1, broker_rebalance_timeout=3,
    )
    # The pipeline's own transport tweak (fetch wait 20 ms instead of Faust's 1.5 s, which Tansu
    # holds in full): without it the agent idles up to 1.5 s after it resumes on its backlog. Faust's
    # consumer keeps its own thread here, as Faust runs it.
    app.transport.Consumer = in_order_consumer(Settings.model_fields["fetch_max_wait_ms"].default, in_loop=False)
    raw = {"key_type": bytes, "value_type": bytes, "key_serializer": "raw", "value_serializer": "raw"}
    source = app.topic(prefix + topics.DECLARATIONS, **raw)
    sink = app.topic(prefix + topics.INSTRUCTIONS, **raw)
    registry = ModelRegistry.open(None)

    @app.agent(source, name="naive_decide")
    async def naive_decide(stream: Any) -> None:
        async for event in stream.events():
            decl = orjson.loads(event.value)
            scored = registry.score([decl])
            value = simple_instruction(decl, float(scored.scores[0]), scored.model_versions[0], utc_iso())
            await sink.send(key=event.key, value=value)

    return app


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="the benchmark's naive Faust agent")
    p.add_argument("--bootstrap", required=True)
    p.add_argument("--prefix", required=True)
    p.add_argument("--app-id", required=True)
    p.add_argument("--datadir", required=True)
    args = p.parse_args(argv)
    import faust

    app = build_app(args.bootstrap, args.prefix, args.app_id, args.datadir)
    faust.Worker(app, loglevel="warning", quiet=True, redirect_stdouts=False).execute_from_commandline()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
