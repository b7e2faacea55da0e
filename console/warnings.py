"""The analyst's early warnings: the archive's warnings with their verdicts, filtered by day,
severity, rule, port and verdict; an analyst confirms or dismisses one.

A verdict is a ``WarningReview`` keyed like the warning (its declaration's partition), published
before its console action (who, and the analyst's reason; ``publish.publish_with_audit``: the review
decides what happened) and answered once the broker has acknowledged them. One verdict per
warning: the check (the archive's reviews and this console's own) and the publication run under one
lock, so a double click or two tabs publish one review. A
confirmed warning becomes a joint finding for the other agencies (``streams.joint``).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from datetime import UTC, date, datetime, timedelta
from typing import Annotated, Any
from urllib.parse import parse_qsl, urlencode

import orjson
from fastapi import APIRouter, Depends, Form, Request, Response
from fastapi.responses import RedirectResponse
from starlette.exceptions import HTTPException

from archive.warnings import WarningFilter, find_warning, list_warnings, review_of, rules_seen
from clients import topics
from console import metrics
from console.access import current_user, require
from console.app import page
from console.forms import audit_note
from console.publish import PublishError, console_action, publish_with_audit, record_of
from console.query import day_window, known_port
from console.users import Role, User
from schemas import SCHEMA_VERSION, ConsoleActionKind, ConsoleRole, ReviewVerdict, Severity, WarningReview

router = APIRouter(prefix="/analyst/warnings")

MAX_WINDOW_DAYS = 92
SHOWN = 200
FILTERS = ("from", "to", "severity", "rule", "port", "verdict")
VERDICTS = ("open", ReviewVerdict.CONFIRMED.value, ReviewVerdict.DISMISSED.value)
# Reviews this console published, until the archive has them (bounded: the oldest are forgotten first).
KEPT_REVIEWS = 10_000
# How far back a warning's review is looked for in the archive: a review follows its warning.
REVIEW_LOOKBACK_DAYS = 366


class ReviewBook:
    """This console's own verdicts, and the lock that makes one verdict per warning."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self._mine: OrderedDict[str, tuple[str, str]] = OrderedDict()  # warning id -> (verdict, reviewed at)

    def add(self, warning_id: str, verdict: str, at: str) -> None:
        self._mine[warning_id] = (verdict, at)
        while len(self._mine) > KEPT_REVIEWS:
            self._mine.popitem(last=False)

    def get(self, warning_id: str) -> tuple[str, str] | None:
        return self._mine.get(warning_id)


def _book(request: Request) -> ReviewBook:
    state = request.app.state
    if not hasattr(state, "warning_reviews"):
        state.warning_reviews = ReviewBook()
    book: ReviewBook = state.warning_reviews
    return book


def _analyst(user: User) -> None:
    require(user, Role.ANALYST, Role.SUPERVISOR)


def _archive(request: Request) -> Any:
    from archive.location import from_settings

    return from_settings(request.app.state.settings)


def _choice(request: Request, name: str, allowed: set[str] | None = None) -> str | None:
    value = (request.query_params.get(name) or "")[:64] or None
    if value is not None and allowed is not None and value not in allowed:
        raise HTTPException(400, f"{name} is one of {', '.join(sorted(allowed))}")
    return value


def _filter(request: Request) -> WarningFilter:
    day_from, day_to = day_window(request, MAX_WINDOW_DAYS)
    port = known_port(request, _choice(request, "port"))
    return WarningFilter(day_from, day_to, severity=_choice(request, "severity", {s.value for s in Severity}),
                         rule=_choice(request, "rule"), port=port, verdict=_choice(request, "verdict", set(VERDICTS)))


@router.get("")
def warnings_page(request: Request, user: Annotated[User, Depends(current_user)]) -> Response:
    _analyst(user)
    query = _filter(request)
    where = _archive(request)
    rows, total = list_warnings(query, limit=SHOWN, archive_dir=where)
    book = _book(request)
    for row in rows:  # this console's verdicts the archive has not caught up with
        mine = book.get(str(row["warning_id"]))
        if row["verdict"] is None and mine is not None:
            row["verdict"], row["reviewed_at"] = mine
    return page(request, "warnings.html", {
        "rows": rows, "total": total, "query": query, "ports": request.app.state.ports,
        "severities": [s.value for s in Severity], "verdicts": VERDICTS,
        "rules": rules_seen(query.day_from, query.day_to, archive_dir=where),
        "message": request.query_params.get("message"), "subject": (request.query_params.get("warning") or "")[:160],
    })


@router.post("/{warning_id}/review")
def review(request: Request, warning_id: str, user: Annotated[User, Depends(current_user)],
           verdict: Annotated[str, Form(max_length=16)] = "", reason: Annotated[str, Form(max_length=512)] = "",
           day: Annotated[str, Form(max_length=16)] = "", back: Annotated[str, Form(max_length=512)] = "") -> Response:
    _analyst(user)
    if not 0 < len(warning_id) <= 160:
        raise HTTPException(404, "no such warning")
    if verdict not in (ReviewVerdict.CONFIRMED.value, ReviewVerdict.DISMISSED.value):
        raise HTTPException(422, "the verdict is confirmed or dismissed")
    if not reason.strip():
        raise HTTPException(422, "give the reason (it goes on the console's audit trail)")
    try:
        hint = date.fromisoformat(day) if day else None
    except ValueError:
        hint = None
    where = _archive(request)
    warning = find_warning(warning_id, hint, archive_dir=where) or (find_warning(warning_id, archive_dir=where) if hint else None)
    if warning is None:
        raise HTTPException(404, f"no warning {warning_id} in the archive")
    book = _book(request)
    now = datetime.now(UTC)
    with book.lock:  # the check and the publication together: one verdict per warning
        since = now.date() - timedelta(days=REVIEW_LOOKBACK_DAYS)
        earlier = book.get(warning_id) or review_of(warning_id, since, archive_dir=where)
        if earlier is not None:
            return _back(back, "already-reviewed", warning_id)
        # Validated as the workers parse the topic's records: strict JSON.
        record = WarningReview.model_validate_json(orjson.dumps({
            "schema_version": SCHEMA_VERSION, "warning_id": warning_id, "verdict": verdict, "rule": warning["rule"],
            "severity": warning["severity"], "subject_kind": warning["subject_kind"], "subject_id": warning["subject_id"],
            "port": warning["port"], "declaration_id": warning["declaration_id"], "revision": warning["revision"],
            "warning_time": warning["event_time"], "reviewed_at": now.isoformat()}))
        key = record.declaration_id or record.subject_id
        action = console_action(user.name, ConsoleRole(user.role.value), ConsoleActionKind.WARNING_REVIEWED, warning_id,
                                f"{verdict}: {reason.strip()}")
        try:
            audited = publish_with_audit(request.app.state.publisher, record_of(topics.WARNING_REVIEWS, key, record), action)
        except PublishError as exc:
            raise HTTPException(503, f"not published, try again: {exc}") from None
        book.add(warning_id, verdict, now.isoformat())  # the review is on the topic, whatever became of its action
    if audited:
        metrics.ACTIONS.labels(ConsoleActionKind.WARNING_REVIEWED.value).inc()
    return _back(back, verdict, warning_id, audited)


def _back(back: str, message: str, warning_id: str, audited: bool = True) -> Response:
    """To the list the analyst came from: ``back`` is that list's query (its filters), never a URL."""
    kept = [(k, v) for k, v in parse_qsl(back)[:10] if k in FILTERS]
    return RedirectResponse(audit_note("/analyst/warnings?" + urlencode([*kept, ("message", message), ("warning", warning_id)]),
                                       audited), status_code=303)
