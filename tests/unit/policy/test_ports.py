"""The port and device register: the simulator's office is registered, and nothing per port grows
with ports a gateway invents (capacity controller state and its changelog record)."""

from __future__ import annotations

import orjson
import pytest

from policy.capacity import CapacityController
from policy.config import MAX_PORTS, Policy, PolicyError, load_policy
from portsim import world
from schemas import Action
from tests.unit.factories import FIXTURE_POLICY


@pytest.mark.parametrize("policy_file", [None, FIXTURE_POLICY], ids=["shipped", "fixture"])
def test_every_simulated_port_and_device_is_registered(policy_file):
    policy = load_policy(policy_file)
    assert set(world.PORT_IDS) <= set(policy.ports)
    for port in world.PORTS:
        for device_id, _ in port.devices:
            assert policy.knows_device(port.port_id, device_id), (port.port_id, device_id)
    # A device is registered at its own port only.
    assert not policy.knows_device("HAK-SEA", "YPU-SEA-XR01") and not policy.knows_device("NOWHERE", "HAK-SEA-XR01")


def test_a_policy_without_a_register_or_naming_unregistered_ports_is_refused(tmp_path):
    raw = load_policy().model_dump(mode="json")
    for change, field in [
        (lambda r: r.pop("ports"), "ports"),
        (lambda r: r["capacity"]["ports"].update({"ELSEWHERE": {"machine_check": 0.1}}), "capacity.ports"),
        (lambda r: r["scan"]["port_timeout_s"].update({"ELSEWHERE": 60}), "scan.port_timeout_s"),
        (lambda r: r.update(ports={f"P{i}": {"devices": []} for i in range(MAX_PORTS + 1)}), "ports"),
    ]:
        bad = orjson.loads(orjson.dumps(raw))
        change(bad)
        path = tmp_path / "p.yaml"
        path.write_bytes(orjson.dumps(bad))  # JSON is YAML
        with pytest.raises(PolicyError, match=field):
            load_policy(path)


def _full_controller(policy: Policy) -> CapacityController:
    ctrl = CapacityController(policy.capacity, policy.ports)
    for port in policy.ports:
        for action in (Action.RELEASE, Action.MACHINE_CHECK, Action.INSPECT):
            ctrl.observe(port, action)
    return ctrl


def test_the_controller_holds_registered_ports_only_and_its_record_stays_small():
    policy = load_policy()
    ctrl = _full_controller(policy)
    registered_only = ctrl.to_bytes()
    for i in range(20_000):  # a hostile gateway's invented ports
        ctrl.observe(f"X{i:05d}", Action.MACHINE_CHECK)
    assert ctrl.ports() == sorted(policy.ports)
    assert ctrl.to_bytes() == registered_only
    # Bounded by the register: about 120 bytes per port, so even a full register of MAX_PORTS
    # ports stays far below the broker's 1 MB record limit.
    per_port = len(registered_only) / len(policy.ports)
    assert per_port < 160 and per_port * MAX_PORTS < 256 * 1024


def test_a_restored_record_keeps_registered_ports_only():
    policy = load_policy()
    ctrl = _full_controller(policy)
    # A record written before the register existed: thousands of ports, some of them registered.
    doc = orjson.loads(ctrl.to_bytes())
    saved = doc["ports"]["HAK-SEA"]
    doc["ports"].update({f"X{i:05d}": saved for i in range(5_000)})
    restored = CapacityController.from_bytes(orjson.dumps(doc), policy.capacity, policy.ports)
    assert restored.ports() == sorted(policy.ports)
    assert restored.to_bytes() == ctrl.to_bytes()
