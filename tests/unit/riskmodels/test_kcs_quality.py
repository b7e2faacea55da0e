"""Quality bar on the public KCS data: beat the published LightGBM P@5% = 0.762, P@10% = 0.641."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from riskmodels.evaluate import evaluate
from riskmodels.train import train_files

REPO = Path(__file__).resolve().parents[3]
KCS = REPO.parent / "shared" / "datasets" / "kcs-customs-declarations"


@pytest.mark.slow
def test_kcs_beats_published_lightgbm(tmp_path) -> None:
    if not (KCS / "train.csv").exists() or not (KCS / "valid.csv").exists():
        pytest.skip(f"KCS dataset not found at {KCS} (expected ../shared beside the repo)")
    started = time.perf_counter()
    train_files(KCS / "train.csv", KCS / "valid.csv", tmp_path / "kcs", "kcs", progress=lambda _: None)
    seconds = time.perf_counter() - started
    result = evaluate(tmp_path / "kcs", KCS / "valid.csv", "kcs")
    print(f"KCS valid: {result} trained in {seconds:.1f}s")
    assert result["rows"] == 8134
    assert result["precision_at"]["5"] > 0.762 + 0.05
    assert result["precision_at"]["10"] > 0.641 + 0.05
    assert seconds < 120
