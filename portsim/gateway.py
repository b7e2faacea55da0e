"""Live traffic: the port gateways publishing to Kafka, and the ports' scanners answering machine-checks.

:class:`PortGateway` is the one traffic driver: the library behind ``riskctl simulate``, and what the
demo (``devkit/demo.py``) and the benchmark (``bench/``) publish and scan through::

    gateway = PortGateway(settings, PortOffice(seed=7))
    gateway.publish_credit_population()
    gateway.wait_for_credit_register()
    scanners = gateway.start_scanners(scan_delay_scale=0.05)
    gateway.publish_declarations(count=50_000, rate_per_s=2_000)
    ...
    gateway.close()  # stops the scanners, flushes the producer

Declarations go out through the reference gateway publisher (:class:`clients.gateway.DeclarationPublisher`):
one record each by default, packed per partition with ``batching=True``; credit lifecycle events
follow at a fixed ratio. A caller with a loop of its own (the demo, the bench) publishes with
:meth:`PortGateway.publish` and plays the scanners with :meth:`PortGateway.answer` and
:meth:`PortGateway.poll` instead of the scanner thread.

Declarations carry the wall-clock time of publication as ``event_time`` (so decision latency is
measurable; :meth:`PortGateway.publish` leaves setting it to the caller); everything else is the
office's seeded traffic. The ground truth of every published declaration is available through
:meth:`PortGateway.truth` (recent ones from memory, older ones regenerated from the id).
"""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer

from clients.gateway import DeclarationPublisher
from clients.producers import producer_config
from clients.topics import CREDIT_EVENT_BATCHES, CREDIT_EVENTS, DECLARATIONS, INSTRUCTIONS, SCANS, TABLE_ENTERPRISE_CREDIT, changelog_topic
from common.settings import Settings
from common.timefmt import utc_iso
from portsim.reload import BATCH_EVENTS
from portsim.traffic import LIFECYCLE_PER_DECLARATION, GroundTruth, PortOffice
from schemas import CreditEvent

log = logging.getLogger(__name__)

# The topic names are the catalogue's (clients.topics), named here too for cli/simulate.py.
__all__ = ["CREDIT_EVENTS", "DECLARATIONS", "INSTRUCTIONS", "SCANS", "GatewayStats", "PortGateway", "check_topics", "now_iso"]


def now_iso() -> str:
    """The gateway's time stamp: now, UTC, with microseconds (fixed width)."""
    return utc_iso(timespec="microseconds")


@dataclass
class GatewayStats:
    started: float = field(default_factory=time.monotonic)
    credit_events: int = 0
    declarations: int = 0  # including the items of centralised declarations
    centralised: int = 0
    lifecycle_events: int = 0
    instructions_seen: int = 0
    machine_checks: int = 0
    scans_scheduled: int = 0
    scans_published: int = 0
    scans_withheld: int = 0  # machine-checks the scanner never answers (exercises the timeout)
    stale_instructions: int = 0
    delivery_errors: int = 0

    def snapshot(self) -> dict[str, float]:
        return {k: v for k, v in self.__dict__.items() if k != "started"} | {"elapsed_s": time.monotonic() - self.started}


def _delivery_errors_into(stats: GatewayStats) -> Callable[[KafkaError | None, Any], None]:
    """The producer's delivery callback. It holds the stats, not the gateway: a gateway dropped by its
    caller frees its producer at once (no reference cycle waiting for the collector), so the
    producer does not outlive the broker of a demo or a bench run."""

    def on_delivery(err: KafkaError | None, _msg: Any) -> None:
        if err is not None:
            stats.delivery_errors += 1
            if stats.delivery_errors <= 5 or stats.delivery_errors % 1000 == 0:
                log.error("delivery failed (%d so far): %s", stats.delivery_errors, err)

    return on_delivery


class PortGateway:
    """Publishes the office's traffic and plays the ports' scanners."""

    def __init__(
        self, settings: Settings, office: PortOffice, *, first_index: int = 0,
        lifecycle_per_declaration: float = LIFECYCLE_PER_DECLARATION, truth_capacity: int = 200_000,
        producer: Producer | None = None, producer_options: dict[str, Any] | None = None,
        batching: bool = False, gateway_id: str = "GW1", linger_s: float = 0.005,
        truths: Mapping[str, GroundTruth] | None = None, lifecycle: Iterator[CreditEvent] | None = None,
    ) -> None:
        """``producer_options`` override :func:`clients.producers.producer_config` for the gateway's own
        producer (``producer`` replaces it). ``batching``, ``gateway_id`` and ``linger_s`` configure the
        :class:`DeclarationPublisher`. ``truths``: ground truths the caller keeps (of declarations it
        generated itself), looked up first; ``lifecycle``: the credit lifecycle stream to continue
        (default: the office's, from its start)."""
        self.settings = settings
        self.office = office
        self.stats = GatewayStats()
        self.producer = producer or Producer(producer_config(
            settings, **{"delivery.report.only.error": True, "on_delivery": _delivery_errors_into(self.stats), **(producer_options or {})}
        ))
        self.publisher = DeclarationPublisher(self.producer, settings, gateway=gateway_id, batching=batching, linger_s=linger_s)
        self._t_scans = settings.topic(SCANS)
        self._t_credit = settings.topic(CREDIT_EVENTS)
        self._t_credit_batches = settings.topic(CREDIT_EVENT_BATCHES)
        self._t_instructions = settings.topic(INSTRUCTIONS)
        self._decls = office.declaration_dicts(None, first_index=first_index)
        self._lifecycle = lifecycle if lifecycle is not None else office.lifecycle_events(None)
        self._lifecycle_ratio = lifecycle_per_declaration
        self._lifecycle_mixed = 0  # lifecycle events sent along with the declarations
        self._known: Mapping[str, GroundTruth] = truths if truths is not None else {}
        self._truth: dict[str, GroundTruth] = {}
        self._truth_capacity = truth_capacity
        self._scanner_stop = threading.Event()
        self._scanner_thread: threading.Thread | None = None
        self._heap: list[tuple[float, int, dict[str, Any]]] = []
        self._seq = itertools.count()
        self._seen_checks: dict[tuple[str, int], None] = {}
        self.last_instruction_at = 0.0  # monotonic time of the last machine-check seen
        self.scanners_ready = threading.Event()
        self.credit_enterprises = 0  # enterprises in the credit register published: entries the credit table must hold

    # ------------------------------------------------------------------ ground truth

    def truth(self, declaration_id: str) -> GroundTruth | None:
        """Ground truth of a declaration published by this gateway (or generated with its seed)."""
        found = self._known.get(declaration_id)
        if found is None:
            found = self._truth.get(declaration_id)
        return found if found is not None else self.office.truth_for(declaration_id)

    def _remember(self, declaration_id: str, truth: GroundTruth) -> None:
        self._truth[declaration_id] = truth
        if len(self._truth) > self._truth_capacity:
            for key in list(itertools.islice(iter(self._truth), self._truth_capacity // 4)):
                self._truth.pop(key, None)

    # ------------------------------------------------------------------ producing

    def publish_credit_population(self, at: datetime | None = None) -> int:
        """The credit register's initial state (one or more events per non-general enterprise), in
        enterprise order, packed into ``CreditEventBatch`` records as agencies publish in bulk."""
        enterprises: set[str] = set()
        batch: list[dict[str, Any]] = []
        n = 0
        for event in self.office.credit_population(at or datetime.now(UTC)):
            batch.append(event.model_dump(mode="json", exclude_none=True))
            enterprises.add(event.enterprise_id)
            n += 1
            if len(batch) == BATCH_EVENTS:
                self.publish_credit_batch({"batch_id": f"CP-{n}", "publisher": "customs", "events": batch})
                batch = []
        if batch:
            self.publish_credit_batch({"batch_id": f"CP-{n}", "publisher": "customs", "events": batch})
        self.stats.credit_events += n
        self.credit_enterprises = len(enterprises)
        self.flush()
        return n

    def publish_credit_batch(self, batch: dict[str, Any]) -> None:
        """One JSON-ready ``CreditEventBatch`` on ``credit-event-batches`` (key: its batch id)."""
        self.publisher.produce(self._t_credit_batches, batch["batch_id"].encode(), orjson.dumps(batch))
        self.producer.poll(0)

    def wait_for_credit_register(
        self, timeout_s: float = 30.0, expected: int | None = None, *,
        check: Callable[[], None] | None = None, progress: Callable[[int], None] | None = None,
    ) -> int:
        """Wait until the workers' enterprise-credit table (its changelog) holds an entry for every
        enterprise of the credit population (or ``expected`` entries), or ``timeout_s`` passes.
        Returns the entries seen. Between reads ``progress`` gets the count so far and ``check``
        runs; it may raise to give up (e.g. the worker died).

        Declarations decided before the register is folded meet "unknown enterprise" credit (e.g. a
        zero-tariff declaration without a registered qualification), so live runs wait for it."""
        from confluent_kafka import OFFSET_BEGINNING, TopicPartition

        if expected is None:
            expected = self.credit_enterprises or len({e.enterprise_id for e in self.office.credit_population()})
        topic = changelog_topic(self.settings, TABLE_ENTERPRISE_CREDIT)
        consumer = Consumer({**self.settings.confluent_config(), "group.id": f"{self.settings.app_id}.portsim-probe",
                             "enable.auto.commit": False})
        keys: set[bytes] = set()
        deadline = time.monotonic() + timeout_s
        try:
            meta = consumer.list_topics(topic, timeout=10).topics.get(topic)
            if meta is None or meta.error is not None:
                return 0
            consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in meta.partitions])
            while len(keys) < expected and time.monotonic() < deadline:
                for msg in consumer.consume(10_000, timeout=0.2):
                    if not msg.error() and msg.key() is not None:
                        keys.add(msg.key())
                if progress is not None:
                    progress(len(keys))
                if check is not None:
                    check()
        finally:
            consumer.close()
        return len(keys)

    def publish_lifecycle_events(self, count: int) -> int:
        ts = now_iso()
        for _ in range(count):
            event = next(self._lifecycle).model_dump(mode="json")
            event["event_time"] = ts
            self.publisher.produce(self._t_credit, event["enterprise_id"].encode(), orjson.dumps(event))
        self.stats.lifecycle_events += count
        return count

    def _mix_lifecycle(self) -> None:
        """Credit lifecycle events keep pace with the declarations: ``lifecycle_per_declaration`` each."""
        due = int(self.stats.declarations * self._lifecycle_ratio) - self._lifecycle_mixed
        if due > 0:
            self._lifecycle_mixed += self.publish_lifecycle_events(due)

    def next_declaration(self) -> tuple[dict[str, Any], GroundTruth]:
        """The office's next declaration (JSON-ready, ``event_time`` still to set) and its ground truth."""
        return next(self._decls)

    def publish(self, declaration: dict[str, Any], truth: GroundTruth | None = None) -> None:
        """Publish one JSON-ready declaration as it is (the caller sets its ``event_time``); ``truth``
        is kept for the scanners. Credit lifecycle events follow at the gateway's ratio."""
        if truth is not None:
            self._remember(declaration["declaration_id"], truth)
        self.publisher.publish(declaration)
        self.stats.declarations += 1
        self._mix_lifecycle()

    def publish_centralised(self, centralised: dict[str, Any], truths: Mapping[str, GroundTruth]) -> None:
        """Publish one JSON-ready centralised declaration; ``truths``: its items' (by item declaration id)."""
        for declaration_id, truth in truths.items():
            self._remember(declaration_id, truth)
        self.publisher.publish_centralised(centralised)
        self.stats.centralised += 1
        self.stats.declarations += len(centralised["items"])
        self._mix_lifecycle()

    def publish_declarations(
        self, count: int | None = None, *, duration_s: float | None = None, rate_per_s: float = 0.0,
        stop: threading.Event | None = None, on_progress: Callable[[GatewayStats], None] | None = None,
        progress_interval_s: float = 1.0,
    ) -> int:
        """Publish declarations (with lifecycle events mixed in) at ``rate_per_s`` (0: as fast as
        possible) until ``count`` are sent, ``duration_s`` passes or ``stop`` is set. Flushes at the end."""
        if rate_per_s < 0:
            raise ValueError("rate_per_s must be >= 0")
        t0 = time.monotonic()
        deadline = None if duration_s is None else t0 + duration_s
        next_progress = t0 + progress_interval_s
        sent = 0
        publish, remember, decls = self.publisher.publish, self._remember, self._decls
        while count is None or sent < count:
            now = time.monotonic()
            if (stop is not None and stop.is_set()) or (deadline is not None and now >= deadline):
                break
            if on_progress is not None and now >= next_progress:
                on_progress(self.stats)
                next_progress = now + progress_interval_s
            if rate_per_s > 0:
                allowed = int((now - t0) * rate_per_s) + 1 - sent
                if allowed <= 0:
                    time.sleep(min(0.05, (sent + 1) / rate_per_s - (now - t0)))
                    self.publisher.poll()
                    continue
                n = min(allowed, 5_000)
            else:
                n = 2_000
            if count is not None:
                n = min(n, count - sent)
            ts = now_iso()
            for d, truth in itertools.islice(decls, n):
                d["event_time"] = ts
                remember(truth.declaration_id, truth)
                publish(d)
            sent += n
            self.stats.declarations += n
            self._mix_lifecycle()
            self.publisher.poll()
        self.flush()
        if on_progress is not None:
            on_progress(self.stats)
        return sent

    def poll(self) -> None:
        """For a caller with a loop of its own (not with the scanner thread): send the scans that are
        due and the declaration batches whose linger has passed, serve delivery reports."""
        self.publish_due_scans()
        self.publisher.poll()

    def flush(self, timeout_s: float = 60.0) -> None:
        remaining = self.publisher.flush(timeout_s)
        if remaining:
            raise RuntimeError(f"{remaining} records not delivered after {timeout_s:.0f}s (is the broker up?)")

    # ------------------------------------------------------------------ scanners

    @property
    def pending_scans(self) -> int:
        return len(self._heap)

    def start_scanners(self, **kwargs: Any) -> threading.Thread:
        """Run :meth:`run_scanners` in a daemon thread until :meth:`stop_scanners` or :meth:`close`."""
        if self._scanner_thread is not None and self._scanner_thread.is_alive():
            return self._scanner_thread
        self._scanner_stop.clear()
        thread = threading.Thread(target=self.run_scanners, kwargs={"stop": self._scanner_stop, **kwargs},
                                  name="portsim-scanners", daemon=True)
        thread.start()
        self._scanner_thread = thread
        return thread

    def stop_scanners(self, timeout_s: float = 10.0) -> None:
        self._scanner_stop.set()
        if self._scanner_thread is not None:
            self._scanner_thread.join(timeout_s)
            self._scanner_thread = None

    def run_scanners(
        self, stop: threading.Event, *, scan_delay_scale: float = 1.0, max_instruction_age_s: float = 900.0,
        group_id: str | None = None, from_beginning: bool = True,
    ) -> None:
        """Answer machine-check instructions (stage ``declaration``, action ``machine-check``) with a
        scan result after the port's realistic delay times ``scan_delay_scale``; some never answer.
        Instructions decided more than ``max_instruction_age_s`` ago are ignored (old runs' backlog)."""
        if scan_delay_scale < 0:
            raise ValueError("scan_delay_scale must be >= 0")
        settings = self.settings
        consumer = Consumer({
            **settings.confluent_config(),
            "group.id": group_id or f"{settings.app_id}.portsim-scanners",
            "auto.offset.reset": "earliest" if from_beginning else "latest",
            "enable.auto.commit": True,
            "session.timeout.ms": int(settings.session_timeout_s * 1000),
            "heartbeat.interval.ms": int(settings.heartbeat_interval_s * 1000),
            "on_commit": lambda err, _parts: err and log.warning("scanner offset commit failed: %s", err),
        })
        consumer.subscribe([self._t_instructions], on_assign=lambda _c, _p: self.scanners_ready.set())
        try:
            while not stop.is_set():
                wait = 0.2
                if self._heap:
                    wait = min(wait, max(0.0, self._heap[0][0] - time.monotonic()))
                msgs = consumer.consume(num_messages=2_000, timeout=wait)
                for msg in msgs:
                    if msg.error():
                        if msg.error().code() != KafkaError._PARTITION_EOF:
                            log.warning("scanner consume error: %s", msg.error())
                        continue
                    self._on_instruction(msg.value(), scan_delay_scale, max_instruction_age_s)
                self.publish_due_scans()
                self.producer.poll(0)
        finally:
            consumer.close()

    def _on_instruction(self, raw: bytes | None, scale: float, max_age_s: float) -> None:
        try:
            ins = orjson.loads(raw or b"")
        except orjson.JSONDecodeError:
            ins = None  # counted and ignored by answer()
        self.answer(ins, scan_delay_scale=scale, max_instruction_age_s=max_age_s)

    def answer(self, instruction: Any, *, scan_delay_scale: float = 1.0, max_instruction_age_s: float = 900.0) -> bool:
        """Play the port's scanner for one instruction (decoded JSON): a machine-check at the
        declaration stage gets a scan result after the port's realistic delay times
        ``scan_delay_scale`` (sent by :meth:`publish_due_scans`), or, sometimes, none. Other
        instructions, repeats, unreadable ones and those decided more than ``max_instruction_age_s``
        ago are ignored. True if a scan was scheduled."""
        self.stats.instructions_seen += 1
        try:
            if instruction.get("stage") != "declaration" or instruction.get("action") != "machine-check":
                return False
            declaration_id, revision, port = instruction["declaration_id"], int(instruction["revision"]), instruction["port"]
            decided = datetime.fromisoformat(instruction["decided_at"]).timestamp()
        except (KeyError, TypeError, ValueError, AttributeError):
            log.debug("scanner ignored an unreadable instruction")
            return False
        if time.time() - decided > max_instruction_age_s:
            self.stats.stale_instructions += 1
            return False
        key = (declaration_id, revision)
        if key in self._seen_checks:  # a redelivered instruction: the scanner already has it
            return False
        self._seen_checks[key] = None
        if len(self._seen_checks) > 200_000:
            for old in list(itertools.islice(iter(self._seen_checks), 50_000)):
                del self._seen_checks[old]
        self.stats.machine_checks += 1
        self.last_instruction_at = time.monotonic()
        try:
            scan, delay = self.office.scan_for(declaration_id, self.truth(declaration_id), port, revision=revision)
        except ValueError as exc:  # e.g. an id the scan schema refuses
            log.warning("no scan for %s: %s", declaration_id, exc)
            return False
        if scan is None:
            self.stats.scans_withheld += 1
            return False
        due = time.monotonic() + delay * scan_delay_scale
        heapq.heappush(self._heap, (due, next(self._seq), scan.model_dump(mode="json")))
        self.stats.scans_scheduled += 1
        return True

    def publish_due_scans(self) -> int:
        """Send the scan results whose delay has passed, stamped with the time they go out; returns how many."""
        now = time.monotonic()
        heap = self._heap
        if not heap or heap[0][0] > now:
            return 0
        ts = now_iso()
        sent = 0
        while heap and heap[0][0] <= now:
            _, _, scan = heapq.heappop(heap)
            scan["event_time"] = ts
            self.publisher.produce(self._t_scans, scan["declaration_id"].encode(), orjson.dumps(scan))
            sent += 1
        self.stats.scans_published += sent
        return sent

    # ------------------------------------------------------------------ lifecycle

    def close(self, timeout_s: float = 30.0) -> None:
        self.stop_scanners()
        try:
            self.flush(timeout_s)
        except RuntimeError as exc:
            log.error("%s", exc)


def check_topics(settings: Settings, names: list[str], timeout_s: float = 10.0) -> list[str]:
    """Names (full) of the wanted topics that do not exist on the broker."""
    from confluent_kafka.admin import AdminClient

    admin = AdminClient(settings.confluent_config())
    try:
        existing = set(admin.list_topics(timeout=timeout_s).topics)
    except KafkaException as exc:
        raise ConnectionError(f"cannot reach Kafka at {settings.kafka_bootstrap_servers}: {exc}") from exc
    return [settings.topic(n) for n in names if settings.topic(n) not in existing]
