"""The archive's Delta tables: one per kind of record, each with an explicit Arrow schema.

Every table is partitioned by ``day`` (the UTC date of the record's own time: event time,
inspection time, reception time; for risk-list changes the Kafka record time) and, where the
record names one, by ``port``: a report over some days and ports reads only those directories.

Every row carries where it came from: ``kafka_topic``, ``kafka_partition``, ``kafka_offset`` and
``item_index`` (the position inside a gateway batch or a centralised declaration, 0 otherwise).
That quadruple is unique in a table, which is what "exactly once" means here and what the tests
check.

Which tables a topic feeds (:data:`TOPIC_TABLES`) matters for resuming: a partition's records go to
its own table, and the ones that do not parse go to ``dead_letters``, so the sink resumes a
partition from the lowest position the two tables hold for it and skips, per table, what that
table already has (:mod:`archive.sink`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
from deltalake import DeltaTable
from deltalake import Field as DeltaField

from archive.location import LocationLike, as_location
from clients import topics

STR = pa.string()
I32 = pa.int32()
I64 = pa.int64()
F64 = pa.float64()
BOOL = pa.bool_()
TS = pa.timestamp("us", tz="UTC")
DATE = pa.date32()
STRS = pa.list_(pa.string())

# Where a row came from; last in every schema.
PROVENANCE: tuple[tuple[str, pa.DataType], ...] = (
    ("kafka_topic", STR), ("kafka_partition", I32), ("kafka_offset", I64), ("item_index", I32),
    ("kafka_timestamp", TS), ("archived_at", TS),
)

FORM_CODES: tuple[tuple[str, pa.DataType], ...] = (
    ("procedure_code", STR), ("import_type", STR), ("import_use", STR), ("payment_type", STR), ("tax_type", STR),
    ("origin_indicator", STR), ("courier_id", STR),
)
GOODS: tuple[tuple[str, pa.DataType], ...] = (
    ("hs_code", STR), ("origin_country", STR), ("declared_value", F64), ("currency", STR), ("quantity", F64),
    ("net_mass_kg", F64), ("tax_rate", F64), ("seller_id", STR),
    ("imported_material_value", F64), ("value_added", F64),  # processing value-added goods only
    ("goods_identifiers", STRS),  # "kind:value" (VIN, hull, serial numbers), matched against the zero-tariff register
)


@dataclass(frozen=True)
class TableSpec:
    name: str
    schema: pa.Schema
    partition_by: tuple[str, ...]
    what: str


def _spec(name: str, what: str, fields: tuple[tuple[str, pa.DataType], ...], by_port: bool = True) -> TableSpec:
    columns = [("day", DATE), *fields, *PROVENANCE]
    names = [n for n, _ in columns]
    assert len(names) == len(set(names)), f"{name}: duplicate column"
    return TableSpec(name, pa.schema([pa.field(n, t) for n, t in columns]), ("day", "port") if by_port else ("day",), what)


DECLARATIONS = "declarations"
CENTRALISED_ITEMS = "centralised_items"
SCANS = "scans"
INSTRUCTIONS = "instructions"
INSPECTION_RESULTS = "inspection_results"
CREDIT_EVENTS = "credit_events"
RISK_LISTS = "risk_lists"
DEAD_LETTERS = "dead_letters"
SHADOW_SCORES = "shadow_scores"
CONSOLE_ACTIONS = "console_actions"
WARNINGS = "warnings"
WARNING_REVIEWS = "warning_reviews"
JOINT_FINDINGS = "joint_findings"
ZERO_TARIFF_REGISTER = "zero_tariff_register"
POSITIONS = "positions"
DUTY_FREE_PURCHASES = "duty_free_purchases"

SPECS: dict[str, TableSpec] = {s.name: s for s in (
    _spec(DECLARATIONS, "Declarations: single records and gateway-batch items (source 'declaration' or 'batch'), one row per "
                        "declaration revision as received; the items the worker splits off a centralised declaration arrive "
                        "on the declarations topic and carry centralised_id.", (
        ("declaration_id", STR), ("revision", I32), ("port", STR), ("enterprise_id", STR), ("declarant_id", STR),
        ("scenario", STR), ("transport_mode", STR), ("departure_country", STR), ("event_time", TS), *GOODS, *FORM_CODES,
        ("centralised_id", STR), ("source", STR), ("batch_id", STR), ("gateway", STR), ("schema_version", I32), ("direction", STR),
        ("shopper_token", STR),  # duty-free-shopping departures only
    )),
    _spec(CENTRALISED_ITEMS, "Centralised declarations as submitted, one row per goods item with the declaration id it "
                             "becomes ({centralised_id}-{item_no:04d}), whether or not the policy allowed it.", (
        ("centralised_id", STR), ("item_no", I32), ("declaration_id", STR), ("revision", I32), ("port", STR),
        ("enterprise_id", STR), ("declarant_id", STR), ("scenario", STR), ("transport_mode", STR), ("departure_country", STR),
        ("event_time", TS), *GOODS, *FORM_CODES, ("items", I32), ("schema_version", I32), ("direction", STR),
    )),
    _spec(SCANS, "X-ray / CT scan results.", (
        ("scan_id", STR), ("declaration_id", STR), ("revision", I32), ("port", STR), ("device_id", STR), ("device_type", STR),
        ("anomaly_score", F64), ("verdict", STR), ("suspected_categories", STRS), ("image_ref", STR), ("event_time", TS),
        ("schema_version", I32),
    )),
    _spec(INSTRUCTIONS, "Control instructions with everything that explains them.", (
        ("instruction_id", STR), ("declaration_id", STR), ("revision", I32), ("port", STR), ("enterprise_id", STR),
        ("scenario", STR), ("stage", STR), ("action", STR), ("final", BOOL), ("selection_reason", STR), ("credit_class", STR),
        ("score", F64), ("model_version", STR), ("policy_version", STR), ("reasons", STRS), ("risk_hits", STRS),
        ("thresholds", pa.list_(F64)), ("suspected_categories", STRS), ("scan_id", STR), ("event_time", TS),
        ("decided_at", TS), ("centralised_id", STR), ("schema_version", I32),
        ("risk_types", STRS),  # added after the first release: add_missing_columns
    )),
    _spec(INSPECTION_RESULTS, "What the inspection stations found (day: inspection time).", (
        ("instruction_id", STR), ("declaration_id", STR), ("revision", I32), ("port", STR), ("station_id", STR),
        ("found", BOOL), ("category", STR), ("duty_recovered", F64), ("inspected_at", TS), ("schema_version", I32),
        ("note", STR), ("recorded_by", STR),  # added after the first release: add_missing_columns
    )),
    _spec(CREDIT_EVENTS, "Enterprise credit and lifecycle events.", (
        ("event_id", STR), ("enterprise_id", STR), ("event_type", STR), ("credit_class", STR), ("qualification", STR),
        ("source_agency", STR), ("reason", STR), ("event_time", TS), ("schema_version", I32),
    ), by_port=False),
    _spec(RISK_LISTS, "Risk-list changes: an entry as published, or its retraction (a null value; day: Kafka record time).", (
        ("entry_id", STR), ("retracted", BOOL), ("list_id", STR), ("kind", STR), ("value", STR), ("action", STR),
        ("reason", STR), ("source_agency", STR), ("valid_from", TS), ("valid_until", TS), ("schema_version", I32),
    ), by_port=False),
    _spec(WARNINGS, "Early warnings raised by the workers (day: the event time of what raised them; port null when none).", (
        ("warning_id", STR), ("severity", STR), ("subject_kind", STR), ("subject_id", STR), ("source", STR), ("rule", STR),
        ("evidence", STRS), ("event_time", TS), ("raised_at", TS), ("port", STR), ("scenario", STR), ("declaration_id", STR),
        ("revision", I32), ("policy_version", STR), ("schema_version", I32),
    )),
    _spec(WARNING_REVIEWS, "Analysts' verdicts on early warnings (day: the review's time; port null when none).", (
        ("warning_id", STR), ("verdict", STR), ("rule", STR), ("severity", STR), ("subject_kind", STR), ("subject_id", STR),
        ("port", STR), ("declaration_id", STR), ("revision", I32), ("warning_time", TS), ("reviewed_at", TS),
        ("schema_version", I32),
    )),
    _spec(JOINT_FINDINGS, "Confirmed findings published for the other agencies (day: the finding's time; port null when none).", (
        ("finding_id", STR), ("kind", STR), ("declaration_id", STR), ("enterprise_id", STR), ("port", STR), ("hs_code", STR),
        ("category", STR), ("subject_kind", STR), ("subject_id", STR), ("duty_recovered", F64), ("found_at", TS),
        ("schema_version", I32),
    )),
    _spec(ZERO_TARIFF_REGISTER, "The zero-tariff register as customs issued it: one row per import record (a later record replaces "
                                "the import's; day: its event time), or the import's removal (a null value; day: Kafka record "
                                "time). identifiers are 'kind:value' (VIN, hull, serial numbers).", (
        ("import_id", STR), ("removed", BOOL), ("enterprise_id", STR), ("import_declaration_id", STR), ("status", STR),
        ("hs_code", STR), ("description", STR), ("quantity", F64), ("identifiers", STRS), ("imported_at", TS), ("event_time", TS),
        ("schema_version", I32),
    ), by_port=False),
    _spec(POSITIONS, "Position and geofence events of registered vehicles and vessels (day: event time; port null but for "
                     "port passages).", (
        ("event_id", STR), ("identifier", STR), ("kind", STR), ("event_type", STR), ("latitude", F64), ("longitude", F64),
        ("port", STR), ("tracker_id", STR), ("event_time", TS), ("schema_version", I32),
    )),
    _spec(DUTY_FREE_PURCHASES, "Offshore duty-free purchases, one row per goods line (item_index) with the purchase's header "
                               "(tokens only, never personal data; day: purchase time).", (
        ("purchase_id", STR), ("shop_id", STR), ("shopper_token", STR), ("identity_token", STR), ("identity_method", STR),
        ("identity_matched", BOOL), ("payer_token", STR), ("phone_token", STR), ("delivery_address_token", STR),
        ("category", STR), ("goods_code", STR), ("quantity", I32), ("unit_price_cny", F64), ("items", I32), ("total_cny", F64),
        ("purchased_at", TS), ("schema_version", I32),
    ), by_port=False),
    _spec(DEAD_LETTERS, "Rejected records with their original bytes: origin 'worker' (read from the dead-letter topic) or "
                        "'archive' (a record on any topic that the archive could not parse; day: reception time).", (
        ("origin", STR), ("source_topic", STR), ("source_partition", I32), ("source_offset", I64), ("key_b64", STR),
        ("value_b64", STR), ("value_size", I64), ("value_sha256", STR), ("truncated", BOOL), ("reason", STR), ("error", STR),
        ("received_at", TS), ("schema_version", I32),
    ), by_port=False),
    _spec(CONSOLE_ACTIONS, "What people did in the console: logins, inspection results recorded, risk-list and credit actions, "
                           "user changes (day: the action's time).", (
        ("action_id", STR), ("user", STR), ("role", STR), ("action", STR), ("subject", STR), ("detail", STR), ("at", TS),
        ("schema_version", I32),
    ), by_port=False),
    _spec(SHADOW_SCORES, "Challenger (shadow) model scores beside the champion's, per decided declaration revision (day: decision "
                         "time); challenger_action is what the policy would have decided with the challenger's score.", (
        ("instruction_id", STR), ("declaration_id", STR), ("revision", I32), ("port", STR), ("scenario", STR),
        ("credit_class", STR), ("champion_version", STR), ("champion_score", F64), ("champion_action", STR),
        ("challenger_version", STR), ("challenger_score", F64), ("challenger_action", STR), ("thresholds", pa.list_(F64)),
        ("decided_at", TS), ("schema_version", I32),
    )),
)}

# Logical topic -> the table its good records go to. Every topic also feeds DEAD_LETTERS.
PRIMARY_TABLE: dict[str, str] = {
    topics.DECLARATIONS: DECLARATIONS,
    topics.DECLARATION_BATCHES: DECLARATIONS,
    topics.CENTRALISED_DECLARATIONS: CENTRALISED_ITEMS,
    topics.SCANS: SCANS,
    topics.INSTRUCTIONS: INSTRUCTIONS,
    topics.INSPECTION_RESULTS: INSPECTION_RESULTS,
    topics.WARNINGS: WARNINGS,
    topics.WARNING_REVIEWS: WARNING_REVIEWS,
    topics.JOINT_FINDINGS: JOINT_FINDINGS,
    topics.CREDIT_EVENTS: CREDIT_EVENTS,
    topics.CREDIT_EVENT_BATCHES: CREDIT_EVENTS,
    topics.RISK_LISTS: RISK_LISTS,
    topics.DEAD_LETTERS: DEAD_LETTERS,
    topics.CONSOLE_ACTIONS: CONSOLE_ACTIONS,
    topics.SHADOW_SCORES: SHADOW_SCORES,
    topics.ZERO_TARIFF_REGISTER: ZERO_TARIFF_REGISTER,
    topics.POSITIONS: POSITIONS,
    topics.DUTY_FREE_PURCHASES: DUTY_FREE_PURCHASES,
}
ARCHIVED_TOPICS: tuple[str, ...] = tuple(PRIMARY_TABLE)
TOPIC_TABLES: dict[str, tuple[str, ...]] = {t: tuple(dict.fromkeys((table, DEAD_LETTERS))) for t, table in PRIMARY_TABLE.items()}


def app_id(topic: str, partition: int) -> str:
    """The Delta application-transaction id of a Kafka partition (full topic name; Kafka topic names
    cannot contain ':', so the id is unambiguous)."""
    return f"{topic}:{partition}"


def table_path(archive_dir: Path, name: str) -> Path:
    """The directory of one table of a local archive (see :meth:`ArchiveLocation.table` for any location)."""
    return archive_dir / name


def ensure_tables(location: LocationLike) -> dict[str, DeltaTable]:
    """Open every table, creating the missing ones (empty, with their schema and partitioning), so
    that readers find all of them from the first start of the sink on. Safe to race: creating a
    table that another process has just created leaves it alone."""
    loc = as_location(location)
    loc.prepare()
    options = loc.options()
    tables: dict[str, DeltaTable] = {}
    for name, spec in SPECS.items():
        uri = loc.table(name)
        if not DeltaTable.is_deltatable(uri, storage_options=options):
            DeltaTable.create(uri, schema=spec.schema, partition_by=list(spec.partition_by), mode="ignore",
                              name=name, description=spec.what, storage_options=options)
        tables[name] = add_missing_columns(DeltaTable(uri, storage_options=options), spec)
    return tables


def add_missing_columns(table: DeltaTable, spec: TableSpec) -> DeltaTable:
    """Give a table written by an older release the columns its schema has gained since (nullable;
    the rows already written read them as null). Safe to race: a column another process has just
    added is not added again."""
    present = {field.name for field in table.schema().fields}
    missing = [DeltaField.from_arrow(field) for field in spec.schema if field.name not in present]
    if missing:
        try:
            table.alter.add_columns(missing)
        except Exception:  # another sink added them first: re-read and check
            table.update_incremental()
            if any(field.name not in {f.name for f in table.schema().fields} for field in missing):
                raise
    return table


def table_exists(location: LocationLike, name: str) -> bool:
    loc = as_location(location)
    return DeltaTable.is_deltatable(loc.table(name), storage_options=loc.options())


def open_table(location: LocationLike, name: str) -> DeltaTable | None:
    """The table, or None when the archive has not created it (no sink has run on this location)."""
    loc = as_location(location)
    uri, options = loc.table(name), loc.options()
    return DeltaTable(uri, storage_options=options) if DeltaTable.is_deltatable(uri, storage_options=options) else None
