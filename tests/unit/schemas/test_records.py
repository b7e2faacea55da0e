"""Strict validation of every record type, and the exported JSON Schema files staying current."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest
from pydantic import ValidationError

from schemas import ControlInstruction, CreditEvent, Declaration
from schemas.deadletters import dead_letter_record
from schemas.export import export_json_schemas
from tests.unit.factories import credit_event, declaration

GOOD = orjson.loads(declaration().model_dump_json())


def reject(**change) -> ValidationError:
    record = {**GOOD, **change}
    with pytest.raises(ValidationError) as info:
        Declaration.model_validate_json(orjson.dumps(record))
    return info.value


def test_good_declaration_round_trips_through_json():
    d = Declaration.model_validate_json(orjson.dumps(GOOD))
    assert d == declaration()
    assert d.schema_version == 1


@pytest.mark.parametrize(
    "change",
    [
        {"declared_value": "1000"},  # no string-to-number coercion
        {"declared_value": -5.0},
        {"declared_value": 1e300},
        {"net_mass_kg": -1.0},
        {"tax_rate": 1500},
        {"port": 7},  # no number-to-string coercion
        {"scenario": "smuggling"},
        {"hs_code": "85A712"},
        {"origin_country": "China"},
        {"currency": "cny"},
        {"event_time": "1970-01-01T00:00:00Z"},
        {"event_time": "2999-01-01T00:00:00Z"},
        {"event_time": "2026-11-28T10:00:00"},  # naive times are ambiguous across ports
        {"revision": 0},
        {"declaration_id": "../../etc/passwd"},
        {"declaration_id": "x" * 65},
        {"schema_version": 2},
        {"unexpected": 1},
    ],
)
def test_garbage_is_rejected_not_coerced(change):
    reject(**change)


def test_missing_field_and_nan_are_rejected():
    record = dict(GOOD)
    del record["hs_code"]
    with pytest.raises(ValidationError):
        Declaration.model_validate_json(orjson.dumps(record))
    with pytest.raises(ValidationError):
        Declaration.model_validate_json(orjson.dumps(GOOD).replace(b'"tax_rate":5.0', b'"tax_rate":NaN'))


def test_credit_event_needs_the_fields_its_type_implies():
    with pytest.raises(ValidationError, match="needs credit_class"):
        credit_event(credit_class=None)
    with pytest.raises(ValidationError, match="needs qualification"):
        credit_event(event_type="qualification-registered", credit_class=None)
    assert CreditEvent.model_validate_json(credit_event().model_dump_json()).credit_class.value == "aeo"


def test_dead_letter_record_keeps_original_bytes_and_reason():
    raw = b"\xff{not json"
    with pytest.raises(ValidationError) as info:
        Declaration.model_validate_json(raw)
    reason, payload = dead_letter_record("t", 3, 42, b"k", raw, info.value)
    record = orjson.loads(payload)
    assert reason == "invalid-json" and record["reason"] == "invalid-json"
    assert record["partition"] == 3 and record["offset"] == 42
    import base64

    assert base64.b64decode(record["value_b64"]) == raw


def test_exported_json_schemas_are_current(tmp_path: Path):
    shipped = Path(__file__).resolve().parents[3] / "schemas" / "json"
    for path in export_json_schemas(tmp_path):
        assert (shipped / path.name).read_bytes() == path.read_bytes(), f"run `riskctl schemas export`: {path.name} is stale"
    instr = orjson.loads((shipped / "control-instruction.schema.json").read_bytes())
    assert set(ControlInstruction.model_fields) == set(instr["properties"])
