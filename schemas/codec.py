"""Strict JSON decoding of topic records: pydantic validation, plus what pydantic lets through.

``parse(model, raw)`` is ``model.model_validate_json(raw)`` (strict: no coercion, no extra fields,
no NaN/infinity, bounded nesting, valid UTF-8 only) that additionally refuses:

* a missing value (a tombstone where a record is required): :class:`MissingValue`;
* a duplicated object key at any depth (``{"port": "A", "port": "B"}``), which pydantic's and
  orjson's parsers silently resolve to the last value - and which another system reading the same
  bytes may resolve differently: :class:`DuplicateKey`.

Duplicate keys are detected without a second parse in the normal case. Every key in JSON text ends
with an unescaped ``"``, optional JSON whitespace and ``:``; inside a string a ``"`` is always
escaped, so the byte pattern ``"<ws>:`` occurs at least once per key (more often only when a string
*value* contains an escaped quote followed by a colon). On the other side, a validated model knows
how many distinct keys it was given (``model_fields_set`` of it and of every nested model; with
``extra="forbid"`` there can be no others). If the pattern count equals that number, there are
exactly as many keys as distinct keys: no duplicates. Only when the counts differ (a duplicate, or
an escaped quote before a colon in some string) does the exact check run: a full parse with
``json.loads(object_pairs_hook=...)``.

The count check costs a small fraction of the validation itself; the exact check would cost more
than the validation (figures in docs/benchmark.md).

``batch_items(model, raw, field)`` serves a container record whose validation failed: it checks
everything but the items (the other fields, the item count, duplicate keys in the envelope) and
returns each item's original bytes, so that the items can be validated - and dead-lettered - one by
one, exactly like single records (no re-serialization, which would drop duplicate keys).
"""

from __future__ import annotations

import functools
import json
import re
import typing
from collections.abc import Mapping
from copy import copy
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError, create_model

M = TypeVar("M", bound=BaseModel)

# What pydantic validates as JSON text (it refuses a memoryview as json_type).
Raw = bytes | bytearray

_JSON_WS_BYTES = b" \t\n\r"
MAX_ERRORS = 256  # a record with more validation errors is rejected without listing them
_JSON_WS = re.compile(r"[ \t\n\r]*")


class MissingValue(ValueError):
    """A record without a value (a tombstone) on a topic whose records must have one."""

    reason_code = "missing-value"


class DuplicateKey(ValueError):
    """A JSON object with the same key twice: parsers disagree on which value counts."""

    reason_code = "duplicate-key"


class TooManyErrors(ValueError):
    """A record with so many validation errors that listing them would cost more than the record:
    pydantic's ``errors()`` on a 1 MB array of wrong items takes seconds and builds ~85 MB of text."""

    reason_code = "schema-violation"


class InvalidJson(ValueError):
    """JSON that pydantic accepted but the exact duplicate-key check could not read (not expected)."""

    reason_code = "invalid-json"


def parse(model: type[M], raw: Raw | None) -> M:
    """Validate ``raw`` as one ``model`` record; raises pydantic's ValidationError, TooManyErrors,
    MissingValue or DuplicateKey (each maps to a reason code in ``schemas.deadletters.reject_reason``)."""
    if raw is None:
        raise MissingValue(f"record has no value; a {model.__name__} is required")
    try:
        record = model.model_validate_json(raw)
    except ValidationError as exc:
        if exc.error_count() > MAX_ERRORS:
            raise TooManyErrors(f"{exc.error_count()} validation errors in one {model.__name__} record "
                                f"(more than {MAX_ERRORS}: not listed)") from None
        raise
    if bytes(raw).translate(None, _JSON_WS_BYTES).count(b'":') != distinct_keys(record):  # key_terminators
        check_no_duplicate_keys(raw)
    return record


def key_terminators(raw: Raw) -> int:
    """Occurrences of ``"<JSON whitespace>:`` in ``raw``: at least the number of keys. (Deleting the
    four JSON whitespace bytes first and counting ``":`` is one pass each, in C.)"""
    return bytes(raw).translate(None, _JSON_WS_BYTES).count(b'":')


def distinct_keys(record: BaseModel) -> int:
    """Distinct keys the validated JSON objects had: the fields set on ``record`` and on every model
    nested in a field that was set (a default is not in the input, so it is not counted)."""
    fields_set = record.__pydantic_fields_set__
    object_fields = _object_fields(type(record))
    if not object_fields:
        return len(fields_set)
    count = len(fields_set)
    for name in object_fields:
        if name in fields_set:
            count += _count_in(getattr(record, name))
    return count


def _count_in(value: Any) -> int:
    if isinstance(value, BaseModel):
        return distinct_keys(value)
    if isinstance(value, (tuple, list)):
        if value and isinstance(value[0], BaseModel) and not _object_fields(type(value[0])) \
                and all(type(v) is type(value[0]) for v in value):  # flat models, e.g. a batch's declarations
            return sum(len(v.__pydantic_fields_set__) for v in value)
        return sum(_count_in(v) for v in value)
    if isinstance(value, dict):  # a dict-typed field: its own keys, then its values
        return len(value) + sum(_count_in(v) for v in value.values())
    return 0


_OBJECT_FIELDS: dict[type[BaseModel], tuple[str, ...]] = {}


def _object_fields(model: type[BaseModel]) -> tuple[str, ...]:
    """Fields whose values may hold JSON objects (models, dicts, containers of them, Any). Scalar
    fields (strings, numbers, enums, datetimes) are skipped when counting, which keeps it cheap."""
    found = _OBJECT_FIELDS.get(model)
    if found is None:
        found = _OBJECT_FIELDS[model] = tuple(name for name, info in model.model_fields.items() if _holds_objects(info.annotation))
    return found


def _holds_objects(ann: Any) -> bool:
    if ann is Any:
        return True
    if isinstance(ann, type):
        return issubclass(ann, (BaseModel, dict))
    origin = typing.get_origin(ann)
    if origin is typing.Literal:
        return False
    if origin is typing.Annotated:
        return _holds_objects(typing.get_args(ann)[0])
    if isinstance(origin, type) and issubclass(origin, Mapping):
        return True
    return any(_holds_objects(arg) for arg in typing.get_args(ann))  # unions, tuples, lists


def _reject_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        seen: set[str] = set()
        for dup, _ in pairs:  # stops at the first key seen twice (there is one: the lengths differ)
            if dup in seen:
                break
            seen.add(dup)
        raise DuplicateKey(f"key {dup[:64]!r} appears more than once in one JSON object")
    return obj


def check_no_duplicate_keys(raw: Raw) -> None:
    """The exact check: parse ``raw`` again, refusing any object with a repeated key."""
    try:
        json.loads(bytes(raw), object_pairs_hook=_reject_duplicates)
    except DuplicateKey:
        raise
    except (ValueError, RecursionError) as exc:
        raise InvalidJson(f"unreadable JSON: {exc}") from exc


# ---- containers: per-item validation after the whole record failed ----------------------------------
_plain = json.JSONDecoder()


@functools.cache
def _envelope(model: type[BaseModel], field: str) -> type[BaseModel]:
    """``model`` with ``field`` relaxed to a tuple of any JSON values (same length limits)."""
    fields: dict[str, Any] = {}
    for name, info in model.model_fields.items():
        if name == field:
            info = copy(info)
            info.annotation = tuple[Any, ...]
        fields[name] = (info.annotation, info)
    return create_model(f"{model.__name__}Envelope", __config__=model.model_config, **fields)


def batch_items(model: type[BaseModel], raw: Raw | None, field: str) -> list[bytes]:
    """The original bytes of each item of the array ``field`` of a ``model`` record, after checking
    the rest of the record. Raises (ValidationError, TooManyErrors, MissingValue, DuplicateKey,
    InvalidJson) when the record itself is unusable: then the whole record is to be dead-lettered."""
    if raw is None:
        raise MissingValue(f"record has no value; a {model.__name__} is required")
    try:
        _envelope(model, field).model_validate_json(raw)  # other fields, item count, valid JSON
    except ValidationError as exc:
        if exc.error_count() > MAX_ERRORS:
            raise TooManyErrors(f"{exc.error_count()} validation errors in one {model.__name__} envelope") from None
        raise
    try:
        text = bytes(raw).decode("utf-8")
        return [item.encode("utf-8") for item in _top_level_array(text, field)]
    except (DuplicateKey, InvalidJson):
        raise
    except (ValueError, IndexError, RecursionError) as exc:
        raise InvalidJson(f"unreadable JSON: {exc}") from exc


def _ws_end(text: str, pos: int) -> int:
    """The position after the JSON whitespace at ``pos`` (the pattern matches the empty string too)."""
    match = _JSON_WS.match(text, pos)
    assert match is not None  # `[ \t\n\r]*` matches at any position, even past the end
    return match.end()


def _top_level_array(text: str, field: str) -> list[str]:
    """Walk a JSON object's top level (refusing repeated keys); return the item texts of ``field``."""
    ws = _ws_end
    pos = ws(text, 0)
    if text[pos] != "{":
        raise InvalidJson("not a JSON object")
    pos = ws(text, pos + 1)
    seen: set[str] = set()
    items: list[str] | None = None
    if text[pos] == "}":
        raise InvalidJson("empty object")
    while True:
        key, pos = _plain.raw_decode(text, pos)
        if not isinstance(key, str):
            raise InvalidJson("object key is not a string")
        if key in seen:
            raise DuplicateKey(f"key {key[:64]!r} appears more than once in one JSON object")
        seen.add(key)
        pos = ws(text, pos)
        if text[pos] != ":":
            raise InvalidJson("expected ':'")
        pos = ws(text, pos + 1)
        if key == field and text[pos] == "[":
            items = []
            pos = ws(text, pos + 1)
            if text[pos] == "]":
                pos += 1
            else:
                while True:
                    _, end = _plain.raw_decode(text, pos)
                    items.append(text[pos:end])
                    pos = ws(text, end)
                    if text[pos] == "]":
                        pos += 1
                        break
                    if text[pos] != ",":
                        raise InvalidJson("expected ',' or ']'")
                    pos = ws(text, pos + 1)
        else:
            _, pos = json.JSONDecoder(object_pairs_hook=_reject_duplicates).raw_decode(text, pos)
        pos = ws(text, pos)
        if text[pos] == "}":
            break
        if text[pos] != ",":
            raise InvalidJson("expected ',' or '}'")
        pos = ws(text, pos + 1)
    if ws(text, pos + 1) != len(text):
        raise InvalidJson("trailing characters")
    if items is None:
        raise InvalidJson(f"no array {field!r}")
    return items


__all__ = ["DuplicateKey", "InvalidJson", "MissingValue", "TooManyErrors", "batch_items", "check_no_duplicate_keys",
           "distinct_keys", "key_terminators", "parse"]
