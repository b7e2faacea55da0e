"""Model artifacts: a directory of plain files, every one covered by a sha256 in manifest.json.

Layout::

    manifest.json       format, version id, feature version, models, sha256 of every other file
    features.json       feature list, categorical features, FEATURE_VERSION
    encodings.json      FeatureState: vocabularies, HS value ranges, history statistics
    model-<key>.txt     LightGBM text model per key ("general", or a scenario); never pickle
    training.json       training data summary (rows, frauds, period, scenarios, params, seed)
    metrics.json        validation metrics (if a validation set was given) and training time
    thresholds.json     score quantiles per model (for choosing operating points)

The version id is derived from the content that decides scores (features, encodings, models),
so retraining with the same data and seed gives the same version.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import lightgbm as lgb
import numpy as np

from riskmodels.errors import ArtifactError
from riskmodels.fastpredict import Predictor
from riskmodels.features import CATEGORICAL, FEATURE_VERSION, FEATURES, Columns, FeatureState, build_matrix
from riskmodels.routing import ROUTING, Routing, parse_routing

ARTIFACT_FORMAT = 1
GENERAL = "general"
MANIFEST = "manifest.json"
SCORING_FILES = ("features.json", "encodings.json")  # with the model files: what the version covers
INFO_FILES = ("training.json", "metrics.json", "thresholds.json")


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _dumps(obj: Any) -> bytes:
    # Compact, sorted, NaN refused: the bytes are hashed, so they must be canonical and valid JSON.
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), allow_nan=False).encode()


def model_file(key: str) -> str:
    return f"model-{key}.txt"


@dataclass
class Artifact:
    """A verified, loaded artifact: feature state plus one LightGBM booster per model key."""

    version: str
    state: FeatureState
    boosters: dict[str, lgb.Booster]
    path: Path | None = None
    manifest: dict[str, Any] = field(default_factory=dict)
    thresholds: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    summary: dict[str, Any] = field(default_factory=dict)
    importance: dict[str, np.ndarray] = field(default_factory=dict)  # key -> gain share per feature
    predictors: dict[str, Predictor] = field(default_factory=dict, repr=False)  # key -> set-up done once
    routing: Routing | None = None  # routing.json: a model per risk type and route (riskmodels.routing)

    def __post_init__(self) -> None:
        self.predictors = {key: Predictor(booster) for key, booster in self.boosters.items()}
        for key, booster in self.boosters.items():
            gain = np.asarray(booster.feature_importance("gain"), dtype=np.float64)
            self.importance[key] = gain / gain.sum() if gain.sum() > 0 else gain

    def model_key(self, scenario: str) -> str:
        """A scenario's own model if this artifact has one, else the general model."""
        return scenario if scenario in self.boosters else GENERAL

    def model_version(self, key: str) -> str:
        return f"{self.version}/{key}"

    def features(self, cols: Columns) -> np.ndarray:
        return build_matrix(cols, self.state)

    def predict(self, key: str, X: np.ndarray) -> np.ndarray:
        # One thread: micro-batches are small and the worker owns one core; threads only add overhead.
        # The same numbers as Booster.predict, without its per-call set-up (riskmodels.fastpredict).
        return self.predictors[key].predict(X)

    def score(self, scenarios: list[str], X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Scores and model keys for feature rows; one predict call per model used in the batch."""
        n = len(scenarios)
        if len(self.boosters) == 1:
            return self.predict(GENERAL, X), np.full(n, GENERAL, dtype=object)
        keys = np.array([s if s in self.boosters else GENERAL for s in scenarios], dtype=object)
        scores = np.empty(n, dtype=np.float64)
        for key in set(keys.tolist()):
            rows = keys == key
            scores[rows] = self.predict(key, X[rows])
        return scores, keys


def _booster_from_text(text: str, name: str) -> lgb.Booster:
    try:
        booster = lgb.Booster(model_str=text)
    except Exception as exc:  # LightGBM raises LightGBMError or ValueError on bad text
        raise ArtifactError(f"{name}: not a valid LightGBM text model ({str(exc).splitlines()[0] if str(exc) else exc})") from exc
    if booster.feature_name() != list(FEATURES):
        raise ArtifactError(f"{name}: model features do not match feature version {FEATURE_VERSION}")
    return booster


def _json(data: bytes, name: str) -> Any:
    try:
        return json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ArtifactError(f"{name}: malformed JSON ({exc})") from exc


def load_artifact(path: Path | str) -> Artifact:
    """Load and verify an artifact directory; raise ArtifactError on any problem."""
    path = Path(path)
    if not path.is_dir():
        raise ArtifactError(f"{path}: not an artifact directory")
    try:
        manifest_bytes = (path / MANIFEST).read_bytes()
    except OSError as exc:
        raise ArtifactError(f"{path}: no readable {MANIFEST} ({exc.strerror})") from exc
    manifest = _json(manifest_bytes, f"{path / MANIFEST}")
    if not isinstance(manifest, dict):
        raise ArtifactError(f"{path / MANIFEST}: expected a JSON object")
    try:
        fmt, version, fv = manifest["artifact_format"], manifest["version"], manifest["feature_version"]
        files: dict[str, str] = manifest["files"]
        models: dict[str, str] = manifest["models"]
    except (KeyError, TypeError) as exc:
        raise ArtifactError(f"{path / MANIFEST}: missing field {exc}") from exc
    if fmt != ARTIFACT_FORMAT:
        raise ArtifactError(f"{path}: artifact format {fmt!r} not supported (expected {ARTIFACT_FORMAT})")
    if fv != FEATURE_VERSION:
        raise ArtifactError(f"{path}: built for feature version {fv!r}, this code computes version "
                            f"{FEATURE_VERSION}; retrain the model")
    if not isinstance(files, dict) or not isinstance(models, dict) or GENERAL not in models:
        raise ArtifactError(f"{path / MANIFEST}: needs 'files' and 'models' objects with a '{GENERAL}' model")
    needed = {*SCORING_FILES, *INFO_FILES, *models.values()}
    unlisted = sorted(needed - files.keys())
    if unlisted:
        raise ArtifactError(f"{path / MANIFEST}: no sha256 for {', '.join(unlisted)}")

    # Read each file once, verify its hash, and parse those same bytes (no check-then-reread race).
    blobs: dict[str, bytes] = {}
    for name, digest in sorted(files.items()):
        if "/" in name or "\\" in name or name.startswith("."):
            raise ArtifactError(f"{path / MANIFEST}: bad file name {name!r}")
        try:
            blob = (path / name).read_bytes()
        except OSError as exc:
            raise ArtifactError(f"{path / name}: missing or unreadable ({exc.strerror})") from exc
        if sha256_bytes(blob) != digest:
            raise ArtifactError(f"{path / name}: sha256 mismatch (file changed after the artifact was built)")
        blobs[name] = blob

    feats = _json(blobs["features.json"], "features.json")
    if not isinstance(feats, dict) or feats.get("feature_version") != FEATURE_VERSION \
            or feats.get("features") != list(FEATURES):
        raise ArtifactError(f"{path}: features.json does not match feature version {FEATURE_VERSION} of this code")
    enc = _json(blobs["encodings.json"], "encodings.json")
    try:
        state = FeatureState(enc)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise ArtifactError(f"{path / 'encodings.json'}: malformed feature statistics ({exc!r})") from exc
    boosters = {key: _booster_from_text(blobs[fname].decode(errors="replace"), str(path / fname))
                for key, fname in sorted(models.items())}
    info = {name: _json(blobs[name], name) for name in INFO_FILES}
    routing = parse_routing(_json(blobs[ROUTING], ROUTING), list(models), str(path / ROUTING)) if ROUTING in blobs else None
    return Artifact(version=str(version), state=state, boosters=boosters, path=path, manifest=manifest,
                    thresholds=info["thresholds.json"], metrics=info["metrics.json"], summary=info["training.json"],
                    routing=routing)


def write_artifact(
    out: Path,
    state: FeatureState,
    model_texts: dict[str, str],
    summary: dict[str, Any],
    metrics: dict[str, Any],
    thresholds: dict[str, Any],
    created_at: str | None = None,
    routing: Routing | None = None,
) -> str:
    """Write an artifact directory atomically (build beside it, then rename); return its version."""
    if GENERAL not in model_texts:
        raise ArtifactError("an artifact needs a general model")
    out = Path(out)
    if out.exists() and (not out.is_dir() or (any(out.iterdir()) and not (out / MANIFEST).exists())):
        raise ArtifactError(f"{out}: exists and is not an artifact directory; refusing to overwrite")
    blobs: dict[str, bytes] = {
        "features.json": _dumps({"feature_version": FEATURE_VERSION, "features": list(FEATURES),
                                 "categorical": list(CATEGORICAL)}),
        "encodings.json": _dumps(state.to_json()),
    }
    if routing is not None:  # decides scores: covered by the version like the models
        blobs[ROUTING] = _dumps(routing.to_json())
    models = {key: model_file(key) for key in sorted(model_texts)}
    for key, fname in models.items():
        blobs[fname] = model_texts[key].encode()
    content = hashlib.sha256()
    for name in sorted(blobs):
        content.update(name.encode() + b"\0" + sha256_bytes(blobs[name]).encode() + b"\n")
    version = "m-" + content.hexdigest()[:12]
    blobs["training.json"] = _dumps(summary)
    blobs["metrics.json"] = _dumps(metrics)
    blobs["thresholds.json"] = _dumps(thresholds)
    manifest = {
        "artifact_format": ARTIFACT_FORMAT,
        "version": version,
        "feature_version": FEATURE_VERSION,
        "created_at": created_at or datetime.now(UTC).isoformat(timespec="seconds"),
        "models": models,
        "files": {name: sha256_bytes(blob) for name, blob in sorted(blobs.items())},
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        for name, blob in blobs.items():
            (tmp / name).write_bytes(blob)
        (tmp / MANIFEST).write_bytes(json.dumps(manifest, indent=2, sort_keys=True).encode() + b"\n")
        os.chmod(tmp, 0o755)
        if out.exists():
            shutil.rmtree(out)
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return version
