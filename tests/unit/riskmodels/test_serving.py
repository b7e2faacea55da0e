"""Serving: micro-batch scoring, routing, shadow models, explanations and hot swap under load."""

from __future__ import annotations

import json
import logging
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from riskmodels.data import declarations_from_frame
from riskmodels.errors import ArtifactError
from riskmodels.serving import ModelRegistry, ScoreBatch, publish


@pytest.fixture(scope="module")
def decls(synth_split):
    return declarations_from_frame(synth_split[1])


def _set_active(reg_dir: Path, active: dict, shadow: dict | None = None) -> None:
    tmp = reg_dir / "active.json.tmp"
    tmp.write_text(json.dumps({"active": active, "shadow": shadow or {}}))
    tmp.replace(reg_dir / "active.json")


def test_score_batch_shape_and_routing(artifact_a, decls) -> None:
    reg = ModelRegistry.open(artifact_a)
    batch = reg.score(decls)
    assert isinstance(batch, ScoreBatch)
    assert batch.scores.dtype == np.float64 and batch.scores.shape == (len(decls),)
    assert ((batch.scores >= 0) & (batch.scores <= 1)).all()
    assert len(batch.model_versions) == len(decls)
    versions = reg.active_versions()
    # The tiny artifact has its own model for the big scenarios; the others fall back to general.
    for d, v in zip(decls, batch.model_versions):
        assert v == versions[d.scenario.value]
    assert versions["zero-tariff"].endswith("/zero-tariff")
    assert versions["duty-free-shopping"].endswith("/general")
    assert reg.score([]).scores.shape == (0,)
    assert batch.shadow_scores is None


def test_explanations_are_plain_language(artifact_a, decls) -> None:
    batch = ModelRegistry.open(artifact_a).score(decls)
    top = np.argsort(-batch.scores)[:20]
    for i in top:
        reasons = batch.explain(int(i), top=3)
        assert 1 <= len(reasons) <= 3
        assert all(isinstance(r, str) and r for r in reasons)
    joined = " | ".join(r for i in top for r in batch.explain(int(i)))
    assert "fraud rate" in joined or "unit value" in joined
    assert batch.explain(int(top[0]), method="contrib")  # exact (slow) method still available
    with pytest.raises(IndexError):
        batch.explain(len(decls))


def test_starter_model_is_bundled_and_scores(decls) -> None:
    reg = ModelRegistry.open(None)
    batch = reg.score(decls[:64])
    assert np.isfinite(batch.scores).all()
    assert set(reg.active_versions()) == {"general-trade", "zero-tariff", "processing-value-added", "duty-free-shopping"}


def test_registry_shadow_model(tmp_path, artifact_a, artifact_b, decls) -> None:
    reg_dir = tmp_path / "reg"
    va = publish(reg_dir, artifact_a)
    vb = publish(reg_dir, artifact_b, ["zero-tariff"], shadow=True)
    reg = ModelRegistry.open(reg_dir)
    batch = reg.score(decls)
    assert all(v.startswith(va + "/") for v in batch.model_versions)
    zt = np.array([d.scenario.value == "zero-tariff" for d in decls])
    assert zt.any() and (~zt).any()
    assert np.isfinite(batch.shadow_scores[zt]).all() and np.isnan(batch.shadow_scores[~zt]).all()
    expected_version = ModelRegistry.open(artifact_b).active_versions()["zero-tariff"]
    assert expected_version.startswith(vb + "/")
    assert {batch.shadow_versions[i] for i in np.flatnonzero(zt)} == {expected_version}
    # Shadow scores never replace the acted-on scores.
    np.testing.assert_array_equal(batch.scores, ModelRegistry.open(artifact_a).score(decls).scores)
    assert reg.shadow_versions() == {"zero-tariff": expected_version}


def test_refresh_refuses_broken_artifact_and_keeps_serving(tmp_path, artifact_a, artifact_b, decls, caplog) -> None:
    reg_dir = tmp_path / "reg"
    va = publish(reg_dir, artifact_a)
    reg = ModelRegistry.open(reg_dir)
    before = reg.active_versions()
    assert reg.refresh() is False  # nothing changed
    vb = publish(reg_dir, artifact_b)
    (reg_dir / "versions" / vb / "model-general.txt").write_text("tampered\n")
    with caplog.at_level(logging.ERROR, logger="riskmodels.serving"):
        assert reg.refresh() is False
    assert "sha256 mismatch" in caplog.text and "sha256 mismatch" in reg.last_error
    assert reg.active_versions() == before
    np.testing.assert_array_equal(reg.score(decls).scores, ModelRegistry.open(artifact_a).score(decls).scores)
    # A malformed pointer file and an unknown version are refused the same way.
    (reg_dir / "active.json").write_text("{oops")
    assert reg.refresh() is False
    _set_active(reg_dir, {"general": "m-000000000000"})
    assert reg.refresh() is False
    assert reg.active_versions() == before
    _set_active(reg_dir, {"general": va})
    assert reg.refresh() is False  # same content as what is serving: no swap needed


def test_open_refuses_bad_directories(tmp_path) -> None:
    with pytest.raises(ArtifactError, match="neither a model registry"):
        ModelRegistry.open(tmp_path)
    (tmp_path / "active.json").write_text(json.dumps({"active": {"zero-tariff": "m-1"}}))
    with pytest.raises(ArtifactError, match="needs a 'general' entry"):
        ModelRegistry.open(tmp_path)


def test_hot_swap_under_load(tmp_path, artifact_a, artifact_b, decls) -> None:
    reg_dir = tmp_path / "reg"
    vb = publish(reg_dir, artifact_b)
    va = publish(reg_dir, artifact_a)
    expected = {va: ModelRegistry.open(artifact_a).score(decls).scores,
                vb: ModelRegistry.open(artifact_b).score(decls).scores}
    assert not np.array_equal(expected[va], expected[vb])
    reg = ModelRegistry.open(reg_dir)
    stop = threading.Event()
    errors: list[BaseException] = []
    seen: list[str] = []

    def score_forever() -> None:
        try:
            while not stop.is_set():
                batch = reg.score(decls)
                versions = {v.split("/")[0] for v in batch.model_versions}
                assert len(versions) == 1, f"batch mixed versions {versions}"
                (version,) = versions
                np.testing.assert_array_equal(batch.scores, expected[version])
                seen.append(version)
        except BaseException as exc:  # noqa: BLE001 - reported by the main thread
            errors.append(exc)

    thread = threading.Thread(target=score_forever)
    thread.start()
    try:
        swaps = 0
        for i in range(40):
            _set_active(reg_dir, {"general": vb if i % 2 == 0 else va})
            swaps += reg.refresh()
            time.sleep(0.003)
    finally:
        stop.set()
        thread.join(timeout=30)
    assert not errors, errors[0]
    assert swaps == 40
    assert {va, vb} <= set(seen) and len(seen) > 10


def test_per_scenario_versions_in_one_batch(tmp_path, artifact_a, artifact_b, decls) -> None:
    reg_dir = tmp_path / "reg"
    publish(reg_dir, artifact_a)
    vb = publish(reg_dir, artifact_b, ["zero-tariff"])
    reg = ModelRegistry.open(reg_dir)
    batch = reg.score(decls)
    zt = np.array([d.scenario.value == "zero-tariff" for d in decls])
    a_scores = ModelRegistry.open(artifact_a).score(decls).scores
    b_scores = ModelRegistry.open(artifact_b).score(decls).scores
    np.testing.assert_array_equal(batch.scores[zt], b_scores[zt])
    np.testing.assert_array_equal(batch.scores[~zt], a_scores[~zt])
    assert all(batch.model_versions[i].startswith(vb + "/") for i in np.flatnonzero(zt))
    assert reg.active_versions()["zero-tariff"].startswith(vb + "/")
    assert batch.explain(int(np.flatnonzero(zt)[0])) and batch.explain(int(np.flatnonzero(~zt)[0]))


def test_explanations_name_an_amount_that_could_not_be_compared(artifact_a, decls) -> None:
    odd = [d.model_copy(update={"currency": "XAU"}) for d in decls[:5]]
    batch = ModelRegistry.open(artifact_a).score(odd)
    assert np.isfinite(batch.scores).all()
    assert any("amount in XAU: no exchange rate" in r for i in range(5) for r in batch.explain(i, top=10))
