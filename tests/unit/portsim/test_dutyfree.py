"""Simulated duty-free shopping: planted violations, their truth, and the per-rule backtest."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from decision.dutyfree_backtest import DutyFreeFileError, duty_free_report, format_duty_free, load_duty_free
from policy.config import DutyFree
from policy.dutyfree import QUOTA_EXCEEDED, RULES
from portsim.dutyfree import duty_free_path, write_for_history

START = datetime(2025, 9, 1, tzinfo=UTC)


def test_every_planted_violation_is_caught_without_false_alarms(tmp_path: Path) -> None:
    path, purchases, planted = write_for_history(7, tmp_path / "h.parquet", 40_000, START, 1.0)
    assert path == duty_free_path(tmp_path / "h.parquet") == tmp_path / "h.duty-free.jsonl"
    loaded, truth = load_duty_free(path)
    assert len(loaded) == purchases and len(truth) == planted
    report = duty_free_report(DutyFree(), loaded, truth)
    for rule in RULES:
        figures = report["by_rule"][rule]
        assert figures["planted"] >= 1, rule
        assert figures["caught"] == figures["planted"] and figures["missed"] == 0 and figures["false_alarms"] == 0, rule
    assert "duty-free-linked-shoppers" in format_duty_free(report)
    # The same seed gives the same file.
    again, _, _ = write_for_history(7, tmp_path / "g.parquet", 40_000, START, 1.0)
    assert again.read_bytes() == path.read_bytes()


def test_a_looser_policy_misses_what_was_planted(tmp_path: Path) -> None:
    path, _, _ = write_for_history(3, tmp_path / "h.parquet", 20_000, START, 1.0)
    loaded, truth = load_duty_free(path)
    loose = DutyFree(yearly_quota_cny=5_000_000)
    figures = duty_free_report(loose, loaded, truth)["by_rule"][QUOTA_EXCEEDED]
    assert figures["planted"] >= 1 and figures["caught"] == 0 and figures["missed"] == figures["planted"]


def test_a_bad_line_is_one_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "x.duty-free.jsonl"
    path.write_bytes(b'{"purchase": {"purchase_id": "P1"}}\n')
    with pytest.raises(DutyFreeFileError, match="line 1"):
        load_duty_free(path)
    path.write_bytes(b"not json\n")
    with pytest.raises(DutyFreeFileError, match="line 1"):
        load_duty_free(path)
    with pytest.raises(DutyFreeFileError, match="cannot read"):
        load_duty_free(tmp_path / "missing.jsonl")
