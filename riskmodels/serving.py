"""Scoring inside the worker: micro-batches, per-scenario models, shadow models, hot swap.

Registry directory (see README.md)::

    REGISTRY/
      active.json           {"active": {"general": "m-…", "<scenario>": "m-…"}, "shadow": {...}}
      versions/<version>/   artifact directories (immutable; the version id is a content hash)

A declaration of scenario S is scored by the artifact ``active[S]`` if set, else
``active["general"]``; inside that artifact by its model for S if it has one, else its general
model. ``shadow`` uses the same routing; shadow scores are reported, never acted on.

An artifact with routing rules (``routing.json``, :mod:`riskmodels.routing`) scores each of its
declarations with one model per risk type that applies to the declaration's scenario and port group;
the declaration's score is the highest of them, and ``ScoreBatch.risk_scores`` keeps each type's.
All the artifact's models share its one feature state: features are computed once per batch.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from riskmodels.artifact import GENERAL, MANIFEST, Artifact, load_artifact
from riskmodels.errors import ArtifactError
from riskmodels.explain import contrib_reasons, reasons
from riskmodels.features import Columns, columns_from_frame, columns_from_records, value_added_reference
from riskmodels.routing import RISK_TYPES

log = logging.getLogger(__name__)

ACTIVE = "active.json"
VERSIONS = "versions"
STARTER_DIR = Path(__file__).resolve().parent / "starter"
SCENARIOS = ("general-trade", "zero-tariff", "processing-value-added", "duty-free-shopping")


@dataclass(frozen=True)
class _Snapshot:
    """An immutable routing table; score() reads it once, so a batch never mixes two versions."""

    signature: bytes
    active: dict[str, Artifact]
    shadow: dict[str, Artifact]

    def route(self, table: dict[str, Artifact], scenario: str) -> Artifact | None:
        return table.get(scenario) or table.get(GENERAL)


@dataclass
class _Group:
    artifact: Artifact
    rows: np.ndarray  # indices into the batch
    X: np.ndarray
    keys: np.ndarray  # model key per row of the group


@dataclass
class ScoreBatch:
    scores: np.ndarray
    model_versions: list[str]
    shadow_scores: np.ndarray | None = None  # nan where no shadow model covers the scenario
    shadow_versions: list[str | None] | None = None
    # Processing value-added rows: (enterprise mean ratio, rows, HS chapter mean ratio, rows) from the
    # active artifact's statistics; None when the batch has no such declaration.
    value_added: np.ndarray | None = None
    # (n, len(RISK_TYPES)) scores per risk type from routed artifacts; nan where the type does not
    # apply (or the row's artifact has no routing); None when no routed artifact scored the batch.
    risk_scores: np.ndarray | None = None
    _cols: Columns = field(default_factory=dict, repr=False)
    _groups: list[_Group] = field(default_factory=list, repr=False)

    def __len__(self) -> int:
        return len(self.scores)

    def _locate(self, i: int) -> tuple[_Group, int]:
        for g in self._groups:
            pos = np.searchsorted(g.rows, i)
            if pos < len(g.rows) and g.rows[pos] == i:
                return g, int(pos)
        raise IndexError(i)

    def explain(self, i: int, top: int = 3, method: str = "deviation") -> list[str]:
        """Plain-language reasons for row ``i`` (computed on demand: explain only what you act on).

        ``method="contrib"`` uses LightGBM's exact TreeSHAP contributions: ~100x slower.
        """
        if not 0 <= i < len(self.scores):
            raise IndexError(i)
        g, pos = self._locate(i)
        key = g.keys[pos]
        if method == "contrib":
            contrib = g.artifact.boosters[key].predict(g.X[pos:pos + 1], pred_contrib=True, num_threads=1)[0]
            return contrib_reasons(contrib, top)
        row = {f: self._cols[f][i] for f in ("hs_code", "port", "origin_country", "departure_country", "currency")}
        return reasons(g.X[pos], row, g.artifact.state, g.artifact.importance[key], top)


def _subset(cols: Columns, rows: np.ndarray) -> Columns:
    out: Columns = {}
    for f, v in cols.items():
        out[f] = v[rows] if isinstance(v, np.ndarray) else [v[i] for i in rows]
    return out


def score_routed(art: Artifact, scenarios: list[str], ports: list[str], X: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Scores, the key of the model that gave each (the highest risk type's) and the (n, 4) risk
    type scores of a routed artifact: rows grouped per model, one predict call per model used."""
    assert art.routing is not None
    n = len(scenarios)
    route_rows: dict[tuple[str | None, ...], list[int]] = {}
    for i, (s, p) in enumerate(zip(scenarios, ports)):
        route_rows.setdefault(art.routing.models_for(s, p, GENERAL), []).append(i)
    jobs: dict[str, list[tuple[np.ndarray, int]]] = {}
    for route, rows in route_rows.items():
        idx = np.asarray(rows, dtype=np.intp)
        for t, key in enumerate(route):
            if key is not None:
                jobs.setdefault(key, []).append((idx, t))
    risk = np.full((n, len(RISK_TYPES)), np.nan)
    model_of = np.full((n, len(RISK_TYPES)), GENERAL, dtype=object)
    for key, parts in jobs.items():
        rows_all = np.concatenate([idx for idx, _ in parts])
        uniq, inverse = np.unique(rows_all, return_inverse=True)  # the general fallback may serve several types of a row
        got = art.predict(key, X[uniq])[inverse]
        at = 0
        for idx, t in parts:
            risk[idx, t] = got[at:at + len(idx)]
            model_of[idx, t] = key
            at += len(idx)
    filled = np.where(np.isnan(risk), -np.inf, risk)
    best = filled.argmax(axis=1) if n else np.zeros(0, dtype=np.intp)
    scores = filled[np.arange(n), best]
    keys = model_of[np.arange(n), best]
    none = np.flatnonzero(np.isneginf(scores))  # no risk type applies on the route: the general model decides
    if len(none):
        scores[none] = art.predict(GENERAL, X[none])
        keys[none] = GENERAL
    return scores, keys, risk


def _score(snap: _Snapshot, cols: Columns) -> ScoreBatch:
    scen: list[str] = cols["scenario"]
    n = len(scen)
    features: dict[int, np.ndarray] = {}  # id(artifact) -> X, shared by active and shadow
    risk_scores: list[np.ndarray] = []  # the active table's, at most one array

    def run(table: dict[str, Artifact], active: bool) -> tuple[np.ndarray, list[Any], list[_Group]]:
        scores = np.full(n, np.nan)
        versions: list[Any] = [None] * n
        groups: list[_Group] = []
        arts = {id(a): a for a in table.values()}
        if len(arts) == 1 and (GENERAL in table or set(scen) <= table.keys()):
            assign = [(next(iter(arts.values())), np.arange(n))]  # the common case: one artifact
        else:
            routed = np.array([id(snap.route(table, s)) if snap.route(table, s) else 0 for s in scen], dtype=object)
            assign = [(a, np.flatnonzero(routed == aid)) for aid, a in arts.items()]
        for art, rows in assign:
            if len(rows) == 0:
                continue
            if id(art) not in features or len(rows) != n:
                X = art.features(cols if len(rows) == n else _subset(cols, rows))
                if len(rows) == n:
                    features[id(art)] = X
            else:
                X = features[id(art)]
            sub_scen = scen if len(rows) == n else [scen[i] for i in rows]
            if art.routing is not None:
                ports = cols["port"] if len(rows) == n else [cols["port"][i] for i in rows]
                s, keys, risk = score_routed(art, sub_scen, ports, X)
                if active:
                    if not risk_scores:
                        risk_scores.append(np.full((n, len(RISK_TYPES)), np.nan))
                    risk_scores[0][rows] = risk
            else:
                s, keys = art.score(sub_scen, X)
            scores[rows] = s
            if len(rows) == n and len(set(keys.tolist())) == 1:
                versions = [art.model_version(keys[0])] * n if n else []
            else:
                for r, k in zip(rows.tolist(), keys.tolist()):
                    versions[r] = art.model_version(k)
            groups.append(_Group(art, rows, X, keys))
        return scores, versions, groups

    scores, versions, groups = run(snap.active, True)
    batch = ScoreBatch(scores, versions, _cols=cols, _groups=groups, value_added=_value_added(cols, groups),
                       risk_scores=risk_scores[0] if risk_scores else None)
    if snap.shadow:
        batch.shadow_scores, batch.shadow_versions, _ = run(snap.shadow, False)
    return batch


def _value_added(cols: Columns, groups: list[_Group]) -> np.ndarray | None:
    processing = np.flatnonzero(np.array([s == "processing-value-added" for s in cols["scenario"]], dtype=bool))
    if len(processing) == 0:
        return None
    out = np.full((len(cols["scenario"]), 4), np.nan)
    for g in groups:
        rows = np.intersect1d(g.rows, processing)
        if len(rows):
            out[rows] = value_added_reference(_subset(cols, rows), g.artifact.state)
    return out


def _version_map(snap: _Snapshot) -> tuple[dict[str, str], dict[str, str]]:
    return ({k: a.version for k, a in snap.active.items()}, {k: a.version for k, a in snap.shadow.items()})


class ModelRegistry:
    """Scores micro-batches with the active model per scenario; swaps models without stopping."""

    def __init__(self, root: Path, snapshot: _Snapshot, is_registry: bool) -> None:
        self.root = root
        self._snapshot = snapshot
        self._is_registry = is_registry
        self._lock = threading.Lock()  # serialises refresh(); score() never takes it
        self._cache: dict[str, Artifact] = {a.version: a for a in (*snapshot.active.values(), *snapshot.shadow.values())}
        self._failed: bytes | None = None
        self.last_error: str | None = None

    @classmethod
    def open(cls, model_dir: Path | None) -> ModelRegistry:
        """A registry directory (with active.json), a single artifact directory, or None: the starter model."""
        root = Path(model_dir) if model_dir is not None else STARTER_DIR
        if (root / ACTIVE).exists():
            reg = cls(root, _Snapshot(b"", {}, {}), True)
            snap = reg._load_snapshot((root / ACTIVE).read_bytes())
            reg._snapshot = snap
            reg._cache = {a.version: a for a in (*snap.active.values(), *snap.shadow.values())}
            return reg
        if (root / MANIFEST).exists():
            art = load_artifact(root)
            return cls(root, _Snapshot(b"", {GENERAL: art}, {}), False)
        raise ArtifactError(f"{root}: neither a model registry ({ACTIVE}) nor an artifact ({MANIFEST})")

    # -- scoring ---------------------------------------------------------------------------------

    def score(self, declarations: Sequence[Any]) -> ScoreBatch:
        """Score a micro-batch of ``schemas.Declaration`` objects (or dicts with the same fields)."""
        return _score(self._snapshot, columns_from_records(declarations))

    def score_frame(self, df: pl.DataFrame) -> ScoreBatch:
        """Score a project-format polars frame (offline evaluation); same features as score()."""
        return _score(self._snapshot, columns_from_frame(df))

    def active_versions(self) -> dict[str, str]:
        """Scenario -> "<artifact version>/<model key>" of the model that scores it now."""
        return self._versions(self._snapshot.active)

    def shadow_versions(self) -> dict[str, str]:
        return self._versions(self._snapshot.shadow)

    def _versions(self, table: dict[str, Artifact]) -> dict[str, str]:
        out = {}
        for s in SCENARIOS:
            art = self._snapshot.route(table, s)
            if art is not None:  # a routed artifact: many models per scenario, named per row in model_versions
                out[s] = art.model_version("routed" if art.routing is not None else art.model_key(s))
        return out

    # -- hot swap --------------------------------------------------------------------------------

    def _artifact(self, version: str) -> Artifact:
        if not isinstance(version, str) or not version or "/" in version or version.startswith("."):
            raise ArtifactError(f"{self.root / ACTIVE}: bad version name {version!r}")
        if version in self._cache:
            return self._cache[version]
        art = load_artifact(self.root / VERSIONS / version)
        if art.version != version:
            raise ArtifactError(f"{self.root / VERSIONS / version}: manifest says version {art.version}")
        return art

    def _load_snapshot(self, raw: bytes) -> _Snapshot:
        try:
            doc = json.loads(raw)
            active, shadow = doc["active"], doc.get("shadow") or {}
            if not isinstance(active, dict) or not isinstance(shadow, dict):
                raise TypeError("'active' and 'shadow' must be objects")
        except (ValueError, KeyError, TypeError) as exc:
            raise ArtifactError(f"{self.root / ACTIVE}: malformed ({exc!r})") from exc
        if GENERAL not in active:
            raise ArtifactError(f"{self.root / ACTIVE}: 'active' needs a '{GENERAL}' entry")
        loaded: dict[str, Artifact] = {}  # each version (its feature state, its models) loaded once

        def artifact(version: str) -> Artifact:
            if not isinstance(version, str) or version not in loaded:  # a bad name: _artifact refuses it
                loaded[version] = self._artifact(version)
            return loaded[version]

        return _Snapshot(raw, {k: artifact(v) for k, v in active.items()}, {k: artifact(v) for k, v in shadow.items()})

    def refresh(self, force: bool = False) -> bool:
        """Re-read active.json; load, verify and atomically swap in changed versions.

        Returns True if the active set changed. On a broken artifact or pointer the current models
        keep serving, the error is logged (and kept in ``last_error``) and False is returned; the
        same broken pointer is not retried until active.json changes (or ``force=True``).
        """
        if not self._is_registry:
            return False
        with self._lock:
            try:
                raw = (self.root / ACTIVE).read_bytes()
            except OSError as exc:
                self.last_error = f"{self.root / ACTIVE}: {exc.strerror}"
                log.error("model refresh failed, keeping %s: %s", self.active_versions(), self.last_error)
                return False
            if raw == self._snapshot.signature or (raw == self._failed and not force):
                return False
            try:
                snap = self._load_snapshot(raw)
            except ArtifactError as exc:
                self._failed, self.last_error = raw, str(exc)
                log.error("refusing model change, keeping %s: %s", self.active_versions(), exc)
                return False
            if _version_map(snap) == _version_map(self._snapshot):
                self._snapshot = snap  # same models, only the file's bytes differ
                self._failed, self.last_error = None, None
                return False
            self._snapshot = snap  # one reference assignment: atomic for concurrent score() calls
            self._cache = {a.version: a for a in (*snap.active.values(), *snap.shadow.values())}
            self._failed, self.last_error = None, None
            log.info("models now active: %s", self.active_versions())
            return True


# -- publishing into a registry ------------------------------------------------------------------

def _write_atomic(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def publish(registry: Path, artifact_dir: Path, scenarios: Sequence[str] = (GENERAL,), shadow: bool = False) -> str:
    """Copy a verified artifact into ``registry/versions/`` and point the scenarios at it.

    Workers pick the change up on their next ``refresh()``. Returns the version id.
    """
    registry, artifact_dir = Path(registry), Path(artifact_dir)
    art = load_artifact(artifact_dir)  # refuse to publish something the workers would refuse
    dest = registry / VERSIONS / art.version
    if not dest.exists():
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{art.version}.", dir=dest.parent))
        try:
            for name in (MANIFEST, *art.manifest["files"]):
                shutil.copy2(artifact_dir / name, tmp / name)
            os.chmod(tmp, 0o755)
            os.replace(tmp, dest)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    active_path = registry / ACTIVE
    doc: dict[str, Any] = {"active": {}, "shadow": {}}
    if active_path.exists():
        try:
            doc = json.loads(active_path.read_bytes())
        except ValueError as exc:
            raise ArtifactError(f"{active_path}: malformed ({exc})") from exc
    table = doc.setdefault("shadow" if shadow else "active", {})
    for s in scenarios:
        table[s] = art.version
    if GENERAL not in doc.get("active", {}):
        raise ArtifactError(f"{registry}: publish a '{GENERAL}' active model first")
    _write_atomic(active_path, json.dumps(doc, indent=2, sort_keys=True).encode() + b"\n")
    return art.version
