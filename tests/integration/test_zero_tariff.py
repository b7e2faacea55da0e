"""Zero-tariff goods end to end on both brokers: the register folded from its topic; a declaration
to the mainland naming a registered VIN gets inspect with the reason and one early warning (not one
naming released or unknown goods, nor one coming onto the island); registered vehicles and vessels
that leave the island raise a warning, one still away when the allowed time runs out raises a
second, from the worker's timer (a short allowed time in the policy: no sleeping); positions of
unregistered goods are ignored, stale ones change nothing, bad ones are dead-lettered."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from clients import topics
from clients.readers import assigned_reader
from schemas import EarlyWarning
from tests.integration.pipeline_harness import Harness, declaration, metric_value, pipeline_settings, write_policy

ENTERPRISE = "4600ZT0001"
VIN = "LSVAU2180N2183294"
RELEASED_VIN = "LFV3A23C0J3000001"
HULL = "CN-HN-2024-0042"
ALLOWED_DAYS = 0.0001  # 8.64 s
T0 = datetime.now(UTC)


def at(seconds: float) -> str:
    return (T0 + timedelta(seconds=seconds)).isoformat()


def zero_tariff_import(import_id: str, identifiers: list[dict[str, str]], status: str = "imported") -> dict[str, Any]:
    return dict(import_id=import_id, enterprise_id=ENTERPRISE, import_declaration_id=f"IMP-{import_id}", status=status,
                hs_code="870323", description="passenger car for the enterprise's own use", quantity=float(len(identifiers)),
                identifiers=identifiers, imported_at=at(-30 * 86_400), event_time=at(-86_400 if status == "imported" else -60))


def position(event_id: str, identifier: str, kind: str, event_type: str, seconds: float, **fix: Any) -> dict[str, Any]:
    return dict(event_id=event_id, identifier=identifier, kind=kind, event_type=event_type, tracker_id="HN-TRACK-1",
                event_time=at(seconds), **fix)


def leaving(did: str, identifiers: list[str], direction: str = "second-line-out") -> dict[str, Any]:
    return {**declaration(did, ENTERPRISE), "hs_code": "870323", "direction": direction,
            "goods_identifiers": [{"kind": "vin", "value": v} for v in identifiers]}


@pytest.fixture
def harness(broker, unique_name, tmp_path):
    policy = write_policy(tmp_path / "policy.yaml", version="it-zero-tariff", random_selection={"share": 0.0, "action": "machine-check"},
                          capacity={"default": {"machine_check": None, "inspect": None}, "ports": {}, "bounds": {}},
                          zero_tariff={"allowed_days_away": ALLOWED_DAYS})
    h = Harness(pipeline_settings(broker.bootstrap_servers, unique_name, tmp_path, policy_file=policy), tmp_path)
    yield h
    h.close()


def test_register_declarations_and_positions_raise_inspections_and_warnings(harness: Harness) -> None:
    worker = harness.start_worker()
    worker.wait_ready()
    harness.publish(topics.ZERO_TARIFF_REGISTER, "ZT-1", zero_tariff_import("ZT-1", [{"kind": "vin", "value": VIN},
                                                                                     {"kind": "hull", "value": HULL}]))
    harness.publish(topics.ZERO_TARIFF_REGISTER, "ZT-2", zero_tariff_import("ZT-2", [{"kind": "vin", "value": RELEASED_VIN}]))
    harness.publish(topics.ZERO_TARIFF_REGISTER, "ZT-2", zero_tariff_import("ZT-2", [{"kind": "vin", "value": RELEASED_VIN}],
                                                                            status="released"))
    harness.flush()
    register = lambda outcome: metric_value(worker.metrics_text(), "customs_zero_tariff_register_events_total", outcome=outcome)  # noqa: E731
    harness.read_until(lambda h: register("applied") >= 2 and register("released") >= 1, 60, "the register to be folded")
    harness.read_until(lambda h: metric_value(worker.metrics_text(), "customs_zero_tariff_registered_goods") == 2, 30,
                       "two goods on the register (the released VIN off it)")

    harness.publish(topics.DECLARATIONS, "IT-ZT-OUT", leaving("IT-ZT-OUT", [VIN.lower()]))  # the case does not matter
    harness.publish(topics.DECLARATIONS, "IT-ZT-IN", leaving("IT-ZT-IN", [VIN], direction="second-line-in"))
    harness.publish(topics.DECLARATIONS, "IT-ZT-REL", leaving("IT-ZT-REL", [RELEASED_VIN]))
    harness.publish(topics.DECLARATIONS, "IT-ZT-UNK", leaving("IT-ZT-UNK", ["WVWZZZ1JZXW000001"]))
    # The vehicle leaves the island (geofence) and stays away; a late fix from before it left changes nothing.
    harness.publish(topics.POSITIONS, VIN, position("P-1", VIN, "vehicle", "exit-island", -2))
    harness.publish(topics.POSITIONS, VIN, position("P-0", VIN, "vehicle", "position", -20, latitude=20.03, longitude=110.32))
    # The vessel: a fix on the island, one at sea beyond it, then back before the allowed time is up.
    harness.publish(topics.POSITIONS, HULL, position("P-2", HULL, "vessel", "position", -6, latitude=20.03, longitude=110.32))
    harness.publish(topics.POSITIONS, HULL, position("P-3", HULL, "vessel", "position", -5, latitude=20.60, longitude=110.40))
    harness.publish(topics.POSITIONS, HULL, position("P-4", HULL, "vessel", "enter-island", -4))
    harness.publish(topics.POSITIONS, "UNREGISTERED1", position("P-5", "UNREGISTERED1", "vehicle", "exit-island", -3))
    harness.publish(topics.POSITIONS, HULL, position("P-BAD", HULL, "vessel", "position", -3))  # a position without a fix
    harness.flush()

    decided = ["IT-ZT-OUT", "IT-ZT-IN", "IT-ZT-REL", "IT-ZT-UNK"]
    harness.read_until(lambda h: set(decided) <= {i["declaration_id"] for i in h.instructions} and h.dead_letters, 90,
                       "an instruction for every declaration and the bad position's dead letter")
    first = {i["declaration_id"]: i for i in harness.instructions if i["stage"] == "declaration"}
    out = first["IT-ZT-OUT"]
    assert out["action"] == "inspect" and out["selection_reason"] == "rule"
    assert out["reasons"][0].startswith(f"zero-tariff goods declared second-line-out: {VIN} on the zero-tariff register (import ZT-1")
    for did in ("IT-ZT-IN", "IT-ZT-REL", "IT-ZT-UNK"):
        assert not any("zero-tariff" in r for r in first[did]["reasons"]), did
    (letter,) = harness.dead_letters
    assert letter["reason"] == "schema-violation" and "needs latitude and longitude" in letter["error"]
    assert letter["source_topic"] == harness.settings.topic(topics.POSITIONS)

    expected = {"IT-ZT-OUT:1:zero-tariff-goods-leaving", f"{VIN}:{int((T0 + timedelta(seconds=-2)).timestamp())}:zero-tariff-left-island",
                f"{VIN}:{int((T0 + timedelta(seconds=-2)).timestamp())}:zero-tariff-away-too-long",
                f"{HULL}:{int((T0 + timedelta(seconds=-5)).timestamp())}:zero-tariff-left-island"}
    reader = assigned_reader(harness.settings, [topics.WARNINGS])
    warnings: dict[str, tuple[bytes, EarlyWarning]] = {}
    try:
        # The away-too-long warning comes from the timer once the allowed 8.64 s have passed since the exit.
        harness.read_until(lambda h: expected <= set(warnings) or _poll(reader, warnings), 90, "the early warnings")
    finally:
        reader.close()
    assert set(warnings) == expected
    key, goods = warnings["IT-ZT-OUT:1:zero-tariff-goods-leaving"]
    assert key == b"IT-ZT-OUT" and goods.severity.value == "high" and goods.subject_kind.value == "vehicle" and goods.subject_id == VIN
    assert any("zero-tariff import ZT-1 of 4600ZT0001" in e for e in goods.evidence)
    exit_id = int((T0 + timedelta(seconds=-2)).timestamp())
    key, left = warnings[f"{VIN}:{exit_id}:zero-tariff-left-island"]
    assert key == VIN.encode() and left.severity.value == "medium" and left.declaration_id is None
    _, away = warnings[f"{VIN}:{exit_id}:zero-tariff-away-too-long"]
    assert away.severity.value == "high" and away.raised_at >= T0 + timedelta(seconds=-2 + ALLOWED_DAYS * 86_400)
    _, vessel = warnings[f"{HULL}:{int((T0 + timedelta(seconds=-5)).timestamp())}:zero-tariff-left-island"]
    assert vessel.subject_kind.value == "vessel"

    text = worker.metrics_text()
    assert metric_value(text, "customs_positions_total", outcome="unregistered") == 1
    assert metric_value(text, "customs_positions_total", outcome="stale") == 1
    assert metric_value(text, "customs_early_warnings_total", severity="high", rule="zero-tariff-away-too-long") == 1


def _poll(reader, into: dict) -> bool:
    for msg in reader.consume(100, timeout=0.2):
        if not msg.error():
            warning = EarlyWarning.model_validate_json(msg.value())
            into[warning.warning_id] = (msg.key(), warning)
    return False
