"""The pipeline's Faust topology, readable in one place.

    credit-events, credit-event-batches ──> fold_credit_events ──> enterprise-credit   (GlobalTable: every worker reads all; streams.credit)
    centralised-declarations ──> split_centralised_declarations ──> declarations (one per goods item)
    declarations ──┐                          │ read
                   ├─> decide_declarations ───┴─> declaration-state, scan-deadlines (Tables, changelog)
    scans ─────────┘                          │
                                              ├─> instructions
                                              └─> shadow-scores (a challenger model's, if one is loaded)
    (timer) expire_scan_deadlines ──> instructions (scan timeout)
    inspection-results (found) ──> count_inspection_results ──┐ read declaration-state
    warning-reviews (confirmed) ──> publish_confirmed_warnings ┴─> joint-findings (streams.joint)
    duty-free-purchases ──> fold_duty_free_purchases, duty-free-shopper-links ──> index_duty_free_links
        ──> warnings, duty-free-standing (GlobalTable read by decide_declarations; streams.dutyfree)
    anything unparseable ──> dead-letters

Declarations, scans, instructions and the two per-declaration tables share the partition count
and are keyed by declaration id, so a scan is always handled by the worker that holds its
declaration's state (Faust's Stream.join is not implemented; this co-partitioned table *is* the
join). One agent reads a partition's declarations and scans together, as a Kafka Streams task
reads both sides of a join: one micro-batch loop and one output batch instead of two. Agents
consume micro-batches (``streams.runtime.batching``) so that scoring runs once per batch.
Each batch's outputs go out as one record batch per partition with one batch in flight; no
offset is committed before they are acknowledged (``streams.runtime.checkpoint``), so delivery is
at-least-once, and ``decision.flow`` makes every re-delivery re-emit the same instruction bytes
instead of deciding again.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import math
import time
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

import faust
from pydantic import BaseModel

from clients import topics
from common.settings import Settings
from decision.batch import CreditBook, ReferenceData, decide_batch
from decision.flow import Step, on_scan, on_timeout
from decision.guards import check_scan_arrival, kept_scan_record
from decision.retention import Expiry, Lifetimes, OrphanScan, due_at, expire
from decision.services import Services
from decision.shadow import encode_shadow
from decision.state import (
    Fingerprint,
    Outcome,
    Phase,
    ScanDeadline,
    Stored,
    UnknownFormat,
    decode_deadline,
    decode_state,
    decode_stored,
    encode_deadline,
    encode_state,
    fingerprint_time,
)
from policy.capacity import CapacityController
from policy.decide import BatchNotAllowed, check_centralised
from policy.risklists import RiskListIndex
from schemas import (
    CentralisedDeclaration,
    Declaration,
    InspectionResult,
    JointFinding,
    RiskListEntry,
    ScanResult,
    WarningReview,
    codec,
)
from schemas.partitioning import partition_for
from schemas.records import MAX_CENTRALISED_ITEMS
from schemas.validation import KeyMismatch, Refused, UnknownPort, check_partition, check_port, parse_declaration_batch, parse_keyed
from streams import joint, metrics
from streams.credit import CreditFold
from streams.deadletter import DeadLetterSink
from streams.dutyfree import DutyFreeFlow
from streams.expiry import TimeIndex
from streams.failpoint import Failpoint
from streams.isolation import Attempt, HandlerFailed, handle_isolating
from streams.limits import BatchTooLarge, record_weight
from streams.outputs import OutputBatch
from streams.runtime import status, tables
from streams.runtime.app import faust_app
from streams.runtime.batching import Waiting, take_batches
from streams.runtime.checkpoint import Checkpoint, exit_hard
from streams.runtime.fetchsession import FetchBounds
from streams.zerotariff import ZeroTariffStreams

log = logging.getLogger(__name__)

R = TypeVar("R", bound=BaseModel)


class Topology:
    """Wires agents, tables and the timer onto a Faust app. One instance per worker process."""

    # Wall clock of decisions (decided_at, scan deadlines); the test driver replaces it to replay.
    clock: Callable[[], float] = staticmethod(time.time)
    # How the worker leaves when a handler failure cannot be pinned on records; tests replace it.
    exit_worker: Callable[[BaseException], None] = staticmethod(exit_hard)

    def __init__(self, settings: Settings, services: Services, app: faust.App | None = None) -> None:
        self.settings = settings
        self.services = services
        self.checkpoint = Checkpoint()  # the at-least-once protocol: no commit before outputs are delivered
        self.failpoint = Failpoint.from_env()  # crash tests only (streams.failpoint)
        self._fetches_seen = (0, 0)  # status.fetches at the last publish
        self._holds_seen: dict[str, int] = {}  # fetch_bounds.holds at the last publish
        self.fetch_bounds = FetchBounds()  # topics not fetched while their agent has enough waiting (below)
        self.app = app or faust_app(settings, self.checkpoint, self.fetch_bounds)
        t = settings.topic
        raw: dict[str, Any] = {"key_type": bytes, "value_type": bytes, "key_serializer": "raw", "value_serializer": "raw"}
        # Single declarations, gateway batches and scans feed the same agent (and share partitions).
        self.declarations_and_scans = self.app.topic(t(topics.DECLARATIONS), t(topics.DECLARATION_BATCHES), t(topics.SCANS), **raw)
        self.batch_topic_name = t(topics.DECLARATION_BATCHES)
        self.declarations_topic = t(topics.DECLARATIONS)
        self.scans_topic_name = t(topics.SCANS)
        self.centralised = self.app.topic(t(topics.CENTRALISED_DECLARATIONS), **raw)
        # Single credit events and agencies' batches feed one fold (streams.credit).
        self.credit_events = self.app.topic(t(topics.CREDIT_EVENTS), t(topics.CREDIT_EVENT_BATCHES), **raw)
        self.risk_list_topic = self.app.topic(t(topics.RISK_LISTS), **raw)
        self.inspection_results = self.app.topic(t(topics.INSPECTION_RESULTS), **raw)
        self.instructions_topic = t(topics.INSTRUCTIONS)
        self.shadow_topic = t(topics.SHADOW_SCORES)
        self.warnings_topic = t(topics.WARNINGS)
        self.warning_reviews = self.app.topic(t(topics.WARNING_REVIEWS), **raw)
        self.joint_findings_topic = t(topics.JOINT_FINDINGS)
        self.dead_letters = DeadLetterSink(t(topics.DEAD_LETTERS))
        # use_partitioner: a table key's changelog partition is the producer's murmur2 partition
        # of the key -- the same partition the gateways' records for that key use.
        raw_schema: faust.Schema = faust.Schema(key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw")
        table: dict[str, Any] = {"schema": raw_schema, "key_type": bytes, "value_type": bytes, "use_partitioner": True}
        # The per-declaration tables in the store of the settings; each recovered changelog record
        # also feeds the expiry indexes (``_on_state_changelog``).
        # "rocksdb:<table>": the table's databases under the data dir (Faust ignores a bare "rocksdb://" on a table).
        rocksdb = settings.table_store == "rocksdb"
        on_disk: dict[str, Any] = {"options": {
            "write_buffer_size": settings.rocksdb_write_buffer_mb << 20, "max_write_buffer_number": 2,
            "block_cache_size": settings.rocksdb_block_cache_mb << 20}} if rocksdb else {}
        self.state = self.app.Table(topics.TABLE_DECLARATION_STATE, partitions=settings.partitions,
                                    store=f"rocksdb:{topics.TABLE_DECLARATION_STATE}" if rocksdb else "memory://",
                                    on_changelog_event=self._on_state_changelog, **on_disk, **table)
        self.deadlines = self.app.Table(topics.TABLE_SCAN_DEADLINES, partitions=settings.partitions,
                                        store=f"rocksdb:{topics.TABLE_SCAN_DEADLINES}" if rocksdb else "memory://",
                                        on_changelog_event=self._on_deadline_changelog, **on_disk, **table)
        # partitions=1 and recovery_buffer_size=1: Faust's advice for a GlobalTable shared by
        # several workers (larger values can loop in recovery).
        self.credit = self.app.GlobalTable(topics.TABLE_ENTERPRISE_CREDIT, partitions=1, recovery_buffer_size=1, **table)
        # on_changelog_event: each entry changed on another worker (or read back in recovery) is
        # re-indexed at the next tick, not the whole table (see tick_reference_data).
        self.risk_lists = self.app.GlobalTable(topics.TABLE_RISK_LISTS, partitions=1, recovery_buffer_size=1,
                                               on_changelog_event=self._risk_list_changed, **table)
        # One capacity-controller state per declarations partition, key b"capacity:<partition>".
        self.capacity = self.app.Table(topics.TABLE_CAPACITY, partitions=settings.partitions, **table)
        self.risk_index = RiskListIndex()  # kept equal to the risk-lists table, entry by entry (tick_reference_data)
        self._risk_list_keys: set[bytes] = set()  # entries written or received since the last tick
        self._risk_index_ready = False  # the index was synced in full since this worker was last ready
        self.credit_book = CreditBook(lambda: tables.contents(self.credit))
        self.credit_fold = CreditFold(self.credit, self.credit_book, self.dead_letters, t(topics.CREDIT_EVENT_BATCHES),
                                      lambda: self.settings.credit_batch_max_events)
        # Zero-tariff goods: the register (GlobalTable) and the positioning of registered vehicles and vessels.
        self.zero_tariff = ZeroTariffStreams(
            self.app, t, settings.partitions, table, self.dead_letters, self.warnings_topic, lambda: self.services.policy,
            lambda: self.clock(), topics.ZERO_TARIFF_REGISTER, topics.POSITIONS, topics.TABLE_ZERO_TARIFF_REGISTER,
            topics.TABLE_TRACKED_GOODS)
                # Offshore duty-free shopping: its own agents, tables and expiry timer (streams.dutyfree).
        self.duty_free = DutyFreeFlow(self.app, settings, lambda: self.services.policy, self.dead_letters, table,
                                      lambda: self.clock(), lambda: self.owned_partitions())
        self.references = ReferenceData(self.credit_book, self.risk_index, self.zero_tariff.contents, self.duty_free.standings)
        self._controllers: dict[int, tuple[bytes, CapacityController]] = {}  # partition -> (bytes written, controller)
        self._active_since: dict[int, float] = {}  # declarations partition -> when this worker was seen owning it
        self._rebalances_seen = 0  # Faust's rebalance count when _active_since was last checked
        self._failed_in_row: dict[str, int] = defaultdict(int)  # agent -> records failed alone since one was handled
        metrics.OLDEST_UNDECIDED.set_function(self.checkpoint.oldest_undecided_s)
        self._init_expiry(settings)
        metrics.ACTIVE_POLICY.labels(services.policy.version).set(1)
        self._publish_model_versions()
        self._wire()

    # ---- wiring -----------------------------------------------------------------------------
    def _wire(self) -> None:
        app = self.app
        # Every agent has the same shape: micro-batches in, the handler's output sent per batch.
        # The test driver feeds records to the same handlers (``streams.testing``).
        self.agents: dict[str, tuple[faust.TopicT, Callable[[Sequence[Any]], OutputBatch]]] = {
            "fold_credit_events": (self.credit_events, self.handle_credit_events),
            "load_risk_lists": (self.risk_list_topic, self.handle_risk_lists),
            "count_inspection_results": (self.inspection_results, self.handle_inspection_results),
            "publish_confirmed_warnings": (self.warning_reviews, self.handle_warning_reviews),
            "split_centralised_declarations": (self.centralised, self.handle_centralised_declarations),
            "decide_declarations": (self.declarations_and_scans, self.handle_declarations_and_scans),
            **self.zero_tariff.agents(),
            "fold_duty_free_purchases": (self.duty_free.purchases, self.duty_free.handle_purchases),
            "index_duty_free_links": (self.duty_free.links_topic, self.duty_free.handle_links),
        }
        # A fold that can arrive in bulk takes at most this share of the event loop (streams.credit),
        # and its batch records are fetched as it folds them, not all at once (FetchBounds).
        loop_shares = {"fold_credit_events": self.settings.credit_fold_share}
        fold_waiting = Waiting()
        self.fetch_bounds.bound(self.settings.topic(topics.CREDIT_EVENT_BATCHES), fold_waiting,
                                self.settings.credit_batches_buffered)
        waiting = {"fold_credit_events": fold_waiting}
        for name, (topic, handler) in self.agents.items():
            app.agent(topic, name=name)(self._batch_agent(name, handler, loop_shares.get(name, 1.0), waiting.get(name)))
        # Timers: (seconds between firings, synchronous body); the test driver fires the same bodies
        # as its clock advances.
        self.timers: dict[str, tuple[float, Callable[[], OutputBatch | None]]] = {
            "expire_scan_deadlines": (1.0, self.tick_scan_deadlines),
            "expire_declaration_state": (self.settings.state_expiry_interval_s, self.tick_state_expiry),
            "sync_reference_data": (1.0, self.tick_reference_data),
            "refresh_models": (5.0, self.tick_models),
            **self.zero_tariff.timers(),
            "expire_duty_free_years": (self.settings.state_expiry_interval_s, self.duty_free.tick_expiry),
        }
        for name, (interval, tick) in self.timers.items():
            app.timer(interval=interval, name=name)(self._timer(name, tick))

    def _timer(self, name: str, tick: Callable[[], OutputBatch | None]) -> Callable[[], Awaitable[None]]:
        async def timer() -> None:
            out = tick()
            if out is not None:
                publish_metrics(out)
            if out is not None and out.count:
                self.failpoint.before_send(name, out)
                # Tracked like an agent's batch (a commit waits for it), and awaited: the next tick
                # reads the table writes this one made.
                await asyncio.gather(*await self.checkpoint.produce(self.app, out, ()))

        timer.__name__ = timer.__qualname__ = name
        return timer

    def _publish_model_versions(self) -> None:
        metrics.ACTIVE_MODEL.clear()
        for scenario, version in self.services.scorer.active_versions().items():
            metrics.ACTIVE_MODEL.labels(scenario, version).set(1)
        metrics.SHADOW_MODEL.clear()
        for scenario, version in self.services.scorer.shadow_versions().items():
            metrics.SHADOW_MODEL.labels(scenario, version).set(1)

    def _batch_agent(self, name: str, handler: Any, loop_share: float = 1.0, waiting: Waiting | None = None) -> Any:
        s = self.settings

        # Records that carry declarations weigh as many as they may carry (streams.limits).
        weight = record_weight({self.batch_topic_name: s.gateway_batch_max_declarations,
                                s.topic(topics.CENTRALISED_DECLARATIONS): MAX_CENTRALISED_ITEMS,
                                s.topic(topics.CREDIT_EVENT_BATCHES): s.credit_batch_max_events})

        async def agent(stream: faust.StreamT) -> None:
            in_flight: list[asyncio.Future] = []  # the previous micro-batch's deliveries
            try:
                async for events in take_batches(stream, s.batch_max, s.batch_within_s, weight, waiting):
                    started = time.perf_counter()
                    in_flight = await self._run_batch(name, handler, events, in_flight)
                    if loop_share < 1.0:
                        # After each micro-batch the agent leaves the loop to the others for a while.
                        busy = time.perf_counter() - started
                        await asyncio.sleep(busy * (1.0 - loop_share) / loop_share)
            except Exception as exc:  # a stop (CancelledError) passes through
                # Faust would restart the agent on the same stream, which then acknowledges records
                # nobody handled and commits past them. The worker leaves instead (exit code 1).
                log.critical("%s stopped on %s", name, type(exc).__name__, exc_info=exc)
                self.exit_worker(exc)
                raise

        agent.__name__ = agent.__qualname__ = name
        return agent

    async def _run_batch(self, agent: str, handler: Any, events: Sequence[faust.EventT],
                         in_flight: list[asyncio.Future]) -> list[asyncio.Future]:
        """Decide this micro-batch while the previous one is on the wire; send this one once the
        previous one is acknowledged (one batch in flight per agent: bounded memory, and a failed
        delivery stops the agent before it sends anything after it). Steps 1-3 of the protocol in
        ``streams.runtime.checkpoint``."""
        started, cpu_started = time.perf_counter(), time.thread_time()
        handed = self.checkpoint.handed()  # undecided until its outputs are acknowledged (the stall gauge)
        # No cyclic collection inside a handler: a collection there would walk the whole live batch
        # (docs/benchmark.md). Outside, the batch's objects are freed and a collection, when due,
        # finds little (streams.worker.tune_gc).
        gc.disable()
        try:
            attempt = handle_isolating(agent, handler, events)
        finally:
            gc.enable()
        out = attempt.out
        if attempt.retried:
            self._after_handler_error(agent, attempt, len(events))
        else:
            self._failed_in_row[agent] = 0
        publish_metrics(out)
        decided = time.perf_counter()
        metrics.HANDLER_CPU.labels(agent).inc(time.thread_time() - cpu_started)
        self.failpoint.before_send(agent, out)
        futures = await self.checkpoint.produce(self.app, out, in_flight)
        self.checkpoint.settle(handed, futures)
        metrics.BATCH_SECONDS.labels(agent, "decide").observe(decided - started)
        metrics.BATCH_SECONDS.labels(agent, "deliver").observe(time.perf_counter() - decided)
        return futures

    def _after_handler_error(self, agent: str, attempt: Attempt, handled: int) -> None:
        """A handler raised and its batch was handled record by record (``streams.isolation``). The
        records that failed alone go to the dead letters (``handler-error``), unless the failure
        cannot be pinned on records: then the worker stops (exit code 1, its supervisor restarts it)
        with nothing committed past the batch. That is the case when ``handler_failures_before_exit``
        records in a row failed alone with none handled in between, in this batch or across batches
        (a handler broken as a whole would otherwise dead-letter everything it reads, a quiet
        partition's records one at a time). A few bad records, alone or together, are dead-lettered
        and the agent goes on; a worker that exited counts afresh, so fewer bad records than the
        limit, redelivered after the restart, are dead-lettered rather than a crash loop."""
        metrics.HANDLER_RETRIES.labels(agent).inc()
        self._controllers.clear()  # the failed attempt may have advanced these copies in place
        none_handled = len(attempt.failed) == handled
        in_row = self._failed_in_row[agent] + len(attempt.failed) if none_handled else attempt.failed_since_success
        if none_handled and in_row >= self.settings.handler_failures_before_exit:
            _, first = attempt.failed[0]
            metrics.HANDLER_ERRORS.labels(agent, "worker-exit").inc(len(attempt.failed))
            log.critical("%s: the handler fails on every record of a batch of %d (%d failed alone in a row; %s); "
                         "stopping the worker so that it is restarted, nothing committed past them",
                         agent, handled, in_row, type(first).__name__, exc_info=first)
            failure = HandlerFailed.of(agent, first)
            self.exit_worker(failure)
            raise failure  # where exit_worker returns (the tests' stand-in): the batch is not sent
        self._failed_in_row[agent] = in_row
        for event, exc in attempt.failed:
            log.error("%s: record %s[%d]@%d fails on its own (%s): dead-lettered", agent, event.message.topic,
                      event.message.partition, event.message.offset, type(exc).__name__, exc_info=exc)
            self.dead_letters.add(attempt.out, event.message, HandlerFailed.of(agent, exc))
            metrics.HANDLER_ERRORS.labels(agent, "dead-lettered").inc()

    # ---- timers (synchronous bodies: the test driver fires them as its clock advances) ---------
    def tick_scan_deadlines(self) -> OutputBatch:
        """Overdue machine-checks become inspect instructions (fires even without new traffic)."""
        out = OutputBatch()
        self.expire_deadlines(self.clock(), out)
        return out

    def tick_reference_data(self) -> None:
        """Risk-list entries added, retracted or expired change decisions within a second, without
        a restart; the lag and selection-rate gauges are refreshed on the same beat."""
        changed = self._sync_risk_index()
        if changed:
            log.info("risk lists: %d entries changed, %d active", changed, len(self.risk_index))
        metrics.RISK_LIST_ENTRIES.set(len(self.risk_index))
        self.zero_tariff.publish_gauges()
        self._publish_consumer_metrics()
        self.publish_selection_rates(self._active_declaration_partitions())

    def _sync_risk_index(self) -> int:
        """Re-index the risk-list entries written here or received on the changelog since the last
        tick (a look-up each), and drop entries whose validity ended ``risk_list_prune_after_s`` ago
        (from a heap by end of validity). After a start or a rebalance, once the tables are
        recovered, the index is synced with the whole table once: a persistent store can hold
        entries that no changelog event announced."""
        contents = tables.contents(self.risk_lists)
        keys, self._risk_list_keys = self._risk_list_keys, set()
        ready = status.ready(self.app)
        full = ready and not self._risk_index_ready
        changed = self.risk_index.sync(contents) if full else self.risk_index.refresh(contents, keys)
        self._risk_index_ready = ready
        horizon = datetime.fromtimestamp(self.clock() - self.settings.risk_list_prune_after_s, UTC)
        return changed + self.risk_index.prune(horizon)

    async def _risk_list_changed(self, event: faust.EventT) -> None:
        """Faust's ``on_changelog_event``: called for every risk-list changelog record this worker
        receives, just before the table applies it (it is applied before the next tick)."""
        key = event.message.key
        if key is not None:
            self._risk_list_keys.add(bytes(key))

    def tick_models(self) -> None:
        """A watched registry: a newly activated, verified model is swapped in atomically; a broken
        one is refused and the old one keeps serving."""
        if self.services.refresh_models():
            self._publish_model_versions()

    # ---- handlers (synchronous: no await between reading and writing a declaration's state) ---
    def handle_credit_events(self, events: Sequence[faust.EventT]) -> OutputBatch:
        return self.credit_fold.handle(events)

    def handle_risk_lists(self, events: Sequence[faust.EventT]) -> OutputBatch:
        out = OutputBatch()
        for event in events:
            msg = event.message
            try:
                if msg.key is None:
                    raise KeyMismatch("risk-list record without a key (entry_id)")
                if msg.value is not None:  # null: delete the entry
                    parse_keyed(RiskListEntry, msg.key, msg.value, "entry_id")
            except Exception as exc:  # noqa: BLE001 - every bad record goes to the dead-letter topic
                self.dead_letters.add(out, msg, exc)
                continue
            out.set_table(self.risk_lists, 0, bytes(msg.key), msg.value)
            self._risk_list_keys.add(bytes(msg.key))  # this worker gets no changelog event for its own write
        return out

    def handle_inspection_results(self, events: Sequence[faust.EventT]) -> OutputBatch:
        out = OutputBatch()
        for event in events:
            result = self._parse_keyed(out, event.message, InspectionResult, "declaration_id")
            if result is None or not self._registered_port(out, event.message, result.port):
                continue
            out.inc(metrics.EVENTS_IN.labels("inspection-result", result.port))
            out.inc(metrics.INSPECTION_RESULTS.labels(result.port, "true" if result.found else "false"))
            if result.found:
                self._publish_finding(out, event.message, joint.from_inspection(result, self._state(result.declaration_id)))
        return out

    def handle_warning_reviews(self, events: Sequence[faust.EventT]) -> OutputBatch:
        """Confirmed warnings become joint findings (``streams.joint``); dismissed ones are counted."""
        out = OutputBatch()
        for event in events:
            msg = event.message
            try:
                if msg.key is None:
                    raise KeyMismatch("warning review without a key (the declaration id, else the subject id)")
                review = codec.parse(WarningReview, msg.value)
                expected = review.declaration_id or review.subject_id
                if bytes(msg.key) != expected.encode():
                    raise KeyMismatch(f"key {bytes(msg.key)[:64]!r} is not the review's declaration (or subject) id {expected}")
                if review.port is not None:
                    check_port(review.port, self.services.policy.knows_port)
            except Exception as exc:  # noqa: BLE001 - every bad record goes to the dead-letter topic
                self.dead_letters.add(out, msg, exc)
                continue
            out.inc(metrics.WARNING_REVIEWS.labels(review.verdict.value))
            stored = self._state(review.declaration_id) if review.declaration_id else None
            self._publish_finding(out, msg, joint.from_review(review, stored))
        return out

    def _publish_finding(self, out: OutputBatch, msg: Any, finding: JointFinding | None) -> None:
        """On the source record's partition and key (the declaration's), like its instructions."""
        if finding is None:
            return
        out.add(self.joint_findings_topic, msg.partition, bytes(msg.key), joint.encode(finding))
        out.inc(metrics.JOINT_FINDINGS.labels(finding.kind.value, "true" if finding.enterprise_id else "false"))

    def _registered_port(self, out: OutputBatch, msg: Any, port: str) -> bool:
        """True for a port of the policy's register; otherwise the record is dead-lettered
        (``unknown-port``) before any metric label or state names the port."""
        try:
            check_port(port, self.services.policy.knows_port)
        except UnknownPort as exc:  # to the dead-letter topic
            self.dead_letters.add(out, msg, exc)
            return False
        return True

    def _parse_keyed(self, out: OutputBatch, msg: Any, model: type[R], id_field: str, key_optional: bool = False) -> R | None:
        """``schemas.validation.parse_keyed``, or the record dead-lettered with its reason and None
        returned: a bad record never stops the batch."""
        try:
            return parse_keyed(model, msg.key, msg.value, id_field, key_optional=key_optional)
        except Exception as exc:  # noqa: BLE001 - every bad record goes to the dead-letter topic
            self.dead_letters.add(out, msg, exc)
            return None

    def handle_centralised_declarations(self, events: Sequence[faust.EventT]) -> OutputBatch:
        """Split each centralised declaration the policy allows into one declaration per goods item,
        written to the declarations topic on the item id's murmur2 partition (a repartition step):
        there decide_declarations decides each item like any declaration -- own score, random draw,
        scan join (scans are keyed by the item's id), deadline, dedup. Refused ones are dead-lettered."""
        out = OutputBatch()
        for event in events:
            msg = event.message
            centralised = self._parse_keyed(out, msg, CentralisedDeclaration, "centralised_id")
            if centralised is None or not self._registered_port(out, msg, centralised.port):
                continue
            try:
                check_centralised(self.services.policy, self.credit_book.of(centralised.enterprise_id), centralised.items)
                items = centralised.item_declarations()
            except BatchNotAllowed as exc:
                out.inc(metrics.CENTRALISED.labels("refused"))
                self.dead_letters.add(out, msg, exc)
                continue
            except Exception as exc:  # noqa: BLE001 - an item that cannot be split goes to the dead letters, the batch goes on
                self.dead_letters.add(out, msg, exc)
                continue
            for decl in items:  # deterministic bytes: a redelivery re-emits identical records (duplicates downstream)
                key = decl.declaration_id.encode()
                value = decl.model_dump_json(exclude_none=True).encode()
                out.add(self.declarations_topic, partition_for(key, self.settings.partitions), key, value)
            # Only accepted records count as events in (the dead-letter share's denominator adds the rejected ones).
            out.inc(metrics.EVENTS_IN.labels("centralised-declaration", centralised.port))
            out.inc(metrics.CENTRALISED.labels("split"))
            out.inc(metrics.CENTRALISED_ITEMS, len(items))
        return out

    def handle_declarations_and_scans(self, events: Sequence[faust.EventT]) -> OutputBatch:
        """A micro-batch of one agent's declarations and scans. The declarations are decided first,
        then the scans applied: the two topics have no order between them, so a scan that came in
        the same batch as its declaration may as well have come just after it (and a scan that came
        first is kept in the state, ``decision.flow.on_scan``, either way)."""
        declarations: list[faust.EventT] = []
        scans: list[faust.EventT] = []
        for event in events:
            (scans if event.message.topic == self.scans_topic_name else declarations).append(event)
        out = self.handle_declarations(declarations)
        if scans:
            self.handle_scans(scans, out)
        self.expire_with_batch(out)
        return out

    def handle_declarations(self, events: Sequence[faust.EventT]) -> OutputBatch:
        now = self.clock()
        out = OutputBatch()
        parsed: list[tuple[int, Declaration]] = []
        sources: list[Any] = []  # the record each parsed declaration came in (for a refusal's dead letter)
        partitions = self.settings.partitions
        knows_port = self.services.policy.knows_port
        for event in events:
            msg = event.message
            if msg.topic == self.batch_topic_name:
                items = self._batch_items(msg, out)
                parsed += items
                sources += [msg] * len(items)
                continue
            try:
                decl = parse_keyed(Declaration, msg.key, msg.value, "declaration_id")
                check_partition(decl, msg.partition, partitions)
                check_port(decl.port, knows_port)
            except Exception as exc:  # noqa: BLE001 - every bad record goes to the dead-letter topic
                self.dead_letters.add(out, msg, exc)
                continue
            parsed.append((msg.partition, decl))
            sources.append(msg)
        if not parsed:
            return out
        out.observe(metrics.BATCH_SIZE, [len(parsed)])
        for port, n in Counter(d.port for _, d in parsed).items():
            out.inc(metrics.EVENTS_IN.labels("declaration", port), n)
        # Each id's state is read once per batch; decide_batch carries it along.
        states = {d.declaration_id: self._state(d.declaration_id) for _, d in parsed}
        controllers: dict[int, CapacityController] = {}

        def controller_for(partition: int) -> CapacityController:
            return controllers.get(partition) or controllers.setdefault(partition, self._controller(partition))

        steps = decide_batch(parsed, states, self.services, self.references, controller_for, now)
        scores: dict[str, list[float]] = {}
        shadows: Counter[tuple[str, str, str, str]] = Counter()
        for (partition, decl), step, msg in zip(parsed, steps, sources):
            key = decl.declaration_id.encode()
            if step.refusal is not None:
                self._dead_letter_refusal(out, msg, key, step, decl)
            self._apply(out, key, step, "declaration", partition, now, decl.event_time.timestamp())
            if step.instructions and step.instructions[0].score is not None:
                scenario = decl.scenario._value_  # the plain attribute: see decision.flow
                (scores.get(scenario) or scores.setdefault(scenario, [])).append(step.instructions[0].score)
            if step.shadow is not None:  # with the batch's instructions: delivered before the offsets are committed
                out.add(self.shadow_topic, partition, key, encode_shadow(step.shadow))
                s = step.shadow
                shadows[(s.scenario._value_, s.challenger_version, s.champion_action._value_, s.challenger_action._value_)] += 1
        for scenario, values in scores.items():
            out.observe(metrics.SCORES.labels(scenario), values)
        _count_shadow_scores(out, shadows)
        for partition, controller in controllers.items():
            raw = controller.to_bytes()
            out.set_table(self.capacity, partition, _capacity_key(partition), raw)
            self._controllers[partition] = (raw, controller)
        return out

    def _dead_letter_refusal(self, out: OutputBatch, msg: Any, key: bytes, step: Step, decl: Declaration | None = None) -> None:
        """A record the state machine refused (``decision.guards``). A scan the state kept because it
        came first is dead-lettered as the state kept it (its record was consumed long ago); any
        other refused record as it came (a gateway-batch item as its declaration)."""
        refusal = step.refusal
        assert refusal is not None
        if refusal.scan is not None:
            kept = _KeptRecord(self.scans_topic_name, msg.partition, key, kept_scan_record(key.decode(), refusal.scan))
            self.dead_letters.add(out, kept, refusal.error())
        elif decl is not None and msg.topic == self.batch_topic_name:
            self.dead_letters.add(out, msg, refusal.error(), value=decl.model_dump_json(exclude_none=True).encode())
        else:
            self.dead_letters.add(out, msg, refusal.error())

    def _controller(self, partition: int) -> CapacityController:
        # The table is the truth: the copy kept here is reused only while the table still holds the
        # very bytes this worker wrote last, so after a rebalance or recovery the partition's state
        # comes from its changelog, never from a stale copy in this process.
        raw = tables.contents(self.capacity).get(_capacity_key(partition))
        kept = self._controllers.get(partition)
        if kept is not None and raw is not None and kept[0] is raw:
            return kept[1]
        return CapacityController.from_bytes(raw, self.services.policy.capacity, self.services.policy.ports)

    def publish_selection_rates(self, partitions: Iterable[int]) -> dict[tuple[str, str], float]:
        """Realised (smoothed) vs target selection rate per port and lane over the given
        declaration partitions. Each partition's controller adapts on its own; the realised rate is
        their mean weighted by the declarations each has seen. Runs on a timer, not per batch."""
        capacity = self.services.policy.capacity
        sums: dict[tuple[str, str], list[float]] = {}
        for partition in partitions:
            controller = self._controller(partition)
            for port in controller.ports():
                n = controller.observed(port)
                for lane, rate in controller.realised(port).items():
                    if rate is not None and n:
                        acc = sums.setdefault((port, lane), [0.0, 0.0])
                        acc[0] += rate * n
                        acc[1] += n
        realised = {key: total / n for key, (total, n) in sums.items()}
        for (port, lane), rate in realised.items():
            metrics.SELECTION_RATE.labels(port, lane).set(rate)
            target = getattr(capacity.targets_for(port), lane.replace("-", "_"))
            if target:
                metrics.SELECTION_RATE_TARGET.labels(port, lane).set(target)
        return realised

    def _publish_consumer_metrics(self) -> None:
        """Records behind the partition's high watermark, per owned input partition (on brokers
        that report watermarks correctly; the embedded Tansu does not), the fetches made and those
        left out by the fetch bounds."""
        for topic, partition, lag in status.input_lag(self.app):
            metrics.CONSUMER_LAG.labels(topic, str(partition)).set(lag)
        totals = status.fetches(self.app)
        for kind, total, seen in zip(("full", "incremental"), totals, self._fetches_seen):
            metrics.FETCHES.labels(kind).inc(max(0, total - seen))
        self._fetches_seen = totals
        for topic, holds in self.fetch_bounds.holds.items():
            metrics.FETCH_HOLDS.labels(topic).inc(max(0, holds - self._holds_seen.get(topic, 0)))
            self._holds_seen[topic] = holds

    def settled(self, actives: set[int], now: float) -> set[int]:
        """The active partitions whose overdue deadlines may fire: those this worker has owned for
        at least ``takeover_grace_s``. After a takeover (or a start) scans may already be waiting on
        the partition; a deadline that fired before the agent read them turned clean scans into
        inspections (up to 32 per kill -9 run in tests/integration/test_faults.py).

        A rebalance is a takeover of every partition, even one given back to this worker: it reads
        the partition's inputs again from the last commit, scans included, and a timer that did not
        tick while it was not ready would not have noticed the partition leave."""
        rebalances = status.rebalances(self.app)
        if rebalances != self._rebalances_seen:
            self._active_since.clear()
            self._rebalances_seen = rebalances
        for partition in list(self._active_since):
            if partition not in actives:
                del self._active_since[partition]
        grace = self.settings.takeover_grace_s
        return {p for p in actives if now - self._active_since.setdefault(p, now) >= grace}

    def _active_declaration_partitions(self) -> set[int]:
        decl_topic = self.settings.topic(topics.DECLARATIONS)
        return {tp.partition for tp in status.active_partitions(self.app) if tp.topic == decl_topic}

    def _batch_items(self, msg: Any, out: OutputBatch) -> list[tuple[int, Declaration]]:
        """A gateway batch's good declarations; each bad item (or the whole record, if its envelope
        is unusable) dead-lettered with its original bytes."""
        try:
            items = parse_declaration_batch(msg.value, msg.partition, self.settings.partitions)
        except Exception as exc:  # noqa: BLE001 - the envelope itself is unusable
            self.dead_letters.add(out, msg, exc)
            return []
        if len(items) > self.settings.gateway_batch_max_declarations:  # refused whole, decided not at all
            limit = self.settings.gateway_batch_max_declarations
            self.dead_letters.add(out, msg, BatchTooLarge(f"{len(items)} declarations in one batch record; at most {limit} accepted"))
            return []
        good: list[tuple[int, Declaration]] = []
        knows_port = self.services.policy.knows_port
        for decl, raw, error in items:
            if decl is not None:
                try:
                    check_port(decl.port, knows_port)
                except UnknownPort as exc:  # the item alone goes to the dead letters
                    self.dead_letters.add(out, msg, exc, value=raw or decl.model_dump_json(exclude_none=True).encode())
                    continue
                good.append((msg.partition, decl))
            else:
                assert error is not None
                self.dead_letters.add(out, msg, error, value=raw)
        return good

    def handle_scans(self, events: Sequence[faust.EventT], out: OutputBatch | None = None) -> OutputBatch:
        """Scans (added to ``out``, the declarations' output of the same micro-batch, if given)."""
        now = self.clock()
        out = out if out is not None else OutputBatch()
        for event in events:
            msg = event.message
            scan = self._parse_keyed(out, msg, ScanResult, "declaration_id")
            if scan is None:
                continue
            try:  # port and device register, not timed in the future: before any metric names the port
                check_scan_arrival(self.services.policy, scan, now)
            except (UnknownPort, Refused) as exc:  # a scan that cannot count goes to the dead-letter topic
                self.dead_letters.add(out, msg, exc)
                continue
            out.inc(metrics.EVENTS_IN.labels("scan", scan.port))
            step = on_scan(self._state(scan.declaration_id), scan, now, self.services.policy.scan.clock_skew_s)
            if step.refusal is not None:
                self._dead_letter_refusal(out, msg, scan.declaration_id.encode(), step)
            self._apply(out, scan.declaration_id.encode(), step, "scan", msg.partition, now)
        return out

    def expire_deadlines(self, now: float, out: OutputBatch) -> int:
        """Turn overdue machine-checks into inspect instructions, on the partitions this worker
        actively owns (held back for ``takeover_grace_s`` after it takes one over, see ``settled``).
        The due keys come from the deadline index, at most ``state_expiry_max_per_tick`` a tick."""
        actives = self.owned_partitions()
        metrics.WORKER_READY.set(0 if actives is None else 1)
        if actives is None:
            return 0
        metrics.ASSIGNED_PARTITIONS.set(len(actives))
        self._forget_revoked(actives)
        expired = 0
        budget = self.settings.state_expiry_max_per_tick
        stored = tables.contents(self.deadlines)
        for partition in self._in_turn(self.settled(actives, now)):
            for key in self._deadline_index.pop_due(partition, now, budget):
                budget -= 1
                raw = stored.get(key)
                if not raw:
                    continue  # the scan came first
                entry = decode_deadline(raw)
                if entry.deadline > now:
                    continue  # rewritten since: its own index entry is later
                step = on_timeout(self._state(key.decode()), entry.revision, now)
                self._apply(out, key, step, "timeout", entry.partition, now)
                if step.outcome is Outcome.TIMEOUT:
                    out.inc(metrics.SCAN_TIMEOUTS.labels(entry.port))
                    expired += 1
        pending = len(stored) if isinstance(stored, dict) else self._deadline_index.size()  # RocksDB: len() walks the store
        metrics.PENDING_MACHINE_CHECKS.set(pending)
        return expired

    def owned_partitions(self) -> set[int] | None:
        """The declarations partitions this worker actively owns, or None while it is not ready
        (rebalancing, or its tables still recovering). The test driver replaces this."""
        if not status.ready(self.app):
            return None
        return self._active_declaration_partitions()

    # ---- effects -----------------------------------------------------------------------------
    def _state(self, declaration_id: str) -> Stored | None:
        raw = tables.contents(self.state).get(declaration_id.encode())
        return decode_stored(raw) if raw else None

    def _apply(self, out: OutputBatch, key: bytes, step: Step, source: str, partition: int, now: float,
               event_ts: float | None = None) -> None:
        """Emit a step's instructions and table writes (``event_ts``: the event time as epoch
        seconds when the caller has it, saving a parse per instruction)."""
        for raw in step.emit:
            out.add(self.instructions_topic, partition, key, raw)
        for raw in step.warnings:  # on the declaration's partition, keyed by its id like its instructions
            out.add(self.warnings_topic, partition, key, raw)
        out.warned.update(step.raised)
        for instruction in step.instructions:
            # Counted here, published once per micro-batch (label look-ups cost more than the rest).
            stage = instruction.stage._value_
            out.tally[(instruction.action._value_, stage, instruction.port, instruction.credit_class._value_)] += 1
            if event_ts is None:
                event_ts = datetime.fromisoformat(instruction.event_time).timestamp()
            out.latencies.append((stage, now - event_ts))
        if step.outcome is not Outcome.DECIDED and step.outcome is not Outcome.TIMEOUT:
            out.inc(metrics.DUPLICATES.labels(source, step.outcome._value_))
        if step.state is not None:
            step.state.changed_at = now  # starts its expiry clock (decision.retention)
            out.set_table(self.state, partition, key, encode_state(step.state))
            self._hint_state(partition, key, step.state, now)
        if step.deadline is not None:
            decl = step.state.decl if step.state is not None else None
            assert decl is not None, "a deadline is set only with the decided revision's state"
            out.set_table(self.deadlines, partition, key, encode_deadline(ScanDeadline(step.deadline, decl.revision, decl.port, partition)))
            self._deadline_index.add(partition, step.deadline, key)
        elif step.clear_deadline and key in tables.contents(self.deadlines):
            out.set_table(self.deadlines, partition, key, None)


    # ---- declaration state lifecycle: compaction, retention, orphan scans (decision.retention) ---
    def _init_expiry(self, settings: Settings) -> None:
        """Indexes by due time, per partition (``streams.expiry``): compaction is minutes away,
        retention days and orphan scans hours, so they get buckets of their own scale."""
        self.lifetimes = Lifetimes(settings.state_compact_after_s, settings.state_retention_s, settings.orphan_scan_ttl_s)
        self._near_index = TimeIndex(_bucket_width(settings.state_compact_after_s, 10.0))  # full states awaiting compaction
        self._far_index = TimeIndex(_bucket_width(min(settings.state_retention_s, settings.orphan_scan_ttl_s), 600.0))
        self._deadline_index = TimeIndex(0.25)
        self._turn = 0  # which settled partition the ticks start with: none waits behind the others
        # RocksDB keeps its data across restarts without replaying it as changelog events: each
        # owned partition's persisted keys are walked into the indexes, a bounded step per tick.
        self._walks: dict[tuple[str, int], bytes | None] = {}  # (table, partition) -> last key walked
        self._walked: set[tuple[str, int]] = set()
        self._walk_left: dict[tuple[str, int], int] = {}  # keys a walk may still read (what the store held when it began)
        for table in (self.state, self.deadlines):
            table.on_recover(self._recovered(table))

    @staticmethod
    def _recovered(table: Any) -> Callable[[], Awaitable[None]]:
        async def forget() -> None:  # a retained declaration then costs its key, value and index entry only
            tables.forget_recovered_keys(table)

        return forget

    def _hint_state(self, partition: int, key: bytes, stored: Stored, first_seen: float) -> None:
        due = due_at(stored, self.lifetimes, first_seen)
        if due is not None:
            near = not isinstance(stored, Fingerprint) and stored.phase is Phase.FINAL
            (self._near_index if near else self._far_index).add(partition, due, key)

    async def _on_state_changelog(self, event: Any) -> None:
        """Faust calls this for each changelog record it recovers: the record's key joins the index
        (a fingerprint's time is read without decoding it)."""
        self._index_state_record(event.message.partition, event.key, event.message.value)

    async def _on_deadline_changelog(self, event: Any) -> None:
        self._index_deadline_record(event.message.partition, event.key, event.message.value)

    def _index_state_record(self, partition: int, key: bytes, value: bytes | None) -> None:
        if not value:
            return  # a tombstone
        at = fingerprint_time(value)
        if at is not None:
            self._far_index.add(partition, at + self.lifetimes.retention_s, key)
            return
        try:
            state = decode_state(value)
        except (UnknownFormat, ValueError):
            return  # refused when read, as before
        self._hint_state(partition, key, state, self.clock())

    def _index_deadline_record(self, partition: int, key: bytes, value: bytes | None) -> None:
        if value:
            try:
                self._deadline_index.add(partition, decode_deadline(value).deadline, key)
            except (UnknownFormat, ValueError):
                pass

    def tick_state_expiry(self) -> OutputBatch:
        """Full states past ``state_compact_after_s`` become fingerprints, fingerprints past
        ``state_retention_s`` and orphan scans past ``orphan_scan_ttl_s`` are deleted (tombstones);
        only on settled, actively owned partitions, at most ``state_expiry_max_per_tick`` keys."""
        out = OutputBatch()
        actives = self.owned_partitions()
        if actives is None:
            return out
        now = self.clock()
        self._forget_revoked(actives)
        budget = self.settings.state_expiry_max_per_tick
        walk_budget = budget  # indexing what the disk held has a budget of its own: expiry goes on meanwhile
        for partition in self._in_turn(self.settled(actives, now)):
            walk_budget -= self._walk_persisted(partition, walk_budget)
            budget -= self._expire_due(out, partition, now, budget)
        held = tables.contents(self.state)
        # RocksDB: len() would walk the store; its own estimate (memtables and files) instead.
        metrics.STATE_RETAINED.set(len(held) if isinstance(held, dict) else tables.estimated_keys(self.state))
        return out

    def expire_with_batch(self, out: OutputBatch) -> None:
        """Expiry that keeps pace with deciding: a micro-batch that wrote N declaration states on a
        partition also expires up to ``state_expiry_per_write`` x N of that partition's due keys
        (at most ``state_expiry_max_per_tick`` in all), into the batch's own output, so its
        fingerprints and tombstones go out and are committed with its instructions. Each decided
        declaration becomes due twice (compaction, deletion), at the rate it was decided; the timer
        gets only the event loop's leftovers while the worker runs at its full rate, and is left the
        quiet periods. Same partitions as the timer: actively owned and settled."""
        state_changelog = tables.changelog_topic(self.state)
        written = {partition: len(records) for (topic, partition), records in out.by_partition() if topic == state_changelog}
        if not written:
            return
        actives = self.owned_partitions()
        if actives is None:
            return
        now = self.clock()
        settled = self.settled(actives, now)
        budget = self.settings.state_expiry_max_per_tick
        per_write = self.settings.state_expiry_per_write
        for partition, writes in written.items():
            if partition in settled and budget > 0:
                budget -= self._expire_due(out, partition, now, min(budget, math.ceil(writes * per_write)))

    def _expire_due(self, out: OutputBatch, partition: int, now: float, budget: int) -> int:
        """Expire up to ``budget`` due keys of ``partition`` (compactions first); returns the keys
        taken from the indexes. Should an expiry raise (its batch is then undone and retried,
        ``streams.isolation``), the keys taken go back to their index: an entry is a hint, re-read
        before acting, so a key indexed twice is harmless, and a key not indexed would never expire."""
        taken = 0
        for index in (self._near_index, self._far_index):
            keys = index.pop_due(partition, now, max(budget - taken, 0))
            try:
                for key in keys:
                    self._expire_state(out, partition, key, now)
            except BaseException:
                for key in keys:
                    index.add(partition, now, key)
                raise
            taken += len(keys)
        return taken

    def _expire_state(self, out: OutputBatch, partition: int, key: bytes, now: float) -> None:
        raw = tables.contents(self.state).get(key)
        if not raw:
            return
        try:
            stored = decode_stored(raw)
        except (UnknownFormat, ValueError):
            return
        expired = expire(stored, self.lifetimes, now)
        if expired is None:
            return  # rewritten since: its own index entry is later
        out.set_table(self.state, partition, key, expired.value)
        out.inc(metrics.STATE_EXPIRED.labels(expired.what._value_))
        if expired.value is not None:
            self._index_state_record(partition, key, expired.value)
        if expired.what is Expiry.ORPHAN_SCAN:
            kept = _KeptRecord(self.scans_topic_name, partition, key, expired.orphan_scan)
            self.dead_letters.add(out, kept, OrphanScan(
                f"no declaration {key.decode(errors='replace')} within {self.lifetimes.orphan_scan_ttl_s:g} s of its scan; "
                "the value is what was kept of the scan"))

    def _walk_persisted(self, partition: int, budget: int) -> int:
        """One bounded step of indexing what a RocksDB store held before this worker started;
        returns the keys read. A walk reads at most the keys its database held when it began (and
        a margin): keys this worker writes are indexed as it writes them, and a walk that also took
        them would chase a stream of new keys for ever."""
        read = 0
        for name, table, index_record in (("state", self.state, self._index_state_record),
                                          ("deadlines", self.deadlines, self._index_deadline_record)):
            walk = (name, partition)
            if walk in self._walked or budget - read <= 0 or not tables.is_rocksdb(table):
                continue
            if walk not in self._walk_left:
                self._walk_left[walk] = tables.estimated_keys(table, partition) + WALK_MARGIN
            step = min(budget - read, self._walk_left[walk])
            items = tables.partition_items(table, partition, self._walks.get(walk), step) if step > 0 else []
            for key, value in items:
                index_record(partition, key, value)
            read += len(items)
            self._walk_left[walk] -= len(items)
            if len(items) < step or self._walk_left[walk] <= 0:  # the end of what the store held
                self._walked.add(walk)
                self._walks.pop(walk, None)
                self._walk_left.pop(walk, None)
            else:
                self._walks[walk] = items[-1][0]
        return read

    def _forget_revoked(self, actives: set[int]) -> None:
        """Drop what this worker holds of partitions it neither owns nor stands by for (revoked):
        their keys in the memory stores, their unacknowledged RocksDB writes (Faust closes the
        databases), their index entries and cached capacity controller. The indexes name every key
        a partition holds in the per-declaration tables (a state's own due time, or its scan
        deadline while it awaits a scan), so no walk of a whole store is needed. Should the
        partition come back, Faust's recovery reads its changelog again."""
        kept = actives | {tp.partition for tp in status.standby_partitions(self.app)}
        held = self._near_index.partitions() | self._far_index.partitions() | self._deadline_index.partitions()
        revoked = held - kept
        if revoked:
            state, deadlines = tables.contents(self.state), tables.contents(self.deadlines)
            for partition in revoked:
                keys = [*self._near_index.keys(partition), *self._far_index.keys(partition)]
                deadline_keys = self._deadline_index.keys(partition)
                if isinstance(state, dict):
                    for key in (*keys, *deadline_keys):  # a state awaiting its scan is indexed by its deadline
                        state.pop(key, None)
                if isinstance(deadlines, dict):
                    for key in deadline_keys:
                        deadlines.pop(key, None)
                for index in (self._near_index, self._far_index, self._deadline_index):
                    index.drop_partition(partition)
                self._controllers.pop(partition, None)
                capacity = tables.contents(self.capacity)
                if isinstance(capacity, dict):
                    capacity.pop(_capacity_key(partition), None)
            log.info("partitions %s revoked: their keys and index entries dropped", sorted(revoked))
        for table in (self.state, self.deadlines):
            tables.drop_unflushed(table, kept)
        for walk in [w for w in self._walked | set(self._walks) | set(self._walk_left) if w[1] not in actives]:
            self._walked.discard(walk)
            self._walks.pop(walk, None)
            self._walk_left.pop(walk, None)

    def _in_turn(self, partitions: set[int]) -> list[int]:
        ordered = sorted(partitions)
        if not ordered:
            return ordered
        self._turn = (self._turn + 1) % len(ordered)
        return ordered[self._turn:] + ordered[:self._turn]


WALK_MARGIN = 1000  # keys a walk reads beyond RocksDB's estimate of what the store held (an estimate)


def _bucket_width(lifetime_s: float, most_s: float) -> float:
    """Index buckets a twentieth of the shortest lifetime they hold (an expiry is at most that
    late), between 50 ms and ``most_s``."""
    return min(most_s, max(0.05, lifetime_s / 20))


def publish_metrics(out: OutputBatch) -> None:
    """The metrics a batch moved, published once it is handed to the producer (a failed attempt's
    batch is dropped unpublished, ``streams.isolation``)."""
    for counter, amount in out.counted.items():
        counter.inc(amount)
    for histogram, values in out.observed:
        metrics.observe_many(histogram, values)
    for labels, n in out.tally.items():
        metrics.INSTRUCTIONS.labels(*labels).inc(n)
    for (severity, rule), n in out.warned.items():
        metrics.WARNINGS.labels(severity, rule).inc(n)
    by_stage: dict[str, list[float]] = {}
    for stage, seconds in out.latencies:
        (by_stage.get(stage) or by_stage.setdefault(stage, [])).append(max(0.0, seconds))
    for stage, values in by_stage.items():
        metrics.observe_many(metrics.DECISION_LATENCY.labels(stage), values)


def _count_shadow_scores(out: OutputBatch, shadows: Counter[tuple[str, str, str, str]]) -> None:
    """Counted in the batch's output, so that a retried batch counts its shadow scores once."""
    for (scenario, version, champion, challenger), n in shadows.items():
        out.inc(metrics.SHADOW_SCORES.labels(scenario, version), n)
        if champion != challenger:
            out.inc(metrics.SHADOW_DISAGREEMENTS.labels(scenario, version, champion, challenger), n)


@dataclass(frozen=True, slots=True)
class _KeptRecord:
    """The dead-letter source of a scan the state kept (refused, or orphaned): no offset (-1), its
    record was consumed long before."""

    topic: str
    partition: int
    key: bytes
    value: bytes | None
    offset: int = -1


def _capacity_key(partition: int) -> bytes:
    return b"capacity:%d" % partition


__all__ = ["Topology"]
