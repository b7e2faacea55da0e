"""A consumer fake for the archive sink (just what it calls) and record builders."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
from confluent_kafka import OFFSET_BEGINNING, TIMESTAMP_CREATE_TIME, TopicPartition

from archive.sink import ArchiveSink
from common.settings import Settings

NOW = datetime.now(UTC).replace(microsecond=0)
NOW_TEXT = NOW.isoformat().replace("+00:00", "Z")


def declaration(did: str, port: str = "HAK-SEA", revision: int = 1, **over: Any) -> dict[str, Any]:
    return {"declaration_id": did, "revision": revision, "port": port, "enterprise_id": "E1", "declarant_id": "DC1",
            "scenario": "general-trade", "hs_code": "851712", "origin_country": "CN", "departure_country": "CN",
            "transport_mode": "sea", "declared_value": 1000.0, "currency": "CNY", "net_mass_kg": 5.0, "tax_rate": 5.0,
            "event_time": NOW_TEXT, **over}


def batch(batch_id: str, decls: list[dict[str, Any]]) -> dict[str, Any]:
    return {"batch_id": batch_id, "gateway": "GW1", "declarations": decls}


def centralised(cid: str, items: int = 2) -> dict[str, Any]:
    return {"centralised_id": cid, "revision": 1, "port": "HAK-SEA", "enterprise_id": "E1", "declarant_id": "DC1",
            "scenario": "general-trade", "transport_mode": "sea", "departure_country": "CN", "event_time": NOW_TEXT,
            "items": [{"item_no": i, "hs_code": "851712", "origin_country": "CN", "declared_value": 10.0 * i, "currency": "CNY",
                       "net_mass_kg": 1.0, "tax_rate": 5.0} for i in range(1, items + 1)]}


def instruction(did: str, stage: str = "declaration", action: str = "release", revision: int = 1, port: str = "HAK-SEA",
                **over: Any) -> dict[str, Any]:
    return {"schema_version": 1, "instruction_id": f"{did}:{revision}:{stage}", "declaration_id": did, "revision": revision,
            "port": port, "enterprise_id": "E1", "scenario": "general-trade", "stage": stage, "action": action,
            "final": not (stage == "declaration" and action == "machine-check"), "selection_reason": "model-threshold",
            "credit_class": "general", "score": 0.42, "model_version": "m1/general", "policy_version": "p-1",
            "reasons": ["score 0.42 below 0.55"], "risk_hits": ["RL/1"], "thresholds": [0.55, 0.8], "suspected_categories": [],
            "scan_id": None, "event_time": NOW_TEXT, "decided_at": NOW_TEXT, **over}


def scan(did: str, verdict: str = "suspicious") -> dict[str, Any]:
    return {"scan_id": f"S-{did}", "declaration_id": did, "port": "HAK-SEA", "device_id": "XR1", "device_type": "x-ray",
            "anomaly_score": 0.9, "verdict": verdict, "suspected_categories": ["cigarettes"], "event_time": NOW_TEXT}


def inspection(did: str, found: bool = True, duty: float = 120.0, port: str = "HAK-SEA") -> dict[str, Any]:
    return {"instruction_id": f"{did}:1:scan", "declaration_id": did, "revision": 1, "port": port, "station_id": "ST1",
            "found": found, "category": "cigarettes" if found else None, "duty_recovered": duty if found else 0.0,
            "inspected_at": NOW_TEXT}


def shadow(did: str, champion: float = 0.42, challenger: float = 0.7, revision: int = 1, port: str = "HAK-SEA",
           **over: Any) -> dict[str, Any]:
    return {"schema_version": 1, "instruction_id": f"{did}:{revision}:declaration", "declaration_id": did, "revision": revision,
            "port": port, "scenario": "general-trade", "credit_class": "general", "champion_version": "m1/general",
            "champion_score": champion, "champion_action": "release", "challenger_version": "m2/general",
            "challenger_score": challenger, "challenger_action": "machine-check", "thresholds": [0.55, 0.8],
            "decided_at": NOW_TEXT, **over}


def console_action(action_id: str, **over: Any) -> dict[str, Any]:
    return {"schema_version": 1, "action_id": action_id, "user": "officer.hak", "role": "officer", "action": "result-recorded",
            "subject": "D1", "detail": "found: narcotics", "at": NOW_TEXT, **over}


def credit(eid: str) -> dict[str, Any]:
    return {"event_id": f"C-{eid}", "enterprise_id": eid, "event_type": "credit-class-changed", "credit_class": "aeo",
            "source_agency": "customs", "event_time": NOW_TEXT}


def risk_entry(entry_id: str) -> dict[str, Any]:
    return {"entry_id": entry_id, "list_id": "RL", "kind": "origin", "value": "KP", "action": "inspect", "reason": "sanctions",
            "source_agency": "customs", "valid_from": NOW_TEXT}


def dead_letter(offset: int) -> dict[str, Any]:
    return {"schema_version": 1, "source_topic": "customs.declarations", "partition": 0, "offset": offset, "key_b64": None,
            "value_b64": "eA==", "value_size": 1, "value_sha256": "2d71", "truncated": False, "reason": "invalid-json",
            "error": "bad", "received_at": NOW_TEXT}


def encode(value: dict[str, Any] | bytes | None) -> bytes | None:
    return value if value is None or isinstance(value, bytes) else orjson.dumps(value)


class FakeMessage:
    def __init__(self, topic: str, partition: int, offset: int, key: bytes | None, value: bytes | None) -> None:
        self._t, self._p, self._o, self._k, self._v = topic, partition, offset, key, value

    def error(self) -> None:
        return None

    def topic(self) -> str:
        return self._t

    def partition(self) -> int:
        return self._p

    def offset(self) -> int:
        return self._o

    def key(self) -> bytes | None:
        return self._k

    def value(self) -> bytes | None:
        return self._v

    def timestamp(self) -> tuple[int, int]:
        return TIMESTAMP_CREATE_TIME, int(NOW.timestamp() * 1000)


class FakeBroker:
    """Topic logs shared by the fake consumers of one test (a restarted sink sees the same logs)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.logs: dict[tuple[str, int], list[tuple[bytes | None, bytes | None]]] = {}
        self.lock = threading.Lock()

    def add(self, logical: str, key: str | bytes | None, value: dict[str, Any] | bytes | None, partition: int = 0) -> int:
        with self.lock:
            log = self.logs.setdefault((self.settings.topic(logical), partition), [])
            log.append((key.encode() if isinstance(key, str) else key, encode(value)))
            return len(log) - 1

    def consumer(self, conf: dict[str, Any]) -> FakeConsumer:
        return FakeConsumer(self, conf)


class FakeConsumer:
    """Subscribe assigns every partition with a log at the first consume (as a group of one would)."""

    def __init__(self, broker: FakeBroker, conf: dict[str, Any]) -> None:
        self.broker = broker
        self.conf = conf
        self.positions: dict[tuple[str, int], int] = {}
        self.assigned_offsets: list[dict[tuple[str, int], int]] = []
        self.commits: list[list[TopicPartition]] = []
        self.callbacks: tuple[Callable[..., None], ...] = ()
        self.topics: list[str] = []
        self.closed = False

    def subscribe(self, topics: list[str], on_assign: Callable[..., None], on_revoke: Callable[..., None],
                  on_lost: Callable[..., None]) -> None:
        self.topics = topics
        self.callbacks = (on_assign, on_revoke, on_lost)
        self.pending_assign = True

    def assign(self, partitions: list[TopicPartition]) -> None:
        offsets = {(tp.topic, tp.partition): (0 if tp.offset == OFFSET_BEGINNING else tp.offset) for tp in partitions}
        self.assigned_offsets.append(offsets)
        self.positions = dict(offsets)

    def seek(self, tp: TopicPartition) -> None:
        self.positions[(tp.topic, tp.partition)] = 0 if tp.offset == OFFSET_BEGINNING else tp.offset

    def consume(self, num_messages: int = 1, timeout: float = -1) -> list[FakeMessage]:
        if self.pending_assign:
            self.pending_assign = False
            with self.broker.lock:
                parts = [TopicPartition(t, p) for (t, p) in sorted(self.broker.logs) if t in self.topics]
            self.callbacks[0](self, parts)
        out: list[FakeMessage] = []
        with self.broker.lock:
            for (topic, partition), pos in self.positions.items():
                log = self.broker.logs.get((topic, partition), [])
                while pos < len(log) and len(out) < num_messages:
                    key, value = log[pos]
                    out.append(FakeMessage(topic, partition, pos, key, value))
                    pos += 1
                self.positions[(topic, partition)] = pos
        return out

    def commit(self, offsets: list[TopicPartition], asynchronous: bool = True) -> None:
        self.commits.append(offsets)

    def get_watermark_offsets(self, tp: TopicPartition, timeout: float | None = None, cached: bool = False) -> tuple[int, int]:
        with self.broker.lock:
            return 0, len(self.broker.logs.get((tp.topic, tp.partition), []))

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.callbacks[1](self, [TopicPartition(t, p) for (t, p) in self.positions])


def archive_settings(directory: Path) -> Settings:
    """Settings for a sink archiving into ``directory``: quick flushes, no metrics port, no maintenance."""
    return Settings(archive_dir=directory, archive_flush_interval_s=0.05, archive_metrics_port=0, archive_maintenance_interval_s=0)


def archive_all(settings: Settings, broker: FakeBroker, records: int, timeout_s: float = 20.0) -> None:
    """Run the real sink over ``broker`` until it has archived ``records`` records, then stop it."""
    sink = ArchiveSink(settings, consumer_factory=broker.consumer)
    stop = threading.Event()
    thread = threading.Thread(target=sink.run, args=(stop,), daemon=True)
    thread.start()
    deadline = time.monotonic() + timeout_s
    while sink.totals["records"] < records:
        assert time.monotonic() < deadline and thread.is_alive(), "the sink did not archive the records"
        time.sleep(0.01)  # poll interval of a condition with a deadline
    stop.set()
    thread.join(timeout_s)


def warning(did: str, rule: str = "value-added-implausible") -> dict[str, Any]:
    return {"schema_version": 1, "warning_id": f"{did}:1:{rule}", "severity": "high", "subject_kind": "enterprise",
            "subject_id": "E1", "source": "rule", "rule": rule, "evidence": ["claimed ratio 2.00", "history 0.40"],
            "event_time": NOW_TEXT, "raised_at": NOW_TEXT, "port": "HAK-SEA", "scenario": "processing-value-added",
            "declaration_id": did, "revision": 1, "policy_version": "p-1"}


def subject_warning(warning_id: str, kind: str, subject: str, rule: str, hours: float, evidence: str) -> dict[str, Any]:
    """A warning about a shopper or goods (no declaration), raised ``hours`` after NOW."""
    at = (NOW + timedelta(hours=hours)).isoformat().replace("+00:00", "Z")
    return {**warning("-", rule=rule), "warning_id": warning_id, "subject_kind": kind, "subject_id": subject,
            "declaration_id": None, "revision": None, "port": None, "scenario": None, "evidence": [evidence],
            "event_time": at, "raised_at": at}


def warning_review(did: str, rule: str = "value-added-implausible", verdict: str = "confirmed") -> dict[str, Any]:
    return {"schema_version": 1, "warning_id": f"{did}:1:{rule}", "verdict": verdict, "rule": rule, "severity": "high",
            "subject_kind": "enterprise", "subject_id": "E1", "port": "HAK-SEA", "declaration_id": did, "revision": 1,
            "warning_time": NOW_TEXT, "reviewed_at": NOW_TEXT}


def zero_tariff_import(import_id: str, status: str = "imported") -> dict[str, Any]:
    return {"schema_version": 1, "import_id": import_id, "enterprise_id": "E1", "import_declaration_id": f"IMP-{import_id}",
            "status": status, "hs_code": "870323", "description": "passenger car", "quantity": 2.0,
            "identifiers": [{"kind": "vin", "value": "LSVAU2180N2183294"}, {"kind": "vin", "value": "LFV3A23C0J3000001"}],
            "imported_at": NOW_TEXT, "event_time": NOW_TEXT}


def position(event_id: str, event_type: str = "port-passage", port: str | None = "HAK-SEA") -> dict[str, Any]:
    return {"schema_version": 1, "event_id": event_id, "identifier": "LSVAU2180N2183294", "kind": "vehicle",
            "event_type": event_type, "port": port, "tracker_id": "HN-TRACK-1", "event_time": NOW_TEXT}


def duty_free_purchase(purchase_id: str, lines: int = 2) -> dict[str, Any]:
    items = [{"category": "cosmetics", "goods_code": f"G{n}", "quantity": n, "unit_price_cny": 100.0} for n in range(1, lines + 1)]
    return {"schema_version": 1, "purchase_id": purchase_id, "shop_id": "SHOP1", "shopper_token": "SH1",
            "identity_check": {"token": "IC1", "method": "face", "matched": True}, "payer_token": "PAY1",
            "items": items, "total_cny": sum(i["quantity"] * 100.0 for i in items), "purchased_at": NOW_TEXT}
