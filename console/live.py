"""The live feed: open instructions per port, results already recorded, current risk-list entries,
where each enterprise's credit record is.

One thread reads the instructions, inspection-results and risk-lists topics and the enterprise-credit
changelog with a plain consumer (partitions assigned directly: no group, no rebalance, nothing
committed): instructions and results from ``console_lookback_s`` ago (to rebuild the open queue at
start), risk lists and the changelog from the beginning (compacted topics: their current records).
Everything it holds is bounded: open instructions per port (``console_queue_max_per_port``; more
are counted, not held), the instruction ids with a result (``console_known_results_max``, oldest
forgotten first), declarations already decided, risk-list entries (``console_risk_entries_max``),
credit-record positions (``console_credit_enterprises_max``).

An instruction is open from the moment it is seen until it is finished: a machine-check until the
declaration's final instruction (a clean scan's release leaves the queue, a suspicious scan or a
scan timeout turns it into an inspect), an inspect until its inspection result is on the results
topic (from the console or any station).
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import orjson
from confluent_kafka import OFFSET_BEGINNING, OFFSET_END, Consumer, TopicPartition
from pydantic import ValidationError

from clients import topics
from clients.topics import TABLE_ENTERPRISE_CREDIT, changelog_topic
from common.settings import Settings
from console import metrics
from console.creditrecords import CreditPositions
from console.riskentries import HeldEntry, ListSummary, RiskEntries
from schemas import ControlInstruction, InspectionResult, RiskListEntry
from schemas.codec import parse

log = logging.getLogger(__name__)

MAX_DECIDED = 200_000
MAX_ENTERPRISE_ID_BYTES = 64  # schemas.records.Identifier
RETRY_S = 5.0


@dataclass(frozen=True)
class QueueItem:
    """One open instruction as the officer's queue shows it."""

    instruction: ControlInstruction
    seen_at: float  # time.time() when the feed read it

    @property
    def declaration_id(self) -> str:
        return self.instruction.declaration_id

    @property
    def scan_text(self) -> str:
        ins = self.instruction
        if ins.stage.value == "declaration":
            return "awaiting scan" if ins.action.value == "machine-check" else "-"
        if ins.stage.value == "timeout":
            return "no scan in time"
        return f"{'suspicious' if ins.action.value == 'inspect' else 'clean'} ({ins.scan_id or '-'})"


@dataclass
class PortQueue:
    items: OrderedDict[str, QueueItem] = field(default_factory=OrderedDict)  # declaration id -> open item, oldest first
    not_held: int = 0  # open instructions seen while the queue was full
    version: int = 0  # bumped on every change: the live page re-renders when it moves


class _Bounded(OrderedDict[str, Any]):
    def __init__(self, limit: int) -> None:
        super().__init__()
        self.limit = limit

    def remember(self, key: str, value: Any = True) -> None:
        self[key] = value
        self.move_to_end(key)
        while len(self) > self.limit:
            self.popitem(last=False)


class Feed:
    """The state the pages read; :meth:`apply_instruction` etc. are pure (unit-tested without a broker)."""

    def __init__(self, settings: Settings, ports: set[str] | None = None) -> None:
        self.settings = settings
        if ports is None:
            from policy.config import load_policy

            ports = set(load_policy(settings.policy_file).ports)
        self.known_ports = ports  # instructions of other ports are not the office's (and would be unbounded labels)
        self.lock = threading.Lock()
        self.ports: dict[str, PortQueue] = {}
        self.results = _Bounded(settings.console_known_results_max)  # instruction id -> True
        self.decided = _Bounded(MAX_DECIDED)  # "declaration_id:revision" whose final instruction was seen
        self.risk_entries = RiskEntries(settings.console_risk_entries_max)
        self.credit_positions = CreditPositions(settings.console_credit_enterprises_max)
        self._credit_topic = changelog_topic(settings, TABLE_ENTERPRISE_CREDIT)
        self.caught_up = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.error: str | None = None

    # ---- state changes (under self.lock) ------------------------------------------------------------
    def _queue(self, port: str) -> PortQueue:
        q = self.ports.get(port)
        if q is None:
            q = self.ports[port] = PortQueue()
        return q

    def apply_instruction(self, ins: ControlInstruction, now: float | None = None) -> None:
        if ins.port not in self.known_ports:
            return
        now = time.time() if now is None else now
        q = self._queue(ins.port)
        did = ins.declaration_id
        held = q.items.get(did)
        if held is not None and held.instruction.revision > ins.revision:
            return  # a late instruction of an older revision
        key = f"{did}:{ins.revision}"
        if ins.final:
            self.decided.remember(key)
            if ins.action.value == "inspect" and ins.instruction_id not in self.results:
                self._hold(q, did, QueueItem(ins, now))
            elif held is not None:
                del q.items[did]
                q.version += 1
        elif key not in self.decided and ins.action.value != "release":
            self._hold(q, did, QueueItem(ins, now))
        elif held is not None and held.instruction.revision < ins.revision:
            del q.items[did]  # a newer revision released at declaration time: the older one's work is void
            q.version += 1

    def _hold(self, q: PortQueue, did: str, item: QueueItem) -> None:
        if did in q.items:
            q.items[did] = item  # keeps its place in the queue (the declaration waited since its first instruction)
        elif len(q.items) < self.settings.console_queue_max_per_port:
            q.items[did] = item
        else:
            q.not_held += 1
            metrics.QUEUE_OVERFLOW.labels(item.instruction.port).inc()
            return
        q.version += 1

    def apply_result(self, result: InspectionResult) -> None:
        self.results.remember(result.instruction_id)
        q = self.ports.get(result.port)
        if q is None:
            return
        held = q.items.get(result.declaration_id)
        if held is not None and held.instruction.instruction_id == result.instruction_id:
            del q.items[result.declaration_id]
            q.version += 1

    def apply_risk_entry(self, entry_id: str, entry: RiskListEntry | None) -> None:
        self.risk_entries.put(entry_id, entry)

    # ---- reads -------------------------------------------------------------------------------------
    def snapshot(self, ports: list[str], limit: int) -> tuple[list[QueueItem], int, int]:
        """The oldest ``limit`` open items of ``ports``, how many open items there are in all, and
        how many more were seen while a queue was full."""
        with self.lock:
            items = [i for p in ports if p in self.ports for i in self.ports[p].items.values()]
            not_held = sum(self.ports[p].not_held for p in ports if p in self.ports)
        items.sort(key=lambda i: i.seen_at)
        return items[:limit], len(items), not_held

    def versions(self, ports: list[str]) -> tuple[int, ...]:
        with self.lock:
            return tuple(self.ports[p].version if p in self.ports else 0 for p in ports)

    def open_item(self, port: str, declaration_id: str) -> QueueItem | None:
        with self.lock:
            q = self.ports.get(port)
            return q.items.get(declaration_id) if q else None

    def find_open(self, declaration_id: str) -> QueueItem | None:
        with self.lock:
            for q in self.ports.values():
                if declaration_id in q.items:
                    return q.items[declaration_id]
        return None

    def has_result(self, instruction_id: str) -> bool:
        with self.lock:
            return instruction_id in self.results

    def mark_result(self, result: InspectionResult) -> None:
        with self.lock:
            self.apply_result(result)

    def search_risk_entries(self, text: str, list_id: str | None = None, limit: int = 200) -> tuple[list[HeldEntry], int]:
        with self.lock:
            return self.risk_entries.search(text, list_id, limit)

    def risk_lists(self) -> tuple[list[ListSummary], int, int]:
        """The lists held, how many entries in all, and how many were not held (the bound reached)."""
        with self.lock:
            return self.risk_entries.lists(), len(self.risk_entries), self.risk_entries.dropped

    # ---- the consumer thread ---------------------------------------------------------------------------
    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="console-feed", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)

    def _assignment(self, consumer: Consumer) -> list[TopicPartition]:
        metadata = consumer.list_topics(timeout=30)
        since_ms = int((time.time() - self.settings.console_lookback_s) * 1000)
        assignment: list[TopicPartition] = []
        # (topic, compacted): a compacted topic is read from its start (its current records), the others
        # from console_lookback_s ago.
        for name, compacted in ((self.settings.topic(topics.INSTRUCTIONS), False), (self.settings.topic(topics.INSPECTION_RESULTS), False),
                                (self.settings.topic(topics.RISK_LISTS), True), (self._credit_topic, True)):
            topic = metadata.topics.get(name)
            if topic is None or topic.error is not None:
                raise RuntimeError(f"topic {name} does not exist: run `riskctl topics create`")
            if compacted:
                assignment += [TopicPartition(name, p, OFFSET_BEGINNING) for p in topic.partitions]
                continue
            wanted = [TopicPartition(name, p, since_ms) for p in topic.partitions]
            try:
                found = consumer.offsets_for_times(wanted, timeout=30)
            except Exception as exc:  # noqa: BLE001 - a broker without time lookups: read the whole retention
                log.warning("offsets_for_times on %s failed (%s): reading from the beginning", name, exc)
                found = [TopicPartition(name, p, OFFSET_BEGINNING) for p in topic.partitions]
            # -1 (no record at or after the time): only new records.
            assignment += [TopicPartition(name, tp.partition, tp.offset if tp.offset >= 0 else OFFSET_END) for tp in found]
        return assignment

    def _run(self) -> None:
        """Read until stopped; after a failure (topics missing, broker unreachable at start) try again."""
        while not self._stop.is_set():
            try:
                self._read()
                return
            except Exception as exc:
                self.error = f"{type(exc).__name__}: {exc}"[:300]
                metrics.FEED_UP.set(0)
                log.exception("the console feed failed: retrying in %.0f s", RETRY_S)
                self._stop.wait(RETRY_S)

    def _read(self) -> None:
        consumer = Consumer({**self.settings.confluent_config(), "group.id": f"{self.settings.app_id}-console",
                             "enable.auto.commit": False, "auto.offset.reset": "earliest", "enable.partition.eof": True,
                             "fetch.wait.max.ms": 10})
        try:
            assignment = self._assignment(consumer)
            consumer.assign(assignment)
            metrics.FEED_UP.set(1)
            self.error = None
            pending_eof = {(tp.topic, tp.partition) for tp in assignment}
            t_ins, t_res = self.settings.topic(topics.INSTRUCTIONS), self.settings.topic(topics.INSPECTION_RESULTS)
            while not self._stop.is_set():
                messages = consumer.consume(num_messages=1000, timeout=0.1)
                with self.lock:
                    for msg in messages:
                        err = msg.error()
                        if err is not None:
                            if err.code() == err._PARTITION_EOF:
                                pending_eof.discard((msg.topic(), msg.partition()))
                            else:
                                log.warning("feed: %s", err.str())
                            continue
                        if msg.topic() == self._credit_topic:
                            self._credit_record(msg.key(), msg.partition(), msg.offset(), msg.value() is None)
                        else:
                            self._apply(msg.topic() or "", msg.key(), msg.value(), t_ins, t_res)
                if not pending_eof and not self.caught_up.is_set():
                    self.caught_up.set()
                    log.info("feed caught up: %d open instructions", sum(len(q.items) for q in self.ports.values()))
                with self.lock:
                    for port, q in self.ports.items():
                        metrics.QUEUE_OPEN.labels(port).set(len(q.items))
                    metrics.RISK_ENTRIES.set(len(self.risk_entries))
                    metrics.RISK_ENTRIES_NOT_HELD.set(self.risk_entries.dropped)
                    metrics.CREDIT_ENTERPRISES.set(len(self.credit_positions))
                    metrics.CREDIT_ENTERPRISES_NOT_HELD.set(self.credit_positions.dropped)
        finally:
            consumer.close()

    def _credit_record(self, key: bytes | None, partition: int | None, offset: int | None, deleted: bool) -> None:
        if key is None or partition is None or offset is None or len(key) > MAX_ENTERPRISE_ID_BYTES:
            return  # not an enterprise the workers keyed
        self.credit_positions.put(key.decode("utf-8", "replace"), partition, offset, deleted)

    def credit_position(self, enterprise_id: str) -> tuple[int, int] | None:
        with self.lock:
            return self.credit_positions.get(enterprise_id)

    def _irrelevant(self, value: bytes | None) -> bool:
        """Most instructions release at declaration time: for a declaration the queue does not hold, such
        an instruction changes nothing, so the full validation (the feed's main cost at thousands of
        instructions a second) is skipped for it."""
        try:
            doc = orjson.loads(value) if value else None
        except orjson.JSONDecodeError:
            return True
        if not isinstance(doc, dict) or doc.get("action") != "release" or doc.get("stage") != "declaration" or doc.get("final") is not True:
            return False
        queue = self.ports.get(str(doc.get("port")))
        if queue is not None and doc.get("declaration_id") in queue.items:
            return False
        decided = doc.get("decided_at")
        with contextlib.suppress(TypeError, ValueError):
            metrics.FEED_LAG_SECONDS.observe(max(0.0, time.time() - datetime.fromisoformat(decided).timestamp()))  # type: ignore[arg-type]
        return True

    def _apply(self, topic: str, key: bytes | None, value: bytes | None, t_ins: str, t_res: str) -> None:
        try:
            if topic == t_ins:
                if self._irrelevant(value):
                    return
                ins = parse(ControlInstruction, value)
                metrics.FEED_LAG_SECONDS.observe(max(0.0, time.time() - ins.decided_at.timestamp()))
                self.apply_instruction(ins)
            elif topic == t_res:
                self.apply_result(parse(InspectionResult, value))
            else:
                entry_id = (key or b"").decode("utf-8", "replace")[:64]
                self.apply_risk_entry(entry_id, None if value is None else parse(RiskListEntry, value))
        except (ValidationError, ValueError, orjson.JSONDecodeError):
            pass  # the worker dead-letters what does not parse; the console shows only valid records
