"""Keeping the archive small and fast for years: compaction, retention, vacuum.

Each flush of the sink adds one small Parquet file per table and (day, port) partition, so a day at
a busy office leaves thousands of them; :func:`maintain` rewrites them into few large files
(``optimize.compact``, which readers see as one atomic version), deletes the days older than the
retention (whole files: the predicate is on the partition column), vacuums files that no version
has referenced for the table's deleted-file retention (a week by default, so readers of recent
versions and time travel keep working; files of a crashed flush that never got committed go too)
and drops expired log files behind the last checkpoint.

None of this conflicts with the sink's appends: compaction and deletes remove only the files they
read, appends only add, and delta-rs retries a commit that lost the race against a compatible one.
The sink runs :func:`maintain` in a background thread every ``archive_maintenance_interval_s``;
``riskctl archive-maintain`` runs it once (cron, or after a change of the retention).
"""

from __future__ import annotations

import logging
import threading
import time
from datetime import UTC, date, datetime
from typing import Any

from archive import metrics
from archive import tables as t
from archive.location import LocationLike

log = logging.getLogger(__name__)


def retention_cutoff(today: date, years: int) -> date:
    """The first day kept: ``today`` minus ``years`` (29 February falls back to the 28th)."""
    try:
        return today.replace(year=today.year - years)
    except ValueError:
        return today.replace(year=today.year - years, day=28)


def maintain(archive_dir: LocationLike, retention_years: int, today: date | None = None) -> dict[str, dict[str, Any]]:
    """Compact, expire and vacuum every table (local or on an object store); returns what was done per table."""
    cutoff = retention_cutoff(today or datetime.now(UTC).date(), retention_years)
    done: dict[str, dict[str, Any]] = {}
    for name in t.SPECS:
        table = t.open_table(archive_dir, name)
        if table is None:
            continue
        deleted = table.delete(predicate=f"day < '{cutoff.isoformat()}'")
        compacted = table.optimize.compact()
        vacuumed = table.vacuum(dry_run=False)
        table.cleanup_metadata()
        done[name] = {"expired_rows": int(deleted.get("num_deleted_rows") or 0),
                      "files_compacted": int(compacted.get("numFilesRemoved") or 0),
                      "files_written": int(compacted.get("numFilesAdded") or 0),
                      "files_vacuumed": len(vacuumed), "version": table.version()}
        metrics.EXPIRED_ROWS.labels(name).inc(done[name]["expired_rows"])
        metrics.COMPACTED_FILES.labels(name).inc(done[name]["files_compacted"])
        metrics.VACUUMED_FILES.labels(name).inc(done[name]["files_vacuumed"])
    return done


class Maintenance(threading.Thread):
    """:func:`maintain` every ``interval_s`` beside the sink; a failure is logged, counted and retried next time."""

    def __init__(self, archive_dir: LocationLike, retention_years: int, interval_s: float, stop: threading.Event) -> None:
        super().__init__(name="archive-maintenance", daemon=True)
        self.archive_dir = archive_dir
        self.retention_years = retention_years
        self.interval_s = interval_s
        self.stop = stop

    def run(self) -> None:
        while not self.stop.wait(self.interval_s):
            started = time.monotonic()
            try:
                done = maintain(self.archive_dir, self.retention_years)
            except Exception as exc:  # noqa: BLE001 - maintenance must never take the sink down; it runs again next interval
                metrics.MAINTENANCE.labels("failed").inc()
                log.error("archive maintenance failed (%s: %s)", type(exc).__name__, " ".join(str(exc).split())[:500])
                continue
            metrics.MAINTENANCE.labels("ok").inc()
            compacted = sum(d["files_compacted"] for d in done.values())
            log.info("archive maintenance in %.1fs: %d small files compacted, %d rows past the %d-year retention deleted, "
                     "%d files vacuumed", time.monotonic() - started, compacted, sum(d["expired_rows"] for d in done.values()),
                     self.retention_years, sum(d["files_vacuumed"] for d in done.values()))
