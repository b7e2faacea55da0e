"""``riskctl explain`` shows the risk types that selected a declaration (routed models)."""

from __future__ import annotations

from audit.explain import explanation, format_explanation


def _instruction(**over: object) -> dict[str, object]:
    return {"instruction_id": "D1:1:declaration", "declaration_id": "D1", "revision": 1, "stage": "declaration",
            "action": "inspect", "final": True, "selection_reason": "model-threshold", "credit_class": "general",
            "score": 0.7, "model_version": "m-1/gt.sea.undervaluation", "policy_version": "p", "reasons": [],
            "risk_hits": [], "suspected_categories": [], "port": "HAK-SEA", "enterprise_id": "E1",
            "scenario": "general-trade", "event_time": "t", "decided_at": "t", **over}


def test_explain_names_the_risk_types_and_omits_the_line_without_them():
    doc = explanation("D1", [_instruction(risk_types=["undervaluation", "origin"])])
    assert doc["instructions"][0]["risk_types"] == ["undervaluation", "origin"]
    assert "  risk types     undervaluation, origin" in format_explanation(doc).splitlines()
    old = explanation("D1", [_instruction()])  # a record from before the field, or an unrouted model
    assert old["instructions"][0]["risk_types"] == [] and "risk types" not in format_explanation(old)
