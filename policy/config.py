"""The supervision policy as versioned, validated configuration (format: policy/README.md)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from schemas import Action, CreditClass, Direction, DutyFreeCategory, Scenario, Severity

DEFAULT_POLICY_FILE = Path(__file__).with_name("default.yaml")

Probability = Annotated[float, Field(ge=0.0, le=1.0)]
Rate = Annotated[float, Field(gt=0.0, le=1.0)]


class PolicyError(ValueError):
    """A policy file that cannot be used; the message says why."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class Thresholds(_Strict):
    machine_check: Probability
    inspect: Probability

    @model_validator(mode="after")
    def _ordered(self) -> Thresholds:
        if self.machine_check > self.inspect:
            raise ValueError("machine_check threshold must not exceed the inspect threshold")
        return self


class Rules(_Strict):
    require_qualification: tuple[Scenario, ...] = (Scenario.ZERO_TARIFF, Scenario.PROCESSING_VALUE_ADDED)
    joint_penalty_min_action: Action = Action.MACHINE_CHECK


class RandomSelection(_Strict):
    share: Probability = 0.02
    action: Action = Action.MACHINE_CHECK


DEFAULT_CLOCK_SKEW_S = 300.0


class ScanPolicy(_Strict):
    timeout_s: float = Field(default=120.0, gt=0, le=86_400)
    port_timeout_s: dict[str, Annotated[float, Field(gt=0, le=86_400)]] = {}
    # How far a scanner's or gateway's clock may be off: a scan timed earlier than its declaration's
    # event time minus this, or later than the worker's clock plus this, is refused (it cannot be
    # of goods presented for that declaration).
    clock_skew_s: float = Field(default=DEFAULT_CLOCK_SKEW_S, ge=0, le=86_400)

    def timeout_for(self, port: str) -> float:
        return self.port_timeout_s.get(port, self.timeout_s)


class LaneTargets(_Strict):
    """Share of a port's declarations a lane should take at declaration time (None: do not adapt)."""

    machine_check: Rate | None = None
    inspect: Rate | None = None


class Bound(_Strict):
    """The range an adapted threshold must stay in, whatever the capacity controller asks for."""

    min: Probability = 0.0
    max: Probability = 1.0

    @model_validator(mode="after")
    def _ordered(self) -> Bound:
        if self.min > self.max:
            raise ValueError("bound min must not exceed max")
        return self

    def clamp(self, value: float) -> float:
        return min(self.max, max(self.min, value))


class ClassBounds(_Strict):
    machine_check: Bound = Bound()
    inspect: Bound = Bound()


class Controller(_Strict):
    """Tuning of the online threshold controller (policy/capacity.py); the defaults suit ports with
    a few thousand declarations a day."""

    # Half-life, in declarations of one port, of the realised-rate average (the proportional term).
    half_life: float = Field(default=500.0, gt=0, le=1e7)
    # Threshold offset per unit of relative rate error (realised / target - 1) of the average.
    gain_p: float = Field(default=0.05, ge=0, le=1)
    # Integral step per declaration per unit of relative error: what makes the long-run rate exact.
    gain_i: float = Field(default=0.0004, ge=0, le=0.1)
    # The controller never moves a threshold further than this from its configured value.
    max_offset: Probability = 0.3


class Capacity(_Strict):
    """Per port and lane target selection rates; thresholds adapt so the realised rate tracks them."""

    default: LaneTargets = LaneTargets()
    # Port id -> targets; a lane a port leaves out uses `default`.
    ports: dict[str, LaneTargets] = {}
    controller: Controller = Controller()
    # Credit class -> bounds of the adapted thresholds (unlisted: 0..1, i.e. only max_offset limits).
    bounds: dict[CreditClass, ClassBounds] = {}

    def targets_for(self, port: str) -> LaneTargets:
        own = self.ports.get(port)
        if own is None:
            return self.default
        return LaneTargets(
            machine_check=own.machine_check if own.machine_check is not None else self.default.machine_check,
            inspect=own.inspect if own.inspect is not None else self.default.inspect,
        )

    def bounds_for(self, credit_class: CreditClass) -> ClassBounds:
        return self.bounds.get(credit_class, _NO_BOUNDS)


_NO_BOUNDS = ClassBounds()


class BatchPolicy(_Strict):
    """Centralised declarations (one message, many goods items, one instruction per item)."""

    allowed_classes: tuple[CreditClass, ...] = (CreditClass.AEO, CreditClass.WHITE_LIST)
    # The record schema carries at most 999 items (item ids are {centralised_id}-{item_no:04d}).
    max_items: int = Field(default=999, ge=1, le=999)


# The register bounds every per-port structure of a worker: metric series, capacity controller state
# (one changelog record per partition, well under the broker's 1 MB record limit at this size).
MAX_PORTS = 1000
MAX_DEVICES_PER_PORT = 64
PortId = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._:-]+$")]


class PortRegister(_Strict):
    """One port of the office and the inspection devices registered there (scanner ids)."""

    devices: tuple[PortId, ...] = Field(default=(), max_length=MAX_DEVICES_PER_PORT)


class ProcessingValueAdded(_Strict):
    """Processing value-added goods enter the mainland duty-free when the value added on the island
    reaches ``threshold`` of the imported materials' value (policy/valueadded.py)."""

    threshold: float = Field(default=0.30, gt=0, le=5)
    # Under the threshold duty is due: the goods are not released duty-free but held for the duty
    # assessment at the station (inspect; the station records the duty in its inspection result).
    below_threshold_action: Action = Action.INSPECT
    # A claimed ratio this far above the enterprise's history (or, without enough of it, the HS
    # chapter's) is implausible: an early warning, and the declaration is selected.
    implausible_margin: float = Field(default=1.0, gt=0, le=10)
    min_history: int = Field(default=10, ge=1, le=1_000_000)
    implausible_action: Action = Action.INSPECT


class AuditSelection(_Strict):
    """Post-clearance audit selection per enterprise and period (``riskctl audit-selection``,
    audit/selection.py): an enterprise active in the period is selected with probability
    ``base_rate`` x its credit class's weight x (1 + ``activity_weight`` x log10(1 + declarations))
    x (1 + ``finding_weight`` x findings, at most ``max_findings`` counted), at most ``max_rate``.
    AEO enterprises weigh least: "fewer audits" for good credit."""

    base_rate: float = Field(default=0.05, ge=0, le=1)
    class_weights: dict[CreditClass, float] = Field(default_factory=lambda: {
        CreditClass.AEO: 0.2, CreditClass.WHITE_LIST: 0.5, CreditClass.GENERAL: 1.0, CreditClass.FOCUS_LIST: 3.0,
        CreditClass.JOINT_PENALTY: 4.0})
    activity_weight: float = Field(default=0.25, ge=0, le=10)
    finding_weight: float = Field(default=0.5, ge=0, le=10)
    max_findings: int = Field(default=10, ge=0, le=1000)
    max_rate: float = Field(default=0.9, gt=0, le=1)
    min_declarations: int = Field(default=1, ge=1, le=1_000_000)

    @model_validator(mode="after")
    def _every_class_weighed(self) -> AuditSelection:
        missing = set(CreditClass) - set(self.class_weights)
        if missing:
            raise ValueError(f"audit_selection.class_weights missing for: {sorted(c.value for c in missing)}")
        if any(not 0 <= w <= 100 for w in self.class_weights.values()):
            raise ValueError("audit_selection.class_weights are between 0 and 100")
        return self


# A rough outline of Hainan island (latitude, longitude), enough to tell on the island from at sea
# or on the mainland across the Qiongzhou Strait; the tracking system's geofence events are the
# primary signal, fixes are the fallback.
HAINAN_OUTLINE: tuple[tuple[float, float], ...] = (
    (20.16, 110.00), (20.10, 110.70), (19.95, 111.05), (19.60, 111.05), (19.10, 110.65), (18.50, 110.25),
    (18.15, 109.60), (18.20, 109.10), (18.60, 108.60), (19.30, 108.60), (19.75, 108.95), (20.10, 109.50),
)
LatLon = tuple[Annotated[float, Field(ge=-90, le=90)], Annotated[float, Field(ge=-180, le=180)]]


class ZeroTariff(_Strict):
    """Zero-tariff goods (policy/zerotariff.py): goods imported tariff-free for own use on the island
    may not go to the mainland without duty."""

    # A declaration in one of these directions naming registered, unreleased goods: this action,
    # an early warning of this severity.
    directions: tuple[Direction, ...] = (Direction.SECOND_LINE_OUT,)
    declared_action: Action = Action.INSPECT
    declared_severity: Severity = Severity.HIGH
    # Registered vehicles and vessels tracked by the positioning system: leaving the island (or
    # passing a port's gate) warns at once, staying away longer than allowed_days_away warns again.
    exit_severity: Severity = Severity.MEDIUM
    port_passage_severity: Severity = Severity.MEDIUM
    allowed_days_away: float = Field(default=120.0, gt=0, le=3650)
    overstay_severity: Severity = Severity.HIGH
    island: tuple[LatLon, ...] = Field(default=HAINAN_OUTLINE, min_length=3, max_length=500)


# The most shoppers one payer, phone or delivery address is remembered with (policy/dutyfree.py):
# a link with more is far over any sensible threshold, and the state of one link stays small.
MAX_LINKED_SHOPPERS = 64


class DutyFreeRule(_Strict):
    """How one duty-free rule is reported: the warning's severity, and whether a departure
    declaration of a shopper it flagged this year gets ``duty_free.departure_action``."""

    severity: Severity = Severity.HIGH
    hold_at_departure: bool = True


class DutyFree(_Strict):
    """Offshore duty-free shopping (policy/dutyfree.py): a yearly quota and per-category piece
    limits per shopper and calendar year, identity checks, and resale patterns."""

    yearly_quota_cny: float = Field(default=100_000.0, gt=0, le=10_000_000)
    # Pieces of a category one shopper may buy per calendar year (categories left out: no limit).
    item_limits: dict[DutyFreeCategory, Annotated[int, Field(ge=1, le=1_000_000)]] = {
        DutyFreeCategory.COSMETICS: 30, DutyFreeCategory.MOBILE_PHONES: 4, DutyFreeCategory.LIQUOR: 6}
    # Purchases of the same goods code by one shopper in one year from which it is "again and again".
    repeat_purchases: int = Field(default=5, ge=2, le=1000)
    # Distinct shoppers tied to one payer, phone or delivery address above which it is a resale pattern.
    max_shoppers_per_link: int = Field(default=5, ge=1, le=MAX_LINKED_SHOPPERS - 1)
    # The calendar year of a purchase is the year at this UTC offset (Beijing time).
    utc_offset_hours: int = Field(default=8, ge=-12, le=14)
    # A shopper's (and a link's) year is kept this long after the year ends, then deleted.
    keep_after_year_days: int = Field(default=31, ge=0, le=366)
    departure_action: Action = Action.INSPECT
    quota_exceeded: DutyFreeRule = DutyFreeRule()
    item_limit_exceeded: DutyFreeRule = DutyFreeRule()
    identity_not_matched: DutyFreeRule = DutyFreeRule()
    repeat_goods: DutyFreeRule = DutyFreeRule(severity=Severity.MEDIUM)
    linked_shoppers: DutyFreeRule = DutyFreeRule()


class Policy(_Strict):
    version: str = Field(min_length=1, max_length=64)
    seed: int
    # The office's ports, each with its device register. Records naming another port are refused
    # (dead letter `unknown-port`); scans from a device not registered at their port too.
    ports: dict[PortId, PortRegister] = Field(min_length=1, max_length=MAX_PORTS)
    thresholds: dict[CreditClass, Thresholds]
    scenario_thresholds: dict[Scenario, dict[CreditClass, Thresholds]] = {}
    rules: Rules = Rules()
    random_selection: RandomSelection = RandomSelection()
    scan: ScanPolicy = ScanPolicy()
    capacity: Capacity = Capacity()
    batch: BatchPolicy = BatchPolicy()
    processing_value_added: ProcessingValueAdded = ProcessingValueAdded()
    audit_selection: AuditSelection = AuditSelection()
    zero_tariff: ZeroTariff = ZeroTariff()
    duty_free: DutyFree = DutyFree()

    @model_validator(mode="after")
    def _every_class_has_thresholds(self) -> Policy:
        missing = set(CreditClass) - set(self.thresholds)
        if missing:
            raise ValueError(f"thresholds missing for credit classes: {sorted(c.value for c in missing)}")
        return self

    @model_validator(mode="after")
    def _thresholds_inside_bounds(self) -> Policy:
        # A configured threshold outside its class's bounds is a contradiction in the file: refuse it
        # rather than silently clamping what the officer wrote.
        tables = [("thresholds", self.thresholds)]
        tables += [(f"scenario_thresholds.{s.value}", t) for s, t in self.scenario_thresholds.items()]
        for where, table in tables:
            for cls, limits in table.items():
                bounds = self.capacity.bounds_for(cls)
                for lane in ("machine_check", "inspect"):
                    value, bound = getattr(limits, lane), getattr(bounds, lane)
                    if not bound.min <= value <= bound.max:
                        raise ValueError(
                            f"{where}.{cls.value}.{lane} = {value} is outside capacity.bounds.{cls.value}.{lane} "
                            f"[{bound.min}, {bound.max}]"
                        )
        return self

    @model_validator(mode="after")
    def _named_ports_are_registered(self) -> Policy:
        for where, named in (("capacity.ports", self.capacity.ports), ("scan.port_timeout_s", self.scan.port_timeout_s)):
            unknown = sorted(set(named) - set(self.ports))
            if unknown:
                raise ValueError(f"{where} names ports that are not in `ports`: {unknown[:10]}")
        return self

    def knows_port(self, port: str) -> bool:
        return port in self.ports

    def knows_device(self, port: str, device_id: str) -> bool:
        register = self.ports.get(port)
        return register is not None and device_id in register.devices

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
        raise PolicyError(f"policy file {file} is invalid: {validation_summary(exc)}") from exc


def validation_summary(exc: ValidationError, limit: int = 5) -> str:
    """pydantic's errors as one line: ``where: what; ...`` (the full report spans many lines)."""
    errors = exc.errors(include_url=False, include_input=False)
    parts = [f"{'.'.join(map(str, e['loc'])) or '<top level>'}: {e['msg']}" for e in errors[:limit]]
    more = f"; and {len(errors) - limit} more" if len(errors) > limit else ""
    return "; ".join(parts) + more
