"""Answers from the archive: history, report, and `riskctl explain` / `riskctl report` with no broker."""

from __future__ import annotations

import json
import time
from datetime import timedelta
from pathlib import Path

import polars as pl
import pytest

from archive.queries import Archive, history, report
from cli.main import main
from clients import topics
from tests.unit.archive import fakes

TODAY = fakes.NOW.date()


@pytest.fixture(scope="module")
def archive_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An archive written by the sink: D1 machine-checked then inspected (found), D2 released, D3 timed
    out; D1 has two revisions; the machine-check instruction arrives twice (a redelivery)."""
    directory = tmp_path_factory.mktemp("archive")
    settings = fakes.archive_settings(directory)
    broker = fakes.FakeBroker(settings)
    broker.add(topics.DECLARATIONS, "D1", fakes.declaration("D1"))
    broker.add(topics.DECLARATION_BATCHES, "B1", fakes.batch("B1", [fakes.declaration("D1", revision=2), fakes.declaration("D2")]))
    broker.add(topics.DECLARATIONS, "D3", fakes.declaration("D3", port="HAK-AIR"))
    check = fakes.instruction("D1", "declaration", "machine-check", revision=2, selection_reason="risk-list")
    broker.add(topics.INSTRUCTIONS, "D1", fakes.instruction("D1"))
    broker.add(topics.INSTRUCTIONS, "D1", check)
    broker.add(topics.INSTRUCTIONS, "D1", check)
    broker.add(topics.SCANS, "D1", fakes.scan("D1"))
    broker.add(topics.INSTRUCTIONS, "D1", fakes.instruction("D1", "scan", "inspect", revision=2, scan_id="S-D1",
                                                            selection_reason="scan"))
    broker.add(topics.INSTRUCTIONS, "D2", fakes.instruction("D2"))
    broker.add(topics.INSTRUCTIONS, "D3", fakes.instruction("D3", "declaration", "machine-check", port="HAK-AIR"))
    broker.add(topics.INSTRUCTIONS, "D3", fakes.instruction("D3", "timeout", "inspect", port="HAK-AIR", selection_reason="timeout"))
    broker.add(topics.INSPECTION_RESULTS, "D1", fakes.inspection("D1", found=True, duty=250.0))
    broker.add(topics.INSPECTION_RESULTS, "D1", fakes.inspection("D1", found=True, duty=250.0))  # redelivered
    broker.add(topics.INSPECTION_RESULTS, "D3", {**fakes.inspection("D3", found=False, port="HAK-AIR"), "instruction_id": "D3:1:timeout"})
    broker.add(topics.WARNINGS, "D1", fakes.warning("D1"))
    broker.add(topics.WARNINGS, "D1", fakes.warning("D1", rule="duty-due"))
    broker.add(topics.WARNINGS, "D1", fakes.warning("D1"))  # redelivered
    broker.add(topics.WARNING_REVIEWS, "D1", fakes.warning_review("D1"))
    broker.add(topics.DECLARATIONS, "X", b"{")
    fakes.archive_all(settings, broker, records=19)
    return directory


def test_history_has_every_revision_stage_scan_and_inspection_once(archive_dir: Path) -> None:
    h = history("D1", archive_dir)
    assert [(d["revision"], d["source"]) for d in h["declarations"]] == [(1, "declaration"), (2, "batch")]
    assert [i["instruction_id"] for i in h["instructions"]] == ["D1:1:declaration", "D1:2:declaration", "D1:2:scan"]
    assert h["instructions"][1]["selection_reason"] == "risk-list" and h["instructions"][1]["reasons"]
    assert h["instructions"][1]["policy_version"] == "p-1" and h["instructions"][1]["model_version"] == "m1/general"
    assert [s["scan_id"] for s in h["scans"]] == ["S-D1"]
    assert [(r["found"], r["duty_recovered"]) for r in h["inspection_results"]] == [(True, 250.0)]
    assert h["instructions"][0]["event_time"].endswith("Z")
    json.dumps(h)
    assert Archive(archive_dir / "nowhere").history("D1")["instructions"] == []


def test_report_counts_per_port_and_lane(archive_dir: Path) -> None:
    doc = report(TODAY, TODAY, archive_dir=archive_dir)
    assert doc["declarations"] == 3
    assert doc["instructions"] == {"inspect": 2, "machine-check": 2, "release": 2}
    assert doc["inspection_results"] == {"total": 2, "found": 1, "hit_rate": 0.5, "duty_recovered": 250.0}
    assert doc["scan_timeouts"] == 1
    assert doc["dead_letters"] == {"total": 1, "by_reason": {"invalid-json": 1}, "by_origin": {"archive": 1}}
    sea = doc["by_port"]["HAK-SEA"]
    assert sea["lanes"] == {"machine-check": 1, "release": 2} and sea["selection_rates"]["machine-check"] == round(1 / 3, 6)
    assert doc["by_port"]["HAK-AIR"]["scan_timeouts"] == 1
    only_air = report(TODAY, TODAY, port="HAK-AIR", archive_dir=archive_dir)
    assert list(only_air["by_port"]) == ["HAK-AIR"] and only_air["declarations"] == 1
    assert report(TODAY - timedelta(days=3), TODAY - timedelta(days=1), archive_dir=archive_dir)["declarations"] == 0


def test_explain_answers_from_the_archive_with_no_broker(archive_dir: Path, monkeypatch: pytest.MonkeyPatch,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:1")
    monkeypatch.setenv("ARCHIVE_DIR", str(archive_dir))
    started = time.monotonic()
    assert main(["explain", "D1", "--json", "--timeout", "1"]) == 0
    out, err = capsys.readouterr()
    assert time.monotonic() - started < 15
    doc = json.loads(out)
    assert doc["outcome"] == {"revision": 2, "action": "inspect", "stage": "scan", "final": True, "instruction_id": "D1:2:scan"}
    assert [r["revision"] for r in doc["revisions"]] == [1, 2] and doc["scans"][0]["verdict"] == "suspicious"
    assert doc["inspection_results"][0]["found"] is True
    assert sorted((w["rule"], w["verdict"] or "") for w in doc["warnings"]) == [("duty-due", ""), ("value-added-implausible", "confirmed")]
    assert "the topics were not read" in err

    assert main(["explain", "D1", "--archive-only"]) == 0
    text, err = capsys.readouterr()
    assert text.startswith("declaration D1: inspect (final, revision 2, stage scan)") and err == ""
    for line in ("revision 2 (gateway batch B1)", "scan S-D1 (revision 1): suspicious",
                 "inspection D1:1:scan at station ST1: found cigarettes",
                 "warning D1:1:value-added-implausible (high, value-added-implausible, revision 1): claimed ratio 2.00; "
                 "history 0.40", "-> confirmed at", "warning D1:1:duty-due (high, duty-due, revision 1)"):
        assert line in text


def test_explain_without_the_declaration_in_the_archive_needs_the_broker(archive_dir: Path, monkeypatch: pytest.MonkeyPatch,
                                                                         capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:1")
    monkeypatch.setenv("ARCHIVE_DIR", str(archive_dir))
    assert main(["explain", "D404", "--timeout", "0.5"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("riskctl explain: error:") and err.count("\n") == 1
    assert main(["explain", "D404", "--archive-only"]) == 1


def test_report_command(archive_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    day = TODAY.isoformat()
    assert main(["report", "--from", day, "--to", day, "--json", "--archive-dir", str(archive_dir)]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert {"declarations", "instructions", "inspection_results", "dead_letters", "by_port"} <= set(doc)
    assert main(["report", "--from", day, "--to", day, "--port", "HAK-SEA", "--archive-dir", str(archive_dir)]) == 0
    assert "HAK-SEA" in capsys.readouterr().out
    assert main(["report", "--from", day, "--to", day, "--archive-dir", str(archive_dir / "none")]) == 2
    assert "no archive" in capsys.readouterr().err


def test_archive_labels_command(archive_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    day = TODAY.isoformat()
    out = tmp_path / "labels.parquet"
    assert main(["export-labels", "--from", day, "--to", day, "--out", str(out), "--archive-dir", str(archive_dir)]) == 0
    assert "wrote 2 labelled declarations (1 frauds)" in capsys.readouterr().out
    labels = pl.read_parquet(out).sort("declaration_id")
    assert labels["declaration_id"].to_list() == ["D1", "D3"]
    assert labels["fraud"].to_list() == [1, 0] and labels["duty_recoverable"].to_list() == [250.0, 0.0]
    assert labels["revision"].to_list() == [2, 1]  # the latest revision of D1
    earlier = (TODAY - timedelta(days=9)).isoformat()
    assert main(["export-labels", "--from", earlier, "--to", earlier, "--out", str(out), "--archive-dir", str(archive_dir)]) == 1


@pytest.mark.parametrize("args", [
    ["--out", "o.csv"],  # neither the archive's days nor files
    ["--from", "2026-12-01", "--out", "o.csv"],  # half a range
    ["--input", "r.jsonl", "--out", "o.csv"],  # half of the files
    ["--input", "r.jsonl", "--declarations", "d.jsonl", "--from", "2026-12-01", "--to", "2026-12-01", "--out", "o.csv"],  # both
])
def test_export_labels_takes_the_archive_or_files_not_a_mix(args: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["export-labels", *args])
    assert exit_.value.code == 2 and "riskctl export-labels: error:" in capsys.readouterr().err
