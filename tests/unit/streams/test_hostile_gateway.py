"""A hostile or broken gateway against the topology, without a broker: invented ports, scans that do
not bind to their declaration, amendments that would lower a control or change the enterprise."""

from __future__ import annotations

import base64
from datetime import timedelta

import orjson
import pytest

from clients import topics
from decision.services import Services
from policy.config import load_policy
from schemas.partitioning import partition_for
from streams import metrics
from streams.testing import TopologyDriver
from streams.topology import _capacity_key
from tests.hostile import batch, centralised, declaration, inspection, recent, scan
from tests.unit.factories import FIXTURE_POLICY
from tests.unit.streams.helpers import NOW, FixedScorer

LISTED = "RISKY-ENT"  # on a machine-check risk list: every declaration of it is machine-checked


@pytest.fixture
def driver() -> TopologyDriver:
    # The fixture policy with its capacity targets (the controller adapts per port) and no random selection.
    base = load_policy(FIXTURE_POLICY)
    policy = base.model_copy(update={"random_selection": base.random_selection.model_copy(update={"share": 0.0})})
    d = TopologyDriver(Services(policy, FixedScorer()))
    entry = {"schema_version": 1, "entry_id": "RL1", "list_id": "SMUGGLING", "kind": "enterprise", "value": LISTED,
             "action": "machine-check", "reason": "alert", "source_agency": "customs", "valid_from": (NOW - timedelta(days=1)).isoformat()}
    d.send(topics.RISK_LISTS, [(b"RL1", entry)])
    d.advance(1.0)  # the worker re-indexes the risk lists every second
    return d


def finals(d: TopologyDriver) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for i in d.instructions():
        if i["final"]:
            out.setdefault(i["declaration_id"], []).append(i)
    return out


def reasons(d: TopologyDriver) -> list[str]:
    return sorted(x["reason"] for x in d.dead_letters())


def test_invented_ports_are_dead_lettered_before_metrics_or_controller_state(driver):
    n = 2_000
    invented = [f"GW-{i:05d}" for i in range(n)]
    driver.send(topics.DECLARATIONS, [(f"U{i}".encode(), declaration(f"U{i}", port=p)) for i, p in enumerate(invented)])
    # The other ways a port comes in: a gateway batch item, a centralised declaration, a scan, an inspection result.
    ok, bad = "B-OK", "B-BAD"
    for did, port in ((ok, "HAK-SEA"), (bad, "GW-BATCH")):
        envelope = batch(f"ENV-{did}", [declaration(did, port=port)])
        driver.send(topics.DECLARATION_BATCHES, [(did.encode(), envelope)], partition=partition_for(did.encode(), 4))
    driver.send(topics.CENTRALISED_DECLARATIONS, [(b"C-BAD", centralised("C-BAD", port="GW-CENTRAL"))])
    driver.send(topics.SCANS, [(b"S-BAD", scan("S-BAD", port="GW-SCAN", device_id="GW-SCAN-XR01"))])
    driver.send(topics.INSPECTION_RESULTS, [(b"I-BAD", inspection("I-BAD", port="GW-INSPECT"))])
    # Declarations after the flood are decided as usual.
    driver.send(topics.DECLARATIONS, [(f"G{i}".encode(), declaration(f"G{i}", port="YPU-SEA")) for i in range(20)])

    assert reasons(driver) == ["unknown-port"] * (n + 4)
    batch_letter = next(x for x in driver.dead_letters() if x["source_topic"].endswith(topics.DECLARATION_BATCHES))
    assert orjson.loads(base64.b64decode(batch_letter["value_b64"]))["declaration_id"] == bad  # the item, not the envelope
    assert set(finals(driver)) == {ok} | {f"G{i}" for i in range(20)}
    registered = set(load_policy(FIXTURE_POLICY).ports)
    labelled = {labels for metric in (metrics.EVENTS_IN, metrics.INSPECTION_RESULTS) for labels in metric._metrics}
    assert not [labels for labels in labelled if any(v.startswith("GW-") for v in labels)]
    for partition in range(driver.settings.partitions):
        raw = driver.topology.capacity.data.get(_capacity_key(partition))
        assert raw is None or set(orjson.loads(raw)["ports"]) <= registered
    driver.topology.publish_selection_rates(range(driver.settings.partitions))
    assert {port for port, _ in metrics.SELECTION_RATE._metrics} <= registered


@pytest.mark.parametrize("early, reason", [
    ({"port": "YPU-SEA", "device_id": "YPU-SEA-XR01"}, "scan-port-mismatch"),  # another port's registered scanner
    ({"event_time": recent(minutes=120)}, "scan-implausible-time"),  # two hours before the declaration
    ({"device_id": "HAK-SEA-XR99"}, "scan-unknown-device"),  # not registered at the port (refused on arrival)
    ({"device_id": "YPU-SEA-XR01"}, "scan-unknown-device"),  # registered, but at another port
])
def test_a_clean_early_scan_that_does_not_bind_releases_nothing(driver, early, reason):
    did = "MC1"
    driver.send(topics.SCANS, [(did.encode(), scan(did, verdict="clean", **early))])
    driver.send(topics.DECLARATIONS, [(did.encode(), declaration(did, enterprise=LISTED, event_time=recent(minutes=0)))])
    actions = [(i["stage"], i["action"]) for i in driver.instructions()]
    assert actions == [("declaration", "machine-check")]  # not released by the scan
    assert reasons(driver) == [reason]
    letter = driver.dead_letters()[0]
    assert letter["source_topic"] == driver.settings.topic(topics.SCANS)
    assert orjson.loads(base64.b64decode(letter["value_b64"]))["scan_id"] == f"S-{did}"
    # A proper scan then decides it; without one, the deadline would.
    driver.send(topics.SCANS, [(did.encode(), scan(did, scan_id="S-PROPER", verdict="clean", event_time=recent(minutes=0)))])
    assert [(i["stage"], i["action"], i["scan_id"]) for i in finals(driver)[did]] == [("scan", "release", "S-PROPER")]


def test_a_scan_that_does_not_bind_leaves_the_machine_check_to_its_deadline(driver):
    driver.send(topics.DECLARATIONS, [(b"MC2", declaration("MC2", enterprise=LISTED, event_time=recent(minutes=0)))])
    driver.send(topics.SCANS, [(b"MC2", scan("MC2", verdict="clean", port="YPU-SEA", device_id="YPU-SEA-XR01"))])
    assert "MC2" not in finals(driver) and reasons(driver) == ["scan-port-mismatch"]
    timeout = load_policy(FIXTURE_POLICY).scan.timeout_s
    driver.advance(timeout + 1)
    assert [(i["stage"], i["action"]) for i in finals(driver)["MC2"]] == [("timeout", "inspect")]


def test_amendments_never_lower_a_pending_control_and_never_change_the_enterprise(driver):
    pending = declaration("AM1", enterprise=LISTED)
    driver.send(topics.DECLARATIONS, [(b"AM1", pending)])
    # Revision 2 names another enterprise: refused, counted, the pending control stands.
    changed = orjson.dumps({**pending, "revision": 2, "enterprise_id": "CLEAN-ENT"})
    driver.send(topics.DECLARATIONS, [(b"AM1", changed)])
    assert reasons(driver) == ["enterprise-changed"]
    assert base64.b64decode(driver.dead_letters()[0]["value_b64"]) == changed  # the record as it came
    assert [(i["revision"], i["action"]) for i in driver.instructions()] == [(1, "machine-check")]
    # Revision 3 (same enterprise) is off the risk list's reach (say, the list entry was retracted):
    # on its own it would be released, but the machine-check is kept.
    driver.send(topics.RISK_LISTS, [(b"RL1", None)])
    driver.advance(1.0)
    driver.send(topics.DECLARATIONS, [(b"AM1", {**pending, "revision": 3})])
    third = driver.instructions()[-1]
    assert (third["revision"], third["action"], third["final"]) == (3, "machine-check", False)
    assert third["selection_reason"] == "risk-list" and "machine-check of revision 1 kept" in third["reasons"][-1]
    assert "AM1" not in finals(driver)
    driver.send(topics.SCANS, [(b"AM1", scan("AM1", revision=3, verdict="clean", event_time=recent(minutes=0)))])
    assert [(i["revision"], i["stage"], i["action"]) for i in finals(driver)["AM1"]] == [(3, "scan", "release")]


def test_an_amendment_moving_a_pending_control_to_another_port_is_refused_and_that_port_s_scanner_releases_nothing(driver):
    pending = declaration("AM2", enterprise=LISTED, event_time=recent(minutes=0))
    driver.send(topics.DECLARATIONS, [(b"AM2", pending)])
    moved = orjson.dumps({**pending, "revision": 2, "port": "YPU-SEA"})
    driver.send(topics.DECLARATIONS, [(b"AM2", moved)])
    assert reasons(driver) == ["port-changed"]
    assert base64.b64decode(driver.dead_letters()[0]["value_b64"]) == moved  # the record as it came
    driver.send(topics.SCANS, [(b"AM2", scan("AM2", revision=2, verdict="clean", port="YPU-SEA", device_id="YPU-SEA-XR01",
                                             event_time=recent(minutes=0)))])
    assert "AM2" not in finals(driver)  # kept for a revision 2 that never counts
    driver.advance(load_policy(FIXTURE_POLICY).scan.timeout_s + 1)
    assert [(i["revision"], i["port"], i["stage"], i["action"]) for i in finals(driver)["AM2"]] == [(1, "HAK-SEA", "timeout", "inspect")]
