"""Query-string parameters the console's pages share: a bounded window of days and a known port."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

from fastapi import Request
from starlette.exceptions import HTTPException

DEFAULT_WINDOW = timedelta(days=6)  # a week up to `to`


def day_window(request: Request, max_days: int) -> tuple[date, date]:
    """``from`` .. ``to`` (ISO dates; default: the week up to today), at most ``max_days`` days."""
    today = datetime.now(UTC).date()
    try:
        day_to = date.fromisoformat(request.query_params.get("to") or today.isoformat())
        day_from = date.fromisoformat(request.query_params.get("from") or (day_to - DEFAULT_WINDOW).isoformat())
    except ValueError:
        raise HTTPException(400, "from and to are dates such as 2026-12-01") from None
    if day_from > day_to or (day_to - day_from).days >= max_days:
        raise HTTPException(400, f"from must not be after to, and the window at most {max_days} days")
    return day_from, day_to


def known_port(request: Request, port: str | None) -> str | None:
    """``port`` if the port register has it (None stays None: every port)."""
    if port is not None and port not in request.app.state.ports:
        raise HTTPException(404, "no such port in the port register")
    return port
