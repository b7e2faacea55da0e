"""``riskctl explain``: every instruction issued for one declaration, and why.

Formatting is pure (:func:`explanation`, :func:`format_explanation`, :func:`format_history`) so it
is unit-tested without a broker. :func:`explain` answers from the decision archive first (every
revision, instruction, scan and inspection result it holds; see ``archive.queries``) and reads the
topics only from the positions the archive holds, i.e. only what it has not caught up with; with
the declaration in the archive it answers with no broker at all. :func:`read_topics` is the only
part that talks to Kafka. Instructions are written to the partition of their declaration, which is
Kafka's murmur2 partition of the declaration id (the gateways' partitioner), so only that partition
is read; if it holds nothing for the id, the others are scanned too (a producer with another
partitioner).
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from datetime import UTC, date, datetime
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
    "enterprise_id", "scenario", "event_time", "decided_at", "risk_types",
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
        row["risk_types"] = list(row["risk_types"] or [])  # absent: not a routed model, or none crossed
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
        if r["risk_types"]:
            lines.append(f"  risk types     {', '.join(r['risk_types'])}")
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
    return read_topics(settings, declaration_id, timeout_s)[topics.INSTRUCTIONS]


# The topics whose records explain a declaration; all keyed by declaration id and co-partitioned.
TAIL_TOPICS = (topics.INSTRUCTIONS, topics.SCANS, topics.INSPECTION_RESULTS, topics.WARNINGS, topics.WARNING_REVIEWS)


def read_topics(settings: Any, declaration_id: str, timeout_s: float = 30.0,
                starts: dict[str, dict[int, int | None]] | None = None) -> dict[str, list[dict[str, Any]]]:
    """The records keyed by ``declaration_id`` on the instructions, scans and inspection-results
    topics, each partition read from ``starts[logical topic][partition]`` (the archive's position;
    absent or None: from the beginning). Needs a broker."""
    key = declaration_id.encode()
    consumer = assigned_reader(settings, list(TAIL_TOPICS), timeout_s)
    try:
        found: dict[str, list[dict[str, Any]]] = {}
        assigned = consumer.assignment()  # every partition of the topics; _read_partitions re-assigns
        for logical in TAIL_TOPICS:
            topic = settings.topic(logical)
            partitions = sorted(tp.partition for tp in assigned if tp.topic == topic)
            first = (starts or {}).get(logical, {})
            home = partition_for(key, len(partitions))
            found[logical] = _read_partitions(consumer, TopicPartition, topic, [home], key, timeout_s, first)
            if not found[logical] and logical == topics.INSTRUCTIONS:  # a producer with another partitioner
                others = [p for p in partitions if p != home]
                found[logical] = _read_partitions(consumer, TopicPartition, topic, others, key, timeout_s, first)
        return found
    finally:
        consumer.close()


def _read_partitions(consumer: Any, tp_cls: Any, topic: str, partitions: list[int], key: bytes, timeout_s: float,
                     starts: dict[int, int | None] | None = None) -> list[dict[str, Any]]:
    ends: dict[int, int] = {}
    begin: dict[int, int] = {}
    for p in partitions:
        low, high = consumer.get_watermark_offsets(tp_cls(topic, p), timeout=timeout_s)
        begin[p] = max(low, (starts or {}).get(p) or 0)
        if high > begin[p]:
            ends[p] = high
    if not ends:
        return []
    consumer.assign([tp_cls(topic, p, begin[p] if begin[p] > 0 else OFFSET_BEGINNING) for p in ends])
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
                    pass  # not a record the pipeline wrote; nothing to explain
            if msg.offset() + 1 >= ends.get(msg.partition(), 0):
                ends.pop(msg.partition(), None)
    if ends:
        raise TimeoutError(f"reading {topic} partitions {sorted(ends)} did not finish within {timeout_s:g}s")
    return found


# ---- the archive first, then the topics' records it has not caught up with --------------------------
ARCHIVE_TABLES = {topics.INSTRUCTIONS: "instructions", topics.SCANS: "scans", topics.INSPECTION_RESULTS: "inspection_results",
                  topics.WARNINGS: "warnings", topics.WARNING_REVIEWS: "warning_reviews"}
# With the declaration in the archive, the topics only add what the archive has not caught up with:
# an unreachable broker then costs at most this long before the archive's answer is shown.
TAIL_TIMEOUT_WITH_ARCHIVE_S = 5.0


def explain(settings: Any, declaration_id: str, timeout_s: float = 30.0, archive_dir: Any = None,
            use_archive: bool = True, use_topics: bool = True, archive: Any = None, day: date | None = None,
            port: str | None = None) -> tuple[dict[str, Any], list[str]]:
    """The explanation document and notes for the user (what was not read, and why).

    The archive (``archive``: an :class:`archive.queries.Archive` kept open by the caller, else one
    opened on ``archive_dir``, a directory or an object-store URI, default the settings' archive
    location with its storage options) answers first; the topics are read from the
    positions the archive holds, so only the records it has not caught up with are read. ``day``
    and ``port`` hint where the archive holds the declaration (see ``Archive.history``). Raises when
    neither source could be read, or when the topics could not be read and the archive knows nothing
    of the declaration."""
    from archive.location import from_settings
    from archive.queries import HISTORY, Archive  # polars loads only when explain runs

    notes: list[str] = []
    history: dict[str, Any] | None = None
    starts: dict[str, dict[int, int | None]] | None = None
    if use_archive:
        opened = archive if archive is not None else Archive(from_settings(settings, archive_dir))
        # The positions and the history come from the same table versions: positions newer than the
        # rows read would skip the records in between on the topics.
        store = opened.pinned(tuple(table for table, _, _ in HISTORY.values()))
        if store.exists():
            starts = {logical: store.positions(table, settings.topic(logical), range(settings.partitions))
                      for logical, table in ARCHIVE_TABLES.items()}
            history = store.history(declaration_id, day, port)
        else:
            notes.append(f"no archive in {store.dir}: read the topics only")
    known = bool(history and (history["declarations"] or history["instructions"] or history["centralised_items"]))
    tail: dict[str, list[dict[str, Any]]] = {logical: [] for logical in TAIL_TOPICS}
    if use_topics:
        try:
            tail = read_topics(settings, declaration_id, min(timeout_s, TAIL_TIMEOUT_WITH_ARCHIVE_S) if known else timeout_s, starts)
        except Exception as exc:  # broker down, topic missing, timeout: the archive may still answer
            if not known:
                raise
            notes.append(f"the topics were not read ({' '.join(str(exc).split())}): the archive's records only")
    history = history or {"declarations": [], "centralised_items": [], "instructions": [], "scans": [], "inspection_results": [],
                          "warnings": [], "warning_reviews": []}
    doc = explanation(declaration_id, [*history["instructions"], *tail[topics.INSTRUCTIONS]])
    doc["revisions"] = [{f: d.get(f) for f in DECLARATION_FIELDS} for d in history["declarations"]]
    doc["centralised"] = [{f: d.get(f) for f in ("centralised_id", "item_no", "revision", "items")} for d in history["centralised_items"]]
    doc["scans"] = _unique([*history["scans"], *tail[topics.SCANS]], "scan_id", SCAN_FIELDS)
    doc["inspection_results"] = _unique([*history["inspection_results"], *tail[topics.INSPECTION_RESULTS]], "instruction_id",
                                        INSPECTION_FIELDS)
    doc["warnings"] = warnings_with_reviews([*history["warnings"], *tail[topics.WARNINGS]],
                                            [*history["warning_reviews"], *tail[topics.WARNING_REVIEWS]])
    doc["subject_warnings"] = _subject_warnings(store, history) if starts is not None else []
    doc["sources"] = {"archive": starts is not None, "archive_scan": history.get("scanned"),
                      "archived_instructions": len(history["instructions"]), "topic_instructions": len(tail[topics.INSTRUCTIONS])}
    return doc, notes


def _subject_warnings(store: Any, history: dict[str, Any]) -> list[dict[str, Any]]:
    """The archived warnings about the shopper or the goods a declaration names (its revisions'
    ``shopper_token`` and goods identifiers), up to its last decision: why a duty-free departure
    or a second-line-out declaration was selected, as the evidence stood then."""
    subjects: set[str] = set()
    for decl in history["declarations"]:
        subjects.update(filter(None, [decl.get("shopper_token")]))
        subjects.update(str(i).split(":", 1)[-1].upper() for i in decl.get("goods_identifiers") or ())
    if not subjects:
        return []
    decided = [datetime.fromisoformat(str(i["decided_at"]).replace("Z", "+00:00")) for i in history["instructions"] if i.get("decided_at")]
    rows = store.subject_warnings(subjects, max(decided) if decided else datetime.now(UTC))
    return [{**{f: row.get(f) for f in WARNING_FIELDS}, "evidence": list(row.get("evidence") or [])} for row in rows]


DECLARATION_FIELDS = ("revision", "source", "batch_id", "centralised_id", "port", "enterprise_id", "declarant_id", "scenario",
                      "hs_code", "origin_country", "departure_country", "transport_mode", "declared_value", "currency",
                      "tax_rate", "event_time")
SCAN_FIELDS = ("scan_id", "revision", "port", "device_id", "device_type", "verdict", "anomaly_score", "suspected_categories",
               "event_time")
WARNING_FIELDS = ("warning_id", "revision", "severity", "rule", "source", "subject_kind", "subject_id", "port", "evidence",
                  "event_time", "raised_at")
INSPECTION_FIELDS = ("instruction_id", "revision", "port", "station_id", "found", "category", "duty_recovered", "inspected_at",
                     "note", "recorded_by")


def _unique(records: Iterable[dict[str, Any]], key: str, fields: tuple[str, ...]) -> list[dict[str, Any]]:
    seen: dict[str, dict[str, Any]] = {}
    for rec in records:
        seen.setdefault(str(rec.get(key)), {f: rec.get(f) for f in fields})
    return sorted(seen.values(), key=lambda r: (int(r.get("revision") or 0), str(r.get("event_time") or r.get("inspected_at") or "")))


def warnings_with_reviews(warnings: Iterable[dict[str, Any]], reviews: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """A declaration's warnings (once each) with the analyst's verdict on each (the first review read
    stands; ``verdict`` None while open)."""
    verdicts: dict[str, dict[str, Any]] = {}
    for review in reviews:
        verdicts.setdefault(str(review.get("warning_id")), review)
    rows = _unique(warnings, "warning_id", WARNING_FIELDS)
    for row in rows:
        verdict = verdicts.get(str(row["warning_id"])) or {}
        row["evidence"] = list(row["evidence"] or [])
        row["verdict"] = verdict.get("verdict")
        row["reviewed_at"] = verdict.get("reviewed_at")
    return rows


def format_history(doc: dict[str, Any]) -> str:
    """The declaration's revisions, scans and inspection results (the archive's part of the answer)."""
    lines: list[str] = []
    for r in doc.get("revisions", []):
        via = {"batch": f"gateway batch {r['batch_id']}", "declaration": "single record"}.get(str(r["source"]), str(r["source"]))
        if r.get("centralised_id"):
            via += f", item of centralised declaration {r['centralised_id']}"
        lines.append(f"revision {r['revision']} ({via}): port {r['port']}  enterprise {r['enterprise_id']}  "
                     f"scenario {r['scenario']}  hs {r['hs_code']}  origin {r['origin_country']}  "
                     f"value {r['declared_value']} {r['currency']}  event {r['event_time']}")
    for s in doc.get("scans", []):
        cats = ", ".join(s.get("suspected_categories") or []) or "none"
        lines.append(f"scan {s['scan_id']} (revision {s['revision']}): {s['verdict']}  {s['device_type']} {s['device_id']}  "
                     f"anomaly {_score(s['anomaly_score'])}  suspected: {cats}  at {s['event_time']}")
    for i in doc.get("inspection_results", []):
        what = f"found {i['category'] or 'something'}, duty recovered {i['duty_recovered']}" if i["found"] else "nothing found"
        by = f" recorded by {i['recorded_by']}" if i.get("recorded_by") else ""
        lines.append(f"inspection {i['instruction_id']} at station {i['station_id']}{by}: {what}  at {i['inspected_at']}")
        if i.get("note"):
            lines.append(f"  note: {i['note']}")
    for w in doc.get("warnings", []):
        review = f"{w['verdict']} at {w['reviewed_at']}" if w.get("verdict") else "not reviewed"
        lines.append(f"warning {w['warning_id']} ({w['severity']}, {w['rule']}, revision {w['revision']}): "
                     f"{'; '.join(w['evidence'])}  raised {w['raised_at']}  -> {review}")
    for w in doc.get("subject_warnings", []):
        lines.append(f"earlier warning on {w['subject_kind']} {w['subject_id']} ({w['severity']}, {w['rule']}): "
                     f"{'; '.join(w['evidence'])}  raised {w['raised_at']}")
    return "\n".join(lines)
