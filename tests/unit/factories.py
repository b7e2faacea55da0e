"""Small builders for valid records, so each test states only what it is about."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from schemas import CreditEvent, Declaration, ScanResult

NOW = datetime(2026, 11, 28, 10, 0, tzinfo=UTC)


def declaration(**over: Any) -> Declaration:
    fields: dict[str, Any] = dict(
        declaration_id="D1", revision=1, port="HAK-SEA", enterprise_id="E1", declarant_id="DC1", seller_id="S1",
        scenario="general-trade", hs_code="851712", origin_country="CN", departure_country="CN", transport_mode="sea",
        declared_value=12000.0, currency="CNY", quantity=100.0, net_mass_kg=50.0, tax_rate=5.0, event_time=NOW,
    )
    if over.get("scenario") == "processing-value-added":  # a ratio of 0.5, above the default threshold
        fields.update(imported_material_value=8000.0, value_added=4000.0)
    fields.update(over)
    return Declaration.model_validate(fields, strict=False)


def scan(**over: Any) -> ScanResult:
    fields: dict[str, Any] = dict(
        scan_id="SC1", declaration_id="D1", revision=1, port="HAK-SEA", device_id="HAK-SEA-XR01", device_type="x-ray",
        anomaly_score=0.1, verdict="clean", event_time=NOW,
    )
    fields.update(over)
    return ScanResult.model_validate(fields, strict=False)


def credit_event(**over: Any) -> CreditEvent:
    fields: dict[str, Any] = dict(
        event_id="CE1", enterprise_id="E1", event_type="credit-class-changed", credit_class="aeo",
        source_agency="customs", event_time=NOW,
    )
    fields.update(over)
    return CreditEvent.model_validate(fields, strict=False)


# A policy pinned for tests whose expectations are numeric (thresholds, bounds, targets), so that
# retuning the shipped policy/default.yaml does not silently change what they check.
FIXTURE_POLICY = Path(__file__).with_name("policy_fixture.yaml")


def quiet(_: str) -> None:
    """A progress callback that prints nothing."""
