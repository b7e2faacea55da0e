"""``riskctl explain``: every instruction issued for one declaration, and why.

Formatting is pure (:func:`explanation`, :func:`format_explanation`) so it is unit-tested without
a broker; :func:`read_instructions` is the only part that talks to Kafka. Instructions are written
to the partition of their declaration, which is Kafka's murmur2 partition of the declaration id
(the gateways' partitioner), so only that partition is read; if it holds nothing for the id, the
others are scanned too (a producer with another partitioner).
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

import orjson
from confluent_kafka import OFFSET_BEGINNING, TopicPartition

from clients import topics
from clients.readers import assigned_reader
from schemas.partitioning import partition_for

STAGE_ORDER = {"declaration": 0, "scan": 1, "timeout": 2}
FIELDS = (
    "instruction_id", "revision", "stage", "action", "final", "selection_reason", "credit_class", "score",
    "model_version", "policy_version", "risk_hits", "reasons", "suspected_categories", "scan_id", "port",
    "enterprise_id", "scenario", "event_time", "decided_at",
)


def _order(ins: dict[str, Any]) -> tuple[int, int, str]:
    return int(ins.get("revision") or 0), STAGE_ORDER.get(str(ins.get("stage")), 9), str(ins.get("instruction_id"))


def explanation(declaration_id: str, instructions: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """The JSON document ``riskctl explain --json`` prints: the declaration's instructions,
    deduplicated by instruction id (redeliveries repeat the same instruction) and ordered by
    revision and stage, plus the outcome (the last final instruction of the latest revision)."""
    seen: dict[str, dict[str, Any]] = {}
    for ins in instructions:
        if ins.get("declaration_id") != declaration_id:
            continue
        key = str(ins.get("instruction_id"))
        seen.setdefault(key, ins)  # the first copy wins; later copies are redeliveries
    ordered = sorted(seen.values(), key=_order)
    rows = [{f: ins.get(f) for f in FIELDS} for ins in ordered]
    for row in rows:
        row["risk_hits"] = list(row["risk_hits"] or [])
        row["reasons"] = list(row["reasons"] or [])
        row["suspected_categories"] = list(row["suspected_categories"] or [])
    latest = max((r["revision"] or 0 for r in rows), default=None)
    finals = [r for r in rows if r["revision"] == latest and r["final"]]
    outcome = None
    if rows:
        last = finals[-1] if finals else rows[-1]
        outcome = {"revision": last["revision"], "action": last["action"], "stage": last["stage"],
                   "final": bool(last["final"]), "instruction_id": last["instruction_id"]}
    return {"declaration_id": declaration_id, "instructions": rows, "outcome": outcome}


def _score(value: Any) -> str:
    return "-" if value is None else f"{float(value):.3f}"


def format_explanation(doc: dict[str, Any]) -> str:
    """Plain text for officers, one block per instruction."""
    did = doc["declaration_id"]
    rows = doc["instructions"]
    if not rows:
        return f"no instructions found for declaration {did}"
    out = doc["outcome"]
    state = "final" if out["final"] else "pending (awaiting the scan)"
    lines = [f"declaration {did}: {out['action']} ({state}, revision {out['revision']}, stage {out['stage']})"]
    for r in rows:
        lines.append("")
        lines.append(f"[{r['stage']}] {str(r['action']).upper()}{'' if r['final'] else ' (pre-determined, not final)'}"
                     f"  revision {r['revision']}  instruction {r['instruction_id']}")
        lines.append(f"  selected by    {r['selection_reason']}")
        lines.append(f"  credit class   {r['credit_class']}")
        lines.append(f"  score          {_score(r['score'])}   model {r['model_version'] or '-'}")
        lines.append(f"  policy         {r['policy_version']}")
        lines.append(f"  risk lists     {', '.join(r['risk_hits']) if r['risk_hits'] else 'no hits'}")
        if r["scan_id"]:
            cats = ", ".join(r["suspected_categories"]) or "none"
            lines.append(f"  scan           {r['scan_id']}  suspected: {cats}")
        lines.append(f"  port {r['port']}  enterprise {r['enterprise_id']}  scenario {r['scenario']}  "
                     f"event {r['event_time']}  decided {r['decided_at']}")
        lines.append("  reasons:")
        lines += [f"    - {text}" for text in r["reasons"]] or ["    (none recorded)"]
    return "\n".join(lines)


def read_instructions(settings: Any, declaration_id: str, timeout_s: float = 30.0) -> list[dict[str, Any]]:
    """The instruction records keyed by ``declaration_id`` (needs a broker)."""
    key = declaration_id.encode()
    consumer = assigned_reader(settings, [topics.INSTRUCTIONS], timeout_s)
    try:
        topic = settings.topic(topics.INSTRUCTIONS)
        partitions = sorted(tp.partition for tp in consumer.assignment())
        home = partition_for(key, len(partitions))
        found = _read_partitions(consumer, TopicPartition, topic, [home], key, timeout_s)
        if not found:
            found = _read_partitions(consumer, TopicPartition, topic, [p for p in partitions if p != home], key, timeout_s)
        return found
    finally:
        consumer.close()


def _read_partitions(consumer: Any, tp_cls: Any, topic: str, partitions: list[int], key: bytes, timeout_s: float) -> list[dict[str, Any]]:
    ends: dict[int, int] = {}
    for p in partitions:
        low, high = consumer.get_watermark_offsets(tp_cls(topic, p), timeout=timeout_s)
        if high > low:
            ends[p] = high
    if not ends:
        return []
    consumer.assign([tp_cls(topic, p, OFFSET_BEGINNING) for p in ends])
    found: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout_s
    while ends and time.monotonic() < deadline:
        for msg in consumer.consume(num_messages=1000, timeout=1.0):
            if msg.error() is not None:
                raise RuntimeError(f"reading {topic}: {msg.error()}")
            if msg.key() == key and msg.value() is not None:
                try:
                    found.append(orjson.loads(msg.value()))
                except orjson.JSONDecodeError:
                    pass  # not an instruction the worker wrote; nothing to explain
            if msg.offset() + 1 >= ends.get(msg.partition(), 0):
                ends.pop(msg.partition(), None)
    if ends:
        raise TimeoutError(f"reading {topic} partitions {sorted(ends)} did not finish within {timeout_s:g}s")
    return found
