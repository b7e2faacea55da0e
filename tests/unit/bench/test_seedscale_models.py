"""The ``models`` seed-scale section's pure parts: the quick plan and the figure arithmetic."""

from __future__ import annotations

import json

from bench.seedscale import models
from riskmodels.routing import parse_routing


def test_quick_plan_routes_every_group_and_type_for_every_scenario():
    doc = json.loads(models.PLAN.read_bytes())
    quick = parse_routing(models.quick_plan(doc))
    assert len(quick.models) == len(doc["port_groups"]) * 4
    assert len(parse_routing(doc).models) == 93


def test_figures_compare_the_routed_worker_with_the_single_model_one():
    one = {"throughput": 2000.0, "rss_mb": 300.0, "models_rss_mb": 10.0, "artifact_mb": 1.0, "model_files_kb_mean": 20.0}
    routed = {"throughput": 1500.0, "rss_mb": 346.0, "models_rss_mb": 56.0, "artifact_mb": 3.0, "model_files_kb_mean": 18.0,
              "mean_micro_batch": 90.0}
    out = models.figures(one, routed, 93)
    assert out["count"] == 93 and out["throughput_ratio"] == 0.75
    assert out["rss_mb"] == 346.0 and out["rss_mb_one_model"] == 300.0
    assert out["rss_mb_per_model"] == round(46 / 92, 3)
