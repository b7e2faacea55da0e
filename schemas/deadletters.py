"""Dead-letter records: the original bytes, where they came from, and a reason an operator can act on.

The reason code is the exception's ``reason_code`` (or the pydantic error type): it is a metric
label, so the set of codes is fixed by the code, never by the input."""

from __future__ import annotations

import base64
import hashlib
from typing import Any

import orjson
from pydantic import ValidationError

from common.timefmt import utc_iso

MAX_ERROR_CHARS = 2000
# Base64 grows a value by 4/3: keep dead letters well inside one producer batch / Kafka record.
MAX_ORIGINAL_BYTES = 256 * 1024
MAX_KEY_BYTES = 1024


def reject_reason(exc: BaseException) -> tuple[str, str]:
    """A short, stable reason code (a metric label) and a readable detail for one rejection."""
    if isinstance(exc, ValidationError):
        errors = exc.errors(include_url=False, include_input=False)
        first = errors[0] if errors else {"type": "invalid", "loc": ()}
        if first["type"] in ("json_invalid", "json_type"):
            return "invalid-json", str(first.get("msg", ""))[:MAX_ERROR_CHARS]
        detail = "; ".join(f"{'.'.join(map(str, e['loc'])) or '<record>'}: {e['msg']}" for e in errors[:10])
        return "schema-violation", detail[:MAX_ERROR_CHARS]
    code = getattr(exc, "reason_code", None) or type(exc).__name__
    return str(code), str(exc)[:MAX_ERROR_CHARS]


def dead_letter_record(
    topic: str, partition: int, offset: int, key: bytes | None, value: bytes | None, exc: BaseException,
) -> tuple[str, bytes]:
    reason, detail = reject_reason(exc)
    record: dict[str, Any] = {
        "schema_version": 1,
        "source_topic": topic,
        "partition": partition,
        "offset": offset,
        "key_b64": base64.b64encode(key[:MAX_KEY_BYTES]).decode() if key is not None else None,
        "value_b64": base64.b64encode(value[:MAX_ORIGINAL_BYTES]).decode() if value is not None else None,
        "value_size": len(value) if value is not None else None,
        "value_sha256": hashlib.sha256(value).hexdigest() if value is not None else None,
        "truncated": (value is not None and len(value) > MAX_ORIGINAL_BYTES) or (key is not None and len(key) > MAX_KEY_BYTES),
        "reason": reason,
        "error": detail,
        "received_at": utc_iso(),
    }
    return reason, orjson.dumps(record)
