"""A declaration's score does not depend on the size of the micro-batch it lands in.

The worker scores micro-batches of one declaration to thousands; the small-batch paths
(``riskmodels.fastpredict``, the one-gather history look-up in ``features.build_matrix``) must give
the numbers the large-batch and the library's own paths give.
"""

from __future__ import annotations

import lightgbm as lgb
import numpy as np
import pytest

from riskmodels.artifact import GENERAL, load_artifact
from riskmodels.data import declarations_from_frame
from riskmodels.fastpredict import Predictor
from riskmodels.features import HISTORY_KEYS, INDEX, build_matrix, columns_from_records, derived, key_values
from riskmodels.serving import ModelRegistry

ROWS = 300


@pytest.fixture(scope="module")
def decls(synth_split):
    return declarations_from_frame(synth_split[1])[:ROWS]


@pytest.mark.parametrize("model", ["starter", "trained"])
def test_predictor_gives_the_library_s_numbers_bit_for_bit(model, artifact_a, decls) -> None:
    registry = ModelRegistry.open(None if model == "starter" else artifact_a)
    art = registry._snapshot.active[GENERAL]
    X = art.features(columns_from_records(decls))
    booster = art.boosters[GENERAL]
    expected = booster.predict(X, num_threads=1)
    predictor = Predictor(booster)
    assert predictor.direct, "the direct library call is not available: every score would take the slow path"
    assert np.array_equal(predictor.predict(X), expected)
    for size in (1, 2, 7):
        for start in range(0, 40, size):
            assert np.array_equal(predictor.predict(X[start:start + size]), expected[start:start + size])


def test_predictor_falls_back_on_other_input(artifact_a, decls) -> None:
    art = load_artifact(artifact_a)
    X = art.features(columns_from_records(decls[:20]))
    booster = art.boosters[GENERAL]
    fortran = np.asfortranarray(X)
    assert np.array_equal(Predictor(booster).predict(fortran), booster.predict(X, num_threads=1))
    with pytest.raises((ValueError, lgb.basic.LightGBMError)):
        Predictor(booster).predict(X[:, :-1])  # the library's own error, not a silent misread


@pytest.mark.parametrize("model", ["starter", "trained"])
def test_a_declaration_scores_the_same_alone_and_in_a_large_batch(model, artifact_a, decls) -> None:
    registry = ModelRegistry.open(None if model == "starter" else artifact_a)
    batch = registry.score(decls)
    alone = np.array([registry.score([d]).scores[0] for d in decls])
    np.testing.assert_allclose(alone, batch.scores, rtol=0, atol=1e-12)
    in_threes = np.concatenate([registry.score(decls[i:i + 3]).scores for i in range(0, ROWS, 3)])
    np.testing.assert_allclose(in_threes, batch.scores, rtol=0, atol=1e-12)
    assert len(set(np.round(batch.scores, 6))) > 10  # real, varied scores: not a constant that matches itself


def test_history_features_match_a_per_key_look_up(artifact_a, decls) -> None:
    state = load_artifact(artifact_a).state
    cols = columns_from_records(decls)
    X = build_matrix(cols, state)
    full = derived(dict(cols))
    for name, parts in HISTORY_KEYS.items():
        index, rates, counts = state.history[name]
        idx = np.array([-1 if k is None else index.get(k, -2) for k in key_values(full, parts)])
        np.testing.assert_array_equal(X[:, INDEX[f"{name}_fraud_rate"]], rates[idx])
        np.testing.assert_array_equal(X[:, INDEX[f"{name}_count"]], counts[idx])
    seen = X[:, INDEX["importer_count"]]
    assert np.nanmax(seen) > 0 and (seen == 0).any()  # both known and unseen enterprises are exercised
