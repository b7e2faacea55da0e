"""JSON Schema export for the port gateways and other producers."""

from __future__ import annotations

from pathlib import Path

import orjson

from schemas.records import RECORD_TYPES


def export_json_schemas(out_dir: Path) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for name, model in RECORD_TYPES.items():
        schema = model.model_json_schema(mode="validation")
        schema["$id"] = f"urn:customs-riskcontrol:{name}:v{model.model_fields['schema_version'].default}"
        path = out_dir / f"{name}.schema.json"
        path.write_bytes(orjson.dumps(schema, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS) + b"\n")
        written.append(path)
    return written
