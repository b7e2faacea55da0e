"""Backtest: counting on a hand-made history, credit folding in time, the CLI and its errors."""

from __future__ import annotations

import json
from datetime import timedelta
from types import SimpleNamespace

import numpy as np
import polars as pl
import pytest

from cli.main import main
from decision.backtest import backtest, format_report, load_credit_events
from policy.config import load_policy
from policy.risklists import RiskListIndex
from portsim.starter import simulated_history
from schemas import RiskListEntry
from tests.unit.factories import FIXTURE_POLICY, NOW, credit_event, declaration

POLICY = load_policy(FIXTURE_POLICY).model_copy(update={
    "random_selection": load_policy(FIXTURE_POLICY).random_selection.model_copy(update={"share": 0.0}),
    "capacity": load_policy(FIXTURE_POLICY).capacity.model_copy(update={
        "default": load_policy(FIXTURE_POLICY).capacity.default.model_copy(update={"machine_check": None, "inspect": None}),
        "ports": {},
    }),
})
T = POLICY.thresholds


class FixedScores:
    """A scorer that returns the frame's own ``test_score`` column (exact expectations)."""

    def score_frame(self, df: pl.DataFrame) -> SimpleNamespace:
        return SimpleNamespace(scores=df["test_score"].to_numpy(), model_versions=["m/general"] * df.height)


def history(rows: list[tuple[dict, float, int]]) -> pl.DataFrame:
    records = []
    for i, (over, score, fraud) in enumerate(rows):
        d = declaration(declaration_id=f"H{i}", event_time=NOW + timedelta(minutes=i), **over)
        records.append({**d.model_dump(mode="json"), "fraud": fraud, "duty_recoverable": 100.0 * fraud, "test_score": score})
    return pl.DataFrame(records)


def run_backtest(policy, rows, **kw):
    return backtest(policy, history(rows), FixedScores(), **kw)


def test_counts_lanes_precision_and_catches():
    g = T["general"]
    r = run_backtest(POLICY, [
        ({}, 0.0, 0), ({}, 0.0, 1),  # released: one miss
        ({}, g.machine_check, 1), ({}, g.machine_check, 0),  # machine-checked: one caught (assumed found)
        ({"port": "YPU-SEA"}, g.inspect, 1),  # inspected: caught
    ])
    assert (r["declarations"], r["frauds_total"], r["frauds_caught"], r["frauds_missed"]) == (5, 3, 2, 1)
    assert r["lanes"]["release"] == {"count": 2, "rate": 0.4, "frauds": 1, "precision": 0.5}
    assert r["lanes"]["machine-check"]["precision"] == 0.5 and r["lanes"]["inspect"]["precision"] == 1.0
    assert (r["frauds_caught_by_inspect"], r["frauds_caught_by_machine_check"]) == (1, 1)
    assert r["duty_recoverable_caught"] == 200.0 and r["duty_recoverable_total"] == 300.0
    assert r["by_port"]["YPU-SEA"]["frauds_caught"] == 1 and r["by_port"]["HAK-SEA"]["declarations"] == 4
    assert set(r["by_credit_class"]) == {"general"}
    assert r["by_port"]["HAK-SEA"]["lanes"]["inspect"] == {"count": 0, "rate": 0.0, "frauds": 0, "precision": None}
    json.dumps(r)  # serialisable as is
    assert "HAK-SEA" in format_report(r)


def test_credit_state_is_the_one_in_force_at_each_declaration():
    score = T["general"].machine_check  # machine-check as general, release as AEO
    became_aeo = credit_event(event_id="C1", credit_class="aeo", event_time=NOW + timedelta(minutes=1))
    r = run_backtest(POLICY, [({}, score, 0), ({}, score, 0), ({}, score, 0)], credit_events=[became_aeo])
    assert r["by_credit_class"]["general"]["declarations"] == 1 and r["by_credit_class"]["aeo"]["declarations"] == 2
    assert r["lanes"]["machine-check"]["count"] == 1


def test_risk_lists_and_compare():
    lists = RiskListIndex([RiskListEntry.model_validate(dict(
        entry_id="R1", list_id="L1", kind="origin", value="CN", action="inspect", reason="alert",
        source_agency="customs", valid_from=NOW - timedelta(days=1)), strict=False)])
    general = T["general"].model_copy(update={"machine_check": 0.45})
    stricter = POLICY.model_copy(update={"version": "strict", "thresholds": {**T, "general": general}})
    r = run_backtest(POLICY, [({}, 0.0, 1), ({"origin_country": "VN"}, 0.5, 0)], risk_lists=lists, other=stricter)
    assert r["risk_list_hits"] == 1 and r["selection_reasons"] == {"none": 1, "risk-list": 1}
    c = r["compare"]
    assert c["policy_version"] == "strict" and c["changed_decisions"] == 1 and c["transitions"] == {"release->machine-check": 1}
    assert c["difference"]["lanes"]["machine-check"]["count"] == 1 and c["difference"]["frauds_caught"] == 0


def test_credit_events_file_is_sorted_by_time_and_errors_name_the_line(tmp_path):
    path = tmp_path / "ce.jsonl"
    late = credit_event(event_id="B", event_time=NOW + timedelta(hours=1))
    early = credit_event(event_id="A", event_time=NOW)
    path.write_text(late.model_dump_json() + "\n\n" + early.model_dump_json() + "\n")
    assert [e.event_id for e in load_credit_events(path)] == ["A", "B"]
    path.write_text(early.model_dump_json() + "\n{}\n")
    with pytest.raises(ValueError, match="line 2"):
        load_credit_events(path)


@pytest.fixture(scope="module")
def history_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("bt") / "history.parquet"
    simulated_history(400, seed=3, enterprises=2000).write_parquet(path)
    return path


STARTER = "riskmodels/starter"


def test_cli_json_has_the_contract_keys(history_file, tmp_path, capsys):
    other = tmp_path / "other.yaml"
    other.write_text(load_policy(FIXTURE_POLICY).model_copy(update={"version": "other", "seed": 1}).model_dump_json())
    assert main(["backtest", "--model", STARTER, "--data", str(history_file), "--compare", str(other), "--json"]) == 0
    out, err = capsys.readouterr()
    doc = json.loads(out)
    assert doc["declarations"] == 400 and doc["frauds_total"] == int(pl.read_parquet(history_file)["fraud"].sum())
    assert 0 <= doc["frauds_caught"] <= doc["frauds_total"]
    for lane in ("release", "machine-check", "inspect"):
        assert {"rate", "precision"} <= set(doc["lanes"][lane])
    assert sum(doc["lanes"][lane]["rate"] for lane in doc["lanes"]) == pytest.approx(1.0)
    assert doc["compare"]["policy_version"] == "other" and "difference" in doc["compare"]
    assert "decided 400 / 400 rows" in err


def test_cli_text_report(history_file, capsys):
    assert main(["backtest", "--model", STARTER, "--data", str(history_file), "--quiet"]) == 0
    out, err = capsys.readouterr()
    assert "-- by port" in out and "-- by credit class" in out and err == ""


@pytest.mark.parametrize("args,message", [
    (["--data", "missing.parquet"], "history file missing.parquet does not exist"),
    (["--policy", "missing.yaml"], "cannot read policy file"),
    (["--model", "policy"], "neither a model registry"),
    (["--credit-events", "missing.jsonl"], "credit events file missing.jsonl does not exist"),
])
def test_cli_errors_are_one_line_with_exit_2(history_file, capsys, args, message):
    base = {"--model": STARTER, "--data": str(history_file)}
    base.update(dict(zip(args[::2], args[1::2])))
    argv = ["backtest", *[x for kv in base.items() for x in kv], "--quiet"]
    if "--policy" in args:
        argv += ["--policy", "missing.yaml"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


def test_rows_the_schema_refuses_are_skipped_and_counted():
    frame = history([({}, 0.0, 0), ({}, 0.0, 1)]).with_columns(
        pl.when(pl.col("declaration_id") == "H0").then(pl.lit("bad code")).otherwise(pl.col("hs_code")).alias("hs_code"))
    r = backtest(POLICY, frame, FixedScores())
    assert r["skipped_rows"] == 1 and r["declarations"] == 1 and r["frauds_total"] == 1


class HistoryScores(FixedScores):
    """Fixed scores and a value-added history of mean ratio 0.4 over 50 declarations for every row."""

    def score_frame(self, df: pl.DataFrame) -> SimpleNamespace:
        batch = super().score_frame(df)
        batch.value_added = np.tile([0.4, 50.0, 0.5, 800.0], (df.height, 1))
        return batch


def test_rules_are_counted_caught_missed_and_false_alarms_against_the_hidden_truth():
    def pva(imported: float, added: float, true_ratio: float, pattern: str | None) -> dict:
        return {"scenario": "processing-value-added", "declared_value": imported + added,
                "imported_material_value": imported, "value_added": added, "_true": true_ratio, "_pattern": pattern}
    rows = [
        pva(1000, 200, 0.2, None),  # under the threshold, declared so: duty rule caught
        pva(1000, 500, 0.5, None),  # plausible and true: nothing
        pva(1000, 2000, 0.1, "value-added-inflation"),  # inflated far above history: warning caught; duty rule missed
        pva(1000, 350, 0.15, "value-added-inflation"),  # inflated just past the threshold: both rules miss it
        pva(1000, 1500, 1.5, None),  # honestly high: the warning's false alarm
    ]
    frame = history([({k: v for k, v in r.items() if not k.startswith("_")}, 0.0, int(r["_pattern"] is not None)) for r in rows])
    frame = frame.with_columns(pl.Series("value_added_ratio_true", [r["_true"] for r in rows]),
                               pl.Series("fraud_pattern", [r["_pattern"] for r in rows], dtype=pl.String))
    report = backtest(POLICY, frame, HistoryScores())
    rules = report["by_rule"]
    assert rules["value-added-below-threshold"] == {"fired": 1, "caught": 1, "missed": 2, "false_alarms": 0, "recall": round(1 / 3, 6)}
    assert rules["value-added-implausible"] == {"fired": 2, "caught": 1, "missed": 1, "false_alarms": 1, "recall": 0.5}
    text = format_report(report)
    assert "rule value-added-implausible: fired 2, caught 1, missed 1, false alarms 1 (recall 50.00%)" in text


def test_without_the_truth_a_rule_reports_only_how_often_it_fired():
    rows = [({"scenario": "processing-value-added", "declared_value": 1100.0, "imported_material_value": 1000.0, "value_added": 100.0},
             0.0, 0)]
    report = backtest(POLICY, history(rows), HistoryScores())
    assert report["by_rule"]["value-added-below-threshold"] == {"fired": 1}
    assert "(the history holds no truth for it)" in format_report(report)
