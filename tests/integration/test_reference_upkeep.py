"""Risk-list changes reach every worker's index entry by entry, and expired entries stay out of it
(issue 15, item 7), on both brokers with two real workers: one writes the risk-list table, the
other learns each change from the table's changelog (Faust's ``on_changelog_event``)."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

from clients import topics
from devkit.launcher import WorkerProcess
from tests.integration.pipeline_harness import Harness, pipeline_settings

NOW = datetime.now(UTC)


def entry(entry_id: str, **over: object) -> dict:
    return {"schema_version": 1, "entry_id": entry_id, "list_id": "JASC-2026-12", "kind": "origin", "value": "KP",
            "action": "inspect", "reason": "sanctions", "source_agency": "customs",
            "valid_from": (NOW - timedelta(days=60)).isoformat(), **over}


def wait_entries(workers: list[WorkerProcess], want: int, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        seen = [w.metric("customs_risk_list_entries") for w in workers]
        if all(n == want for n in seen):
            return
        assert time.monotonic() < deadline, f"{what}: risk-list entries per worker {seen}, want {want} on each"
        time.sleep(0.2)  # probe interval; the deadline bounds the wait


def test_every_worker_indexes_changes_and_leaves_expired_entries_out(broker, unique_name, tmp_path) -> None:
    h = Harness(pipeline_settings(broker.bootstrap_servers, unique_name, tmp_path), tmp_path)
    try:
        workers = [h.start_worker(), h.start_worker()]
        for w in workers:
            w.wait_ready()
        h.publish(topics.RISK_LISTS, "ACTIVE", entry("ACTIVE"))
        # Ended a month ago (RISK_LIST_PRUNE_AFTER_S is a week): kept in the table, not in the index.
        h.publish(topics.RISK_LISTS, "EXPIRED", entry("EXPIRED", valid_until=(NOW - timedelta(days=30)).isoformat()))
        h.flush()
        wait_entries(workers, 1, 60, "after adding an active and an expired entry")
        h.producer.produce(h.settings.topic(topics.RISK_LISTS), key=b"ACTIVE", value=None)  # retract
        h.flush()
        wait_entries(workers, 0, 60, "after retracting the active entry")
        assert all(w.alive() for w in workers)
    finally:
        h.close()
