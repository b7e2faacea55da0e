"""Builders shared by the topology-driver tests: a fixed scorer, a policy without random or
capacity selection, and JSON-ready declarations and scans."""

from __future__ import annotations

from datetime import UTC, datetime

from policy.config import load_policy
from tests.unit.factories import FIXTURE_POLICY

NOW = datetime.now(UTC)


class FixedScorer:
    """Scores from a table by declaration id (default 0.0); the real model is tested in riskmodels."""

    def __init__(self, scores: dict[str, float] | None = None) -> None:
        self.scores = scores or {}
        self.calls: list[int] = []

    def score(self, declarations):
        self.calls.append(len(declarations))
        scores = [self.scores.get(d.declaration_id, 0.0) for d in declarations]

        class Batch:
            model_versions = ["fixed-1"] * len(declarations)

            def __init__(self) -> None:
                self.scores = scores

            def explain(self, i: int, top: int = 3) -> list[str]:
                return [f"fixed score {scores[i]:.2f}"]

        return Batch()

    def active_versions(self):
        return {"general-trade": "fixed-1"}

    def shadow_versions(self):
        return {}

    def refresh(self):
        return False


def policy():
    base = load_policy(FIXTURE_POLICY)
    return base.model_copy(update={
        "random_selection": base.random_selection.model_copy(update={"share": 0.0}),
        "capacity": base.capacity.model_copy(update={
            "default": base.capacity.default.model_copy(update={"machine_check": None, "inspect": None}),
            "ports": {},
        }),
    })


def decl(did: str, **over) -> dict:
    return {"declaration_id": did, "port": "HAK-SEA", "enterprise_id": "E1", "declarant_id": "DC1", "scenario": "general-trade",
            "hs_code": "851712", "origin_country": "CN", "departure_country": "CN", "transport_mode": "sea",
            "declared_value": 1000.0, "currency": "CNY", "net_mass_kg": 5.0, "tax_rate": 5.0, "event_time": NOW.isoformat(), **over}


def scan(did: str, verdict: str) -> dict:
    return {"scan_id": f"S-{did}", "declaration_id": did, "port": "HAK-SEA", "device_id": "HAK-SEA-XR01", "device_type": "x-ray",
            "anomaly_score": 0.9 if verdict == "suspicious" else 0.1, "verdict": verdict, "event_time": NOW.isoformat()}
