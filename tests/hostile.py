"""Hostile-input strategies for every input record type (hypothesis).

Every malformed or hostile record is to be rejected with a clear reason code (the one
``schemas.deadletters.reject_reason`` gives it and the dead-letter topic carries). The unit tests
(``tests/unit/streams/test_hostile_input.py``) check that against the codec and the topology; the
integration fuzz suite (``tests/integration/test_fuzz.py``) throws the same corpus at a real worker.

A record is modelled as a list of ``(key, raw JSON value)`` pairs so that mutations can inject
what a JSON serializer would never write: NaN literals, duplicate keys, invalid UTF-8, deep nesting.
"""

from __future__ import annotations

import enum
import re
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from pydantic import AwareDatetime, BaseModel, ValidationError
from pydantic.types import StringConstraints

from common.timefmt import utc_iso
from schemas import CentralisedDeclaration, CreditEvent, Declaration, DeclarationBatch, InspectionResult, RiskListEntry, ScanResult, codec

# ---- what each input topic carries ----------------------------------------------------------------
KINDS = ("declaration", "batch", "centralised", "scan", "credit", "risk", "inspection")
MODELS: dict[str, type[BaseModel]] = {
    "declaration": Declaration, "batch": DeclarationBatch, "centralised": CentralisedDeclaration, "scan": ScanResult,
    "credit": CreditEvent, "risk": RiskListEntry, "inspection": InspectionResult,
}
KEY_FIELDS = {"declaration": "declaration_id", "batch": "batch_id", "centralised": "centralised_id", "scan": "declaration_id",
              "credit": "enterprise_id", "risk": "entry_id", "inspection": "declaration_id"}
EVENT_TIME_FIELDS = {"event_time", "inspected_at"}  # checked for plausibility (2000 .. now + 1 day)
# The reason codes a rejected record may carry; anything else is an unexpected exception.
REASONS = {"invalid-json", "schema-violation", "duplicate-key", "missing-value", "key-mismatch", "wrong-partition"}
EXPECTED_EXCEPTIONS = (ValidationError, codec.MissingValue, codec.DuplicateKey, codec.InvalidJson, codec.TooManyErrors)

IDS = st.from_regex(r"[A-Z][A-Z0-9]{3,12}", fullmatch=True)
SHORT_TEXT = st.text(st.characters(exclude_categories=("Cs",)), min_size=1, max_size=40)


def recent(minutes: int = 10) -> str:
    return utc_iso(datetime.now(UTC) - timedelta(minutes=minutes))


# ---- valid records ---------------------------------------------------------------------------------
def declaration(did: str, enterprise: str = "FZ-ENT", scenario: str = "general-trade", **over: Any) -> dict[str, Any]:
    fields = dict(schema_version=1, declaration_id=did, revision=1, port="HAK-SEA", enterprise_id=enterprise, declarant_id="DC1",
                  scenario=scenario, hs_code="851712", origin_country="CN", departure_country="CN", transport_mode="sea",
                  declared_value=1000.0, currency="CNY", net_mass_kg=5.0, tax_rate=5.0, event_time=recent())
    return {**fields, **over}


def scan(did: str, **over: Any) -> dict[str, Any]:
    fields = dict(scan_id=f"S-{did}", declaration_id=did, port="HAK-SEA", device_id="HAK-SEA-XR01", device_type="x-ray",
                  anomaly_score=0.05, verdict="clean", event_time=recent())
    return {**fields, **over}


def credit(enterprise: str, event_id: str, **over: Any) -> dict[str, Any]:
    fields = dict(event_id=event_id, enterprise_id=enterprise, event_type="credit-class-changed", credit_class="white-list",
                  source_agency="customs", event_time=recent())
    return {**fields, **over}


def risk(entry_id: str, **over: Any) -> dict[str, Any]:
    fields = dict(entry_id=entry_id, list_id="FZ-LIST", kind="origin", value="AQ", action="watch", reason="fuzz",
                  source_agency="customs", valid_from=recent(60))
    return {**fields, **over}


def inspection(did: str, **over: Any) -> dict[str, Any]:
    fields = dict(instruction_id=f"{did}:1:declaration", declaration_id=did, revision=1, port="HAK-SEA", station_id="ST1",
                  found=False, inspected_at=recent())
    return {**fields, **over}


def batch(batch_id: str, items: list[dict[str, Any]]) -> dict[str, Any]:
    return dict(schema_version=1, batch_id=batch_id, gateway="FZ-GW", declarations=items)


def goods_item(item_no: int, **over: Any) -> dict[str, Any]:
    return {**dict(item_no=item_no, hs_code="851712", origin_country="CN", declared_value=100.0, currency="CNY", net_mass_kg=1.0,
                   tax_rate=5.0), **over}


def centralised(cid: str, enterprise: str = "FZ-ENT", n_items: int = 2, **over: Any) -> dict[str, Any]:
    fields = dict(schema_version=1, centralised_id=cid, revision=1, port="HAK-SEA", enterprise_id=enterprise, declarant_id="DC1",
                  scenario="general-trade", transport_mode="sea", departure_country="CN", event_time=recent(),
                  items=[goods_item(n) for n in range(1, n_items + 1)])
    return {**fields, **over}


@st.composite
def valid_record(draw: st.DrawFn, kind: str, ids: st.SearchStrategy[str] = IDS) -> dict[str, Any]:
    """A valid record of ``kind`` with drawn ids and some optional fields."""
    rid = draw(ids)
    if kind == "declaration":
        extra = draw(st.fixed_dictionaries({}, optional={
            "seller_id": IDS, "quantity": st.floats(0.5, 1e6), "procedure_code": st.from_regex(r"[0-9]{4}", fullmatch=True),
            "courier_id": IDS, "revision": st.integers(1, 1000)}))
        return declaration(rid, enterprise=draw(IDS), scenario=draw(st.sampled_from(["general-trade", "zero-tariff"])), **extra)
    if kind == "batch":
        items = draw(st.lists(valid_record("declaration", ids), min_size=1, max_size=4, unique_by=lambda d: d["declaration_id"]))
        return batch(rid, items)
    if kind == "centralised":
        numbers = sorted(draw(st.sets(st.integers(1, 9999), min_size=1, max_size=4)))
        items = [goods_item(n, **draw(st.fixed_dictionaries({}, optional={"seller_id": IDS, "quantity": st.floats(0.5, 1e6)})))
                 for n in numbers]
        return centralised(rid, enterprise=draw(IDS), items=items, **draw(st.fixed_dictionaries({}, optional={
            "procedure_code": st.from_regex(r"[0-9]{4}", fullmatch=True), "revision": st.integers(1, 1000)})))
    if kind == "scan":
        return scan(rid, **draw(st.fixed_dictionaries({}, optional={
            "suspected_categories": st.lists(SHORT_TEXT, max_size=3), "image_ref": SHORT_TEXT})))
    if kind == "credit":
        return credit(draw(IDS), rid, **draw(st.fixed_dictionaries({}, optional={"reason": SHORT_TEXT})))
    if kind == "risk":
        return risk(rid, **draw(st.fixed_dictionaries({}, optional={"reason": SHORT_TEXT, "source_agency": SHORT_TEXT})))
    return inspection(rid, **draw(st.fixed_dictionaries({}, optional={"category": SHORT_TEXT, "duty_recovered": st.floats(0, 1e9)})))


# ---- field introspection (what is wrong for which field) -------------------------------------------
@dataclass(frozen=True)
class FieldSpec:
    name: str
    kind: str  # str, enum, float, int, bool, datetime, literal, str-tuple, model-tuple
    nullable: bool
    required: bool
    pattern: str | None = None
    enum_values: tuple[str, ...] = ()


def _find_pattern(ann: Any, metadata: list[Any]) -> str | None:
    for m in metadata:
        if isinstance(m, StringConstraints) and m.pattern:
            return m.pattern
    for arg in typing.get_args(ann):
        if isinstance(arg, StringConstraints) and arg.pattern:
            return arg.pattern
        if not isinstance(arg, type) and (found := _find_pattern(arg, [])):
            return found
    return None


def field_specs(model: type[BaseModel]) -> dict[str, FieldSpec]:
    specs = {}
    for name, info in model.model_fields.items():
        ann = info.annotation
        nullable = False
        if typing.get_origin(ann) in (typing.Union, types.UnionType) and type(None) in typing.get_args(ann):
            nullable = True
            ann = next(a for a in typing.get_args(ann) if a is not type(None))
        pattern = _find_pattern(ann, info.metadata)
        while typing.get_origin(ann) is typing.Annotated:
            ann = typing.get_args(ann)[0]
        enum_values: tuple[str, ...] = ()
        if typing.get_origin(ann) is typing.Literal:
            kind = "literal"
        elif typing.get_origin(ann) is tuple:
            item = typing.get_args(ann)[0]
            kind = "model-tuple" if isinstance(item, type) and issubclass(item, BaseModel) else "str-tuple"
        elif isinstance(ann, type) and issubclass(ann, enum.Enum):
            kind, enum_values = "enum", tuple(e.value for e in ann)
        elif ann is AwareDatetime or ann is datetime:
            kind = "datetime"
        else:
            kind = {bool: "bool", int: "int", float: "float", str: "str"}[ann]
        specs[name] = FieldSpec(name, kind, nullable, info.is_required(), pattern, enum_values)
    return specs


SPECS = {kind: field_specs(model) for kind, model in MODELS.items()}

# ---- raw records -------------------------------------------------------------------------------------
Pairs = list[tuple[str, bytes]]


def to_pairs(record: dict[str, Any]) -> Pairs:
    return [(k, orjson.dumps(v)) for k, v in record.items()]


def render(pairs: Pairs, sep: bytes = b":") -> bytes:
    return b"{" + b",".join(orjson.dumps(k) + sep + v for k, v in pairs) + b"}"


def replace(pairs: Pairs, name: str, raw_value: bytes) -> Pairs:
    if any(k == name for k, _ in pairs):
        return [(k, raw_value if k == name else v) for k, v in pairs]
    return [*pairs, (name, raw_value)]


@dataclass(frozen=True)
class Hostile:
    """One hostile record and what the pipeline must make of it."""

    kind: str
    category: str
    value: bytes | None
    reasons: tuple[str, ...]  # dead letters it must produce (one per record; per bad item for batches)
    key_id: str  # the id its Kafka key should carry (the value is what is wrong)
    good_items: tuple[str, ...] = ()  # batches: the declarations in it that must still be decided
    partition: int | None = None  # batches: where the good items belong (None: anywhere)

    def __repr__(self) -> str:  # keep hypothesis' failure output readable for 5 MB records
        shown = None if self.value is None else self.value[:300] + (b"..." if len(self.value) > 300 else b"")
        return f"Hostile({self.kind}, {self.category}, reasons={self.reasons}, value={shown!r})"


def big_text(max_chars: int) -> st.SearchStrategy[str]:
    """A string longer than any field allows (501 .. max_chars characters: an officer's note takes
    500), drawn cheaply; never blank at its ends, so that stripping a note cannot shorten it."""
    return st.builds(lambda chunk, n: (chunk * (n // len(chunk) + 1))[:n],
                     st.text(st.characters(exclude_categories=("Cs", "Cc", "Z")), min_size=1, max_size=8),
                     st.integers(501, max(501, max_chars)))


JSON_SCALARS = st.none() | st.booleans() | st.integers(-10**6, 10**6) | st.floats(allow_nan=False, allow_infinity=False) | SHORT_TEXT
NESTED = st.recursive(
    JSON_SCALARS, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(SHORT_TEXT, inner, max_size=3), max_leaves=12,
)


def wrong_type_values(spec: FieldSpec) -> st.SearchStrategy[Any]:
    """JSON values of a type the field never accepts (strict mode: no coercion)."""
    numbers = st.integers(-1000, 1000) | st.floats(allow_nan=False, allow_infinity=False)
    containers = st.lists(JSON_SCALARS, max_size=3) | st.dictionaries(SHORT_TEXT, JSON_SCALARS, max_size=3)
    null = st.nothing() if spec.nullable else st.none()
    if spec.kind in ("str", "enum", "datetime"):
        return numbers | st.booleans() | containers | null
    if spec.kind == "float":
        return st.text(max_size=10) | st.booleans() | containers | null
    if spec.kind == "int":
        return st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=10) | st.booleans() | containers | null
    if spec.kind == "bool":
        return numbers | st.text(max_size=10) | containers | st.none()
    if spec.kind == "literal":  # not true / 1.0: see test_schema_version_is_not_coerced_from_true_or_float
        return st.integers().filter(lambda i: i != 1) | st.text(max_size=10) | containers | st.none()
    # tuples (JSON arrays)
    return st.text(max_size=10) | numbers | st.booleans() | st.dictionaries(SHORT_TEXT, JSON_SCALARS, max_size=3) | null


def bad_strings(spec: FieldSpec) -> st.SearchStrategy[str]:
    """Strings (of the right JSON type) that a string field refuses: empty, or not its pattern."""
    empty = st.just("")
    if spec.kind == "enum":
        return SHORT_TEXT.filter(lambda s: s not in spec.enum_values) | empty
    if spec.pattern:
        rx = re.compile(spec.pattern)
        tricky = st.sampled_from(
            ["../../etc/passwd", "a b", " lead", "x\n", "\u0000", "é", "'; DROP TABLE x;--", "${jndi:ldap://x}", "{{7*7}}"],
        )
        return (tricky | SHORT_TEXT).filter(lambda s: not rx.match(s)) | empty
    return empty


def nesting(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


INVALID_UTF8 = [b"\xff", b"\xc3", b"\xc0\xaf", b"\xed\xa0\x80", b"\xf8\x88\x80\x80\x80", b"\x80", b"\xf4\x90\x80\x80"]


@st.composite
def mutate(draw: st.DrawFn, kind: str, record: dict[str, Any], max_bytes: int,
           category: str | None = None) -> tuple[str, bytes | None, str]:
    """One hostile version of a valid ``record``: (category, bytes, expected reason)."""
    specs = SPECS[kind]
    pairs = to_pairs(record)
    raw = render(pairs)
    category = category or draw(st.sampled_from(CATEGORIES[kind]))
    name = draw(st.sampled_from(sorted(specs)))
    spec = specs[name]
    if category == "truncated":
        return category, raw[: draw(st.integers(1, len(raw) - 1))], "invalid-json"
    if category == "trailing-garbage":
        return category, raw + draw(st.sampled_from([b"x", b",", b"}", b"{}", b"\x00", b" 1", b"]"])), "invalid-json"
    if category == "not-json":
        head = draw(st.sampled_from([b"<", b"'", b"x", b"\x00", b"\xff", b"}", b"NaN{", b"=", b"#"]))
        return category, head + draw(st.binary(max_size=64)), "invalid-json"
    if category == "empty":
        return category, b"", "invalid-json"
    if category == "invalid-utf8":
        bad = draw(st.sampled_from(INVALID_UTF8))
        where = draw(st.sampled_from(["value", "key"]))
        if where == "key":
            return category, raw[:-1] + b',"k' + bad + b'":1}', "invalid-json"
        str_fields = [n for n, s in specs.items() if s.kind in ("str", "enum", "datetime") and n in record]
        target = draw(st.sampled_from(str_fields))
        return category, render(replace(pairs, target, b'"A' + bad + b'B"')), "invalid-json"
    if category == "bad-escape":
        esc = draw(st.sampled_from([b"\\ud800", b"\\udc00", b"\\ud800x", b"\\x41", b"\\u12", b"\\", b"\x01", b"\n", b"\x1f"]))
        return category, render(replace(pairs, name, b'"A' + esc + b'B"')), "invalid-json"
    if category == "wrong-encoding":
        if draw(st.booleans()):
            return category, b"\xef\xbb\xbf" + raw, "invalid-json"
        return category, raw.decode().encode(draw(st.sampled_from(["utf-16", "utf-16-le", "utf-32"]))), "invalid-json"
    if category == "deep-nesting":
        depth = draw(st.integers(300, max(300, min(100_000, max_bytes // 2))))
        if draw(st.booleans()):
            return category, nesting(depth), "invalid-json"
        return category, render(replace(pairs, name, nesting(depth))), "invalid-json"
    if category == "number-too-long":
        digits = draw(st.integers(5000, 20_000))
        target = draw(st.sampled_from([n for n, s in specs.items() if s.kind in ("float", "int", "literal")]))
        return category, render(replace(pairs, target, b"1" * digits)), "invalid-json"
    if category == "wrong-top-level":
        value = draw(st.sampled_from([b"null", b"[]", b"true", b"0", b"-1.5", b'"text"', b"[" + raw + b"]", b'""']))
        return category, value, "schema-violation"
    if category == "wrong-type":
        return category, render(replace(pairs, name, orjson.dumps(draw(wrong_type_values(spec))))), "schema-violation"
    if category == "missing-field":
        required = [n for n, s in specs.items() if s.required]
        drop = draw(st.sampled_from(required))
        return category, render([(k, v) for k, v in pairs if k != drop]), "schema-violation"
    if category == "extra-field":
        key = draw(SHORT_TEXT.filter(lambda k: k not in specs))
        return category, render([*pairs, (key, orjson.dumps(draw(JSON_SCALARS)))]), "schema-violation"
    if category == "nan-infinity":
        literal = draw(st.sampled_from([b"NaN", b"Infinity", b"-Infinity", b"1e999", b"-1e999", b"1E400", b"-0.1e99999"]))
        return category, render(replace(pairs, name, literal)), "schema-violation"
    if category == "absurd-number":
        target = draw(st.sampled_from([n for n, s in specs.items() if s.kind in ("float", "int", "literal")]))
        if specs[target].kind == "float":
            value: Any = draw(st.floats(max_value=-1e-6, allow_infinity=False) | st.floats(min_value=2e13, allow_infinity=False))
        else:
            value = draw(st.integers(max_value=0) | st.integers(min_value=1001, max_value=10**300))
        raw = orjson.dumps(value) if isinstance(value, float) else str(value).encode()
        return category, render(replace(pairs, target, raw)), "schema-violation"
    if category == "huge-string":
        target = draw(st.sampled_from([n for n, s in specs.items() if s.kind in ("str", "enum", "str-tuple")]))
        text = draw(big_text(max_bytes // 4))
        value = [text] if specs[target].kind == "str-tuple" else text
        return category, render(replace(pairs, target, orjson.dumps(value))), "schema-violation"
    if category == "huge-payload":  # a large extra field, or a large nested array
        size = draw(st.integers(max_bytes // 2, max_bytes))
        if draw(st.booleans()):
            return category, render([*pairs, ("padding", b'"' + b"A" * size + b'"')]), "schema-violation"
        return category, render(replace(pairs, name, b"[" + b",".join([b"0"] * (size // 2)) + b"]")), "schema-violation"
    if category == "bad-string":
        target = draw(st.sampled_from([n for n, s in specs.items() if s.kind in ("str", "enum")]))
        return category, render(replace(pairs, target, orjson.dumps(draw(bad_strings(specs[target]))))), "schema-violation"
    if category == "unknown-enum":
        target = draw(st.sampled_from([n for n, s in specs.items() if s.kind == "enum"]))
        value = draw(SHORT_TEXT.filter(lambda s: s not in specs[target].enum_values) | st.sampled_from(
            [v.upper() for v in specs[target].enum_values] + [v + " " for v in specs[target].enum_values]))
        return category, render(replace(pairs, target, orjson.dumps(value))), "schema-violation"
    if category == "implausible-time":
        target = draw(st.sampled_from([n for n in specs if n in EVENT_TIME_FIELDS]))
        when = draw(st.datetimes(max_value=datetime(1999, 12, 31), timezones=st.just(UTC))
                    | st.datetimes(min_value=datetime.now() + timedelta(days=2), timezones=st.just(UTC)))
        return category, render(replace(pairs, target, orjson.dumps(when.isoformat()))), "schema-violation"
    if category == "malformed-time":
        target = draw(st.sampled_from([n for n, s in specs.items() if s.kind == "datetime"]))
        value = draw(st.sampled_from(["2026-11-28T10:00:00", "2026-13-01T00:00:00Z", "2026-11-31T00:00:00Z", "2026-11-28T25:00:00Z",
                                      "2026-11-28T10:00:00+25:00", "yesterday", "", "99999-01-01T00:00:00Z", "2026-11-28",
                                      "28/11/2026 10:00"])
                   | st.datetimes(timezones=st.none()).map(datetime.isoformat))
        return category, render(replace(pairs, target, orjson.dumps(value))), "schema-violation"
    if category == "nested-garbage":
        garbage = draw(st.dictionaries(SHORT_TEXT, NESTED, min_size=1, max_size=4))
        return category, render(replace(pairs, name, orjson.dumps(garbage))), "schema-violation"
    if category == "schema-version":
        value = draw(st.sampled_from([b"2", b"0", b"-1", b'"1"', b"null", b"[1]", b'{"v":1}', b"1.5"]))
        return category, render(replace(pairs, "schema_version", value)), "schema-violation"
    if category == "cross-field":
        return category, render(to_pairs(draw(cross_field(kind, record)))), "schema-violation"
    if category == "duplicate-key":
        return category, draw(duplicate_key(kind, record)), "duplicate-key"
    if category == "null-value":
        return category, None, "missing-value"
    raise AssertionError(category)


@st.composite
def cross_field(draw: st.DrawFn, kind: str, record: dict[str, Any]) -> dict[str, Any]:
    """Each field fine, the combination not (model_post_init rules)."""
    if kind == "credit":
        return draw(st.sampled_from([
            {**record, "event_type": "credit-class-changed", "credit_class": None},
            {**record, "event_type": "qualification-registered", "qualification": None},
            {**record, "event_type": "credit-class-changed", "credit_class": "joint-penalty"},
        ]))
    if kind == "centralised":
        items = record["items"]
        return draw(st.sampled_from([
            {**record, "items": [*items, items[-1]]},  # an item number twice
            {**record, "items": [goods_item(items[-1]["item_no"] + 1), *items]},  # not ascending
        ]))
    assert kind == "risk"
    return draw(st.sampled_from([
        {**record, "kind": "origin", "value": "China"},
        {**record, "kind": "hs-code", "value": "85A712"},
        {**record, "kind": "route", "value": "SGKP"},
        {**record, "valid_until": "2001-01-01T00:00:00Z"},  # before valid_from
    ]))


@st.composite
def duplicate_key(draw: st.DrawFn, kind: str, record: dict[str, Any]) -> bytes:
    """The record with one top-level key repeated (same or another valid value; maybe escaped or
    spaced). Duplicates inside a batch's declarations are a ``bad-items`` case."""
    pairs = to_pairs(record)
    i = draw(st.integers(0, len(pairs) - 1))
    key, value = pairs[i]
    if kind != "batch" or key != "declarations":
        value = draw(st.sampled_from([value, value, *ALTERNATIVES.get(key, [])]))
    spelled = draw(st.sampled_from(["plain", "escaped", "spaced"]))
    if spelled == "escaped":  # the same key, written with a \\u escape
        key_json = b'"' + "".join(f"\\u{ord(c):04x}" if j == 0 else c for j, c in enumerate(key)).encode() + b'"'
    else:
        key_json = orjson.dumps(key)
    sep = draw(st.sampled_from([b" : ", b"\n:", b"\t:\r\n"])) if spelled == "spaced" else b":"
    dup = key_json + sep + value
    body = [orjson.dumps(k) + b":" + v for k, v in pairs]
    body.insert(draw(st.integers(0, len(body))), dup)
    return b"{" + b",".join(body) + b"}"


# Other valid values per field, so that a duplicate can disagree with the original.
ALTERNATIVES: dict[str, list[bytes]] = {
    "port": [b'"YPU-SEA"'], "scenario": [b'"zero-tariff"'], "declared_value": [b"1.0", b"99999999"],
    "origin_country": [b'"KP"'], "transport_mode": [b'"air"'], "verdict": [b'"suspicious"'],
    "anomaly_score": [b"0.99"], "credit_class": [b'"aeo"'], "action": [b'"inspect"'], "found": [b"true"],
    "enterprise_id": [b'"OTHER-ENT"'], "tax_rate": [b"0"],
}

COMMON = ["truncated", "trailing-garbage", "not-json", "invalid-utf8", "bad-escape", "wrong-encoding", "deep-nesting",
          "wrong-top-level", "wrong-type", "missing-field", "extra-field", "nan-infinity", "absurd-number", "huge-string",
          "huge-payload", "bad-string", "nested-garbage", "schema-version", "duplicate-key", "number-too-long", "null-value", "empty"]
CATEGORIES: dict[str, list[str]] = {
    "declaration": [*COMMON, "unknown-enum", "implausible-time", "malformed-time"],
    "batch": [*COMMON, "bad-items"],  # bad-items: a good envelope with some bad declarations
    # One legal document: a bad item refuses the whole record (no per-item fallback as for batches).
    "centralised": [*COMMON, "unknown-enum", "implausible-time", "malformed-time", "cross-field"],
    "scan": [*COMMON, "unknown-enum", "implausible-time", "malformed-time"],
    "credit": [*COMMON, "unknown-enum", "implausible-time", "malformed-time", "cross-field"],
    "risk": [c for c in COMMON if c != "null-value"] + ["unknown-enum", "malformed-time", "cross-field"],  # null: a delete
    "inspection": [*COMMON, "implausible-time", "malformed-time"],
}


@st.composite
def bad_item_batch(draw: st.DrawFn, ids: st.SearchStrategy[str], partition: int | None,
                   fresh: Callable[[], str] | None = None) -> Hostile:
    """A valid envelope with good declarations and 1-3 bad ones: only the bad ones are dead-lettered.
    ``fresh`` (if given) names the good declarations, e.g. uniquely across a whole corpus."""
    if fresh is None:
        good = draw(st.lists(valid_record("declaration", ids), min_size=0, max_size=3, unique_by=lambda d: d["declaration_id"]))
    else:
        good = [declaration(fresh()) for _ in range(draw(st.integers(0, 3)))]
    bad: list[tuple[bytes, str]] = []
    for _ in range(draw(st.integers(1, 3))):
        base = draw(valid_record("declaration", ids))
        category = draw(st.sampled_from(["wrong-type", "missing-field", "extra-field", "nan-infinity", "absurd-number",
                                         "bad-string", "duplicate-key", "implausible-time", "nested-garbage", "huge-string"]))
        _, raw, reason = draw(mutate("declaration", base, 4096, category))
        bad.append((raw, reason))
    items = [render(to_pairs(d)) for d in good] + [raw for raw, _ in bad]
    order = draw(st.permutations(range(len(items))))
    bid = draw(ids)
    envelope = render([*to_pairs({"schema_version": 1, "batch_id": bid, "gateway": "FZ-GW"}),
                       ("declarations", b"[" + b",".join(items[i] for i in order) + b"]")])
    return Hostile("batch", "bad-items", envelope, tuple(sorted(r for _, r in bad)), bid,
                   tuple(d["declaration_id"] for d in good), partition)


@st.composite
def hostile(draw: st.DrawFn, kind: str, category: str | None = None, max_bytes: int = 5_000_000,
            ids: st.SearchStrategy[str] = IDS, partition: int | None = None, fresh: Callable[[], str] | None = None) -> Hostile:
    """A hostile record for the topic carrying ``kind`` records (of ``category``, or any)."""
    category = category or draw(st.sampled_from(CATEGORIES[kind]))
    if category == "bad-items":
        return draw(bad_item_batch(ids, partition, fresh))
    record = draw(valid_record(kind, ids))
    category, value, reason = draw(mutate(kind, record, max_bytes, category))
    return Hostile(kind, category, value, (reason,), str(record[KEY_FIELDS[kind]]))


def collect(strategy: st.SearchStrategy[Any], n: int) -> list[Any]:
    """``n`` examples of ``strategy``, the same ones on every run (for building a fixed corpus)."""
    out: list[Any] = []

    @settings(max_examples=n, derandomize=True, database=None, phases=[Phase.generate], deadline=None,
              suppress_health_check=list(HealthCheck))
    @given(strategy)
    def gather(example: Any) -> None:
        out.append(example)

    gather()
    return out
