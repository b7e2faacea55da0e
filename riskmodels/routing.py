"""Routing rules: which model scores which risk type of a declaration, by scenario and port group.

A routed artifact carries ``routing.json`` (covered by its manifest, so the rules change only with
the models they name)::

    {"format": 1,
     "port_groups": {"yangpu": ["YPU-SEA"], "air": ["HAK-AIR", "SYX-AIR", "BAR-AIR"], ...},
     "routes": [
       {"scenario": "general-trade", "port_group": "yangpu", "risk_type": "undervaluation",
        "model": "gt.yangpu.undervaluation"},
       {"scenario": "duty-free-shopping", "port_group": ["haikou-air", "sanya-air"], "risk_type": "undervaluation",
        "model": "dfs.air.undervaluation"},
       {"scenario": "duty-free-shopping", "port_group": "*", "risk_type": "origin", "model": null},
       ...]}

A declaration gets at most one model per risk type: the rule for (its scenario, its port's group,
the type), else (scenario, ``*``), else (``*``, group), else (``*``, ``*``), else the artifact's
general model. A rule may name a list of groups that share its model. ``"model": null`` says the
risk type does not apply on that route (no score): the simulator's duty-free shopping has no
origin fraud, for example. Validation is strict: unknown
keys, risk types, scenarios or groups, a port in two groups, two rules for the same
(scenario, group, type), a rule naming a model the artifact lacks, or a model no rule names are
all refused with ``ArtifactError``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from riskmodels.errors import ArtifactError
from schemas.records import RiskType

ROUTING = "routing.json"
ROUTING_FORMAT = 1
ANY = "*"
RISK_TYPES: tuple[str, ...] = tuple(t.value for t in RiskType)  # the score columns' order
# The simulator's hidden truth (``fraud_pattern``) behind each risk type; other patterns
# (value-added inflation, zero-tariff goods leaving the island) are negatives for all four.
PATTERN_RISK_TYPE = {
    "undervaluation": "undervaluation",
    "hs-misclassification": "misclassification",
    "origin-laundering": "origin",
    "risky-route": "restricted-goods",
}
SCENARIOS = ("general-trade", "zero-tariff", "processing-value-added", "duty-free-shopping")
MODEL_KEY = re.compile(r"^[a-z0-9][a-z0-9.-]{0,79}$")
GROUP_NAME = re.compile(r"^[a-z0-9][a-z0-9-]{0,39}$")
MAX_ROUTES = 2000
MAX_GROUPS = 200
MAX_PORTS = 2000
_ROUTE_KEYS = frozenset({"scenario", "port_group", "risk_type", "model"})
_CACHE_LIMIT = 4096  # (scenario, port) pairs resolved and kept; beyond it resolved per batch


@dataclass(frozen=True)
class Routing:
    """Validated routing rules of one artifact."""

    port_groups: dict[str, tuple[str, ...]]
    rules: dict[tuple[str, str, str], str | None]  # (scenario | *, group | *, risk type) -> model key | None
    group_of: dict[str, str] = field(default_factory=dict)  # port -> group
    _cache: dict[tuple[str, str], tuple[str | None, ...]] = field(default_factory=dict, compare=False, repr=False)

    @property
    def models(self) -> set[str]:
        return {m for m in self.rules.values() if m is not None}

    def models_for(self, scenario: str, port: str, general: str) -> tuple[str | None, ...]:
        """The model key per risk type (``RISK_TYPES`` order) for a route; None where the type does
        not apply. ``general`` is the fallback when no rule covers the type."""
        cached = self._cache.get((scenario, port))
        if cached is not None:
            return cached
        group = self.group_of.get(port, ANY)
        out: list[str | None] = []
        for risk in RISK_TYPES:
            for key in ((scenario, group, risk), (scenario, ANY, risk), (ANY, group, risk), (ANY, ANY, risk)):
                if key in self.rules:
                    out.append(self.rules[key])
                    break
            else:
                out.append(general)
        resolved = tuple(out)
        if len(self._cache) < _CACHE_LIMIT:
            self._cache[(scenario, port)] = resolved
        return resolved

    def to_json(self) -> dict[str, Any]:
        return {
            "format": ROUTING_FORMAT,
            "port_groups": {g: list(p) for g, p in sorted(self.port_groups.items())},
            "routes": [{"scenario": s, "port_group": g, "risk_type": r, "model": m}
                       for (s, g, r), m in sorted(self.rules.items())],
        }


def _str(value: Any, what: str, where: str) -> str:
    if not isinstance(value, str):
        raise ArtifactError(f"{where}: {what} must be a string, not {value!r}"[:300])
    return value


def parse_routing(doc: Any, models: Sequence[str] | None = None, where: str = ROUTING) -> Routing:
    """Validate a routing document; ``models``: the artifact's model keys (None: not checked)."""
    if not isinstance(doc, Mapping):
        raise ArtifactError(f"{where}: expected a JSON object")
    extra = set(doc) - {"format", "port_groups", "routes"}
    if extra:
        raise ArtifactError(f"{where}: unknown keys {sorted(map(str, extra))[:5]}")
    if doc.get("format") != ROUTING_FORMAT:
        raise ArtifactError(f"{where}: format {doc.get('format')!r} not supported (expected {ROUTING_FORMAT})")
    groups_doc, routes_doc = doc.get("port_groups"), doc.get("routes")
    if not isinstance(groups_doc, Mapping) or not isinstance(routes_doc, list):
        raise ArtifactError(f"{where}: needs 'port_groups' (object) and 'routes' (list)")
    if len(groups_doc) > MAX_GROUPS or len(routes_doc) > MAX_ROUTES:
        raise ArtifactError(f"{where}: at most {MAX_GROUPS} port groups and {MAX_ROUTES} routes")
    groups: dict[str, tuple[str, ...]] = {}
    group_of: dict[str, str] = {}
    for name, ports in groups_doc.items():
        if not isinstance(name, str) or not GROUP_NAME.match(name):
            raise ArtifactError(f"{where}: bad port group name {name!r}"[:300])
        if not isinstance(ports, list) or not ports or len(ports) > MAX_PORTS:
            raise ArtifactError(f"{where}: port group {name!r} needs a non-empty list of ports")
        for port in ports:
            _str(port, f"port of group {name!r}", where)
            if port in group_of:
                raise ArtifactError(f"{where}: port {port!r} is in groups {group_of[port]!r} and {name!r}"[:300])
            group_of[port] = name
        groups[name] = tuple(ports)
    rules: dict[tuple[str, str, str], str | None] = {}
    for i, route in enumerate(routes_doc):
        at = f"{where}: routes[{i}]"
        if not isinstance(route, Mapping) or set(route) != _ROUTE_KEYS:
            raise ArtifactError(f"{at}: needs exactly the keys {sorted(_ROUTE_KEYS)}")
        scenario = _str(route["scenario"], "scenario", at)
        named = route["port_group"]  # a group, "*", or a list of groups sharing the model
        if isinstance(named, list) and 0 < len(named) <= MAX_GROUPS:
            names = [_str(g, "port_group", at) for g in named]
        else:
            names = [_str(named, "port_group (a name, '*' or a list of names)", at)]
        risk = _str(route["risk_type"], "risk_type", at)
        model = route["model"]
        if scenario != ANY and scenario not in SCENARIOS:
            raise ArtifactError(f"{at}: unknown scenario {scenario!r}"[:300])
        for group in names:
            if group != ANY and group not in groups:
                raise ArtifactError(f"{at}: unknown port group {group!r}"[:300])
        if risk not in RISK_TYPES:
            raise ArtifactError(f"{at}: unknown risk type {risk!r} (known: {', '.join(RISK_TYPES)})"[:300])
        if model is not None and (not isinstance(model, str) or not MODEL_KEY.match(model)):
            raise ArtifactError(f"{at}: model must be null or a model key like 'gt.yangpu.origin', not {model!r}"[:300])
        if models is not None and model is not None and model not in models:
            raise ArtifactError(f"{at}: model {model!r} is not in the artifact"[:300])
        for group in names:
            if (scenario, group, risk) in rules:
                raise ArtifactError(f"{at}: a second rule for ({scenario}, {group}, {risk})"[:300])
            rules[(scenario, group, risk)] = model
    routing = Routing(groups, rules, group_of)
    if models is not None:
        unused = sorted(set(models) - routing.models - {"general"})
        if unused:
            raise ArtifactError(f"{where}: models no rule names: {', '.join(unused[:5])}")
    return routing
