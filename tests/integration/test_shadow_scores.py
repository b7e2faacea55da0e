"""Shadow scores on real brokers: a worker with a shadow model loaded publishes one ShadowScore per
decided declaration beside its instruction, and the archive sink lands them where the analyst's
champion/challenger comparison reads them."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from archive.analytics import model_comparison
from archive.sink import ArchiveSink
from clients import topics
from clients.readers import assigned_reader
from riskmodels.serving import STARTER_DIR, publish
from schemas import ShadowScore
from schemas.partitioning import partition_for
from tests.integration.pipeline_harness import Harness, declaration, pipeline_settings

DECLARATIONS = 40


def wait_for(done: Any, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not done():
        assert time.monotonic() < deadline, f"timed out after {timeout_s:.0f}s waiting for {what}"
        time.sleep(0.2)  # probe interval; the deadline bounds the wait


def test_shadow_scores_go_out_with_the_instructions_and_into_the_archive(broker: Any, unique_name: str, tmp_path: Path) -> None:
    registry = tmp_path / "models"
    publish(registry, STARTER_DIR)
    publish(registry, STARTER_DIR, shadow=True)  # the same model as challenger: both must score alike
    settings = pipeline_settings(broker.bootstrap_servers, unique_name, tmp_path, model_dir=registry,
                                 archive_dir=tmp_path / "archive", archive_flush_interval_s=0.2, archive_metrics_port=0,
                                 archive_maintenance_interval_s=0)
    h = Harness(settings, tmp_path)
    reader = assigned_reader(settings, [topics.SHADOW_SCORES])
    sink, stop = ArchiveSink(settings), threading.Event()
    sink_thread = threading.Thread(target=sink.run, args=(stop,), daemon=True)
    try:
        worker = h.start_worker()
        worker.wait_ready()
        sink_thread.start()
        ids = [f"SH-{i}" for i in range(DECLARATIONS)]
        for did in ids:
            h.publish(topics.DECLARATIONS, did, declaration(did, "E1"))
        h.flush()
        h.read_until(lambda h: {i["declaration_id"] for i in h.instructions if i["stage"] == "declaration"} >= set(ids),
                     90, "a declaration-stage instruction for every declaration")

        shadows: list[tuple[int, ShadowScore]] = []
        deadline = time.monotonic() + 60
        while len({s.declaration_id for _, s in shadows}) < DECLARATIONS:
            assert time.monotonic() < deadline, f"{len(shadows)} shadow scores of {DECLARATIONS}; log:\n{worker.log_tail()}"
            shadows += [(m.partition(), ShadowScore.model_validate_json(m.value())) for m in reader.consume(500, timeout=0.2)
                        if not m.error()]
        first = {i["declaration_id"]: i for i in h.instructions if i["stage"] == "declaration"}
        assert len(shadows) == DECLARATIONS, "one shadow score per decided revision"
        for partition, s in shadows:
            assert partition == partition_for(s.declaration_id.encode(), settings.partitions)  # beside its instruction
            ins = first[s.declaration_id]
            assert s.instruction_id == ins["instruction_id"] and s.champion_version == ins["model_version"]
            assert s.champion_score == ins["score"] and s.champion_action.value == ins["action"]
            assert s.challenger_score == s.champion_score and s.challenger_action == s.champion_action
        challenger = shadows[0][1].challenger_version
        assert worker.metric("customs_shadow_scores_total", scenario="general-trade", version=challenger) == DECLARATIONS
        assert worker.metric("customs_shadow_model_info", scenario="general-trade", version=challenger) == 1

        today = datetime.now(UTC).date()
        window = (today - timedelta(days=1), today + timedelta(days=1))

        def archived() -> int:
            return int(model_comparison(*window, archive_dir=settings.archive_dir)["scored"])

        wait_for(lambda: archived() >= DECLARATIONS, 60, "the archive to hold every shadow score")
        doc = model_comparison(*window, archive_dir=settings.archive_dir)
        assert doc["scored"] == DECLARATIONS and doc["agreement_rate"] == 1.0
        assert [(p["champion_version"], p["challenger_version"]) for p in doc["pairs"]] == [
            (shadows[0][1].champion_version, shadows[0][1].challenger_version)]
    finally:
        stop.set()
        if sink_thread.is_alive():
            sink_thread.join(30)
        reader.close()
        h.close()
