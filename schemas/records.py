"""Pydantic v2 models for every record on the pipeline's topics.

Validation is strict: no silent coercion ("12" is not a number, 1 is not a string), no extra
fields, no NaN or infinity, and every record carries ``schema_version`` so that a gateway on an
older contract is rejected with a clear reason instead of being half-understood.
"""

from __future__ import annotations

import enum
import re
import time
from datetime import UTC, datetime
from typing import Annotated

from pydantic import AfterValidator, AwareDatetime, BaseModel, BeforeValidator, ConfigDict, Field, StringConstraints

SCHEMA_VERSION = 1

# Event times outside this window are refused: older than the customs IT system, or more than
# a day in the future (clock skew beyond that is a gateway fault, not a declaration).
EARLIEST_EVENT_TIME = datetime(2000, 1, 1, tzinfo=UTC)
FUTURE_TOLERANCE_S = 86_400.0


def _plausible_time(value: datetime) -> datetime:
    if value < EARLIEST_EVENT_TIME:
        raise ValueError(f"event time {value.isoformat()} is before {EARLIEST_EVENT_TIME.date()}")
    if value.timestamp() - time.time() > FUTURE_TOLERANCE_S:
        raise ValueError(f"event time {value.isoformat()} is more than a day in the future")
    return value


def _iso_text(value: object) -> object:
    # pydantic reads a string of digits as a unix timestamp even in strict mode: gateways send ISO 8601.
    if isinstance(value, str):
        if not ("-" in value and ":" in value):
            raise ValueError("event time must be an ISO 8601 date-time with a UTC offset")
        try:
            return datetime.fromisoformat(value)
        except ValueError:
            raise ValueError("event time is not an ISO 8601 date-time") from None
    return value


EventTime = Annotated[AwareDatetime, BeforeValidator(_iso_text), AfterValidator(_plausible_time)]
Identifier = Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9._:\-]*$")]
CountryCode = Annotated[str, StringConstraints(pattern=r"^[A-Z]{2}$")]
CurrencyCode = Annotated[str, StringConstraints(pattern=r"^[A-Z]{3}$")]
HsCode = Annotated[str, StringConstraints(pattern=r"^[0-9]{6}([0-9]{2}){0,2}$")]
ShortText = Annotated[str, StringConstraints(min_length=1, max_length=256)]
Code = Annotated[str, StringConstraints(min_length=1, max_length=16, pattern=r"^[A-Za-z0-9]+$")]
# Free text written by a person (an officer's note on an inspection): bounded, surrounding blanks dropped.
NOTE_MAX = 500
NoteText = Annotated[str, StringConstraints(min_length=1, max_length=NOTE_MAX, strip_whitespace=True)]
# A centralised declaration's id leaves room for the "-NNNN" item suffix of its items' declaration ids.
CentralisedId = Annotated[str, StringConstraints(min_length=1, max_length=59, pattern=r"^[A-Za-z0-9][A-Za-z0-9._:\-]*$")]
# Goods fields shared by a declaration and a centralised declaration's goods item.
DeclaredValue = Annotated[float, Field(ge=0, le=1e13, description="0 for free-of-charge goods (samples, gifts).")]
Quantity = Annotated[float, Field(gt=0, le=1e12)]
NetMass = Annotated[float, Field(ge=0, le=1e9, description="0 where the goods weigh less than the declared precision.")]
TaxRate = Annotated[float, Field(ge=0, le=1000, description="Applicable duty rate in percent (ad valorem equivalents can exceed 100).")]
Revision = Annotated[int, Field(ge=1, le=1000)]
# Processing value-added amounts, in the declaration's currency (``value_added_ratio``).
ProcessingAmount = Annotated[float, Field(ge=0, le=1e13)]
# The value-added ratio of goods declared without imported materials, and the most any claim counts for:
# a bounded number keeps model features and deviations finite.
VALUE_ADDED_RATIO_CAP = 10.0


class Scenario(str, enum.Enum):
    """Supervision scenario; each has its own risk model."""

    GENERAL_TRADE = "general-trade"
    ZERO_TARIFF = "zero-tariff"
    PROCESSING_VALUE_ADDED = "processing-value-added"
    DUTY_FREE_SHOPPING = "duty-free-shopping"


class TransportMode(str, enum.Enum):
    SEA = "sea"
    AIR = "air"
    RAIL = "rail"
    ROAD = "road"
    POST = "post"
    OTHER = "other"


class CreditClass(str, enum.Enum):
    AEO = "aeo"
    WHITE_LIST = "white-list"
    GENERAL = "general"
    FOCUS_LIST = "focus-list"
    JOINT_PENALTY = "joint-penalty"


class Qualification(str, enum.Enum):
    """Statuses an enterprise must hold to declare under the matching scenario."""

    ZERO_TARIFF = "zero-tariff"
    PROCESSING_VALUE_ADDED = "processing-value-added"


class Action(str, enum.Enum):
    RELEASE = "release"
    MACHINE_CHECK = "machine-check"
    INSPECT = "inspect"


class _Strict(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid", frozen=True, allow_inf_nan=False)


class _Record(_Strict):
    # A strict int, not Literal[1]: a literal compares with ==, so JSON true and 1.0 would pass.
    schema_version: int = Field(default=SCHEMA_VERSION, ge=SCHEMA_VERSION, le=SCHEMA_VERSION)


class Direction(str, enum.Enum):
    """Which line the goods cross. The island is the free-trade port: the first line is its border
    with abroad, the second line its border with the mainland (the line this office supervises)."""

    FIRST_LINE_IN = "first-line-in"  # from abroad onto the island
    SECOND_LINE_OUT = "second-line-out"  # from the island to the mainland
    SECOND_LINE_IN = "second-line-in"  # from the mainland onto the island


class IdentifierKind(str, enum.Enum):
    """What a goods identifier is: a vehicle's VIN, a vessel's hull number, an article's serial number."""

    VIN = "vin"
    HULL = "hull"
    SERIAL = "serial"


# VIN: 17 characters, no I, O or Q (ISO 3779). Others: a maker's serial or hull number.
_VIN = re.compile(r"^[A-HJ-NPR-Z0-9]{17}$")
GoodsIdentifierValue = Annotated[str, StringConstraints(min_length=3, max_length=40, pattern=r"^[A-Za-z0-9][A-Za-z0-9.\-]*$")]
MAX_DECLARED_IDENTIFIERS = 100  # per declaration (or goods item): a vehicle or vessel each, a lot of serial numbers


class GoodsIdentifier(_Strict):
    """One identifier of individual goods. Matched on ``value`` upper-cased (``register_key``),
    whatever the kind a declarant gives it."""

    kind: IdentifierKind
    value: GoodsIdentifierValue

    def model_post_init(self, _context: object) -> None:
        if self.kind is IdentifierKind.VIN and not _VIN.match(self.value.upper()):
            raise ValueError(f"{self.value!r} is not a VIN (17 characters, digits and letters other than I, O, Q)")

    def register_key(self) -> str:
        return self.value.upper()


def _distinct_identifiers(identifiers: tuple[GoodsIdentifier, ...] | None) -> None:
    seen: set[str] = set()
    for identifier in identifiers or ():
        key = identifier.register_key()
        if key in seen:
            raise ValueError(f"goods identifier {key} is given twice")
        seen.add(key)


class Declaration(_Record):
    """One goods declaration from a port gateway. Key: ``declaration_id``."""

    declaration_id: Identifier
    revision: Revision = 1
    port: Identifier
    enterprise_id: Identifier
    declarant_id: Identifier
    seller_id: Identifier | None = None
    scenario: Scenario
    hs_code: HsCode
    origin_country: CountryCode
    departure_country: CountryCode
    transport_mode: TransportMode
    declared_value: DeclaredValue
    currency: CurrencyCode
    quantity: Quantity | None = None
    net_mass_kg: NetMass
    tax_rate: TaxRate
    event_time: EventTime
    # Optional coded attributes of the declaration form (procedure, payment, tax type, ...).
    procedure_code: Code | None = None
    import_type: Code | None = None
    import_use: Code | None = None
    payment_type: Code | None = None
    tax_type: Code | None = None
    origin_indicator: Code | None = None
    courier_id: Identifier | None = None
    # Set on the declarations the worker splits off a centralised declaration (one per goods item).
    centralised_id: Identifier | None = None
    # Processing value-added goods only (required there, refused elsewhere): the value of the
    # imported materials in the goods and the value added by processing on the island.
    imported_material_value: ProcessingAmount | None = None
    value_added: ProcessingAmount | None = None
    # Which line the goods cross (None: not stated; the gateways of this office send second-line-out
    # for goods leaving for the mainland) and the individual goods' identifiers (VIN, hull, serial
    # numbers), matched against the zero-tariff register.
    direction: Direction | None = None
    goods_identifiers: tuple[GoodsIdentifier, ...] | None = Field(default=None, min_length=1, max_length=MAX_DECLARED_IDENTIFIERS)
    # Duty-free shopping only (refused elsewhere): the traveller's shopper token, as the duty-free
    # shops report it, so that the pick-up / departure is checked against the shopper's quota state.
    shopper_token: Identifier | None = None

    def model_post_init(self, _context: object) -> None:
        _check_processing_values(self.scenario, self.imported_material_value, self.value_added, self.declared_value)
        _distinct_identifiers(self.goods_identifiers)
        if self.shopper_token is not None and self.scenario is not Scenario.DUTY_FREE_SHOPPING:
            raise ValueError("shopper_token belongs to duty-free-shopping declarations only")

    def value_added_ratio(self) -> float | None:
        """Value added / imported materials (the customs definition of the processing value-added
        rate), capped at ``VALUE_ADDED_RATIO_CAP``; the cap for goods without imported materials.
        None for other scenarios."""
        return value_added_ratio(self.imported_material_value, self.value_added)


def value_added_ratio(imported: float | None, added: float | None) -> float | None:
    if imported is None or added is None:
        return None
    if imported <= 0:
        return VALUE_ADDED_RATIO_CAP
    return min(added / imported, VALUE_ADDED_RATIO_CAP)


def _check_processing_values(scenario: Scenario, imported: float | None, added: float | None, declared: float) -> None:
    given = imported is not None or added is not None
    if scenario is not Scenario.PROCESSING_VALUE_ADDED:
        if given:
            raise ValueError("imported_material_value and value_added belong to processing-value-added declarations only")
        return
    if imported is None or added is None:
        raise ValueError("a processing-value-added declaration needs imported_material_value and value_added")
    # Both parts are amounts of the declared goods: neither can exceed their declared value (1 % rounding allowed).
    if imported > declared * 1.01 + 1 or added > declared * 1.01 + 1:
        raise ValueError("imported_material_value and value_added cannot exceed the declared value")


# The form attributes a centralised declaration's header passes on to every item's declaration.
FORM_FIELDS = ("procedure_code", "import_type", "import_use", "payment_type", "tax_type", "origin_indicator", "courier_id")


class DeclarationBatch(_Record):
    """Many declarations in one record (gateway batching). Every declaration in it must belong to the
    partition the record is written to, i.e. Kafka's murmur2 partition of its declaration id, so that
    it stays co-partitioned with its scans. Topic ``declaration-batches``; key: ``batch_id``."""

    batch_id: Identifier
    gateway: Identifier
    declarations: tuple[Declaration, ...] = Field(min_length=1, max_length=5000)


MAX_CENTRALISED_ITEMS = 999  # the schema's hard bound; the policy's batch.max_items is the operative limit


class GoodsItem(_Strict):
    """One goods item of a centralised declaration; it becomes the declaration
    ``{centralised_id}-{item_no:04d}`` and gets its own instructions."""

    item_no: int = Field(ge=1, le=9999, description="1-based, strictly ascending within the message (gaps allowed).")
    hs_code: HsCode
    origin_country: CountryCode
    declared_value: DeclaredValue
    currency: CurrencyCode
    quantity: Quantity | None = None
    net_mass_kg: NetMass
    tax_rate: TaxRate
    seller_id: Identifier | None = None
    imported_material_value: ProcessingAmount | None = None
    value_added: ProcessingAmount | None = None
    goods_identifiers: tuple[GoodsIdentifier, ...] | None = Field(default=None, min_length=1, max_length=MAX_DECLARED_IDENTIFIERS)


class CentralisedDeclaration(_Record):
    """A batch / centralised declaration: one message, many goods items, one instruction per item.
    Only enterprises whose credit class the policy allows (``batch.allowed_classes``) may submit one.
    Topic ``centralised-declarations``; key: ``centralised_id``."""

    centralised_id: CentralisedId
    revision: Revision = 1
    port: Identifier
    enterprise_id: Identifier
    declarant_id: Identifier
    scenario: Scenario
    transport_mode: TransportMode
    departure_country: CountryCode
    event_time: EventTime
    procedure_code: Code | None = None
    import_type: Code | None = None
    import_use: Code | None = None
    payment_type: Code | None = None
    tax_type: Code | None = None
    origin_indicator: Code | None = None
    courier_id: Identifier | None = None
    direction: Direction | None = None
    items: tuple[GoodsItem, ...] = Field(min_length=1, max_length=MAX_CENTRALISED_ITEMS)

    def model_post_init(self, _context: object) -> None:
        # Strictly ascending item numbers: unique, so every item has its own declaration id.
        for before, item in zip(self.items, self.items[1:]):
            if item.item_no <= before.item_no:
                raise ValueError(f"item_no must be unique and ascending: {item.item_no} follows {before.item_no}")
        for item in self.items:  # refused here, as the item's own declaration would be
            _check_processing_values(self.scenario, item.imported_material_value, item.value_added, item.declared_value)
            _distinct_identifiers(item.goods_identifiers)

    def item_declaration_id(self, item: GoodsItem) -> str:
        return f"{self.centralised_id}-{item.item_no:04d}"

    def item_declarations(self) -> list[Declaration]:
        """One validated declaration per goods item: the header's fields, the item's goods, the
        centralised revision and id. Deterministic, so a redelivery re-emits identical records."""
        header = {name: getattr(self, name) for name in ("revision", "port", "enterprise_id", "declarant_id", "scenario",
                                                        "transport_mode", "departure_country", "event_time", "direction", *FORM_FIELDS)}
        return [Declaration(declaration_id=self.item_declaration_id(item), centralised_id=self.centralised_id,
                            **header, **item.model_dump(exclude={"item_no"}))
                for item in self.items]


class ScanVerdict(str, enum.Enum):
    CLEAN = "clean"
    SUSPICIOUS = "suspicious"


class DeviceType(str, enum.Enum):
    XRAY = "x-ray"
    CT = "ct"


class ScanResult(_Record):
    """Result of a non-intrusive (X-ray / CT) check. Key: ``declaration_id``."""

    scan_id: Identifier
    declaration_id: Identifier
    revision: int = Field(default=1, ge=1, le=1000)
    port: Identifier
    device_id: Identifier
    device_type: DeviceType
    anomaly_score: float = Field(ge=0, le=1)
    verdict: ScanVerdict
    suspected_categories: tuple[ShortText, ...] = Field(default=(), max_length=32)
    # Opaque reference into the equipment's image store: shown to officers, never opened as a path.
    image_ref: ShortText | None = None
    event_time: EventTime


class CreditEventType(str, enum.Enum):
    CREDIT_CLASS_CHANGED = "credit-class-changed"
    QUALIFICATION_REGISTERED = "qualification-registered"
    QUALIFICATION_SUSPENDED = "qualification-suspended"
    QUALIFICATION_REVOKED = "qualification-revoked"
    JOINT_PENALTY_IMPOSED = "joint-penalty-imposed"
    JOINT_PENALTY_LIFTED = "joint-penalty-lifted"
    # The source agency withdraws its own focus-list placement; the class falls back to the other entries.
    FOCUS_LIST_LIFTED = "focus-list-lifted"


class CreditEvent(_Record):
    """An enterprise credit or lifecycle event from customs or another agency. Key: ``enterprise_id``."""

    event_id: Identifier
    enterprise_id: Identifier
    event_type: CreditEventType
    credit_class: CreditClass | None = None
    qualification: Qualification | None = None
    source_agency: ShortText
    reason: ShortText | None = None
    event_time: EventTime

    def model_post_init(self, _context: object) -> None:
        needs_class = self.event_type is CreditEventType.CREDIT_CLASS_CHANGED
        needs_qual = self.event_type in (
            CreditEventType.QUALIFICATION_REGISTERED,
            CreditEventType.QUALIFICATION_SUSPENDED,
            CreditEventType.QUALIFICATION_REVOKED,
        )
        if needs_class and self.credit_class is None:
            raise ValueError("credit-class-changed needs credit_class")
        if needs_qual and self.qualification is None:
            raise ValueError(f"{self.event_type.value} needs qualification")
        if self.credit_class is CreditClass.JOINT_PENALTY:
            raise ValueError("joint penalty is set by joint-penalty-imposed, not as a credit class")
        if self.event_type is CreditEventType.FOCUS_LIST_LIFTED and self.credit_class is not None:
            raise ValueError("focus-list-lifted carries no credit_class: the class falls back to the other agencies' entries")


MAX_CREDIT_BATCH_EVENTS = 5000  # the schema's hard bound; the worker's CREDIT_BATCH_MAX_EVENTS is the operative limit


class CreditEventBatch(_Record):
    """Many credit events in one record: an agency's (or the office register's) bulk publication.
    Each event keeps its own ``source_agency`` and is folded exactly as a single ``CreditEvent``;
    a bad event is dead-lettered alone. Topic ``credit-event-batches``; key: ``batch_id``."""

    batch_id: Identifier
    publisher: Identifier = Field(description="Who sent the batch (an agency, or the office's register).")
    events: tuple[CreditEvent, ...] = Field(min_length=1, max_length=MAX_CREDIT_BATCH_EVENTS)


class RiskListKind(str, enum.Enum):
    """What a risk-list entry's ``value`` is compared with."""

    HS_CODE = "hs-code"  # the declaration's full HS code, exactly
    HS_PREFIX = "hs-prefix"  # the first 2, 4, 6 or 8 digits of the HS code
    ORIGIN = "origin"  # origin country
    ROUTE = "route"  # "DEPARTURE->ORIGIN", e.g. "SG->KP"
    ENTERPRISE = "enterprise"
    DECLARANT = "declarant"
    SELLER = "seller"


class RiskListAction(str, enum.Enum):
    """What a hit asks for; ``watch`` only records the hit on the instruction."""

    INSPECT = "inspect"
    MACHINE_CHECK = "machine-check"
    WATCH = "watch"


_RISK_VALUE_PATTERNS = {
    kind: re.compile(pattern)
    for kind, pattern in (
        (RiskListKind.HS_CODE, r"^[0-9]{6}([0-9]{2}){0,2}$"),
        (RiskListKind.HS_PREFIX, r"^[0-9]{2}([0-9]{2}){0,3}$"),
        (RiskListKind.ORIGIN, r"^[A-Z]{2}$"),
        (RiskListKind.ROUTE, r"^[A-Z]{2}->[A-Z]{2}$"),
        (RiskListKind.ENTERPRISE, r"^[A-Za-z0-9][A-Za-z0-9._:\-]{0,63}$"),
        (RiskListKind.DECLARANT, r"^[A-Za-z0-9][A-Za-z0-9._:\-]{0,63}$"),
        (RiskListKind.SELLER, r"^[A-Za-z0-9][A-Za-z0-9._:\-]{0,63}$"),
    )
}


class RiskListEntry(_Record):
    """One entry of a risk characteristic list (also joint anti-smuggling alerts from other agencies).

    Compacted topic ``risk-lists``, key: ``entry_id``. Re-sending an ``entry_id`` replaces the entry;
    a null value deletes it; an entry whose ``valid_until`` has passed no longer matches. The window
    is checked against the declaration's event time: ``valid_from <= event_time < valid_until``.
    """

    entry_id: Identifier
    list_id: Identifier
    kind: RiskListKind
    value: Annotated[str, StringConstraints(min_length=2, max_length=64)]
    action: RiskListAction
    reason: ShortText
    source_agency: ShortText
    valid_from: AwareDatetime
    valid_until: AwareDatetime | None = None

    def model_post_init(self, _context: object) -> None:
        if not _RISK_VALUE_PATTERNS[self.kind].match(self.value):
            raise ValueError(f"value {self.value!r} is not a valid {self.kind.value}")
        if self.valid_until is not None and self.valid_until < self.valid_from:
            raise ValueError("valid_until is before valid_from (to retract an entry, send a null value for its key)")


class Stage(str, enum.Enum):
    """Which decision point produced an instruction."""

    DECLARATION = "declaration"  # pre-determined instruction at declaration time
    SCAN = "scan"  # final instruction after the machine-check scan result
    TIMEOUT = "timeout"  # final instruction because no scan arrived in time


class SelectionReason(str, enum.Enum):
    NONE = "none"
    RULE = "rule"
    RISK_LIST = "risk-list"
    MODEL_THRESHOLD = "model-threshold"
    RANDOM = "random"
    SCAN = "scan"
    TIMEOUT = "timeout"


class RiskType(str, enum.Enum):
    """What a routed risk model looks for (riskmodels.routing): the officer's hint of what to check."""

    UNDERVALUATION = "undervaluation"
    MISCLASSIFICATION = "misclassification"
    ORIGIN = "origin"
    RESTRICTED_GOODS = "restricted-goods"


class ControlInstruction(_Record):
    """What the port must do with a declaration. Key: ``declaration_id``.

    ``instruction_id`` is ``{declaration_id}:{revision}:{stage}``, so a consumer can deduplicate
    redelivered instructions. ``final`` is false only for the machine-check that awaits a scan.
    """

    instruction_id: ShortText
    declaration_id: Identifier
    revision: int
    port: Identifier
    enterprise_id: Identifier
    scenario: Scenario
    stage: Stage
    action: Action
    final: bool
    selection_reason: SelectionReason
    credit_class: CreditClass
    score: float | None = None
    model_version: str | None = None
    policy_version: str
    reasons: tuple[str, ...] = ()
    risk_hits: tuple[str, ...] = ()  # "list_id/entry_id" of every risk-list entry that matched
    thresholds: tuple[float, float] | None = None  # (machine-check, inspect) as adapted and used
    suspected_categories: tuple[str, ...] = ()
    scan_id: str | None = None
    event_time: AwareDatetime
    decided_at: AwareDatetime
    # The centralised declaration this item's instruction belongs to (the key is absent otherwise).
    centralised_id: Identifier | None = None
    # The risk types whose model's score reached the machine-check threshold used (routed models;
    # the key is absent when none did or the model is not routed).
    risk_types: tuple[RiskType, ...] = Field(default=(), max_length=len(RiskType))


class InspectionResult(_Record):
    """What an inspection station found. Key: ``declaration_id``."""

    instruction_id: ShortText
    declaration_id: Identifier
    revision: int = Field(ge=1, le=1000)
    port: Identifier
    station_id: Identifier
    found: bool
    category: ShortText | None = None
    duty_recovered: float = Field(default=0.0, ge=0, le=1e13)
    inspected_at: EventTime
    note: NoteText | None = None
    # The console user who recorded the result (set from the login, never from the form); a station
    # that records results itself leaves it empty or names itself.
    recorded_by: Identifier | None = None


class ShadowScore(_Record):
    """A challenger (shadow) model's score of a declaration beside the champion's that decided it.
    Key: ``declaration_id``. Never acted on: it is what lets an analyst compare the two models on
    the inspection results that follow (``instruction_id`` names the declaration-stage instruction).

    ``challenger_action`` is what the policy would have decided with the challenger's score and
    everything else unchanged (credit, risk-list hits, rules, random draw, the same ``thresholds``)."""

    instruction_id: ShortText
    declaration_id: Identifier
    revision: int = Field(ge=1, le=1000)
    port: Identifier
    scenario: Scenario
    credit_class: CreditClass
    champion_version: ShortText
    champion_score: float = Field(ge=0, le=1)
    champion_action: Action
    challenger_version: ShortText
    challenger_score: float = Field(ge=0, le=1)
    challenger_action: Action
    thresholds: tuple[float, float] | None = None  # (machine-check, inspect) as adapted and used
    decided_at: AwareDatetime


class Severity(str, enum.Enum):
    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"


class SubjectKind(str, enum.Enum):
    """What an early warning is about."""

    ENTERPRISE = "enterprise"
    DECLARATION = "declaration"
    SHOPPER = "shopper"
    VEHICLE = "vehicle"
    VESSEL = "vessel"
    GOODS = "goods"
    SHOPPER_LINK = "shopper-link"  # a payer, phone or delivery-address token tied to several shoppers


class WarningSource(str, enum.Enum):
    RULE = "rule"  # a policy rule raised it
    MODEL = "model"  # a model (anomaly) raised it


# Rule and model names are fixed by the code and the policy (metric labels): short, lower-case.
RuleName = Annotated[str, StringConstraints(min_length=1, max_length=48, pattern=r"^[a-z][a-z0-9-]*$")]
Evidence = Annotated[str, StringConstraints(min_length=1, max_length=200)]
WarningId = Annotated[str, StringConstraints(min_length=1, max_length=160, pattern=r"^[A-Za-z0-9][A-Za-z0-9._:\-]*$")]


class EarlyWarning(_Record):
    """Something analysts should look at before it becomes a finding. Topic ``warnings``; key: the
    declaration id when it comes from a declaration (on the declaration's partition), else the subject id.

    ``warning_id`` is deterministic (``{declaration_id}:{revision}:{rule}`` for a declaration's
    warning), so a consumer deduplicates a redelivered warning by it."""

    warning_id: WarningId
    severity: Severity
    subject_kind: SubjectKind
    subject_id: Identifier
    source: WarningSource
    rule: RuleName
    evidence: tuple[Evidence, ...] = Field(min_length=1, max_length=16)
    event_time: AwareDatetime  # of the event that raised it (the declaration's event time)
    raised_at: AwareDatetime
    port: Identifier | None = None
    scenario: Scenario | None = None
    declaration_id: Identifier | None = None
    revision: Revision | None = None
    policy_version: Annotated[str, StringConstraints(min_length=1, max_length=64)] | None = None


class DeadLetter(_Record):
    """A record the pipeline could not accept, with the reason and the original bytes (base64).

    Originals larger than the dead-letter limit keep their first bytes only (``truncated``); their
    full size and sha256 identify them, and the source partition and offset locate them."""

    source_topic: str
    partition: int
    offset: int
    key_b64: str | None
    value_b64: str | None
    value_size: int | None = None
    value_sha256: str | None = None
    truncated: bool = False
    reason: str
    error: str
    received_at: AwareDatetime


class ConsoleRole(str, enum.Enum):
    """Who acted in the console; ``cli`` is an administrator at the command line (``riskctl users``),
    ``anonymous`` someone not logged in (a failed login)."""

    OFFICER = "officer"
    ANALYST = "analyst"
    SUPERVISOR = "supervisor"
    CLI = "cli"
    ANONYMOUS = "anonymous"


class ConsoleActionKind(str, enum.Enum):
    LOGIN = "login"
    LOGIN_FAILED = "login-failed"
    LOGOUT = "logout"
    RESULT_RECORDED = "result-recorded"
    RISK_LIST_ADDED = "risk-list-added"
    RISK_LIST_RETRACTED = "risk-list-retracted"
    CREDIT_ACTION = "credit-action"
    USER_ADDED = "user-added"
    USER_DISABLED = "user-disabled"
    USER_ENABLED = "user-enabled"
    WARNING_REVIEWED = "warning-reviewed"


class ConsoleAction(_Record):
    """One thing a person did in the console (or to its users at the command line): who, as what,
    did what to which subject, and when. Topic ``console-actions``; key: ``user``. ``detail`` is a
    short, bounded description (the officer's note on a result goes here)."""

    action_id: Identifier
    user: Identifier
    role: ConsoleRole
    action: ConsoleActionKind
    subject: Annotated[str, StringConstraints(min_length=1, max_length=128)]
    detail: Annotated[str, StringConstraints(max_length=2000)] = ""
    at: EventTime


class ReviewVerdict(str, enum.Enum):
    CONFIRMED = "confirmed"  # the analyst confirms it: a finding, shared with the other agencies
    DISMISSED = "dismissed"  # a false alarm


class WarningReview(_Record):
    """An analyst's verdict on an early warning. Topic ``warning-reviews``; key: the warning's key
    (the declaration id when it has one, else the subject id), so a declaration's review is on its
    partition. One verdict per warning: ``warning_id`` identifies the review (a redelivery or a
    second publication of it carries the same id). Who reviewed it and why is on the console action,
    not here: this record goes on to the joint findings."""

    warning_id: WarningId
    verdict: ReviewVerdict
    rule: RuleName
    severity: Severity
    subject_kind: SubjectKind
    subject_id: Identifier
    port: Identifier | None = None
    declaration_id: Identifier | None = None
    revision: Revision | None = None
    warning_time: AwareDatetime  # the warning's event time
    reviewed_at: EventTime


class FindingKind(str, enum.Enum):
    INSPECTION = "inspection"  # an inspection found something
    CONFIRMED_WARNING = "confirmed-warning"  # an analyst confirmed an early warning


FindingId = Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=r"^(IR|EW)-[0-9a-f]{20}$")]


class JointFinding(_Record):
    """A confirmed finding published for the other agencies (joint control, outbound). Topic
    ``joint-findings``; key: the source record's key (the declaration id). Only what another agency
    acts on: never the officer's note, user names, scores or model internals.

    ``finding_id`` is derived from the source record (``IR-`` + a hash of the inspection's
    instruction id, ``EW-`` + a hash of the warning id), so a redelivered source publishes the same
    finding id and a consumer deduplicates by it."""

    finding_id: FindingId
    kind: FindingKind
    declaration_id: Identifier | None = None
    enterprise_id: Identifier | None = None  # None: the declaration's state was no longer held
    port: Identifier | None = None
    hs_code: HsCode | None = None
    category: ShortText | None = None  # what was found (the inspection's category), or the warning's rule
    subject_kind: SubjectKind | None = None  # of a confirmed warning
    subject_id: Identifier | None = None
    duty_recovered: float = Field(default=0.0, ge=0, le=1e13)
    found_at: AwareDatetime  # the inspection's time, or the review's


class ZeroTariffStatus(str, enum.Enum):
    IMPORTED = "imported"  # under zero-tariff supervision: the goods may not leave for the mainland duty-free
    RELEASED = "released"  # duty paid (or supervision ended): the goods may leave


MAX_REGISTER_IDENTIFIERS = 1000  # per import record: a fleet of vehicles, a lot of serial-numbered machines


class ZeroTariffImport(_Record):
    """One import of zero-tariff goods by a qualified enterprise for its own use on the island, as
    customs registered it. Compacted topic ``zero-tariff-register``; key: ``import_id``. A record
    replaces the import's previous one (identifiers it no longer names leave the register); status
    ``released`` takes the goods off the register; a null value deletes the import altogether."""

    import_id: Identifier
    enterprise_id: Identifier
    import_declaration_id: Identifier
    status: ZeroTariffStatus = ZeroTariffStatus.IMPORTED
    hs_code: HsCode
    description: ShortText
    quantity: Quantity
    identifiers: tuple[GoodsIdentifier, ...] = Field(default=(), max_length=MAX_REGISTER_IDENTIFIERS)
    imported_at: EventTime
    event_time: EventTime  # when this record was issued (the release, for a released import)

    def model_post_init(self, _context: object) -> None:
        _distinct_identifiers(self.identifiers)
        if self.event_time < self.imported_at:
            raise ValueError("event_time is before imported_at")


class PositionEventType(str, enum.Enum):
    POSITION = "position"  # a fix: latitude and longitude
    EXIT_ISLAND = "exit-island"  # the tracking system's geofence: left the island
    ENTER_ISLAND = "enter-island"  # came back onto the island
    PORT_PASSAGE = "port-passage"  # passed a port's gate (port names it)


class TrackedKind(str, enum.Enum):
    VEHICLE = "vehicle"
    VESSEL = "vessel"


class PositionEvent(_Record):
    """A position or geofence event of a tracked vehicle or vessel, from the intelligent positioning
    system. Topic ``positions``; key: ``identifier`` (the VIN or hull number, on its murmur2
    partition, like a declaration)."""

    event_id: Identifier
    identifier: GoodsIdentifierValue
    kind: TrackedKind
    event_type: PositionEventType
    latitude: float | None = Field(default=None, ge=-90, le=90)
    longitude: float | None = Field(default=None, ge=-180, le=180)
    port: Identifier | None = None
    tracker_id: Identifier
    event_time: EventTime

    def model_post_init(self, _context: object) -> None:
        fix = self.latitude is not None, self.longitude is not None
        if self.event_type is PositionEventType.POSITION and fix != (True, True):
            raise ValueError("a position event needs latitude and longitude")
        if fix[0] != fix[1]:
            raise ValueError("latitude and longitude come together")
        if self.event_type is PositionEventType.PORT_PASSAGE and self.port is None:
            raise ValueError("a port-passage event needs port")

    def register_key(self) -> str:
        return self.identifier.upper()


class DutyFreeCategory(str, enum.Enum):
    """Goods categories of the offshore duty-free list that the policy limits per shopper and year
    (``duty_free.item_limits``); everything else on the list is ``other``."""

    COSMETICS = "cosmetics"
    MOBILE_PHONES = "mobile-phones"
    WATCHES = "watches"
    JEWELLERY = "jewellery"
    LIQUOR = "liquor"
    TOBACCO = "tobacco"
    HANDBAGS = "handbags"
    ELECTRONICS = "electronics"
    OTHER = "other"


class IdentityMethod(str, enum.Enum):
    FACE = "face"
    ID_DOCUMENT = "id-document"


class IdentityCheck(_Strict):
    """The shop's check that the buyer is the shopper: a token of the check and whether it matched.
    Never biometric data or document images."""

    token: Identifier
    method: IdentityMethod
    matched: bool


MAX_PURCHASE_ITEMS = 50  # goods lines per purchase: a till receipt, not a wholesale order
MAX_PURCHASE_QUANTITY = 1000  # pieces of one goods line
MAX_PURCHASE_CNY = 10_000_000.0  # a purchase's total; far above any quota, so over-quota buys still parse


class PurchasedItem(_Strict):
    category: DutyFreeCategory
    goods_code: Identifier  # the shop's article code (a repeat of the same goods is counted by it)
    quantity: int = Field(ge=1, le=MAX_PURCHASE_QUANTITY)
    unit_price_cny: float = Field(gt=0, le=MAX_PURCHASE_CNY)


class DutyFreePurchase(_Record):
    """One purchase at an offshore duty-free shop. Topic ``duty-free-purchases``; key:
    ``shopper_token``. Every personal datum is a token (hashed by the shop's system): the shopper,
    the identity check, the payer, the phone and the delivery address."""

    purchase_id: Identifier
    shop_id: Identifier
    shopper_token: Identifier
    identity_check: IdentityCheck
    payer_token: Identifier | None = None
    phone_token: Identifier | None = None
    delivery_address_token: Identifier | None = None
    items: tuple[PurchasedItem, ...] = Field(min_length=1, max_length=MAX_PURCHASE_ITEMS)
    total_cny: float = Field(gt=0, le=MAX_PURCHASE_CNY)
    purchased_at: EventTime

    def model_post_init(self, _context: object) -> None:
        lines = sum(i.quantity * i.unit_price_cny for i in self.items)
        if abs(lines - self.total_cny) > max(1.0, 0.005 * lines):  # rounding of the till, nothing more
            raise ValueError(f"total_cny {self.total_cny:.2f} is not the sum of the items ({lines:.2f})")


LinkKey = Annotated[str, StringConstraints(min_length=3, max_length=80, pattern=r"^(payer|phone|address):[A-Za-z0-9][A-Za-z0-9._:\-]*$")]


class ShopperLink(_Record):
    """A shopper tied to a payer, phone or delivery address by a purchase: what the duty-free fold
    writes, re-keyed by the link, for the link index. Topic ``duty-free-shopper-links`` (internal);
    key: ``link`` (``<payer|phone|address>:<token>``)."""

    link: LinkKey
    shopper_token: Identifier
    purchase_id: Identifier
    year: int = Field(ge=2000, le=9999)


RECORD_TYPES: dict[str, type[_Record]] = {
    "declaration": Declaration,
    "declaration-batch": DeclarationBatch,
    "centralised-declaration": CentralisedDeclaration,
    "scan-result": ScanResult,
    "credit-event": CreditEvent,
    "credit-event-batch": CreditEventBatch,
    "risk-list-entry": RiskListEntry,
    "control-instruction": ControlInstruction,
    "inspection-result": InspectionResult,
    "shadow-score": ShadowScore,
    "early-warning": EarlyWarning,
    "dead-letter": DeadLetter,
    "console-action": ConsoleAction,
    "warning-review": WarningReview,
    "joint-finding": JointFinding,
    "zero-tariff-import": ZeroTariffImport,
    "position-event": PositionEvent,
    "duty-free-purchase": DutyFreePurchase,
    "shopper-link": ShopperLink,
}
