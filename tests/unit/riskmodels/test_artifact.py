"""Artifact verification: every problem is refused with a clear ArtifactError."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from riskmodels.artifact import load_artifact, sha256_bytes
from riskmodels.errors import ArtifactError
from riskmodels.features import FEATURE_VERSION, FEATURES


@pytest.fixture()
def art(tmp_path: Path, artifact_a: Path) -> Path:
    dest = tmp_path / "art"
    shutil.copytree(artifact_a, dest)
    return dest


def _rehash(path: Path, name: str) -> None:
    manifest = json.loads((path / "manifest.json").read_text())
    manifest["files"][name] = sha256_bytes((path / name).read_bytes())
    (path / "manifest.json").write_text(json.dumps(manifest))


def test_loads_a_good_artifact(art: Path) -> None:
    a = load_artifact(art)
    assert a.version.startswith("m-")
    assert "general" in a.boosters
    assert a.boosters["general"].feature_name() == list(FEATURES)
    files = json.loads((art / "manifest.json").read_text())["files"]
    assert {"features.json", "encodings.json", "training.json", "metrics.json", "thresholds.json",
            "model-general.txt"} <= files.keys()
    assert not list(art.glob("*.pkl")) and not list(art.glob("*.pickle"))


def test_refuses_tampered_model(art: Path) -> None:
    model = art / "model-general.txt"
    model.write_text(model.read_text().replace("shrinkage=", "shrinkage=9", 1))
    with pytest.raises(ArtifactError, match="sha256 mismatch"):
        load_artifact(art)


def test_refuses_tampered_encodings(art: Path) -> None:
    (art / "encodings.json").write_bytes((art / "encodings.json").read_bytes().replace(b'"n":[', b'"n":[9', 1))
    with pytest.raises(ArtifactError, match=r"encodings\.json: sha256 mismatch"):
        load_artifact(art)


def test_refuses_missing_file(art: Path) -> None:
    (art / "thresholds.json").unlink()
    with pytest.raises(ArtifactError, match=r"thresholds\.json: missing"):
        load_artifact(art)


def test_refuses_missing_manifest(art: Path) -> None:
    (art / "manifest.json").unlink()
    with pytest.raises(ArtifactError, match=r"no readable manifest\.json"):
        load_artifact(art)


def test_refuses_file_not_listed_in_manifest(art: Path) -> None:
    manifest = json.loads((art / "manifest.json").read_text())
    del manifest["files"]["metrics.json"]
    (art / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ArtifactError, match=r"no sha256 for metrics\.json"):
        load_artifact(art)


def test_refuses_wrong_feature_version(art: Path) -> None:
    manifest = json.loads((art / "manifest.json").read_text())
    manifest["feature_version"] = FEATURE_VERSION + 1
    (art / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ArtifactError, match="feature version"):
        load_artifact(art)


def test_refuses_other_feature_list_even_with_valid_hashes(art: Path) -> None:
    feats = json.loads((art / "features.json").read_text())
    feats["features"] = feats["features"][::-1]
    (art / "features.json").write_text(json.dumps(feats))
    _rehash(art, "features.json")
    with pytest.raises(ArtifactError, match="does not match feature version"):
        load_artifact(art)


@pytest.mark.parametrize("name", ["encodings.json", "metrics.json", "manifest.json"])
def test_refuses_malformed_json(art: Path, name: str) -> None:
    (art / name).write_text("{not json")
    if name != "manifest.json":
        _rehash(art, name)  # hashes fine: the content itself is broken
    with pytest.raises(ArtifactError, match="malformed JSON"):
        load_artifact(art)


def test_refuses_wellformed_but_wrong_encodings(art: Path) -> None:
    (art / "encodings.json").write_text('{"vocab": {}}')
    _rehash(art, "encodings.json")
    with pytest.raises(ArtifactError, match="malformed feature statistics"):
        load_artifact(art)


def test_refuses_garbage_model_text(art: Path) -> None:
    (art / "model-general.txt").write_text("this is not a lightgbm model\n")
    _rehash(art, "model-general.txt")
    with pytest.raises(ArtifactError, match="not a valid LightGBM text model"):
        load_artifact(art)


def test_refuses_path_tricks_in_manifest(art: Path) -> None:
    manifest = json.loads((art / "manifest.json").read_text())
    manifest["files"]["../etc/passwd"] = "0" * 64
    (art / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ArtifactError, match="bad file name"):
        load_artifact(art)


def test_refuses_non_directory(tmp_path: Path) -> None:
    with pytest.raises(ArtifactError, match="not an artifact directory"):
        load_artifact(tmp_path / "nothing")
