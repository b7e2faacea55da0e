"""Early warnings as the analysts review them: the archive's ``warnings`` table with each warning's
verdict (``warning_reviews``), filtered by day, severity, rule and port.

Both topics deliver at least once: a warning or a review read twice is one row here (deduplicated
by ``warning_id``; of two reviews of one warning the earlier one stands, as the console publishes
one per warning).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Any

import polars as pl

from archive import tables as t
from archive.queries import Archive, _rows, _unique

MAX_ROWS = 500
MAX_FILTER_LENGTH = 64
WARNING_COLUMNS = ["warning_id", "severity", "subject_kind", "subject_id", "source", "rule", "evidence", "event_time",
                   "raised_at", "port", "scenario", "declaration_id", "revision", "day"]
REVIEW_COLUMNS = ["warning_id", "verdict", "reviewed_at"]


@dataclass(frozen=True)
class WarningFilter:
    """What an analyst asks for: a window of days (the warnings' event days) and optional equalities."""

    day_from: date
    day_to: date
    severity: str | None = None
    rule: str | None = None
    port: str | None = None
    verdict: str | None = None  # "confirmed", "dismissed", "open" (not reviewed) or None: all

    def __post_init__(self) -> None:
        for name in ("severity", "rule", "port", "verdict"):
            value = getattr(self, name)
            if value is not None and len(value) > MAX_FILTER_LENGTH:
                raise ValueError(f"{name} is at most {MAX_FILTER_LENGTH} characters")
        if self.day_from > self.day_to:
            raise ValueError("from must not be after to")


def _reviews(archive: Archive, day_from: date) -> pl.DataFrame:
    """One review per warning (the first read), of reviews made from ``day_from`` on (a review follows its warning)."""
    frame = (archive.window(t.WARNING_REVIEWS, day_from).select(*REVIEW_COLUMNS, "kafka_partition", "kafka_offset")
             .sort("reviewed_at", "kafka_partition", "kafka_offset").collect())
    return frame.unique(subset="warning_id", keep="first", maintain_order=True).select(REVIEW_COLUMNS)


def list_warnings(query: WarningFilter, limit: int = 200, archive_dir: Any = None) -> tuple[list[dict[str, Any]], int]:
    """The newest ``limit`` warnings matching ``query`` (at most ``MAX_ROWS``) with their verdict
    (``verdict``/``reviewed_at``, None while open), and how many match in all."""
    archive = Archive(archive_dir)
    frame = archive.window(t.WARNINGS, query.day_from, query.day_to, query.port)
    if query.severity:
        frame = frame.filter(pl.col("severity") == query.severity)
    if query.rule:
        frame = frame.filter(pl.col("rule") == query.rule)
    warnings = _unique(frame.select(WARNING_COLUMNS).collect(), ["warning_id"])
    joined = warnings.join(_reviews(archive, query.day_from), on="warning_id", how="left")
    if query.verdict == "open":
        joined = joined.filter(pl.col("verdict").is_null())
    elif query.verdict:
        joined = joined.filter(pl.col("verdict") == query.verdict)
    total = joined.height
    shown = joined.sort(["event_time", "warning_id"], descending=[True, False]).head(max(0, min(limit, MAX_ROWS)))
    return _rows(shown), total


def find_warning(warning_id: str, day: date | None = None, archive_dir: Any = None) -> dict[str, Any] | None:
    """One warning by id (``day``: its event day, which narrows the scan to that day's files), or None."""
    archive = Archive(archive_dir)
    frame = archive.window(t.WARNINGS, day, day) if day is not None else archive.scan(t.WARNINGS)
    rows = frame.filter(pl.col("warning_id") == warning_id).select(WARNING_COLUMNS).head(1).collect()
    return _rows(rows)[0] if rows.height else None


def review_of(warning_id: str, since: date, archive_dir: Any = None) -> dict[str, Any] | None:
    """The archived verdict on one warning (reviews from ``since`` on), or None."""
    rows = _reviews(Archive(archive_dir), since).filter(pl.col("warning_id") == warning_id)
    return _rows(rows)[0] if rows.height else None


def rules_seen(day_from: date, day_to: date, archive_dir: Any = None) -> list[str]:
    """The rules that raised a warning in the window (the page's rule choices)."""
    frame = Archive(archive_dir).window(t.WARNINGS, day_from, day_to).select("rule").unique().collect()
    return sorted(str(r) for r in frame.get_column("rule").to_list() if r)

