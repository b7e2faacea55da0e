"""A small routing plan (6 routed models) for unit and integration tests of routed artifacts."""

from __future__ import annotations

from typing import Any

from portsim import world

SEA = [p.port_id for p in world.PORTS if p.kind != world.AIR]
AIR = [p.port_id for p in world.PORTS if p.kind == world.AIR]


def small_plan() -> dict[str, Any]:
    """General trade at sea and air ports x (undervaluation, misclassification), one office-wide
    model each for origin and restricted goods, no origin model for duty-free shopping."""
    routes: list[dict[str, Any]] = [
        {"scenario": "general-trade", "port_group": g, "risk_type": t, "model": f"gt.{g}.{t}"}
        for g in ("sea", "air") for t in ("undervaluation", "misclassification")
    ]
    routes += [{"scenario": "*", "port_group": "*", "risk_type": t, "model": f"office.{t}"} for t in ("origin", "restricted-goods")]
    routes.append({"scenario": "duty-free-shopping", "port_group": "*", "risk_type": "origin", "model": None})
    return {"format": 1, "port_groups": {"sea": SEA, "air": AIR}, "routes": routes}
