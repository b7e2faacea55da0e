"""Feedback loop: inspection results + declarations -> a labelled training set (project format).

Only inspected declarations get labels. Redelivered results (same instruction_id) count once;
several inspections of one declaration give fraud = any finding, duty_recoverable = the largest
recovered amount (the same finding reported twice must not double the revenue).
"""

from __future__ import annotations

from pathlib import Path
from typing import TypeVar

import orjson
import polars as pl
from pydantic import BaseModel, ValidationError

from riskmodels.data import LABELS, PROJECT_COLUMNS, _project
from riskmodels.errors import DataError
from schemas.records import Declaration, InspectionResult

M = TypeVar("M", bound=BaseModel)


def _jsonl(path: Path, model: type[M], what: str) -> list[M]:
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    records: list[M] = []
    with path.open("rb") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                records.append(model.model_validate_json(line))
            except ValidationError as exc:
                err = exc.errors()[0]
                loc = ".".join(str(p) for p in err["loc"]) or "record"
                raise DataError(f"{path}:{lineno}: not a valid {what}: {loc}: {err['msg']}") from exc
    return records


def read_inspections(path: Path) -> pl.DataFrame:
    results: list[InspectionResult] = _jsonl(path, InspectionResult, "inspection result")
    unique = {r.instruction_id: r for r in results}  # at-least-once delivery: last copy wins
    frame = pl.DataFrame(
        {"declaration_id": [r.declaration_id for r in unique.values()],
         "found": [r.found for r in unique.values()],
         "duty_recovered": [r.duty_recovered for r in unique.values()]},
        schema={"declaration_id": pl.String, "found": pl.Boolean, "duty_recovered": pl.Float64},
    )
    return frame.group_by("declaration_id").agg(
        pl.col("found").any().cast(pl.Int64).alias("fraud"),
        pl.col("duty_recovered").max().alias("duty_recoverable"),
    )


def read_declarations(path: Path) -> pl.DataFrame:
    """Declarations as JSON lines (validated records) or parquet, latest revision of each."""
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    with path.open("rb") as fh:
        is_parquet = fh.read(4) == b"PAR1"
    if is_parquet:
        raw = pl.read_parquet(path)
    else:
        records: list[Declaration] = _jsonl(path, Declaration, "declaration")
        if not records:
            raise DataError(f"{path}: no declarations")
        raw = pl.DataFrame([orjson.loads(r.model_dump_json()) for r in records], infer_schema_length=None)
    frame = _project(raw, path, need_labels=False).select(PROJECT_COLUMNS)
    return frame.sort("revision").unique("declaration_id", keep="last", maintain_order=True)


def export_labels(inspections: Path, declarations: Path, out: Path) -> dict[str, int]:
    """Write the labelled set to ``out`` (.parquet, else CSV); return counts for the user."""
    labels = read_inspections(Path(inspections))
    decls = read_declarations(Path(declarations))
    joined = decls.join(labels, on="declaration_id", how="inner").with_columns(
        pl.lit(None, dtype=pl.Int64).alias("critical_fraud"),
        pl.lit(None, dtype=pl.String).alias("fraud_pattern"),  # the simulator's hidden truth: not in real labels
        pl.lit(None, dtype=pl.Float64).alias("value_added_ratio_true"),
    ).select([*PROJECT_COLUMNS, *LABELS]).sort("event_time", maintain_order=True)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.suffix in (".parquet", ".pq"):
        joined.write_parquet(out)
    else:
        joined.write_csv(out)
    return {
        "inspected_declarations": labels.height,
        "labelled_rows": joined.height,
        "frauds": int(joined["fraud"].sum()),
        "without_declaration": labels.height - joined.height,
    }
