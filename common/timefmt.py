"""UTC times as the records carry them: ISO 8601 with a ``Z`` suffix (``2025-09-01T08:30:00.123456Z``)."""

from __future__ import annotations

from datetime import UTC, datetime


def utc_iso(at: float | datetime | None = None, timespec: str = "auto") -> str:
    """``at`` (epoch seconds, a datetime, or None for now) in UTC, ISO 8601, ending in ``Z``.

    ``timespec`` is :meth:`datetime.isoformat`'s: ``"auto"`` leaves out a zero microsecond part,
    ``"microseconds"`` always writes it (fixed width). A naive datetime is taken as UTC; an aware
    one is converted to UTC."""
    if at is None:
        moment = datetime.now(UTC)
    elif isinstance(at, datetime):
        moment = at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC)
    else:
        moment = datetime.fromtimestamp(at, UTC)
    return moment.isoformat(timespec=timespec).replace("+00:00", "Z")
