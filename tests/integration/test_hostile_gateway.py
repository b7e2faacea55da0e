"""A hostile or broken gateway against a real worker on each broker: 20,000 invented ports, clean
early scans that do not bind to their declaration, amendments that would lower a control or change
the enterprise or the port. Each test ends with the worker alive, every good declaration decided exactly once
and every bad record in the dead letters with its reason."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from clients import topics
from tests.integration.pipeline_harness import NOW, Harness, declaration, pipeline_settings, scan, write_policy

FLOOD = 20_000
SCAN_TIMEOUT_S = 4.0


@pytest.fixture
def harness(broker, unique_name, tmp_path):
    # Only a risk list selects (thresholds 1.0, no random selection); short scan deadline.
    policy = write_policy(
        tmp_path / "policy.yaml", version="it-hostile-1",
        thresholds={c: {"machine_check": 1.0, "inspect": 1.0} for c in ("aeo", "white-list", "general", "focus-list", "joint-penalty")},
        scenario_thresholds={}, random_selection={"share": 0.0, "action": "machine-check"},
        scan={"timeout_s": SCAN_TIMEOUT_S, "port_timeout_s": {}},
        capacity={"default": {"machine_check": None, "inspect": None}, "ports": {}, "bounds": {}},
    )
    h = Harness(pipeline_settings(broker.bootstrap_servers, unique_name, tmp_path, policy_file=policy), tmp_path)
    yield h
    h.close()


def exactly_once(h: Harness, expected: dict[str, str]) -> None:
    """Every expected declaration has one final instruction id, with the expected action."""
    finals = h.finals()
    assert {d: sorted(ids) for d, ids in finals.items() if len(ids) != 1} == {}
    assert {d: h.final_action(d) for d in expected} == expected


def test_twenty_thousand_invented_ports_are_dead_lettered_and_the_worker_goes_on(harness: Harness) -> None:
    worker = harness.start_worker()
    worker.wait_ready()
    for i in range(FLOOD):
        did = f"PORT-{i:05d}"
        harness.publish(topics.DECLARATIONS, did, {**declaration(did, "GEN1"), "port": f"GW-{i:05d}"})
    after = {f"AFTER-{i}": "release" for i in range(50)}
    for did in after:
        harness.publish(topics.DECLARATIONS, did, declaration(did, "GEN1"))
    harness.flush()

    harness.read_until(lambda h: set(after) <= set(h.finals()) and len(h.dead_letters) >= FLOOD, 240,
                       f"{FLOOD} dead letters and the declarations published after them")
    exactly_once(harness, after)
    assert {d["reason"] for d in harness.dead_letters} == {"unknown-port"}
    assert len({(d["partition"], d["offset"]) for d in harness.dead_letters}) == FLOOD
    assert not [i for i in harness.instructions if i["declaration_id"].startswith("PORT-")]
    assert worker.alive(), "the worker must survive a flood of invented ports"
    assert "GW-" not in worker.metrics_text()  # no metric series per invented port


def test_unbound_scans_and_hostile_amendments_never_lower_a_control(harness: Harness) -> None:
    worker = harness.start_worker()
    worker.wait_ready()
    entry = {"schema_version": 1, "entry_id": "RL-8517", "list_id": "JASC", "kind": "hs-prefix", "value": "8517",
             "action": "machine-check", "reason": "telephone sets under false origin", "source_agency": "anti-smuggling bureau",
             "valid_from": (datetime.now(UTC) - timedelta(days=1)).isoformat()}
    harness.publish(topics.RISK_LISTS, "RL-8517", entry)
    harness.flush()
    harness.read_until(lambda h: worker.metric("customs_risk_list_entries") >= 1, 60, "the risk-list entry to be active")

    # Clean scans published before their declarations (all of which the risk list sends to machine-check).
    two_hours_early = (datetime.fromisoformat(NOW) - timedelta(hours=2)).isoformat()
    early = {
        "OTHER-PORT": {"port": "YPU-SEA", "device_id": "YPU-SEA-XR01"},  # another port's registered scanner
        "UNREGISTERED": {"device_id": "HAK-SEA-XR99"},  # no such scanner at the port
        "TOO-EARLY": {"event_time": two_hours_early},
        "BINDS": {},  # a proper early scan still decides at once
    }
    for did, over in early.items():
        harness.publish(topics.SCANS, did, {**scan(did, "clean"), **over})
    harness.flush()
    for did in early:
        harness.publish(topics.DECLARATIONS, did, declaration(did, "GEN1"))
    # Amendments of pending machine-checks.
    harness.publish(topics.DECLARATIONS, "AMEND-ENT", declaration("AMEND-ENT", "GEN1"))
    harness.publish(topics.DECLARATIONS, "AMEND-HS", declaration("AMEND-HS", "GEN1"))
    harness.publish(topics.DECLARATIONS, "AMEND-PORT", declaration("AMEND-PORT", "GEN1"))
    harness.flush()
    pending = lambda h: {"AMEND-ENT", "AMEND-HS", "AMEND-PORT"} <= {i["declaration_id"] for i in h.instructions}  # noqa: E731 - a named wait condition
    harness.read_until(pending, 60, "the machine-checks of the declarations to amend")
    harness.publish(topics.DECLARATIONS, "AMEND-ENT", declaration("AMEND-ENT", "OTHER-ENT", revision=2))  # refused
    harness.publish(topics.DECLARATIONS, "AMEND-HS", {**declaration("AMEND-HS", "GEN1", revision=2), "hs_code": "847130"})  # off the list
    # Moved to another registered port, whose scanner then clears it (refused: the control stays at HAK-SEA).
    harness.publish(topics.DECLARATIONS, "AMEND-PORT", {**declaration("AMEND-PORT", "GEN1", revision=2), "port": "YPU-SEA"})
    harness.flush()

    def amended(h: Harness) -> bool:  # both revisions 2 handled: decided, or (AMEND-PORT) refused
        decided = {(i["declaration_id"], i["revision"]) for i in h.instructions}
        refused = any(d["reason"] == "port-changed" for d in h.dead_letters)
        return ("AMEND-HS", 2) in decided and (refused or ("AMEND-PORT", 2) in decided)

    harness.read_until(amended, 60, "revision 2 of AMEND-HS and of AMEND-PORT")
    harness.publish(topics.SCANS, "AMEND-HS", {**scan("AMEND-HS", "clean"), "scan_id": "S-AMEND-HS-2", "revision": 2})
    harness.publish(topics.SCANS, "AMEND-PORT", {**scan("AMEND-PORT", "clean"), "scan_id": "S-AMEND-PORT-2", "revision": 2,
                                                 "port": "YPU-SEA", "device_id": "YPU-SEA-XR01"})
    harness.flush()

    expected = {"OTHER-PORT": "inspect", "UNREGISTERED": "inspect", "TOO-EARLY": "inspect",  # the deadline, not the scan
                "BINDS": "release", "AMEND-ENT": "inspect", "AMEND-HS": "release", "AMEND-PORT": "inspect"}
    harness.read_until(lambda h: set(expected) <= set(h.finals()) and len(h.dead_letters) >= 5, 90,
                       "a final instruction for every declaration and 5 dead letters")
    exactly_once(harness, expected)
    finals = {i["declaration_id"]: i for i in harness.instructions if i["final"]}
    timed_out = ("OTHER-PORT", "UNREGISTERED", "TOO-EARLY", "AMEND-ENT", "AMEND-PORT")
    assert {d: finals[d]["stage"] for d in timed_out} == dict.fromkeys(timed_out, "timeout")
    assert (finals["AMEND-ENT"]["revision"], finals["AMEND-ENT"]["enterprise_id"]) == (1, "GEN1")
    assert (finals["AMEND-PORT"]["revision"], finals["AMEND-PORT"]["port"]) == (1, "HAK-SEA")
    assert not [i for i in harness.instructions if i["declaration_id"] == "AMEND-PORT" and i["revision"] == 2]
    kept = next(i for i in harness.instructions if i["declaration_id"] == "AMEND-HS" and i["revision"] == 2 and i["stage"] == "declaration")
    assert kept["action"] == "machine-check" and "machine-check of revision 1 kept" in kept["reasons"][-1]
    assert (finals["AMEND-HS"]["revision"], finals["AMEND-HS"]["stage"]) == (2, "scan")
    assert sorted(d["reason"] for d in harness.dead_letters) == [
        "enterprise-changed", "port-changed", "scan-implausible-time", "scan-port-mismatch", "scan-unknown-device"]
    assert worker.alive()
