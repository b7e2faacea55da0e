"""Metric math on a hand-checkable example, and the riskctl train/evaluate commands."""

from __future__ import annotations

import json

import numpy as np
import pytest

from cli.main import main as riskctl
from riskmodels.evaluate import selection_metrics


def test_metric_math_by_hand() -> None:
    # 20 rows; scores descending with row index. Frauds at rows 0, 2, 3 and 15.
    scores = np.linspace(1.0, 0.05, 20)
    fraud = np.zeros(20)
    fraud[[0, 2, 3, 15]] = 1
    revenue = np.zeros(20)
    revenue[[0, 2, 3, 15]] = [10.0, 30.0, 20.0, 40.0]
    m = selection_metrics(scores, fraud, revenue, percents=(5, 10, 20, 50))
    # k = ceil(20 * n%): 1, 2, 4, 10 rows selected.
    assert m["precision_at"] == {"5": 1.0, "10": 0.5, "20": 0.75, "50": 0.3}
    assert m["recall_at"] == {"5": 0.25, "10": 0.25, "20": 0.75, "50": 0.75}
    assert m["revenue_at"] == {"5": 0.1, "10": 0.1, "20": 0.6, "50": 0.6}
    # AUC: fraud/non-fraud pairs won of 4 x 16: row 0 beats 16, rows 2 and 3 beat 15 (not row 1),
    # row 15 beats 4 (rows 16-19): 50 of 64.
    assert m["auc"] == pytest.approx(50 / 64)
    assert m["rows"] == 20


def test_metrics_without_revenue_and_ties() -> None:
    m = selection_metrics(np.array([0.5, 0.5, 0.5, 0.1]), np.array([0, 1, 0, 0]))
    assert m["revenue_at"] is None
    assert m["precision_at"]["1"] == 0.0  # ties keep row order: row 0 (not a fraud) is picked first
    assert selection_metrics(np.array([0.3, 0.2]), np.array([0, 0]))["auc"] is None


def test_train_then_evaluate_json(tmp_path, synth_split, capsys) -> None:
    train, valid = synth_split
    train.write_csv(tmp_path / "train.csv")
    valid.write_csv(tmp_path / "valid.csv")
    assert riskctl(["train", "--train", str(tmp_path / "train.csv"), "--out", str(tmp_path / "m"),
                    "--rounds", "10", "--seed", "3"]) == 0
    capsys.readouterr()
    assert riskctl(["evaluate", "--model", str(tmp_path / "m"), "--data", str(tmp_path / "valid.csv"), "--json"]) == 0
    out = capsys.readouterr().out
    result = json.loads(out)  # exactly one JSON object, nothing else on stdout
    assert out.strip().count("\n") == 0
    assert set(result) == {"rows", "auc", "precision_at", "recall_at", "revenue_at"}
    assert result["rows"] == valid.height
    for key in ("precision_at", "recall_at", "revenue_at"):
        assert set(result[key]) == {"1", "2", "5", "10"}
        assert all(0.0 <= v <= 1.0 for v in result[key].values())
    assert 0.5 < result["auc"] <= 1.0


def test_evaluate_kcs_format_has_null_revenue(tmp_path, kcs_sample, capsys) -> None:
    assert riskctl(["train", "--format", "kcs", "--train", str(kcs_sample), "--out", str(tmp_path / "m"),
                    "--rounds", "5"]) == 0
    capsys.readouterr()
    assert riskctl(["evaluate", "--format", "kcs", "--model", str(tmp_path / "m"), "--data", str(kcs_sample),
                    "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["rows"] == 301 and result["revenue_at"] is None


@pytest.mark.parametrize("argv, message", [
    (["evaluate", "--model", "{tmp}/none", "--data", "{kcs}"], "neither a model registry"),
    (["evaluate", "--model", "{starter}", "--data", "{tmp}/missing.csv"], "no such file"),
    (["evaluate", "--model", "{starter}", "--data", "{kcs}", "--format", "project"], "use --format kcs"),
    (["train", "--train", "{tmp}/bad.csv", "--out", "{tmp}/m"], "missing columns"),
    (["train", "--train", "{tmp}", "--out", "{tmp}/m"], "is a directory"),
    (["export-labels", "--input", "{tmp}/x.jsonl", "--declarations", "{kcs}", "--out", "{tmp}/o.csv"], "no such file"),
    (["train", "--train", "{kcs}", "--out", "{tmp}/m", "--fx", "{tmp}/fx.json"], "not an exchange-rate table"),
    (["train", "--train", "{kcs}", "--out", "{tmp}/m", "--fx", "{tmp}/bad.csv"], "not an exchange-rate table"),
    (["train", "--train", "{kcs}", "--out", "{tmp}/m", "--fx", "{tmp}/nofx.json"], "nofx.json: no such file"),
])
def test_user_errors_are_one_line_exit_2(tmp_path, kcs_sample, capsys, argv, message) -> None:
    from riskmodels.serving import STARTER_DIR

    (tmp_path / "bad.csv").write_text("a,b\n1,2\n")
    (tmp_path / "fx.json").write_text('{"base": "USD", "per_base": {"CNY": -7.1}}')
    argv = [a.format(tmp=tmp_path, kcs=kcs_sample, starter=STARTER_DIR) for a in argv]
    assert riskctl(argv) == 2
    err = capsys.readouterr().err.strip()
    errors = [line for line in err.splitlines() if "error:" in line]  # progress lines may precede it
    assert len(errors) == 1 and message in errors[0] and "Traceback" not in err


def test_bad_arguments_exit_2(capsys) -> None:
    with pytest.raises(SystemExit) as exc:
        riskctl(["train", "--train", "x.csv", "--out", "d", "--seed", "abc"])
    assert exc.value.code == 2
    with pytest.raises(SystemExit) as exc:
        riskctl(["train", "--help"])
    assert exc.value.code == 0 and "--valid" in capsys.readouterr().out
