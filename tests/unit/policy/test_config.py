"""The policy file format: the shipped default, the documented example, and its checks."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from policy.config import PolicyError, load_policy
from schemas import CreditClass

README = Path(__file__).resolve().parents[3] / "policy" / "README.md"


def test_shipped_default_is_valid_and_has_capacity_targets_and_bounds():
    p = load_policy()
    assert p.capacity.targets_for("YPU-SEA").machine_check == 0.07
    assert p.capacity.targets_for("HAK-SEA").inspect == p.capacity.default.inspect  # falls back per lane
    aeo = p.capacity.bounds_for(CreditClass.AEO)
    assert aeo.machine_check.min == p.thresholds[CreditClass.AEO].machine_check
    focus = p.capacity.bounds_for(CreditClass.FOCUS_LIST)
    assert focus.inspect.max == p.thresholds[CreditClass.FOCUS_LIST].inspect


def test_readme_example_is_a_valid_policy(tmp_path):
    example = re.search(r"```yaml\n(.*?)```", README.read_text(encoding="utf-8"), re.S)
    assert example is not None
    path = tmp_path / "example.yaml"
    path.write_text(example.group(1))
    assert load_policy(path).scan.timeout_for("BAR-AIR") == 60.0


@pytest.mark.parametrize("patch,field", [
    ("capacity: {default: {machine_check: 0}}", "capacity.default.machine_check"),
    ("capacity: {bounds: {general: {inspect: {min: 0.9, max: 0.8}}}}", "capacity.bounds.general.inspect"),
    ("capacity: {controller: {gain_p: -1}}", "capacity.controller.gain_p"),
    ("batch: {allowed_classes: [gold]}", "batch.allowed_classes.0"),
    ("capacity: {targets: {}}", "capacity.targets"),
])
def test_errors_are_one_line_and_name_the_field(tmp_path, patch, field):
    base = "version: x\nseed: 1\nthresholds: {aeo: {machine_check: 0.9, inspect: 0.98}, white-list: {machine_check: 0.7, inspect: 0.9}, " \
           "general: {machine_check: 0.5, inspect: 0.85}, focus-list: {machine_check: 0.3, inspect: 0.6}, " \
           "joint-penalty: {machine_check: 0, inspect: 0.4}}\n"
    path = tmp_path / "p.yaml"
    path.write_text(base + patch + "\n")
    with pytest.raises(PolicyError) as info:
        load_policy(path)
    assert field in str(info.value) and "\n" not in str(info.value)
