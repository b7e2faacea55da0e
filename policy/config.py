"""The supervision policy as versioned, validated configuration."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from schemas import Action, CreditClass, Scenario

DEFAULT_POLICY_FILE = Path(__file__).with_name("default.yaml")

Probability = Annotated[float, Field(ge=0.0, le=1.0)]


class PolicyError(ValueError):
    """A policy file that cannot be used; the message says why."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class Thresholds(_Strict):
    machine_check: Probability
    inspect: Probability

    @model_validator(mode="after")
    def _ordered(self) -> "Thresholds":
        if self.machine_check > self.inspect:
            raise ValueError("machine_check threshold must not exceed the inspect threshold")
        return self


class Rules(_Strict):
    require_qualification: tuple[Scenario, ...] = (Scenario.ZERO_TARIFF, Scenario.PROCESSING_VALUE_ADDED)
    joint_penalty_min_action: Action = Action.MACHINE_CHECK


class RandomSelection(_Strict):
    share: Probability = 0.02
    action: Action = Action.MACHINE_CHECK


class ScanPolicy(_Strict):
    timeout_s: float = Field(default=120.0, gt=0, le=86_400)
    port_timeout_s: dict[str, Annotated[float, Field(gt=0, le=86_400)]] = {}

    def timeout_for(self, port: str) -> float:
        return self.port_timeout_s.get(port, self.timeout_s)


class Policy(_Strict):
    version: str = Field(min_length=1, max_length=64)
    seed: int
    thresholds: dict[CreditClass, Thresholds]
    scenario_thresholds: dict[Scenario, dict[CreditClass, Thresholds]] = {}
    rules: Rules = Rules()
    random_selection: RandomSelection = RandomSelection()
    scan: ScanPolicy = ScanPolicy()

    @model_validator(mode="after")
    def _every_class_has_thresholds(self) -> "Policy":
        missing = set(CreditClass) - set(self.thresholds)
        if missing:
            raise ValueError(f"thresholds missing for credit classes: {sorted(c.value for c in missing)}")
        return self

    def thresholds_for(self, credit_class: CreditClass, scenario: Scenario) -> Thresholds:
        override = self.scenario_thresholds.get(scenario)
        if override and credit_class in override:
            return override[credit_class]
        return self.thresholds[credit_class]


def load_policy(path: str | Path | None = None) -> Policy:
    """Load and validate a policy file (the shipped default when ``path`` is None)."""
    file = Path(path) if path is not None else DEFAULT_POLICY_FILE
    try:
        raw = yaml.safe_load(file.read_text(encoding="utf-8"))
    except OSError as exc:
        raise PolicyError(f"cannot read policy file {file}: {exc.strerror}") from exc
    except yaml.YAMLError as exc:
        raise PolicyError(f"policy file {file} is not valid YAML: {exc}") from exc
    if not isinstance(raw, dict):
        raise PolicyError(f"policy file {file} must hold a mapping at the top level")
    try:
        # YAML gives plain strings for enums: validate in python (lax) mode for those only.
        return Policy.model_validate(raw, strict=False)
    except ValidationError as exc:
        raise PolicyError(f"policy file {file} is invalid: {exc}") from exc
