"""Why a duty-free departure or a second-line-out declaration was selected, years later: `riskctl
explain` shows the archived warnings about the declaration's shopper and goods as they stood when it
was decided (not later ones, not other subjects', not the declaration's own twice)."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest

from archive.queries import Archive
from cli.main import main
from clients import topics
from tests.unit.archive import fakes

VIN = "LSVAU2180N2183294"


@pytest.fixture(scope="module")
def archive_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("archive")
    settings = fakes.archive_settings(directory)
    b = fakes.FakeBroker(settings)
    b.add(topics.DECLARATIONS, "DF1", fakes.declaration("DF1", scenario="duty-free-shopping", shopper_token="SH1"))
    b.add(topics.INSTRUCTIONS, "DF1", fakes.instruction("DF1", action="inspect", selection_reason="rule",
                                                        reasons=["duty-free shopper SH1: over the yearly quota"]))
    b.add(topics.DECLARATIONS, "ZT1", fakes.declaration("ZT1", direction="second-line-out",
                                                        goods_identifiers=[{"kind": "vin", "value": VIN.lower()}]))
    b.add(topics.INSTRUCTIONS, "ZT1", fakes.instruction("ZT1", action="inspect", selection_reason="rule"))
    b.add(topics.WARNINGS, "ZT1", {**fakes.warning("ZT1", rule="zero-tariff-goods-leaving"), "subject_kind": "vehicle",
                                   "subject_id": VIN})
    b.add(topics.WARNINGS, "SH1", fakes.subject_warning("SH1:q", "shopper", "SH1", "duty-free-quota-exceeded", -30,
                                                  "spent 120000 CNY this year, quota 100000"))
    b.add(topics.WARNINGS, "SH1", fakes.subject_warning("SH1:q", "shopper", "SH1", "duty-free-quota-exceeded", -30,
                                                  "spent 120000 CNY this year, quota 100000"))  # redelivered
    b.add(topics.WARNINGS, "SH1", fakes.subject_warning("SH1:late", "shopper", "SH1", "duty-free-repeat-goods", 5, "after the decision"))
    b.add(topics.WARNINGS, "SH2", fakes.subject_warning("SH2:q", "shopper", "SH2", "duty-free-quota-exceeded", -1, "another shopper"))
    b.add(topics.WARNINGS, VIN, fakes.subject_warning(f"{VIN}:away", "vehicle", VIN, "zero-tariff-away-too-long", -48,
                                                "off the island since 2026-01-02: 130.0 days, more than the 120 allowed"))
    fakes.archive_all(settings, b, records=10)
    return directory


def explain(archive_dir: Path, did: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> tuple[dict, str]:
    monkeypatch.setenv("ARCHIVE_DIR", str(archive_dir))
    assert main(["explain", did, "--archive-only", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert main(["explain", did, "--archive-only"]) == 0
    return doc, capsys.readouterr().out


def test_a_duty_free_departure_shows_the_shoppers_warnings_up_to_its_decision(archive_dir: Path, monkeypatch: pytest.MonkeyPatch,
                                                                               capsys: pytest.CaptureFixture[str]) -> None:
    doc, text = explain(archive_dir, "DF1", monkeypatch, capsys)
    assert [(w["warning_id"], w["rule"], w["evidence"]) for w in doc["subject_warnings"]] == [
        ("SH1:q", "duty-free-quota-exceeded", ["spent 120000 CNY this year, quota 100000"])]
    assert ("earlier warning on shopper SH1 (high, duty-free-quota-exceeded): spent 120000 CNY this year, quota 100000"
            in text), text
    assert "duty-free shopper SH1: over the yearly quota" in text and "another shopper" not in text


def test_a_second_line_out_declaration_shows_the_vehicles_absence(archive_dir: Path, monkeypatch: pytest.MonkeyPatch,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    doc, text = explain(archive_dir, "ZT1", monkeypatch, capsys)
    assert [w["rule"] for w in doc["warnings"]] == ["zero-tariff-goods-leaving"]
    assert [(w["subject_kind"], w["subject_id"], w["rule"]) for w in doc["subject_warnings"]] == [
        ("vehicle", VIN, "zero-tariff-away-too-long")]
    assert f"earlier warning on vehicle {VIN} (high, zero-tariff-away-too-long): off the island since" in text


def test_no_subjects_or_nothing_before_the_decision_is_no_warning(archive_dir: Path) -> None:
    archive = Archive(archive_dir)
    assert archive.subject_warnings([], fakes.NOW) == []
    assert archive.subject_warnings(["SH1"], fakes.NOW - timedelta(days=2)) == []
    assert [w["warning_id"] for w in archive.subject_warnings(["SH1", "SH2", VIN], fakes.NOW + timedelta(hours=6))] == [
        "SH1:late", "SH2:q", "SH1:q", f"{VIN}:away"]
