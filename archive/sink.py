"""``riskctl archive``: the sink that appends every topic's records to the Delta tables, exactly once.

How exactly-once works (the scheme of delta-io's kafka-delta-ingest, extended to a partition whose
records feed two tables):

* Each Delta commit of a table carries, as application transactions, the position of every Kafka
  partition whose records it completes: app id ``{topic}:{partition}``, version = the next offset
  to read. Data and position land in one atomic commit, so the table never holds a row without
  the position that covers it, nor a position without its rows.
* A partition's good records go to its topic's table and its bad ones to ``dead_letters``, each
  table with its own commit. On every assignment the sink reads both tables' positions, resumes
  the partition from the lower one and, while replaying, skips for each table the records that
  table already holds. A crash between the two commits therefore neither loses nor duplicates a
  row.
* Kafka's group offsets are committed after a flush as a hint for lag tools; they are never read.
* A commit written against a table snapshot in which another writer has moved the same partition
  (a sink that lost its partitions but still flushes) fails with delta-rs's concurrent-transaction
  check; the sink then drops its buffer and re-reads from the tables' positions.

Throughput: records are consumed in batches, parsed once, and each table's rows become one Arrow
table and one Delta commit per flush (every ``archive_flush_records`` rows or
``archive_flush_interval_s`` seconds). A table with nothing new is not committed, except that a
table whose positions lag behind (``dead_letters``, usually) gets a commit carrying only positions
every ``archive_idle_commit_s`` seconds, which bounds the replay after a restart.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from collections import Counter as Tally
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa
from confluent_kafka import OFFSET_BEGINNING, TIMESTAMP_NOT_AVAILABLE, Consumer, KafkaError, KafkaException, Message, TopicPartition
from deltalake import CommitProperties, DeltaTable, Transaction, write_deltalake

from archive import metrics
from archive import tables as t
from archive.convert import Record, rows_of
from archive.location import LocationLike, from_settings
from archive.maintenance import Maintenance
from common.settings import Settings

log = logging.getLogger(__name__)

TP = tuple[str, int]
PROGRESS_EVERY_S = 10.0
LAG_EVERY_S = 5.0
MAX_BACKOFF_S = 30.0
# Fault injection for the crash tests, "<kind>:<table>:<n>": kind "crash-after-commit" kills the process
# (SIGKILL) right after its n-th commit to <table>, i.e. between two tables' commits of one flush;
# "fail-commit" makes its n-th commit attempt to <table> fail with an I/O error (the sink recovers).
FAILPOINT_ENV = "RISKCTL_ARCHIVE_FAILPOINT"
FAILPOINT_KINDS = ("crash-after-commit", "fail-commit")


class TopicRecreated(RuntimeError):
    """The archive holds a position beyond the end of a partition: the topic was deleted and recreated
    (its offsets restarted at 0), and resuming from the archived position would skip its records."""


def group_id(settings: Settings) -> str:
    return settings.archive_group_id or f"{settings.app_id}-archive"


class ArchiveSink:
    def __init__(self, settings: Settings, archive_dir: LocationLike | None = None,
                 consumer_factory: Callable[[dict[str, Any]], Consumer] = Consumer) -> None:
        self.settings = settings
        self.consumer_factory = consumer_factory
        self.dir = from_settings(settings, archive_dir)
        self.logical = {settings.topic(name): name for name in t.ARCHIVED_TOPICS}
        self.tables: dict[str, DeltaTable] = {}
        # Per assigned partition: the next offset after the records consumed so far (None: nothing
        # consumed since the assignment started from the beginning of the log).
        self.positions: dict[TP, int | None] = {}
        # Per table and assigned partition: the position the table holds (None: none yet).
        self.stored: dict[str, dict[TP, int | None]] = {name: {} for name in t.SPECS}
        self.buffer: dict[str, list[dict[str, Any]]] = {name: [] for name in t.SPECS}
        self.buffered_rows = 0
        self.buffered_records: Tally[str] = Tally()
        self.first_buffered_at: float | None = None
        self.last_commit_at: dict[str, float] = {name: time.monotonic() for name in t.SPECS}
        self.consumer: Consumer | None = None
        self.needs_reset = False
        self.refusal: TopicRecreated | None = None
        self.failures_in_a_row = 0
        self.totals = {"records": 0, "rows": 0, "commits": 0}
        self._failpoint = _parse_failpoint(os.environ.get(FAILPOINT_ENV, ""))
        self._commits_by_table: Tally[str] = Tally()
        self._attempts_by_table: Tally[str] = Tally()

    # ---- lifecycle ----------------------------------------------------------------------------------
    def run(self, stop: threading.Event) -> None:
        """Consume and archive until ``stop`` is set; then flush what is buffered and leave the group."""
        self.tables = t.ensure_tables(self.dir)
        conf = {
            **self.settings.confluent_config(),
            "group.id": group_id(self.settings),
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "auto.offset.reset": "earliest",
            "session.timeout.ms": int(self.settings.session_timeout_s * 1000),
            "heartbeat.interval.ms": int(self.settings.heartbeat_interval_s * 1000),
            "fetch.wait.max.ms": max(self.settings.fetch_max_wait_ms, 100),
            "enable.partition.eof": False,
        }
        maintenance = None
        if self.settings.archive_maintenance_interval_s > 0:
            maintenance = Maintenance(self.dir, self.settings.archive_retention_years, self.settings.archive_maintenance_interval_s, stop)
            maintenance.start()
        consumer = self.consumer = self.consumer_factory(conf)
        consumer.subscribe(list(self.logical), on_assign=self._on_assign, on_revoke=self._on_revoke, on_lost=self._on_lost)
        log.info("archive sink: group %s, %d topics, tables in %s (flush every %d rows or %.1fs)", group_id(self.settings),
                 len(self.logical), self.dir, self.settings.archive_flush_records, self.settings.archive_flush_interval_s)
        batch = max(1, min(self.settings.archive_flush_records, 10_000))
        next_lag = next_progress = time.monotonic()
        progress_from = dict(self.totals)
        try:
            while not stop.is_set():
                if self.refusal is not None:
                    raise self.refusal
                if self.needs_reset:
                    self._reset(stop)
                    continue
                self._take(consumer.consume(num_messages=batch, timeout=0.2))
                now = time.monotonic()
                if self._flush_due(now):
                    self.flush()
                if now >= next_lag:
                    self._update_lag()
                    next_lag = now + LAG_EVERY_S
                if now >= next_progress:
                    self._log_progress(progress_from, PROGRESS_EVERY_S)
                    progress_from = dict(self.totals)
                    next_progress = now + PROGRESS_EVERY_S
            self.flush()
        finally:
            metrics.READY.set(0)
            consumer.close()
            self.consumer = None
            if maintenance is not None:
                # A compaction still running in delta-rs when the interpreter exits crashes the process.
                stop.set()
                maintenance.join()
            log.info("archive sink stopped: %d records, %d rows, %d commits", self.totals["records"], self.totals["rows"],
                     self.totals["commits"])

    # ---- consuming ----------------------------------------------------------------------------------
    def _take(self, messages: list[Message]) -> None:
        if not messages:
            return
        now = datetime.now(UTC)
        stored = self.stored
        buffer = self.buffer
        for msg in messages:
            err = msg.error()
            if err is not None:
                if err.code() != KafkaError._PARTITION_EOF:
                    metrics.FAILURES.labels("consume").inc()
                    log.warning("archive sink: consumer error: %s", err)
                continue
            topic, partition, offset = msg.topic(), msg.partition(), msg.offset()
            if topic is None or partition is None or offset is None:
                continue  # only error events lack them
            tp = (topic, partition)
            pos = self.positions.get(tp, -1)
            if pos == -1 or (pos is not None and offset < pos):
                continue  # not ours any more, or already taken
            ts_type, ts = msg.timestamp()
            rec = Record(topic, partition, offset, msg.key(), msg.value(),
                         None if ts_type == TIMESTAMP_NOT_AVAILABLE else datetime.fromtimestamp(ts / 1000, UTC))
            logical = self.logical[topic]
            for table, row in rows_of(logical, rec, now):
                have = stored[table].get(tp)
                if have is not None and offset < have:
                    continue  # this table holds the record already: a replay after a crash between two tables' commits
                buffer[table].append(row)
                self.buffered_rows += 1
                if table == t.DEAD_LETTERS and row["origin"] == "archive":
                    metrics.REJECTED.labels(logical, row["reason"]).inc()
            self.positions[tp] = offset + 1
            self.buffered_records[logical] += 1
        if self.first_buffered_at is None and self.buffered_records:
            self.first_buffered_at = time.monotonic()

    def _flush_due(self, now: float) -> bool:
        if self.buffered_rows >= self.settings.archive_flush_records:
            return True
        if self.first_buffered_at is not None and now - self.first_buffered_at >= self.settings.archive_flush_interval_s:
            return True
        idle = self.settings.archive_idle_commit_s
        return any(now - self.last_commit_at[name] >= idle and self._advanced(name) for name in t.SPECS)

    def _advanced(self, table: str) -> dict[TP, int]:
        """Partitions feeding ``table`` whose consumed position is ahead of the table's."""
        out: dict[TP, int] = {}
        stored = self.stored[table]
        for tp, pos in self.positions.items():
            if pos is None or table not in t.TOPIC_TABLES[self.logical[tp[0]]]:
                continue
            have = stored.get(tp)
            if have is None or pos > have:
                out[tp] = pos
        return out

    # ---- writing ------------------------------------------------------------------------------------
    def flush(self) -> bool:
        """Commit every table with new rows (and every idle table whose positions lag); True if all
        commits succeeded. On a failure the buffer is dropped and the sink re-reads from the tables."""
        if self.needs_reset:
            return False
        started = time.monotonic()
        archived_at = datetime.now(UTC)
        written = False
        try:
            for name, spec in t.SPECS.items():
                rows = self.buffer[name]
                advanced = self._advanced(name)
                if not rows and not (advanced and started - self.last_commit_at[name] >= self.settings.archive_idle_commit_s):
                    continue
                if not advanced:
                    continue
                for row in rows:
                    row["archived_at"] = archived_at
                data = pa.Table.from_pylist(rows, schema=spec.schema)
                txns = [Transaction(app_id=t.app_id(*tp), version=pos) for tp, pos in sorted(advanced.items())]
                self._before_commit(name)
                # schema_mode="merge": a column added to a table's schema is added to an archive written before it.
                write_deltalake(self.tables[name], data, partition_by=list(spec.partition_by), mode="append",
                                schema_mode="merge", commit_properties=CommitProperties(app_transactions=txns))
                self.stored[name].update(advanced)
                self.buffer[name] = []
                self.last_commit_at[name] = time.monotonic()
                metrics.COMMITS.labels(name).inc()
                metrics.ROWS.labels(name).inc(len(rows))
                self.totals["commits"] += 1
                self.totals["rows"] += len(rows)
                written = True
                self._at_commit(name)
        except Exception as exc:  # noqa: BLE001 - disk full, a concurrent writer, bad data: drop the buffer, re-read
            metrics.FAILURES.labels("write").inc()
            self.failures_in_a_row += 1
            log.error("archive sink: writing the archive failed (%s: %s); re-reading from the archived positions",
                      type(exc).__name__, " ".join(str(exc).split())[:500])
            self.needs_reset = True
            return False
        for logical, count in self.buffered_records.items():
            metrics.RECORDS.labels(logical).inc(count)
            self.totals["records"] += count
        self.buffered_records.clear()
        self.buffered_rows = 0
        self.first_buffered_at = None
        self.failures_in_a_row = 0
        if written:
            metrics.LAST_COMMIT.set(time.time())
            metrics.FLUSH_SECONDS.observe(time.monotonic() - started)
            self._commit_hint()
        return True

    def _commit_hint(self) -> None:
        """Kafka group offsets for lag tools: the lowest position the partition's tables hold."""
        if self.consumer is None:
            return
        offsets = []
        for tp in self.positions:
            held = [self.stored[name].get(tp) for name in t.TOPIC_TABLES[self.logical[tp[0]]]]
            if all(v is not None for v in held):
                offsets.append(TopicPartition(tp[0], tp[1], min(v for v in held if v is not None)))
        if offsets:
            try:
                self.consumer.commit(offsets=offsets, asynchronous=True)
            except KafkaException as exc:  # a hint only: the tables hold the positions
                log.debug("archive sink: group offset commit failed: %s", exc)

    def _before_commit(self, table: str) -> None:
        self._attempts_by_table[table] += 1
        if self._failpoint == ("fail-commit", table, self._attempts_by_table[table]):
            log.warning("archive sink: failpoint %s: commit %d of %s fails", FAILPOINT_ENV, self._attempts_by_table[table], table)
            raise OSError(5, f"failpoint {FAILPOINT_ENV}")

    def _at_commit(self, table: str) -> None:
        self._commits_by_table[table] += 1
        if self._failpoint == ("crash-after-commit", table, self._commits_by_table[table]):
            log.warning("archive sink: failpoint %s: killing the process after commit %d of %s", FAILPOINT_ENV,
                        self._commits_by_table[table], table)
            os.kill(os.getpid(), signal.SIGKILL)

    # ---- positions ----------------------------------------------------------------------------------
    def _refresh_tables(self) -> None:
        for table in self.tables.values():
            table.update_incremental()

    def _archived(self, tp: TP) -> int | None:
        """Where to resume ``tp``: the lowest position its tables hold (None: from the beginning)."""
        held = []
        for name in t.TOPIC_TABLES[self.logical[tp[0]]]:
            version = self.tables[name].transaction_version(t.app_id(*tp))
            self.stored[name][tp] = version
            held.append(version)
        if any(v is None for v in held):
            return None
        return min(v for v in held if v is not None)

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self._refresh_tables()
        replays = []
        starts = {(tp.topic, tp.partition): self._archived((tp.topic, tp.partition)) for tp in partitions}
        ahead = self._ahead_of_topic(consumer, starts)
        if ahead:
            # Nothing of these partitions is read: the loop stops with the refusal before the next consume.
            self.refusal = TopicRecreated(recreated_message(ahead))
            for stored in self.stored.values():
                for key in starts:
                    stored.pop(key, None)
            consumer.assign([])
            return
        for tp in partitions:
            key = (tp.topic, tp.partition)
            start = starts[key]
            tp.offset = OFFSET_BEGINNING if start is None else start
            self.positions[key] = start
            held = {name: self.stored[name][key] for name in t.TOPIC_TABLES[self.logical[tp.topic]]}
            if len({v for v in held.values()}) > 1:
                replays.append(f"{tp.topic}[{tp.partition}] {held}")
        consumer.assign(partitions)
        metrics.ASSIGNED.set(len(self.positions))
        metrics.READY.set(1 if self.positions else 0)
        log.info("archive sink: assigned %d partitions, resuming from the archived positions", len(partitions))
        for line in replays:
            log.info("archive sink: tables hold different positions for %s: replaying the gap, skipping what each table has", line)

    def _ahead_of_topic(self, consumer: Consumer, starts: dict[TP, int | None]) -> dict[TP, tuple[int, int]]:
        """The partitions whose archived position lies beyond their high watermark, with both. The
        positions are keyed by topic name, and a recreated topic restarts at offset 0 under the same
        name: this is how that shows."""
        ahead: dict[TP, tuple[int, int]] = {}
        for tp, start in starts.items():
            if not start:
                continue
            try:
                _, high = consumer.get_watermark_offsets(TopicPartition(*tp), timeout=10.0, cached=False)
            except KafkaException as exc:  # cannot tell now; the next assignment checks again
                log.warning("archive sink: cannot read the end of %s[%d] to check the archived position: %s", tp[0], tp[1], exc)
                continue
            if 0 <= high < start:
                ahead[tp] = (start, high)
        return ahead

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        # Hand over with everything consumed archived, so that the next owner does not re-read it.
        if not self.needs_reset:
            self.flush()
        self._forget(partitions)

    def _on_lost(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        # Another sink may own these already: what is buffered for them is dropped, never written.
        self._discard_buffer()
        self.needs_reset = True
        self._forget(partitions)

    def _forget(self, partitions: list[TopicPartition]) -> None:
        for tp in partitions:
            key = (tp.topic, tp.partition)
            self.positions.pop(key, None)
            for stored in self.stored.values():
                stored.pop(key, None)
        metrics.ASSIGNED.set(len(self.positions))
        metrics.READY.set(1 if self.positions else 0)

    def _discard_buffer(self) -> None:
        for name in self.buffer:
            self.buffer[name] = []
        self.buffered_rows = 0
        self.buffered_records.clear()
        self.first_buffered_at = None

    def _reset(self, stop: threading.Event) -> None:
        """After a failed flush: drop the buffer and seek every partition back to the archived position."""
        self._discard_buffer()
        backoff = min(MAX_BACKOFF_S, 0.5 * 2 ** min(self.failures_in_a_row, 8))
        if self.failures_in_a_row and stop.wait(backoff):  # a failing disk or table: do not spin
            return
        try:
            self.tables = t.ensure_tables(self.dir)
            for tp in list(self.positions):
                start = self._archived(tp)
                self.positions[tp] = start
                if self.consumer is not None:
                    self.consumer.seek(TopicPartition(tp[0], tp[1], OFFSET_BEGINNING if start is None else start))
        except Exception as exc:  # noqa: BLE001 - the archive is unreadable for now: try again after the backoff
            metrics.FAILURES.labels("write").inc()
            self.failures_in_a_row += 1
            log.error("archive sink: cannot read the archived positions (%s: %s)", type(exc).__name__, exc)
            return
        self.needs_reset = False
        log.info("archive sink: re-reading %d partitions from the archived positions", len(self.positions))

    # ---- health -------------------------------------------------------------------------------------
    def _update_lag(self) -> None:
        if self.consumer is None:
            return
        lag: Tally[str] = Tally()
        for tp in self.positions:
            try:
                low, high = self.consumer.get_watermark_offsets(TopicPartition(*tp), cached=True)
            except KafkaException:
                continue
            if high < 0:
                continue
            held = [self.stored[name].get(tp) for name in t.TOPIC_TABLES[self.logical[tp[0]]]]
            archived = min((v for v in held if v is not None), default=None) if all(v is not None for v in held) else None
            lag[self.logical[tp[0]]] += max(0, high - (archived if archived is not None else max(low, 0)))
        for logical in t.ARCHIVED_TOPICS:
            metrics.LAG.labels(logical).set(lag.get(logical, 0))

    def _log_progress(self, since: dict[str, int], seconds: float) -> None:
        records = self.totals["records"] - since["records"]
        if records or self.buffered_rows:
            log.info("archive sink: %d records archived in the last %.0fs (%.0f/s), %d rows, %d commits; %d rows buffered; "
                     "total %d records", records, seconds, records / seconds, self.totals["rows"] - since["rows"],
                     self.totals["commits"] - since["commits"], self.buffered_rows, self.totals["records"])


def recreated_message(ahead: dict[TP, tuple[int, int]]) -> str:
    topics_named = sorted({tp[0] for tp in ahead})
    parts = ", ".join(f"{topic}[{p}] archived up to offset {start} but ends at {high}"
                      for (topic, p), (start, high) in sorted(ahead.items()))
    return (f"the archive holds positions beyond the end of {len(ahead)} partition(s) of {', '.join(topics_named)} ({parts}): "
            "the topic was deleted and recreated, its offsets restarted at 0, and resuming would skip its records. "
            "The sink stops rather than lose them. The archive identifies partitions by topic name: keep the current "
            "archive for queries and point the sink at a new one (ARCHIVE_LOCATION or ARCHIVE_DIR), or give the new "
            "topics another TOPIC_PREFIX.")


def _parse_failpoint(text: str) -> tuple[str, str, int] | None:
    parts = text.split(":")
    if len(parts) == 3 and parts[0] in FAILPOINT_KINDS and parts[1] in t.SPECS and parts[2].isdigit():
        return parts[0], parts[1], int(parts[2])
    return None
