"""The bundled starter artifact: small, verified, and reproducible from the generator."""

from __future__ import annotations

from riskmodels.artifact import load_artifact
from riskmodels.serving import STARTER_DIR
from riskmodels.starter_data import build_starter, generate


def test_starter_is_small_and_verifies() -> None:
    art = load_artifact(STARTER_DIR)
    total = sum(p.stat().st_size for p in STARTER_DIR.iterdir())
    assert total <= 400 * 1024
    assert sum(b.num_trees() for b in art.boosters.values()) <= 100


def test_starter_rebuilds_byte_identical(tmp_path) -> None:
    result = build_starter(tmp_path / "starter")
    assert result.version == load_artifact(STARTER_DIR).version
    for f in STARTER_DIR.iterdir():
        assert (tmp_path / "starter" / f.name).read_bytes() == f.read_bytes(), f.name


def test_generated_data_is_deterministic_and_plausible() -> None:
    a, b = generate(800, seed=5), generate(800, seed=5)
    assert a.equals(b)
    rate = a["fraud"].mean()
    assert 0.1 < rate < 0.35
    assert (a["declared_value"] > 0).all() and a["duty_recoverable"].filter(a["fraud"] == 1).sum() > 0
