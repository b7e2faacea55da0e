"""Offshore duty-free shopping end to end on both brokers: purchases over a shopper's yearly quota
raise one early warning, many shoppers tied to one payer raise a resale warning, a departure
declaration of either kind of flagged shopper is inspected with the reason and warned of (a clean
shopper's is not), and hostile purchases are dead-lettered with the reason."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from audit.explain import explain
from clients import topics
from clients.readers import assigned_reader
from policy.dutyfree import FLAGGED_DEPARTURE, LINKED_SHOPPERS, QUOTA_EXCEEDED
from schemas import EarlyWarning
from tests.integration.pipeline_harness import Harness, declaration, metric_value, pipeline_settings, write_policy

AT = (datetime.now(UTC) - timedelta(minutes=1)).isoformat()
RESELLERS = [f"IT-DF-RS{n}" for n in range(4)]  # four shoppers on one payer: over a limit of three


def purchase(pid: str, shopper: str, total: float, *, code: str = "G1", payer: str | None = None, quantity: int = 1,
             items: int = 1) -> dict:
    lines = [{"category": "other", "goods_code": f"{code}-{n}", "quantity": quantity,
              "unit_price_cny": round(total / quantity / items, 2)} for n in range(items)]
    record = {"purchase_id": pid, "shop_id": "IT-SHOP", "shopper_token": shopper,
              "identity_check": {"token": f"IC-{pid}", "method": "face", "matched": True},
              "items": lines, "total_cny": total, "purchased_at": AT}
    if payer is not None:
        record["payer_token"] = payer
    return record


def departure(did: str, shopper: str) -> dict:
    return {**declaration(did, "IT-DF-E", "duty-free-shopping"), "shopper_token": shopper}


@pytest.fixture
def harness(broker, unique_name, tmp_path):
    policy = write_policy(tmp_path / "policy.yaml", version="it-duty-free", random_selection={"share": 0.0, "action": "machine-check"},
                          capacity={"default": {"machine_check": None, "inspect": None}, "ports": {}, "bounds": {}},
                          duty_free={"max_shoppers_per_link": 3})
    h = Harness(pipeline_settings(broker.bootstrap_servers, unique_name, tmp_path, policy_file=policy), tmp_path)
    yield h
    h.close()


def test_quota_and_resale_warnings_hold_the_departure_and_hostile_purchases_are_dead_lettered(harness: Harness) -> None:
    worker = harness.start_worker()
    worker.wait_ready()
    for n in range(2):  # 120,000 CNY in the year: over the 100,000 quota on the second purchase
        harness.publish(topics.DUTY_FREE_PURCHASES, "IT-DF-OVER", purchase(f"IT-DF-P{n}", "IT-DF-OVER", 60_000.0, code=f"Q{n}"))
    harness.publish(topics.DUTY_FREE_PURCHASES, "IT-DF-OVER", purchase("IT-DF-P1", "IT-DF-OVER", 60_000.0, code="Q1"))  # redelivered
    for n, shopper in enumerate(RESELLERS):
        harness.publish(topics.DUTY_FREE_PURCHASES, shopper, purchase(f"IT-DF-R{n}", shopper, 800.0, payer="IT-DF-PAYER"))
    harness.publish(topics.DUTY_FREE_PURCHASES, "IT-DF-CLEAN", purchase("IT-DF-C1", "IT-DF-CLEAN", 5_000.0, payer="IT-DF-OWN"))
    # Hostile: too many goods lines, an absurd amount, not JSON at all.
    harness.publish(topics.DUTY_FREE_PURCHASES, "IT-DF-H1", purchase("IT-DF-H1", "IT-DF-H1", 5_100.0, items=51))
    harness.publish(topics.DUTY_FREE_PURCHASES, "IT-DF-H2", purchase("IT-DF-H2", "IT-DF-H2", 1e15))
    harness.publish(topics.DUTY_FREE_PURCHASES, "IT-DF-H3", b"{not json")
    harness.flush()

    harness.read_until(lambda h: len(h.dead_letters) >= 3, 90, "the hostile purchases' dead letters")
    reasons = sorted(d["reason"] for d in harness.dead_letters)
    assert reasons == ["invalid-json", "schema-violation", "schema-violation"], harness.dead_letters
    errors = " | ".join(d["error"] for d in harness.dead_letters)
    assert "items" in errors and "total_cny" in errors, errors
    assert all(d["source_topic"] == harness.settings.topic(topics.DUTY_FREE_PURCHASES) for d in harness.dead_letters)

    # The warnings: one quota warning (the redelivery re-sends the same id), one resale warning.
    reader = assigned_reader(harness.settings, [topics.WARNINGS])
    warnings: list[tuple[bytes, EarlyWarning]] = []
    try:
        harness.read_until(lambda h: _poll(reader, warnings) or {w.rule for _, w in warnings} >= {QUOTA_EXCEEDED, LINKED_SHOPPERS},
                           90, "the quota and resale warnings")
    finally:
        reader.close()
    by_id = {w.warning_id: w for _, w in warnings}
    quota = next(w for w in by_id.values() if w.rule == QUOTA_EXCEEDED)
    assert quota.subject_id == "IT-DF-OVER" and quota.warning_id.startswith("IT-DF-OVER:") and quota.severity.value == "high"
    assert "120,000.00 CNY spent" in quota.evidence[0]
    resale = next(w for w in by_id.values() if w.rule == LINKED_SHOPPERS)
    assert resale.subject_id == "IT-DF-PAYER" and resale.subject_kind.value == "shopper-link"
    assert resale.warning_id.startswith("payer:IT-DF-PAYER:") and "4 shoppers tied to one payer" in resale.evidence[0]
    assert {w.rule for w in by_id.values()} == {QUOTA_EXCEEDED, LINKED_SHOPPERS}  # nothing for the clean shopper

    # Departures read the standings (a GlobalTable): wait until the worker holds all five flagged shoppers.
    harness.read_until(lambda h: metric_value(worker.metrics_text(), "customs_duty_free_flagged_shoppers") >= 1 + len(RESELLERS),
                       60, "the standings of the flagged shoppers")
    harness.publish(topics.DECLARATIONS, "IT-DF-D-OVER", departure("IT-DF-D-OVER", "IT-DF-OVER"))
    harness.publish(topics.DECLARATIONS, "IT-DF-D-RS", departure("IT-DF-D-RS", RESELLERS[0]))
    harness.publish(topics.DECLARATIONS, "IT-DF-D-CLEAN", departure("IT-DF-D-CLEAN", "IT-DF-CLEAN"))
    harness.flush()
    decided = {"IT-DF-D-OVER", "IT-DF-D-RS", "IT-DF-D-CLEAN"}
    harness.read_until(lambda h: decided <= {i["declaration_id"] for i in h.instructions}, 90, "the departure instructions")
    first = {i["declaration_id"]: i for i in harness.instructions if i["stage"] == "declaration"}
    over = first["IT-DF-D-OVER"]
    assert over["action"] == "inspect" and over["selection_reason"] == "rule"
    assert over["reasons"][0].startswith("duty-free shopper IT-DF-OVER: yearly duty-free quota exceeded")
    reseller = first["IT-DF-D-RS"]
    assert reseller["action"] == "inspect" and any("resale pattern" in r for r in reseller["reasons"])
    assert not any("duty-free shopper" in r for r in first["IT-DF-D-CLEAN"]["reasons"])

    # Each held departure raises its own warning, keyed by and tied to the departure declaration,
    # and explain of the departure finds it; the clean one raises none.
    reader = assigned_reader(harness.settings, [topics.WARNINGS])
    departures: list[tuple[bytes, EarlyWarning]] = []
    held = {"IT-DF-D-OVER", "IT-DF-D-RS"}
    try:
        harness.read_until(lambda h: _poll(reader, departures)
                           or held <= {w.declaration_id for _, w in departures if w.rule == FLAGGED_DEPARTURE},
                           60, "the departures' warnings")
    finally:
        reader.close()
    tied = {w.declaration_id: (key, w) for key, w in departures if w.rule == FLAGGED_DEPARTURE}
    assert set(tied) == held, tied
    key, over_warning = tied["IT-DF-D-OVER"]
    assert key == b"IT-DF-D-OVER" and over_warning.subject_id == "IT-DF-OVER" and over_warning.port == over["port"]
    assert over_warning.evidence[1].startswith("yearly duty-free quota exceeded")
    doc, _ = explain(harness.settings, "IT-DF-D-OVER", timeout_s=30.0, use_archive=False)
    assert [w["rule"] for w in doc["warnings"]] == [FLAGGED_DEPARTURE], doc["warnings"]
    text = worker.metrics_text()
    assert metric_value(text, "customs_early_warnings_total", severity="high", rule=FLAGGED_DEPARTURE) == 2
    assert metric_value(text, "customs_duty_free_purchases_total", outcome="duplicate") == 1
    assert metric_value(text, "customs_duty_free_purchases_total", outcome="folded") == 2 + len(RESELLERS) + 1


def _poll(reader, into: list) -> bool:
    for msg in reader.consume(100, timeout=0.2):
        if not msg.error():
            into.append((msg.key(), EarlyWarning.model_validate_json(msg.value())))
    return False
