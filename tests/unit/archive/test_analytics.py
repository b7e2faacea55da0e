"""The analyst's figures from an archive written by the real sink: risk-list entries, rules, selection
rates, champion against challenger, and dead letters with safe previews."""

from __future__ import annotations

import base64
import json
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from archive.analytics import (
    MAX_DEAD_LETTERS,
    dead_letters,
    model_comparison,
    payload_preview,
    risk_list_performance,
    rule_performance,
    selection_rates,
)
from policy.config import load_policy
from tests.unit.archive import fakes

TODAY = fakes.NOW.date()


def test_risk_list_entries_count_hits_once_and_their_inspections(analyst_archive: Path) -> None:
    rows = risk_list_performance(TODAY, TODAY, archive_dir=analyst_archive)
    assert rows == [
        {"list_id": "RL", "entry_id": "1", "hits": 2, "inspected": 1, "found": 1, "hit_rate": 1.0},
        {"list_id": "RL", "entry_id": "2", "hits": 1, "inspected": 1, "found": 1, "hit_rate": 1.0},
        {"list_id": "WATCH", "entry_id": "7", "hits": 1, "inspected": 0, "found": 0, "hit_rate": None},
    ]
    wider = {(r["list_id"], r["entry_id"]): r["hits"] for r in risk_list_performance(TODAY - timedelta(days=5), TODAY,
                                                                                      archive_dir=analyst_archive)}
    assert wider[("RL", "2")] == 2
    assert risk_list_performance(TODAY, TODAY, port="HAK-AIR", archive_dir=analyst_archive) == []
    json.dumps(rows)


def test_rules_count_what_they_selected_and_what_was_found(analyst_archive: Path) -> None:
    rows = {r.pop("selection_reason"): r for r in rule_performance(TODAY, TODAY, archive_dir=analyst_archive)}
    assert rows == {
        "risk-list": {"selected": 1, "inspected": 1, "found": 1, "hit_rate": 1.0},
        "scan": {"selected": 1, "inspected": 1, "found": 1, "hit_rate": 1.0},
        "model-threshold": {"selected": 1, "inspected": 1, "found": 0, "hit_rate": 0.0},
        "rule": {"selected": 1, "inspected": 1, "found": 1, "hit_rate": 1.0},
    }
    air = rule_performance(TODAY, TODAY, port="HAK-AIR", archive_dir=analyst_archive)
    assert [(r["selection_reason"], r["selected"], r["found"]) for r in air] == [("model-threshold", 1, 0)]


def test_selection_rates_per_port_and_lane_against_the_policy_targets(analyst_archive: Path) -> None:
    rows = selection_rates(TODAY, TODAY, archive_dir=analyst_archive, policy=load_policy())
    assert rows == [
        {"port": "HAK-AIR", "lane": "machine-check", "declarations": 1, "selected": 0, "rate": 0.0, "target": 0.05},
        {"port": "HAK-AIR", "lane": "inspect", "declarations": 1, "selected": 1, "rate": 1.0, "target": 0.015},
        {"port": "HAK-SEA", "lane": "machine-check", "declarations": 3, "selected": 1, "rate": round(1 / 3, 6), "target": 0.06},
        {"port": "HAK-SEA", "lane": "inspect", "declarations": 3, "selected": 1, "rate": round(1 / 3, 6), "target": 0.015},
    ]
    assert [r["port"] for r in selection_rates(TODAY, TODAY, port="HAK-SEA", archive_dir=analyst_archive)] == ["HAK-SEA"] * 2


def test_champion_and_challenger_on_realised_inspections(analyst_archive: Path) -> None:
    doc = model_comparison(TODAY, TODAY, archive_dir=analyst_archive)
    assert (doc["scored"], doc["inspected"], doc["agreement_rate"]) == (4, 3, 0.25)
    assert doc["pairs"] == [{"champion_version": "m1/general", "challenger_version": "m2/general", "scored": 4, "inspected": 3,
                             "agreement_rate": 0.25}]
    models = {m.pop("role"): m for m in doc["models"]}
    # Champion: selected D1, D3, D4, all inspected, D1 and D4 found; its scores rank the one miss highest.
    assert models["champion"] == {"model_version": "m1/general", "scored": 4, "inspected": 3, "selected": 3,
                                  "selected_inspected": 3, "found": 2, "hit_rate": round(2 / 3, 6), "auc": 0.0}
    # Challenger: selected D1, D2, D4; D2 was never inspected; its scores separate the finds perfectly.
    assert models["challenger"] == {"model_version": "m2/general", "scored": 4, "inspected": 3, "selected": 3,
                                    "selected_inspected": 2, "found": 2, "hit_rate": 1.0, "auc": 1.0}
    json.dumps(doc)
    empty = model_comparison(TODAY - timedelta(days=9), TODAY - timedelta(days=8), archive_dir=analyst_archive)
    assert (empty["scored"], empty["agreement_rate"], empty["pairs"], empty["models"]) == (0, None, [], [])


def test_dead_letters_newest_first_with_plain_previews(analyst_archive: Path) -> None:
    rows = dead_letters(TODAY, TODAY, archive_dir=analyst_archive)
    assert len(rows) == 5
    stamps = [datetime.fromisoformat(r["received_at"]) for r in rows]
    assert stamps == sorted(stamps, reverse=True)
    mine = {r["offset"]: r for r in rows if r["source"] == "customs.declarations" and r["origin"] == "archive"}
    assert mine[0]["payload_preview"] == "{" and mine[0]["reason"] == "invalid-json" and mine[0]["key_preview"] == "X1"
    nasty = mine[1]["payload_preview"]
    assert nasty is not None and "\ufffd" in nasty and "D9gpj.exe" in nasty
    assert not any(ord(c) < 32 or c in "\u202e\u200b\x7f" for c in nasty)
    long = mine[2]["payload_preview"]
    assert long is not None and len(long) <= 301 and long.endswith("\u2026")
    worker = {r["reason"]: r for r in rows if r["origin"] == "worker"}
    assert worker["invalid-json"]["payload_preview"] == "x" and worker["schema-violation"]["payload_preview"] is None
    schema = [r for r in rows if r["reason"] == "schema-violation"]
    assert dead_letters(TODAY, TODAY, reason="schema-violation", archive_dir=analyst_archive) == schema and len(schema) == 2
    assert dead_letters(TODAY, TODAY, reason="schema-violation", limit=1, archive_dir=analyst_archive) == schema[:1]
    json.dumps(rows)


def test_dead_letter_queries_are_bounded(analyst_archive: Path) -> None:
    for bad in (0, MAX_DEAD_LETTERS + 1):
        with pytest.raises(ValueError, match="limit"):
            dead_letters(TODAY, TODAY, limit=bad, archive_dir=analyst_archive)
    with pytest.raises(ValueError, match="reason"):
        dead_letters(TODAY, TODAY, reason="r" * 65, archive_dir=analyst_archive)


def test_payload_preview_is_plain_bounded_text() -> None:
    def b64(raw: bytes) -> str:
        return base64.b64encode(raw).decode()

    assert payload_preview(b64(b"line1\nline2\ttab\r\x00\x07\x1b[0m")) == "line1 line2 tab [0m"
    assert payload_preview(b64("caf\u00e9 \u202eevil\u2066".encode() + b"\xc3")) == "caf\u00e9 evil\ufffd"
    assert payload_preview(b64(b"a" * 10), max_chars=5) == "aaaa\u2026"
    assert payload_preview(None) is None and payload_preview("%%%") is None


def test_the_model_comparison_takes_the_port_filter(analyst_archive: Path) -> None:
    sea = model_comparison(TODAY, TODAY, port="HAK-SEA", archive_dir=analyst_archive)
    assert (sea["port"], sea["scored"], sea["inspected"], sea["agreement_rate"]) == ("HAK-SEA", 3, 2, round(1 / 3, 6))
    champion = next(m for m in sea["models"] if m["role"] == "champion")
    assert (champion["scored"], champion["selected_inspected"], champion["found"]) == (3, 2, 2)
    air = model_comparison(TODAY, TODAY, port="HAK-AIR", archive_dir=analyst_archive)
    assert (air["scored"], air["inspected"], air["agreement_rate"]) == (1, 1, 0.0)
    assert model_comparison(TODAY, TODAY, archive_dir=analyst_archive)["port"] is None
