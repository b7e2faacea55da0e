"""Routed models on real brokers: a worker whose registry holds a routed artifact (6 models, one per
risk type and route, tests/unit/riskmodels/plans.py) names on each instruction the risk types
whose model's score reached the machine-check threshold it used."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from clients import topics
from portsim.starter import simulated_history
from portsim.traffic import PortOffice
from riskmodels.routed import ROUTED_CONFIG, train_routed
from riskmodels.routing import RISK_TYPES, parse_routing
from riskmodels.serving import ModelRegistry, publish
from schemas import ControlInstruction, Declaration
from tests.integration.pipeline_harness import Harness, pipeline_settings, write_policy
from tests.unit.factories import quiet
from tests.unit.riskmodels.plans import small_plan

DECLARATIONS = 80


def test_instructions_name_the_risk_types_that_selected_them(broker: Any, unique_name: str, tmp_path: Path) -> None:
    artifact = tmp_path / "routed"
    cfg = ROUTED_CONFIG.__class__(**{**ROUTED_CONFIG.__dict__, "rounds": 5, "min_data_in_leaf": 10, "num_threads": 1,
                                     "history_min_rows": 2, "history_min_frauds": 1})
    train_routed(simulated_history(8000, seed=13, enterprises=1000), parse_routing(small_plan()), artifact, cfg, progress=quiet)
    registry = tmp_path / "models"
    version = publish(registry, artifact)
    # A low machine-check threshold for unknown (general-class) enterprises: some types cross it, some do not.
    policy = write_policy(tmp_path / "policy.yaml", thresholds={"general": {"machine_check": 0.03, "inspect": 0.8}},
                          scenario_thresholds={})
    settings = pipeline_settings(broker.bootstrap_servers, unique_name, tmp_path, model_dir=registry, policy_file=policy)
    now = datetime.now(UTC).isoformat()
    office = PortOffice(seed=13, enterprises=1000)
    decls = [{**d, "event_time": now} for d, _ in office.declaration_dicts(DECLARATIONS * 3, first_index=10**6)
             if d["scenario"] in ("general-trade", "duty-free-shopping")][:DECLARATIONS]
    offline = ModelRegistry.open(registry).score([Declaration.model_validate_json(orjson.dumps(d)) for d in decls])
    assert offline.risk_scores is not None
    expected_scores = {d["declaration_id"]: (float(offline.scores[i]), offline.risk_scores[i]) for i, d in enumerate(decls)}

    h = Harness(settings, tmp_path)
    try:
        worker = h.start_worker()
        worker.wait_ready()
        for d in decls:
            h.publish(topics.DECLARATIONS, d["declaration_id"], d)
        h.flush()
        ids = set(expected_scores)
        h.read_until(lambda h: {i["declaration_id"] for i in h.instructions if i["stage"] == "declaration"} >= ids,
                     120, f"a declaration-stage instruction for each of {len(ids)} declarations; log:\n{worker.log_tail()}")
        named = released = 0
        for raw in (i for i in h.instructions if i["stage"] == "declaration"):
            ins = ControlInstruction.model_validate_json(orjson.dumps(raw))
            score, risk = expected_scores[ins.declaration_id]
            assert ins.score == score and ins.model_version is not None and ins.model_version.startswith(f"{version}/")
            types = [t.value for t in ins.risk_types]
            if ins.action.value == "release" or ins.thresholds is None:
                assert types == [] and "risk_types" not in raw
                released += ins.action.value == "release"
                continue
            assert types == [t for t, s in zip(RISK_TYPES, risk) if math.isfinite(s) and s >= ins.thresholds[0]]
            named += bool(types)
        assert named > 0 and released > 0, f"{named} instructions named risk types, {released} released"
    finally:
        h.close()
