"""An inspection station: the queue of control instructions for one port (or all), and for the
simulated ports the result of each physical inspection.

Delivery and restarts
---------------------
The instruction topic is delivered at least once (the pipeline re-emits an instruction when it
sees its input again), so the station deduplicates by ``instruction_id`` and acts on each
instruction once. Every batch goes through the same steps, in this order:

1. act on each new instruction: print its queue line, produce its inspection result;
2. flush the producer and check every delivery;
3. append the acted instruction ids to the station's journal and ``fsync`` it;
4. commit the consumer offsets (synchronously) past the batch.

A crash before step 2 completes loses nothing: the offsets were not committed, so the records come
again and are acted on. A crash after step 3 repeats nothing: the records come again but their ids
are in the journal. The dedup state is therefore *the committed offsets plus the journal*: offsets
say which records are done; the journal says which instruction ids are done, which also catches
the same instruction delivered again at a later offset.

Why a local journal file and not a compacted topic: the journal is written after the results are
acknowledged and before the offsets are committed; a topic would need the same ordering plus a
read-to-end on start-up, and Tansu's high watermarks cannot be trusted for "the end".
A file needs no broker round trip and survives a restart of the broker too. The cost: the journal
belongs to one station process, so run one process per group (per port), with its state directory
on persistent storage. The only window left is a crash between step 2 and step 3 (microseconds);
then a restarted station re-sends those results. Results are deterministic per declaration and
carry the ``instruction_id``, so a label consumer that keys on it stays correct even then.
Strict exactly-once would need Kafka transactions (results and offsets in one transaction).
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import orjson
from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition
from pydantic import ValidationError

from clients.producers import producer_config
from clients.topics import INSPECTION_RESULTS, INSTRUCTIONS
from common.settings import Settings
from portsim import world
from portsim.traffic import GroundTruth, PortOffice, parse_declaration_id
from schemas import Action, ControlInstruction, InspectionResult

log = logging.getLogger(__name__)

ALL_PORTS = "all"


class StationCrash(RuntimeError):
    """Raised by the fault-injection hook in tests."""


class Journal:
    """Append-only record of the instruction ids a station has acted on (one JSON object per line).

    Loaded into memory at start; a torn last line (crash mid-write) is dropped. The file is rewritten
    with only the newest ``retain`` ids once it holds twice as many."""

    def __init__(self, path: str | Path, retain: int = 1_000_000) -> None:
        self.path = Path(path)
        self.retain = retain
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._ids: dict[str, None] = {}
        lines = 0
        if self.path.exists():
            raw = self.path.read_bytes()
            good = raw.rfind(b"\n") + 1  # everything after the last newline is a torn write
            for line in raw[:good].splitlines():
                try:
                    self._ids[orjson.loads(line)["i"]] = None
                    lines += 1
                except (orjson.JSONDecodeError, KeyError, TypeError):
                    continue
            if good != len(raw):
                with open(self.path, "r+b") as fh:
                    fh.truncate(good)
        self._lines = lines
        self._fh = open(self.path, "ab")  # noqa: SIM115 - the log appends through it until close() or _compact()
        if self._lines > 2 * retain:
            self._compact()

    def __contains__(self, instruction_id: str) -> bool:
        return instruction_id in self._ids

    def __len__(self) -> int:
        return len(self._ids)

    def record(self, entries: list[dict[str, Any]]) -> None:
        """Append entries (each with ``"i"``: the instruction id) and fsync before returning."""
        if not entries:
            return
        self._fh.write(b"".join(orjson.dumps(e) + b"\n" for e in entries))
        self._fh.flush()
        os.fsync(self._fh.fileno())
        for e in entries:
            self._ids[e["i"]] = None
        self._lines += len(entries)
        if self._lines > 2 * self.retain:
            self._compact()

    def _compact(self) -> None:
        keep = list(self._ids)[-self.retain:]
        tmp = self.path.with_name(self.path.name + ".tmp")
        with open(tmp, "wb") as fh:
            fh.write(b"".join(orjson.dumps({"i": i}) + b"\n" for i in keep))
            fh.flush()
            os.fsync(fh.fileno())
        self._fh.close()
        os.replace(tmp, self.path)
        self._ids = dict.fromkeys(keep)
        self._lines = len(keep)
        self._fh = open(self.path, "ab")  # noqa: SIM115 - the log appends through it until close() or the next _compact()

    def close(self) -> None:
        self._fh.close()


@dataclass
class StationStats:
    started: float = field(default_factory=time.monotonic)
    records: int = 0  # instruction records consumed
    acted: int = 0  # new instructions for this station's port(s)
    duplicates: int = 0
    other_ports: int = 0
    invalid: int = 0
    results: int = 0
    found: int = 0
    duty_recovered: float = 0.0
    commits: int = 0
    by_action: Counter = field(default_factory=Counter)


class InspectionStation:
    """Consumes the instruction topic for ``port`` (a port id or ``"all"``) in its own group."""

    def __init__(
        self, settings: Settings, port: str, *, station_id: str | None = None, seed: int | None = None,
        enterprises: int = 70_000, state_dir: str | Path | None = None, group_id: str | None = None,
        publish_results: bool = True, show_releases: bool = False, out: IO[str] | None = sys.stdout,
        from_beginning: bool = True,
    ) -> None:
        self.settings = settings
        self.port = port
        self.station_id = station_id
        self.seed = seed
        self.enterprises = enterprises
        self.group_id = group_id or f"{settings.app_id}.station.{port}"
        self.state_dir = Path(state_dir) if state_dir is not None else Path(settings.data_dir).parent / "stations"
        self.publish_results = publish_results
        self.show_releases = show_releases
        self.out = out
        self.from_beginning = from_beginning
        self.stats = StationStats()
        self.fail_before_commit = False  # test hook: crash after acting and journaling, before the commit
        self.assigned = threading.Event()
        self._offices: dict[int, PortOffice] = {}
        self._t_instructions = settings.topic(INSTRUCTIONS)
        self._t_results = settings.topic(INSPECTION_RESULTS)
        self._delivery_errors: list[str] = []
        self.journal = Journal(self.state_dir / f"{self.group_id}.journal")
        self.producer = Producer(producer_config(settings, on_delivery=self._on_delivery, **{"linger.ms": 1}))
        self.consumer = Consumer({
            **settings.confluent_config(),
            "group.id": self.group_id,
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "auto.offset.reset": "earliest" if from_beginning else "latest",
            "session.timeout.ms": int(settings.session_timeout_s * 1000),
            "heartbeat.interval.ms": int(settings.heartbeat_interval_s * 1000),
        })

    # ------------------------------------------------------------------ ground truth

    def _office(self, declaration_id: str) -> PortOffice | None:
        parsed = parse_declaration_id(declaration_id)
        seed = self.seed if self.seed is not None else (parsed[0] if parsed else None)
        if seed is None or parsed is None or not 0 <= seed < 2**63:
            return None
        office = self._offices.get(seed)
        if office is None:
            if len(self._offices) >= 2:
                self._offices.pop(next(iter(self._offices)))
            office = self._offices[seed] = PortOffice(seed, self.enterprises)
        return office

    def _truth(self, ins: ControlInstruction) -> tuple[PortOffice, GroundTruth | None]:
        office = self._office(ins.declaration_id)
        if office is None:
            return self._offices.get(self.seed or 0) or self._fallback_office(), None
        record = office.record_for(ins.declaration_id)
        # Only trust the truth if the instruction really is about the declaration we regenerated.
        if record is None or record["port"] != ins.port or record["enterprise_id"] != ins.enterprise_id:
            return office, None
        return office, office.truth_for(ins.declaration_id)

    def _fallback_office(self) -> PortOffice:
        seed = self.seed or 0
        if seed not in self._offices:
            self._offices[seed] = PortOffice(seed, max(100, min(self.enterprises, 1_000)))
        return self._offices[seed]

    # ------------------------------------------------------------------ the loop

    def _on_delivery(self, err: KafkaError | None, msg: Message) -> None:
        if err is not None:
            self._delivery_errors.append(f"{msg.topic()}: {err}")

    def run(
        self, stop: threading.Event | None = None, *, max_idle_s: float | None = None,
        max_instructions: int | None = None, summary_every_s: float | None = None,
        summary_out: IO[str] | None = sys.stderr,
    ) -> StationStats:
        """Consume until ``stop`` is set, nothing arrived for ``max_idle_s`` after the first assignment,
        or ``max_instructions`` records were consumed."""
        self.consumer.subscribe([self._t_instructions], on_assign=lambda _c, _p: self.assigned.set())
        last_record = None
        next_summary = time.monotonic() + (summary_every_s or 0)
        try:
            while stop is None or not stop.is_set():
                want = 500
                if max_instructions is not None:
                    want = min(want, max_instructions - self.stats.records)
                    if want <= 0:
                        break
                msgs = self.consumer.consume(num_messages=want, timeout=0.5)
                now = time.monotonic()
                if msgs:
                    self.process(msgs)
                    last_record = now
                elif max_idle_s is not None and self.assigned.is_set():
                    last_record = last_record or now
                    if now - last_record >= max_idle_s:
                        break
                if summary_every_s and summary_out is not None and now >= next_summary:
                    print(self.summary(), file=summary_out, flush=True)
                    next_summary = now + summary_every_s
        finally:
            self.close()
        return self.stats

    def process(self, msgs: list[Message]) -> None:
        """Act on one batch, then flush, journal and commit (in that order)."""
        offsets: dict[tuple[str, int], int] = {}
        acted: list[dict[str, Any]] = []
        batch_ids: set[str] = set()
        lines: list[str] = []
        for msg in msgs:
            if msg.error():
                if msg.error().code() != KafkaError._PARTITION_EOF:
                    log.warning("consume error: %s", msg.error())
                continue
            offsets[(msg.topic(), msg.partition())] = msg.offset() + 1
            self.stats.records += 1
            try:
                ins = ControlInstruction.model_validate_json(msg.value() or b"")
            except ValidationError as exc:
                self.stats.invalid += 1
                log.warning("skipping an invalid instruction at %s[%d]@%d: %s", msg.topic(), msg.partition(),
                            msg.offset(), exc.errors()[0].get("msg", exc))
                continue
            if self.port != ALL_PORTS and ins.port != self.port:
                self.stats.other_ports += 1
                continue
            if ins.instruction_id in self.journal or ins.instruction_id in batch_ids:
                self.stats.duplicates += 1
                continue
            batch_ids.add(ins.instruction_id)
            line = self._act(ins)
            if line is not None:
                lines.append(line)
            acted.append({"i": ins.instruction_id, "p": msg.partition(), "o": msg.offset()})
        # 2. every result acknowledged by the broker
        if acted:
            remaining = self.producer.flush(30.0)
            if remaining or self._delivery_errors:
                errors, self._delivery_errors = self._delivery_errors, []
                raise RuntimeError(f"inspection results not delivered ({remaining} pending, errors: {errors[:3]})")
        if self.out is not None and lines:
            self.out.write("\n".join(lines) + "\n")
            self.out.flush()
        # 3. journal, 4. commit
        self.journal.record(acted)
        if self.fail_before_commit:
            raise StationCrash("injected crash before the offset commit")
        if offsets:
            parts = [TopicPartition(t, p, o) for (t, p), o in offsets.items()]
            try:
                self.consumer.commit(offsets=parts, asynchronous=False)
                self.stats.commits += 1
            except KafkaException as exc:  # e.g. partitions moved in a rebalance: they come again
                log.warning("offset commit failed (records will be redelivered, the journal dedups): %s", exc)

    def _act(self, ins: ControlInstruction) -> str | None:
        self.stats.acted += 1
        self.stats.by_action[ins.action.value] += 1
        result: InspectionResult | None = None
        if (
            self.publish_results and ins.final and ins.action is Action.INSPECT and ins.port in world.PORT_IDS
        ):
            office, truth = self._truth(ins)
            station_id = self.station_id or f"{ins.port}-ST1"
            result = office.inspection_for(ins, truth, station_id)
            self.producer.produce(self._t_results, orjson.dumps(result.model_dump(mode="json")),
                                  ins.declaration_id.encode())
            self.producer.poll(0)
            self.stats.results += 1
            if result.found:
                self.stats.found += 1
                self.stats.duty_recovered += result.duty_recovered
        if ins.action is Action.RELEASE and not self.show_releases:
            return None
        return format_line(ins, result)

    def summary(self) -> str:
        s = self.stats
        hit = f"{s.found / s.results:.0%}" if s.results else "-"
        actions = " ".join(f"{a}={n}" for a, n in sorted(s.by_action.items()))
        return (f"station {self.port}: {s.records} records, {s.acted} acted ({actions}), {s.duplicates} duplicates, "
                f"{s.results} results, hit rate {hit}, duty recovered {s.duty_recovered:,.2f} USD")

    def close(self) -> None:
        try:
            self.consumer.close()
        except (KafkaException, RuntimeError):
            pass
        self.producer.flush(10.0)
        self.journal.close()


def format_line(ins: ControlInstruction, result: InspectionResult | None = None) -> str:
    """One queue line: port, declaration, action, stage, reasons (and the finding, if any)."""
    score = f" score={ins.score:.3f}" if ins.score is not None else ""
    reasons = "; ".join(ins.reasons) if ins.reasons else ins.selection_reason.value
    line = (f"{ins.port:<8} {ins.declaration_id:<16} {ins.action.value.upper():<13} stage={ins.stage.value:<11} "
            f"{'final' if ins.final else 'await-scan'} class={ins.credit_class.value}{score} "
            f"[{ins.selection_reason.value}] {reasons}")
    if result is not None:
        found = f"FOUND {result.category or 'irregularity'}, duty {result.duty_recovered:,.2f}" if result.found else "nothing found"
        line += f"  => {found}"
    return line
