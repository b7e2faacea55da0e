"""The early-warning record and the processing value-added fields of a declaration: strict, bounded."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from pydantic import ValidationError

from schemas import CentralisedDeclaration, EarlyWarning
from schemas.records import VALUE_ADDED_RATIO_CAP
from tests.unit.factories import NOW, declaration


def warning(**over: Any) -> bytes:
    fields: dict[str, Any] = dict(
        warning_id="D1:1:value-added-implausible", severity="high", subject_kind="enterprise", subject_id="E1",
        source="rule", rule="value-added-implausible", evidence=["claimed ratio 2.50", "enterprise history: mean ratio 0.40"],
        event_time=NOW.isoformat(), raised_at=NOW.isoformat(), port="HAK-SEA", scenario="processing-value-added",
        declaration_id="D1", revision=1,
    )
    fields.update(over)
    return orjson.dumps({k: v for k, v in fields.items() if v is not None})


def test_a_warning_round_trips() -> None:
    record = EarlyWarning.model_validate_json(warning())
    assert record.severity.value == "high" and record.evidence[1].startswith("enterprise history")
    assert EarlyWarning.model_validate_json(record.model_dump_json(exclude_none=True)) == record


@pytest.mark.parametrize("over", [
    {"severity": "urgent"},  # not a severity
    {"subject_kind": "person"},  # not a subject kind
    {"rule": "Value Added"},  # rule names are short lower-case identifiers (metric labels)
    {"rule": "r" * 49},
    {"evidence": []},  # a warning says why
    {"evidence": ["x"] * 17},  # bounded count
    {"evidence": ["x" * 201]},  # bounded length
    {"subject_id": "E 1"},
    {"event_time": "2026-01-01T00:00:00"},  # no offset
    {"extra": 1},
    {"warning_id": "w" * 161},
])
def test_bad_warnings_are_refused(over: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        EarlyWarning.model_validate_json(warning(**over))


def test_a_processing_declaration_carries_its_values_and_its_ratio() -> None:
    d = declaration(scenario="processing-value-added", declared_value=1300.0, imported_material_value=1000.0, value_added=300.0)
    assert d.value_added_ratio() == pytest.approx(0.3)
    no_imports = declaration(scenario="processing-value-added", declared_value=500.0, imported_material_value=0.0, value_added=500.0)
    assert no_imports.value_added_ratio() == VALUE_ADDED_RATIO_CAP  # no imported materials: bounded, not infinite
    assert declaration().value_added_ratio() is None


@pytest.mark.parametrize("over,message", [
    ({"scenario": "processing-value-added", "imported_material_value": None, "value_added": None}, "needs imported_material_value"),
    ({"scenario": "processing-value-added", "value_added": None}, "needs imported_material_value"),
    ({"scenario": "processing-value-added", "imported_material_value": -1.0}, "greater than or equal to 0"),
    ({"scenario": "processing-value-added", "value_added": 1e14}, "less than or equal to"),
    ({"scenario": "processing-value-added", "declared_value": 100.0, "imported_material_value": 5000.0}, "cannot exceed"),
    ({"scenario": "general-trade", "imported_material_value": 10.0, "value_added": 5.0}, "processing-value-added declarations only"),
])
def test_processing_values_are_required_there_bounded_and_refused_elsewhere(over: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        declaration(**over)


def test_centralised_processing_items_carry_their_values() -> None:
    header = dict(centralised_id="C1", port="HAK-SEA", enterprise_id="E1", declarant_id="E1", scenario="processing-value-added",
                  transport_mode="sea", departure_country="CN", event_time=NOW)
    item = dict(item_no=1, hs_code="851712", origin_country="CN", declared_value=150.0, currency="CNY", net_mass_kg=1.0,
                tax_rate=5.0, imported_material_value=100.0, value_added=50.0)
    ok = CentralisedDeclaration.model_validate({**header, "items": [item]}, strict=False)
    assert ok.item_declarations()[0].value_added_ratio() == pytest.approx(0.5)
    with pytest.raises(ValidationError, match="needs imported_material_value"):
        CentralisedDeclaration.model_validate({**header, "items": [{**item, "value_added": None}]}, strict=False)
