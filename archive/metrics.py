"""Prometheus metrics of the archive sink, on its own registry and endpoint (``archive_metrics_port``).

Names are part of the operations contract: ``deploy/prometheus/archive-alerts.yml`` alerts on them.
A registry of its own keeps the sink's endpoint free of the worker's series when both run in one
process (tests, the demo)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

REGISTRY = CollectorRegistry(auto_describe=True)

RECORDS = Counter("customs_archive_records_total",
                  "Kafka records read and committed to the archive, by logical topic (a replay after a crash counts again).",
                  ["topic"], registry=REGISTRY)
ROWS = Counter("customs_archive_rows_total", "Rows committed to the archive, by table.", ["table"], registry=REGISTRY)
COMMITS = Counter("customs_archive_commits_total", "Delta commits written, by table.", ["table"], registry=REGISTRY)
# stage: "write" (a Delta commit failed: the buffer is dropped and re-read from the archived positions),
# "consume" (a consumer error reported by librdkafka).
FAILURES = Counter("customs_archive_failures_total", "Failures of the sink, by stage.", ["stage"], registry=REGISTRY)
REJECTED = Counter("customs_archive_rejected_total",
                   "Records (or gateway-batch items) the archive could not parse, archived as dead letters, by topic and reason.",
                   ["topic", "reason"], registry=REGISTRY)
LAG = Gauge("customs_archive_lag_records",
            "Records on the topics that are not in the archive yet, by logical topic (from the brokers' high watermarks).",
            ["topic"], registry=REGISTRY)
LAST_COMMIT = Gauge("customs_archive_last_commit_timestamp_seconds", "Unix time of the last flush that committed every table it wrote.",
                    registry=REGISTRY)
FLUSH_SECONDS = Histogram("customs_archive_flush_seconds", "Time to write one flush (every table's Delta commit).",
                          buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0), registry=REGISTRY)
ASSIGNED = Gauge("customs_archive_assigned_partitions", "Topic partitions this sink owns.", registry=REGISTRY)
READY = Gauge("customs_archive_ready", "1 while the sink owns partitions and has read their archived positions.", registry=REGISTRY)
# Maintenance (archive/maintenance.py): outcome "ok" or "failed".
MAINTENANCE = Counter("customs_archive_maintenance_runs_total", "Compaction, retention and vacuum runs, by outcome.", ["outcome"],
                      registry=REGISTRY)
COMPACTED_FILES = Counter("customs_archive_compacted_files_total", "Small files rewritten into larger ones, by table.", ["table"],
                          registry=REGISTRY)
EXPIRED_ROWS = Counter("customs_archive_expired_rows_total", "Rows deleted because their day is past the retention, by table.",
                       ["table"], registry=REGISTRY)
# Alerts take increase() of these: a series must exist at 0 before its first failure, or the
# failures that create it are never seen.
for _stage in ("write", "consume"):
    FAILURES.labels(_stage)
for _outcome in ("ok", "failed"):
    MAINTENANCE.labels(_outcome)

VACUUMED_FILES = Counter("customs_archive_vacuumed_files_total", "Unreferenced files deleted by vacuum, by table.", ["table"],
                         registry=REGISTRY)


def serve(host: str, port: int) -> None:
    """The /metrics endpoint (a daemon thread); port 0 serves nothing."""
    if port:
        start_http_server(port, addr=host, registry=REGISTRY)
