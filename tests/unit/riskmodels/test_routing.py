"""Routing rules (riskmodels.routing), routed training and scoring (one predict per model, one
shared feature state), and the risk types on a routed registry's scores."""

from __future__ import annotations

import copy
import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from policy.config import load_policy
from riskmodels.artifact import GENERAL, load_artifact
from riskmodels.errors import ArtifactError
from riskmodels.routing import RISK_TYPES, parse_routing
from riskmodels.serving import ModelRegistry, publish, score_routed
from tests.unit.riskmodels.plans import AIR, SEA, small_plan

OFFICE_PLAN = Path(__file__).resolve().parents[3] / "riskmodels" / "plans" / "office.json"
POLICY = Path(__file__).resolve().parents[3] / "policy" / "default.yaml"


def _bad(mutate: Any) -> dict[str, Any]:
    doc = copy.deepcopy(small_plan())
    mutate(doc)
    return doc


@pytest.mark.parametrize(("mutate", "message"), [
    (lambda d: d.update(extra=1), "unknown keys"),
    (lambda d: d.update(format=2), "format 2 not supported"),
    (lambda d: d["port_groups"].update(bad=["HAK-AIR"]), "is in groups"),
    (lambda d: d["port_groups"].update({"Bad Name": ["X"]}), "bad port group name"),
    (lambda d: d["port_groups"].update(empty=[]), "non-empty list"),
    (lambda d: d["routes"][0].update(risk_type="smuggling"), "unknown risk type"),
    (lambda d: d["routes"][0].update(scenario="barter"), "unknown scenario"),
    (lambda d: d["routes"][0].update(port_group="north"), "unknown port group"),
    (lambda d: d["routes"][0].update(model="../etc/passwd"), "model must be null or a model key"),
    (lambda d: d["routes"][0].pop("model"), "needs exactly the keys"),
    (lambda d: d["routes"].append(dict(d["routes"][0])), "a second rule"),
    (lambda d: d.update(routes=[{}] * 2001), "at most"),
])
def test_routing_validation_is_strict(mutate: Any, message: str):
    with pytest.raises(ArtifactError, match=message):
        parse_routing(_bad(mutate))


def test_routing_is_checked_against_the_artifact_models():
    models = [GENERAL, *sorted({r["model"] for r in small_plan()["routes"] if r["model"]})]
    parse_routing(small_plan(), models)
    with pytest.raises(ArtifactError, match="not in the artifact"):
        parse_routing(small_plan(), models[:-1])
    with pytest.raises(ArtifactError, match="models no rule names: stray"):
        parse_routing(small_plan(), [*models, "stray"])


def test_most_specific_rule_wins_and_uncovered_types_fall_back_to_general():
    doc = small_plan()
    doc["routes"].append({"scenario": "zero-tariff", "port_group": "*", "risk_type": "undervaluation", "model": "zt.uv"})
    doc["routes"].append({"scenario": "*", "port_group": "air", "risk_type": "misclassification", "model": "air.mc"})
    r = parse_routing(doc)
    assert r.models_for("general-trade", SEA[0], GENERAL) == ("gt.sea.undervaluation", "gt.sea.misclassification",
                                                              "office.origin", "office.restricted-goods")
    assert r.models_for("zero-tariff", AIR[0], GENERAL) == ("zt.uv", "air.mc", "office.origin", "office.restricted-goods")
    assert r.models_for("zero-tariff", SEA[0], GENERAL) == ("zt.uv", GENERAL, "office.origin", "office.restricted-goods")
    assert r.models_for("duty-free-shopping", "NEW-PORT", GENERAL) == (GENERAL, GENERAL, None, "office.restricted-goods")
    assert r.to_json()["routes"] == parse_routing(r.to_json()).to_json()["routes"]  # the stored form reads back the same


def test_office_plan_has_93_models_over_the_policy_ports():
    doc = json.loads(OFFICE_PLAN.read_bytes())
    r = parse_routing(doc)
    assert len(r.models) == 93
    ports = set(load_policy(POLICY).ports)
    assert {p for g in r.port_groups.values() for p in g} == ports  # every policy port in exactly one group
    for scenario in ("general-trade", "zero-tariff", "processing-value-added"):
        for port in ports:  # every route of these scenarios has its own model for every risk type
            routed = r.models_for(scenario, port, GENERAL)
            assert GENERAL not in routed and None not in routed and len(set(routed)) == len(RISK_TYPES)
    assert r.models_for("duty-free-shopping", "SYX-AIR", GENERAL)[RISK_TYPES.index("origin")] is None


def test_routed_artifact_shares_one_feature_state_and_scores_each_model_once(routed_artifact: Path, synth_split):
    art = load_artifact(routed_artifact)
    assert art.routing is not None and len(art.routing.models) == 6 and len(art.boosters) == 7
    valid = synth_split[1].head(600)
    X = art.features({"scenario": valid["scenario"].to_list(), **_cols(valid)})
    calls: list[tuple[str, int]] = []
    real = art.predict
    art.predict = lambda key, rows: (calls.append((key, len(rows))), real(key, rows))[1]  # type: ignore[method-assign]
    scen, ports = valid["scenario"].to_list(), valid["port"].to_list()
    scores, _keys, risk = score_routed(art, scen, ports, X)
    assert len(calls) == len({k for k, _ in calls})  # one predict call per model used
    for i in range(len(scen)):  # exactly one model per applicable risk type; the score is the highest
        applicable = [t for t, m in zip(RISK_TYPES, art.routing.models_for(scen[i], ports[i], GENERAL)) if m is not None]
        assert [t for t, v in zip(RISK_TYPES, risk[i]) if np.isfinite(v)] == applicable
        assert scores[i] == np.nanmax(risk[i])
    for key, n in calls:  # each model scored exactly the rows routed to it (the general fallback once per row)
        expect = {i for i in range(len(scen)) if key in art.routing.models_for(scen[i], ports[i], GENERAL)}
        assert n == len(expect)
        np.testing.assert_array_equal(real(key, X[sorted(expect)]), [risk[i][art.routing.models_for(scen[i], ports[i], GENERAL).index(key)]
                                                                   for i in sorted(expect)])


def _cols(df: Any) -> dict[str, Any]:
    from riskmodels.features import columns_from_frame
    return columns_from_frame(df)


def test_routed_registry_reports_risk_scores_and_loads_the_state_once(tmp_path: Path, routed_artifact: Path, artifact_a: Path, synth_split):
    reg_dir = tmp_path / "reg"
    publish(reg_dir, routed_artifact, ["general", "zero-tariff", "duty-free-shopping"])
    publish(reg_dir, artifact_a, ["processing-value-added"])
    reg = ModelRegistry.open(reg_dir)
    routed = reg._snapshot.active["general"]
    assert reg._snapshot.active["zero-tariff"] is routed and reg._snapshot.active["duty-free-shopping"] is routed
    assert len({id(routed.state)}) == 1 and routed.routing is not None
    valid = synth_split[1]
    batch = reg.score_frame(valid)
    assert batch.risk_scores is not None and batch.risk_scores.shape == (valid.height, len(RISK_TYPES))
    scen = valid["scenario"].to_list()
    pva = np.array([s == "processing-value-added" for s in scen])
    assert np.isnan(batch.risk_scores[pva]).all()  # scored by the unrouted artifact: no risk types
    assert np.isfinite(batch.risk_scores[~pva]).any(axis=1).all()
    np.testing.assert_allclose(batch.scores[~pva], np.nanmax(batch.risk_scores[~pva], axis=1))
    dfs = np.array([s == "duty-free-shopping" for s in scen])
    assert np.isnan(batch.risk_scores[dfs, RISK_TYPES.index("origin")]).all()
    assert {v.split("/")[1] for v in np.array(batch.model_versions)[~pva]} <= routed.routing.models | {GENERAL}
    assert reg.active_versions()["general-trade"] == f"{routed.version}/routed"
    assert batch.explain(int(np.flatnonzero(~pva)[0]))  # reasons from the model that gave the score


def test_unrouted_registry_has_no_risk_scores(artifact_a: Path, synth_split):
    assert ModelRegistry.open(artifact_a).score_frame(synth_split[1].head(50)).risk_scores is None


def test_a_routed_artifact_with_a_broken_routing_file_is_refused(tmp_path: Path, routed_artifact: Path):
    broken = tmp_path / "broken"
    shutil.copytree(routed_artifact, broken)
    doc = json.loads((broken / "routing.json").read_bytes())
    doc["routes"][0]["risk_type"] = "smuggling"
    (broken / "routing.json").write_text(json.dumps(doc))
    with pytest.raises(ArtifactError, match="sha256 mismatch"):
        load_artifact(broken)
