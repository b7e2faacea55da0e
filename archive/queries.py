"""Questions the archive answers, with polars lazy scans of the Delta tables (no broker needed).

For a console::

    from archive.queries import history, report
    history("D-2026-000042")                      # every revision, instruction, scan and inspection
    report(date(2026, 11, 1), date(2026, 11, 30), port="HAK-SEA")

``archive_dir`` (a directory, an ``s3://`` URI or an :class:`~archive.location.ArchiveLocation`)
defaults to the settings' archive (``ARCHIVE_LOCATION``, else ``ARCHIVE_DIR``). Rows come back as plain JSON-ready dicts
(times as ISO 8601 strings in UTC). Instructions, scans and inspection results are deduplicated by
their ids (the topics deliver at least once; the archive keeps every record it read).
"""

from __future__ import annotations

import copy
import functools
from collections.abc import Iterable
from datetime import date, datetime, timedelta
from typing import Any

import polars as pl
from deltalake import DeltaTable

from archive import tables as t
from archive.location import ArchiveLocation, LocationLike, as_location, from_settings
from archive.opened import REFRESH_S, OpenTables
from common.timefmt import utc_iso

PROVENANCE_COLUMNS = [name for name, _ in t.PROVENANCE]


# The lanes a declaration-time decision selects into (release is the green lane).
SELECTION_LANES = ("machine-check", "inspect")


def selection_rate(lanes: dict[str, int], lane: str) -> float:
    """The share of declaration-time decisions (``lanes``: action -> count) that went to ``lane``."""
    return round(lanes.get(lane, 0) / max(sum(lanes.values()), 1), 6)


def ratio(part: int, whole: int) -> float | None:
    """``part / whole`` rounded as the reports show rates, None when there is nothing to divide."""
    return round(part / whole, 6) if whole else None


def _location(archive_dir: LocationLike | None) -> ArchiveLocation:
    if archive_dir is not None:
        return as_location(archive_dir)
    from common.settings import Settings

    return from_settings(Settings())


def _json_ready(value: Any) -> Any:
    if isinstance(value, datetime):
        return utc_iso(value)
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, list):
        return [_json_ready(v) for v in value]
    return value


@functools.cache
def _schema(table: str) -> pl.Schema:
    return pl.Schema(pl.DataFrame(t.SPECS[table].schema.empty_table()).schema)


# What a declaration's history holds: key -> (table, order, unique by).
HISTORY: dict[str, tuple[str, list[str], str | None]] = {
    "declarations": (t.DECLARATIONS, ["revision"], None),
    "centralised_items": (t.CENTRALISED_ITEMS, ["revision"], None),
    "instructions": (t.INSTRUCTIONS, ["revision", "decided_at"], "instruction_id"),
    "scans": (t.SCANS, ["revision", "event_time"], "scan_id"),
    "inspection_results": (t.INSPECTION_RESULTS, ["revision", "inspected_at"], "instruction_id"),
    "warnings": (t.WARNINGS, ["revision", "raised_at"], "warning_id"),
    "warning_reviews": (t.WARNING_REVIEWS, ["reviewed_at"], "warning_id"),
}
# Warnings about a declaration's shopper or goods (Archive.subject_warnings): how far back, how many
# subjects one declaration may name in the query (its identifiers are bounded by the schema too), and
# how many warnings are shown.
SUBJECT_LOOKBACK = timedelta(days=400)
MAX_SUBJECTS = 50
SUBJECT_WARNINGS_LIMIT = 20
# Records dated up to this long before the hinted day are still read (clocks of gateways and
# scanners differ; a record near midnight falls on the day before).
HINT_MARGIN = timedelta(days=1)


def history_window(day: date, port: str | None) -> pl.Expr:
    """The partitions a history hinted with ``day`` and ``port`` reads: that port's, from the day before on."""
    window = pl.col("day") >= day - HINT_MARGIN
    # Warnings without a port (and their reviews) are kept in the port-less partition.
    return window & ((pl.col("port") == port) | pl.col("port").is_null()) if port is not None else window


def holds_first_revision(doc: dict[str, Any]) -> bool:
    """Whether a history read holds the declaration's first revision (then every later record is in the same window)."""
    return any(r["revision"] == 1 for r in (*doc["declarations"], *doc["centralised_items"]))


def _rows(frame: pl.DataFrame) -> list[dict[str, Any]]:
    return [{k: _json_ready(v) for k, v in row.items()} for row in frame.to_dicts()]


def _repeated_keys(frame: pl.DataFrame, columns: list[str]) -> tuple[pl.Expr, bool]:
    """A row filter that keeps every row whose key (``columns``) might occur more than once, and
    whether any does: rows whose 64-bit key hash occurs once are certainly unique, so the exact
    (string-hashing) work runs only on the few others. Sorting the hashes finds repeats much faster
    than a hash table of the strings (the difference between seconds and a quarter of a second on
    ten million instructions)."""
    key = pl.col(columns[0]).hash() if len(columns) == 1 else pl.struct(columns).hash()
    hashes = frame.select(key.alias("h")).get_column("h").sort()
    repeated = hashes.filter(hashes == hashes.shift(1)).unique()
    return key.is_in(repeated.implode()), repeated.len() > 0


def _unique(frame: pl.DataFrame, columns: list[str]) -> pl.DataFrame:
    """``frame.unique(subset=columns, keep="first")`` (rows in another order): exact, fast when repeats are rare."""
    maybe, any_repeated = _repeated_keys(frame, columns)
    if not any_repeated:
        return frame
    return pl.concat([frame.filter(~maybe), frame.filter(maybe).unique(subset=columns, keep="first", maintain_order=True)])


def _n_unique(frame: pl.DataFrame, column: str) -> int:
    """``frame[column].n_unique()``, exact, fast when repeats are rare."""
    maybe, any_repeated = _repeated_keys(frame, [column])
    if not any_repeated:
        return frame.height
    return frame.filter(~maybe).height + frame.filter(maybe).get_column(column).n_unique()


class Archive:
    """The archive's tables, read with polars (a table that does not exist reads as empty). The
    tables stay open between queries and are refreshed at most every ``refresh_s`` seconds
    (:mod:`archive.opened`): keep one ``Archive`` for many queries."""

    def __init__(self, archive_dir: LocationLike | None = None, refresh_s: float = REFRESH_S) -> None:
        self.location = _location(archive_dir)
        self.tables = OpenTables(self.location, refresh_s)
        self._pins: dict[str, DeltaTable | None] | None = None

    @property
    def dir(self) -> ArchiveLocation:
        return self.location

    def pinned(self, names: tuple[str, ...]) -> Archive:
        """This archive with ``names`` held at their current versions (for answers whose parts must agree)."""
        view = copy.copy(self)
        view._pins = self.tables.pinned(names)
        return view

    def table(self, name: str) -> DeltaTable | None:
        if self._pins is not None and name in self._pins:
            return self._pins[name]
        return self.tables.get(name)

    def exists(self) -> bool:
        return self.table(t.INSTRUCTIONS) is not None

    def scan(self, table: str) -> pl.LazyFrame:
        """The table's rows; columns the table's schema gained after older releases wrote it read as nulls."""
        schema = _schema(table)
        dt = self.table(table)
        if dt is None:
            return pl.LazyFrame(schema=schema)
        present = {field.name for field in dt.schema().fields}
        frame = pl.scan_delta(dt)
        missing = [pl.lit(None, dtype=dtype).alias(name) for name, dtype in schema.items() if name not in present]
        return frame.with_columns(missing) if missing else frame

    def positions(self, table: str, topic: str, partitions: Iterable[int]) -> dict[int, int | None]:
        """The next offset of each partition of ``topic`` (full name) that ``table`` does not hold yet."""
        dt = self.table(table)
        return {p: (dt.transaction_version(t.app_id(topic, p)) if dt is not None else None) for p in partitions}

    def history(self, declaration_id: str, day: date | None = None, port: str | None = None) -> dict[str, Any]:
        """Everything the archive holds about one declaration (the tables are scanned concurrently).

        ``day`` (and ``port``), when the caller knows them (the day of an instruction's event time
        and its port), narrow the scan to the partitions of that port from the day before on: a
        declaration's records all follow its first revision. When those partitions do not hold
        the declaration's first revision the hint was wrong (or named a later revision) and every
        partition is scanned. ``scanned`` says which: "hinted", "full" or "full-after-hint"."""
        if day is not None:
            doc = self._history(declaration_id, history_window(day, port))
            if holds_first_revision(doc):
                return {**doc, "scanned": "hinted"}
            return {**self._history(declaration_id, None), "scanned": "full-after-hint"}
        return {**self._history(declaration_id, None), "scanned": "full"}

    def locate(self, declaration_id: str) -> tuple[date, str | None] | None:
        """Where the archive files a declaration: the day of its earliest revision and its port (None
        when its revisions name several), from the declarations and centralised items only (the id
        column and the partition columns: a small read beside a full history), or None when
        neither holds it. With them :meth:`history` reads the partitions a link from the queue reads."""
        frames = pl.collect_all([self.scan(table).filter(pl.col("declaration_id") == declaration_id).select("day", "port")
                                 for table in (t.DECLARATIONS, t.CENTRALISED_ITEMS)])
        rows = pl.concat(frames)
        if rows.height == 0:
            return None
        ports = rows.get_column("port").unique()
        return rows.get_column("day").min(), (ports[0] if ports.len() == 1 else None)  # type: ignore[return-value]

    def subject_warnings(self, subjects: Iterable[str], before: datetime, limit: int = SUBJECT_WARNINGS_LIMIT) -> list[dict[str, Any]]:
        """Warnings about ``subjects`` (a duty-free shopper token, a vehicle's VIN, a vessel's hull
        number) raised by no declaration, up to ``before`` and at most SUBJECT_LOOKBACK earlier,
        newest first, once each: what stood against a departure or a second-line-out declaration
        when it was decided (duty-free flags last a calendar year, absences are counted in months)."""
        wanted = sorted({s for s in subjects if s})[:MAX_SUBJECTS]
        if not wanted:
            return []
        day = pl.col("day")
        frame = (self.scan(t.WARNINGS)
                 .filter(day.is_between((before - SUBJECT_LOOKBACK).date(), before.date()) & pl.col("declaration_id").is_null()
                         & pl.col("subject_id").is_in(wanted) & (pl.col("raised_at") <= before))
                 .sort(["raised_at", "kafka_partition", "kafka_offset"], descending=True)
                 .unique(subset="warning_id", keep="first", maintain_order=True).head(limit).collect())
        return _rows(frame.drop(["day"]))

    def _history(self, declaration_id: str, window: pl.Expr | None) -> dict[str, Any]:
        def rows_of(table: str) -> pl.LazyFrame:
            frame = self.scan(table)
            return frame.filter(window) if window is not None else frame

        frames = pl.collect_all([rows_of(table).filter(pl.col("declaration_id") == declaration_id).sort(
            [*order, "kafka_partition", "kafka_offset", "item_index"]) for table, order, _ in HISTORY.values()])
        doc: dict[str, Any] = {"declaration_id": declaration_id}
        for (key, (_, _, unique)), frame in zip(HISTORY.items(), frames):
            if unique is not None:
                frame = frame.unique(subset=unique, keep="first", maintain_order=True)
            doc[key] = _rows(frame.drop(["day"]))
        return doc

    def window(self, table: str, day_from: date, day_to: date | None = None, port: str | None = None) -> pl.LazyFrame:
        """The rows of ``table`` whose day is in ``day_from``..``day_to`` (inclusive; no end: every
        later day too) and, where the table is partitioned by port, of ``port`` only."""
        day = pl.col("day")
        frame = self.scan(table).filter(day.is_between(day_from, day_to) if day_to is not None else day >= day_from)
        if port is not None and "port" in t.SPECS[table].partition_by:
            frame = frame.filter(pl.col("port") == port)
        return frame

    def instructions(self, day_from: date, day_to: date, port: str | None, columns: list[str]) -> pl.DataFrame:
        """The instructions of the window, once each (``columns`` must include ``instruction_id``)."""
        return _unique(self.window(t.INSTRUCTIONS, day_from, day_to, port).select(columns).collect(), ["instruction_id"])

    def report(self, day_from: date, day_to: date, port: str | None = None) -> dict[str, Any]:
        """Counts per port and lane over ``day_from``..``day_to`` (inclusive, UTC days of the records' times)."""
        def window(table: str) -> pl.LazyFrame:
            return self.window(table, day_from, day_to, port)

        decls = _unique(window(t.DECLARATIONS).select("port", "declaration_id", "revision").collect(),
                        ["port", "declaration_id", "revision"])
        ins = self.instructions(day_from, day_to, port, ["instruction_id", "port", "stage", "action", "final"])
        results = _unique(window(t.INSPECTION_RESULTS).select("instruction_id", "port", "found", "duty_recovered").collect(),
                          ["instruction_id"])
        dead = window(t.DEAD_LETTERS).select("origin", "reason").collect()
        # Small aggregates, then everything per port from them (no pass over the rows per port).
        ins_agg = ins.group_by("port", "stage", "action", "final").len()
        res_agg = results.group_by("port").agg(pl.len().alias("inspections"), pl.col("found").sum().alias("found"),
                                               pl.col("duty_recovered").sum().alias("duty"))
        revisions = dict(decls.group_by("port").len().iter_rows())
        declarations = dict(_unique(decls.select("port", "declaration_id"), ["port", "declaration_id"])
                            .group_by("port").len().iter_rows())

        def counts(frame: pl.DataFrame, column: str, weight: str | None = None) -> dict[str, int]:
            grouped = frame.group_by(column).agg(pl.col(weight).sum() if weight else pl.len()).sort(column)
            return {str(k): int(v) for k, v in grouped.iter_rows()}

        def inspections(r: pl.DataFrame) -> tuple[int, int, float]:
            return (int(r["inspections"].sum()), int(r["found"].sum() or 0), float(r["duty"].sum() or 0.0)) if r.height else (0, 0, 0.0)

        def port_block(p: str) -> dict[str, Any]:
            i = ins_agg.filter(pl.col("port") == p)
            n_res, found, duty = inspections(res_agg.filter(pl.col("port") == p))
            first = i.filter(pl.col("stage") == "declaration")
            lanes = counts(first, "action", "len")
            return {
                "declarations": declarations.get(p, 0),
                "revisions": revisions.get(p, 0),
                "instructions": counts(i, "action", "len"),
                "lanes": lanes,
                "selection_rates": {lane: selection_rate(lanes, lane) for lane in SELECTION_LANES},
                "final": counts(i.filter(pl.col("final")), "action", "len"),
                "scan_timeouts": int(i.filter(pl.col("stage") == "timeout")["len"].sum()),
                "inspections": n_res,
                "found": found,
                "hit_rate": ratio(found, n_res),
                "duty_recovered": duty,
            }

        ports = sorted(set(revisions) | set(ins_agg["port"].to_list()) | set(res_agg["port"].to_list()))
        n_res = results.height
        found = int(results["found"].sum()) if n_res else 0
        duty = float(results["duty_recovered"].sum()) if n_res else 0.0
        return {
            "from": day_from.isoformat(), "to": day_to.isoformat(), "port": port,
            "declarations": _n_unique(decls, "declaration_id"),
            "instructions": counts(ins_agg, "action", "len"),
            "inspection_results": {"total": n_res, "found": found,
                                   "hit_rate": ratio(found, n_res),
                                   "duty_recovered": duty},
            "scan_timeouts": int(ins_agg.filter(pl.col("stage") == "timeout")["len"].sum()),
            "dead_letters": {"total": dead.height, "by_reason": counts(dead, "reason"), "by_origin": counts(dead, "origin")},
            "by_port": {p: port_block(p) for p in ports},
        }

    def labelling(self, day_from: date, day_to: date) -> tuple[pl.DataFrame, pl.DataFrame]:
        """The declarations of ``day_from``..``day_to`` (every revision as archived, Declaration columns) and
        the inspection results about them (InspectionResult columns, redeliveries included), for a
        labelled training set."""
        decl_columns = [n for n in t.SPECS[t.DECLARATIONS].schema.names
                        if n not in (*PROVENANCE_COLUMNS, "day", "source", "batch_id", "gateway")]
        decls = (self.scan(t.DECLARATIONS).filter(pl.col("day").is_between(day_from, day_to))
                 .select(decl_columns).collect())
        ids = decls.select("declaration_id").unique()
        result_columns = [n for n in t.SPECS[t.INSPECTION_RESULTS].schema.names if n not in (*PROVENANCE_COLUMNS, "day")]
        results = (self.scan(t.INSPECTION_RESULTS).filter(pl.col("day") >= day_from).select(result_columns).collect()
                   .join(ids, on="declaration_id", how="semi"))
        return decls, results


def history(declaration_id: str, archive_dir: LocationLike | None = None, day: date | None = None,
            port: str | None = None) -> dict[str, Any]:
    """Every revision, instruction, scan and inspection result of one declaration in the archive
    (``day``/``port``: a hint that narrows the scan, see :meth:`Archive.history`)."""
    return Archive(archive_dir).history(declaration_id, day, port)


def report(day_from: date, day_to: date, port: str | None = None, archive_dir: LocationLike | None = None) -> dict[str, Any]:
    """Declarations, instructions by action, inspections, hit rate, duty, scan timeouts, dead letters, per port."""
    return Archive(archive_dir).report(day_from, day_to, port)
