"""The labelled history file: the declaration schema plus labels, readable by polars."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import polars as pl
import pyarrow.parquet as pq

from portsim.history import write_history
from portsim.traffic import PortOffice
from schemas import Declaration

LABELS = {"fraud": pl.Int64, "critical_fraud": pl.Int64, "duty_recoverable": pl.Float64, "fraud_pattern": pl.String,
          "value_added_ratio_true": pl.Float64}


def test_columns_and_dtypes(tmp_path: Path, small_office: PortOffice) -> None:
    path = tmp_path / "h.parquet"
    assert write_history(small_office, path, 9_000) == 9_000
    df = pl.read_parquet(path)
    assert df.columns == [*Declaration.model_fields, *LABELS]
    schema = df.schema
    assert schema["event_time"] == pl.Datetime("us", "UTC")
    for name in ("scenario", "transport_mode", "declaration_id", "hs_code", "seller_id", "courier_id"):
        assert schema[name] == pl.String
    for name in ("declared_value", "quantity", "net_mass_kg", "tax_rate"):
        assert schema[name] == pl.Float64
    assert schema["revision"] == pl.Int64 and schema["schema_version"] == pl.Int64
    for name, dtype in LABELS.items():
        assert schema[name] == dtype
    assert set(df["fraud"].unique()) <= {0, 1}
    assert set(df["critical_fraud"].unique()) <= {0, 1, 2}
    assert df.filter(pl.col("fraud") == 0)["fraud_pattern"].null_count() == (df["fraud"] == 0).sum()
    assert df.filter(pl.col("fraud") == 1)["fraud_pattern"].null_count() == 0
    assert (df.filter(pl.col("fraud") == 0)["duty_recoverable"] == 0).all()
    assert df["event_time"].is_sorted()
    assert pq.ParquetFile(path).metadata.num_rows == 9_000


def test_rows_equal_the_live_records(tmp_path: Path, small_office: PortOffice) -> None:
    path = tmp_path / "h.parquet"
    start = datetime(2026, 2, 1, tzinfo=UTC)
    write_history(small_office, path, 300, start=start, rate_per_s=5.0)
    df = pl.read_parquet(path)
    live = list(small_office.declaration_dicts(300, start=start, rate_per_s=5.0))
    for row, (d, t) in zip(df.iter_rows(named=True), live):
        decl = Declaration.model_validate({k: row[k] for k in Declaration.model_fields}, strict=False)
        # Null columns in the history: no centralised declarations nor shopper tokens; direction and
        # identifiers where the live record has none.
        assert decl.model_dump(mode="json") == {"direction": None, "goods_identifiers": None, **d, "centralised_id": None,
                                                "shopper_token": None}
        assert (row["fraud"], row["fraud_pattern"], row["duty_recoverable"]) == (int(t.fraud), t.pattern, t.duty_recoverable)
        assert row["critical_fraud"] == t.critical
