"""export-labels: inspection results + declarations -> project-format training set."""

from __future__ import annotations

from datetime import UTC, datetime

import polars as pl

from cli.main import main as riskctl
from riskmodels.data import declarations_from_frame, read_labelled
from riskmodels.labels import export_labels
from schemas.records import InspectionResult


def _result(decl_id: str, found: bool, duty: float, instruction: str | None = None) -> str:
    return InspectionResult(
        instruction_id=instruction or f"{decl_id}:1:declaration", declaration_id=decl_id, revision=1,
        port="CNHAK-SEA", station_id="ST-1", found=found, duty_recovered=duty,
        inspected_at=datetime(2025, 7, 1, tzinfo=UTC),
    ).model_dump_json()


def test_export_labels_joins_and_dedupes(tmp_path, synth) -> None:
    decls = declarations_from_frame(synth.head(5))
    ids = [d.declaration_id for d in decls]
    (tmp_path / "decls.jsonl").write_text("\n".join(d.model_dump_json() for d in decls) + "\n")
    lines = [
        _result(ids[0], True, 120.5),
        _result(ids[0], True, 120.5),  # redelivered copy: counts once
        _result(ids[1], False, 0.0),
        _result(ids[2], False, 0.0, "scan-stage"),
        _result(ids[2], True, 80.0, "inspect-stage"),  # a later inspection found something
        _result("UNKNOWN-1", True, 5.0),  # no declaration record: skipped
    ]
    (tmp_path / "results.jsonl").write_text("\n".join(lines) + "\n\n")
    counts = export_labels(tmp_path / "results.jsonl", tmp_path / "decls.jsonl", tmp_path / "labels.csv")
    assert counts == {"inspected_declarations": 4, "labelled_rows": 3, "frauds": 2, "without_declaration": 1}
    # The output is a valid project-format training set.
    df = read_labelled(tmp_path / "labels.csv", "project")
    got = {r["declaration_id"]: (r["fraud"], r["duty_recoverable"]) for r in df.iter_rows(named=True)}
    assert got == {ids[0]: (1, 120.5), ids[1]: (0, 0.0), ids[2]: (1, 80.0)}
    row = df.filter(pl.col("declaration_id") == ids[0]).row(0, named=True)
    assert row["enterprise_id"] == decls[0].enterprise_id and row["event_time"] == decls[0].event_time
    assert row["hs_code"] == decls[0].hs_code and row["scenario"] == decls[0].scenario.value


def test_export_labels_cli_with_parquet_declarations(tmp_path, synth, capsys) -> None:
    synth.head(5).drop("fraud", "critical_fraud", "duty_recoverable").write_parquet(tmp_path / "decls.parquet")
    ident = synth["declaration_id"][3]
    (tmp_path / "results.jsonl").write_text(_result(ident, True, 9.0) + "\n")
    assert riskctl(["export-labels", "--input", str(tmp_path / "results.jsonl"), "--declarations",
                    str(tmp_path / "decls.parquet"), "--out", str(tmp_path / "out.parquet")]) == 0
    assert "wrote 1 labelled" in capsys.readouterr().err
    df = read_labelled(tmp_path / "out.parquet")
    assert df["declaration_id"].to_list() == [ident] and df["fraud"].to_list() == [1]


def test_export_labels_reports_bad_line(tmp_path, capsys) -> None:
    (tmp_path / "results.jsonl").write_text('{"declaration_id": "x"}\n')
    (tmp_path / "decls.jsonl").write_text("")
    assert riskctl(["export-labels", "--input", str(tmp_path / "results.jsonl"), "--declarations",
                    str(tmp_path / "decls.jsonl"), "--out", str(tmp_path / "o.csv")]) == 2
    err = capsys.readouterr().err
    assert "results.jsonl:1: not a valid inspection result" in err and "Traceback" not in err
