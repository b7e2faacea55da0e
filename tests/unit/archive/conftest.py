"""Fixtures of the archive tests."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from clients import topics
from tests.unit.archive import fakes

EARLIER = (fakes.NOW - timedelta(days=3)).isoformat().replace("+00:00", "Z")
NASTY = b'{"declaration_id": "\x1b[31mD9\x00\xe2\x80\xae\xe2\x80\x8bgpj.exe", \xff\xfe\n\t"x": 1'


@pytest.fixture(scope="module")
def analyst_archive(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """D1 machine-checked for risk list RL/1, then inspected on a suspicious scan: found. D2 released
    with RL/1 and a watch entry. D3 (HAK-AIR) inspected on its score: nothing found. D4 inspected by a
    rule with RL/2 hit: found (its instruction redelivered). D5 is three days older. Shadow scores for
    D1..D4 (D1's redelivered); three bad declarations and two worker dead letters."""
    directory = tmp_path_factory.mktemp("archive")
    settings = fakes.archive_settings(directory)
    b = fakes.FakeBroker(settings)
    add = b.add
    add(topics.INSTRUCTIONS, "D1", fakes.instruction("D1", action="machine-check", selection_reason="risk-list", risk_hits=["RL/1"]))
    add(topics.INSTRUCTIONS, "D1", fakes.instruction("D1", "scan", "inspect", selection_reason="scan", risk_hits=["RL/1"]))
    add(topics.INSTRUCTIONS, "D2", fakes.instruction("D2", selection_reason="none", risk_hits=["RL/1", "WATCH/7"]))
    add(topics.INSTRUCTIONS, "D3", fakes.instruction("D3", action="inspect", port="HAK-AIR", risk_hits=[]))
    rule = fakes.instruction("D4", action="inspect", selection_reason="rule", risk_hits=["RL/2"])
    add(topics.INSTRUCTIONS, "D4", rule)
    add(topics.INSTRUCTIONS, "D4", rule)
    add(topics.INSTRUCTIONS, "D5", fakes.instruction("D5", action="inspect", risk_hits=["RL/2"], event_time=EARLIER))
    add(topics.INSPECTION_RESULTS, "D1", fakes.inspection("D1", found=True))
    add(topics.INSPECTION_RESULTS, "D1", fakes.inspection("D1", found=True))  # redelivered
    add(topics.INSPECTION_RESULTS, "D3", {**fakes.inspection("D3", found=False, port="HAK-AIR"), "instruction_id": "D3:1:declaration"})
    add(topics.INSPECTION_RESULTS, "D4", {**fakes.inspection("D4", found=True), "instruction_id": "D4:1:declaration"})
    add(topics.INSPECTION_RESULTS, "D5", {**fakes.inspection("D5", found=True), "instruction_id": "D5:1:declaration"})
    d1 = fakes.shadow("D1", 0.6, 0.9, champion_action="machine-check", challenger_action="inspect")
    add(topics.SHADOW_SCORES, "D1", d1)
    add(topics.SHADOW_SCORES, "D1", d1)
    add(topics.SHADOW_SCORES, "D2", fakes.shadow("D2", 0.3, 0.7, champion_action="release", challenger_action="machine-check"))
    add(topics.SHADOW_SCORES, "D3", fakes.shadow("D3", 0.85, 0.2, port="HAK-AIR", champion_action="inspect", challenger_action="release"))
    add(topics.SHADOW_SCORES, "D4", fakes.shadow("D4", 0.5, 0.5, champion_action="inspect", challenger_action="inspect"))
    add(topics.DECLARATIONS, "X1", b"{")
    add(topics.DECLARATIONS, "X2", NASTY)
    add(topics.DECLARATIONS, "X3", b'{"declaration_id": "' + b"A" * 5000 + b'"}')
    add(topics.DEAD_LETTERS, None, fakes.dead_letter(3))
    add(topics.DEAD_LETTERS, None, {**fakes.dead_letter(4), "value_b64": "!!not base64!!", "reason": "schema-violation"})
    fakes.archive_all(settings, b, records=22)
    return directory
