"""Labelled history files: the declaration schema plus the simulator's ground truth, as parquet.

Columns: exactly the :class:`schemas.Declaration` fields, in model order (enum fields as strings,
``event_time`` as a UTC timestamp), then the labels ``fraud`` (0/1), ``critical_fraud`` (0 clean,
1 fraud, 2 public-safety contraband), ``duty_recoverable`` (USD), ``fraud_pattern`` (null when
clean) and ``value_added_ratio_true`` (processing value-added declarations only). Rows are in
event-time order, so a file splits into earlier (training) and later (backtest) periods by time.
The same seed and arguments give a byte-identical file.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from portsim.traffic import PortOffice
from schemas import Declaration

ROW_GROUP = 131_072

_STRING_FIELDS = (
    "declaration_id", "port", "enterprise_id", "declarant_id", "seller_id", "scenario", "hs_code", "origin_country",
    "departure_country", "transport_mode", "currency", "procedure_code", "import_type", "import_use", "payment_type",
    "tax_type", "origin_indicator", "courier_id", "centralised_id", "direction", "shopper_token",
)
# Goods identifiers: a list of {kind, value} (schemas.GoodsIdentifier), null for goods declared without.
IDENTIFIERS_TYPE = pa.list_(pa.struct([pa.field("kind", pa.string()), pa.field("value", pa.string())]))
_INT_FIELDS = ("schema_version", "revision")
_FLOAT_FIELDS = ("declared_value", "quantity", "net_mass_kg", "tax_rate", "imported_material_value", "value_added")
LABEL_FIELDS = ("fraud", "critical_fraud", "duty_recoverable", "fraud_pattern", "value_added_ratio_true")


def history_schema() -> pa.Schema:
    fields = []
    for name, info in Declaration.model_fields.items():
        nullable = not info.is_required() and info.default is None
        if name in _STRING_FIELDS:
            typ = pa.string()
        elif name in _INT_FIELDS:
            typ = pa.int64()
        elif name in _FLOAT_FIELDS:
            typ = pa.float64()
        elif name == "event_time":
            typ = pa.timestamp("us", tz="UTC")
        elif name == "goods_identifiers":
            typ = IDENTIFIERS_TYPE
        else:  # a new schema field must be added here deliberately
            raise TypeError(f"history file has no column type for Declaration.{name}")
        fields.append(pa.field(name, typ, nullable=nullable))
    fields += [
        pa.field("fraud", pa.int64(), nullable=False),
        pa.field("critical_fraud", pa.int64(), nullable=False),
        pa.field("duty_recoverable", pa.float64(), nullable=False),
        pa.field("fraud_pattern", pa.string(), nullable=True),
        # Processing value-added declarations: the true value added / imported materials (null elsewhere).
        pa.field("value_added_ratio_true", pa.float64(), nullable=True),
    ]
    return pa.schema(fields)


def write_history(
    office: PortOffice, path: str | Path, count: int, *, start: datetime | None = None,
    rate_per_s: float | None = None, first_index: int = 0,
    progress: Callable[[int], None] | None = None,
) -> int:
    """Write ``count`` labelled declarations to ``path`` (parquet, zstd). Returns the rows written."""
    if count < 1:
        raise ValueError("count must be >= 1")
    schema = history_schema()
    path = Path(path)
    tmp = path.with_name(path.name + ".partial")
    written = 0
    buffer: list[pa.RecordBatch] = []
    buffered = 0
    with pq.ParquetWriter(tmp, schema, compression="zstd") as writer:
        for cols, labels in office.column_batches(count, start, rate_per_s, first_index):
            n = len(cols["declaration_id"])
            arrays = []
            for field in schema:
                name = field.name
                if name == "schema_version" or name == "revision":
                    arrays.append(pa.array(np.ones(n, dtype=np.int64)))
                elif name == "event_time":
                    arrays.append(pa.array(cols["event_time_us"], type=field.type))
                elif name in ("centralised_id", "shopper_token") or (name not in cols and name in ("direction", "goods_identifiers")):
                    # no centralised declarations nor shopper tokens in the simulated history; direction and
                    # identifiers where traffic states neither
                    arrays.append(pa.nulls(n, type=field.type))
                elif name in labels:
                    arrays.append(pa.array(labels[name], type=field.type, from_pandas=True))  # NaN -> null
                else:
                    arrays.append(pa.array(cols[name], type=field.type))
            buffer.append(pa.RecordBatch.from_arrays(arrays, schema=schema))
            buffered += n
            if buffered >= ROW_GROUP:
                writer.write_table(pa.Table.from_batches(buffer, schema), row_group_size=ROW_GROUP)
                buffer, buffered = [], 0
            written += n
            if progress is not None:
                progress(written)
        if buffer:
            writer.write_table(pa.Table.from_batches(buffer, schema), row_group_size=ROW_GROUP)
    tmp.replace(path)
    return written
