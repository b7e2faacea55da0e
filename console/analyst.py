"""The analyst's pages: risk-list entries (search, add, retract), credit actions and records, figures, dead letters.

Every form is validated with the topic's own schema (``RiskListEntry``, ``CreditEvent``) before
anything is produced; the record is produced, then its console action (``publish.publish_with_audit``:
the record decides what happened), and the page answers once the broker has acknowledged them. A
form is published once (``console.forms``): its record's id follows from its key and content, and a
second submission gets the first one's answer.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, date, datetime
from typing import Annotated, Any
from urllib.parse import quote, urlencode

import orjson
from fastapi import APIRouter, Depends, Form, Request, Response
from fastapi.responses import RedirectResponse
from pydantic import BaseModel, ValidationError
from starlette.exceptions import HTTPException

from clients import topics
from console import metrics
from console.access import current_user, require
from console.app import page
from console.creditrecords import look_up
from console.forms import FORM_KEY_FIELD, audit_note, derived_id, form_key, new_form_key, submitted
from console.live import Feed
from console.publish import PublishError, Record, console_action, publish_with_audit, record_of
from console.query import day_window, known_port
from console.users import Role, User
from policy.credit import CUSTOMS
from schemas import (
    ConsoleAction,
    ConsoleActionKind,
    ConsoleRole,
    CreditClass,
    CreditEvent,
    CreditEventType,
    RiskListAction,
    RiskListEntry,
    RiskListKind,
)

router = APIRouter(prefix="/analyst")
log = logging.getLogger(__name__)

MAX_WINDOW_DAYS = 366
FIGURES_POLL_S = 2  # how often a page waiting for its figures asks again
DEFAULT_AGENCY = "customs risk analysis"
# Credit actions an analyst takes from the console: the event each one is, and the class it sets. A
# lift withdraws only the named agency's own placement (policy.credit): it never demotes an AEO.
CREDIT_ACTIONS: dict[str, tuple[CreditEventType, CreditClass | None]] = {
    "place-focus-list": (CreditEventType.CREDIT_CLASS_CHANGED, CreditClass.FOCUS_LIST),
    "lift-focus-list": (CreditEventType.FOCUS_LIST_LIFTED, None),
}


def _analyst(user: User) -> None:
    require(user, Role.ANALYST, Role.SUPERVISOR)


def _role(user: User) -> ConsoleRole:
    return ConsoleRole(user.role.value)


def _field_errors(exc: ValidationError, fields: tuple[str, ...], fallback: str) -> dict[str, str]:
    """The schema's errors by form field (a check of the whole record goes beside the field it names)."""
    errors: dict[str, str] = {}
    for err in exc.errors():
        loc = str(err["loc"][0]) if err["loc"] else ""
        msg = str(err["msg"]).removeprefix("Value error, ")
        if loc not in fields:  # a check of the whole record: the field its message names first
            named = sorted((msg.find(f), f) for f in fields if f in msg)
            loc = named[0][1] if named else fallback
        errors.setdefault(loc, msg)
    return errors


def _time_field(text: str, name: str, errors: dict[str, str], required: bool) -> str | None:
    """A datetime-local form value (UTC) as ISO 8601 with offset, or None; a bad one goes to ``errors``."""
    text = text.strip()
    if not text:
        if required:
            errors[name] = "a date and time (UTC)"
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        errors[name] = "a date and time such as 2026-12-05T08:00 (UTC)"
        return None
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).isoformat()


def _validated(model: type[BaseModel], doc: dict[str, Any]) -> BaseModel:
    """Validated exactly as the worker validates the topic's records: strict JSON."""
    return model.model_validate_json(orjson.dumps(doc))


def _publish(request: Request, record: Record, action: Any) -> tuple[bool, str | None]:
    """(audited, error): the error when the record itself was not acknowledged."""
    try:
        return publish_with_audit(request.app.state.publisher, record, action), None
    except PublishError as exc:
        return False, f"not published, try again: {exc}"


# ---- risk lists -------------------------------------------------------------------------------------
RISK_FIELDS = ("entry_id", "list_id", "kind", "value", "action", "reason", "source_agency", "valid_from", "valid_until")


def _risk_page(request: Request, user: User, form: dict[str, str] | None = None, errors: dict[str, str] | None = None,
               status_code: int = 200) -> Response:
    feed: Feed = request.app.state.feed
    q = request.query_params.get("q", "")[:100]
    list_id = request.query_params.get("list", "")[:64] or None
    entries, total = feed.search_risk_entries(q, list_id)
    lists, held, dropped = feed.risk_lists()
    now = datetime.now(UTC)
    default = {"entry_id": "", "list_id": "", "kind": "hs-prefix", "value": "", "action": "inspect", "reason": "",
               "source_agency": DEFAULT_AGENCY, "valid_from": now.strftime("%Y-%m-%dT%H:%M"), "valid_until": "",
               FORM_KEY_FIELD: new_form_key()}
    return page(request, "risk_lists.html", {
        "entries": entries, "total": total, "q": q, "list_id": list_id, "lists": lists, "held": held, "dropped": dropped,
        "form": form or default, "errors": errors or {},
        "kinds": [k.value for k in RiskListKind], "actions": [a.value for a in RiskListAction], "now": now,
        "caught_up": feed.caught_up.is_set(), "message": request.query_params.get("message"),
        "subject": request.query_params.get("entry", "")[:64],
    }, status_code=status_code)


@router.get("")
def start(user: Annotated[User, Depends(current_user)]) -> Response:
    _analyst(user)
    return RedirectResponse("/analyst/risk-lists", status_code=303)


@router.get("/risk-lists")
def risk_lists(request: Request, user: Annotated[User, Depends(current_user)]) -> Response:
    _analyst(user)
    return _risk_page(request, user)


@router.post("/risk-lists")
def add_risk_entry(request: Request, user: Annotated[User, Depends(current_user)],
                   list_id: Annotated[str, Form(max_length=128)] = "", entry_id: Annotated[str, Form(max_length=128)] = "",
                   kind: Annotated[str, Form(max_length=32)] = "", value: Annotated[str, Form(max_length=128)] = "",
                   action: Annotated[str, Form(max_length=32)] = "", reason: Annotated[str, Form(max_length=512)] = "",
                   source_agency: Annotated[str, Form(max_length=512)] = "",
                   valid_from: Annotated[str, Form(max_length=64)] = "",
                   valid_until: Annotated[str, Form(max_length=64)] = "",
                   form_key_sent: Annotated[str, Form(alias=FORM_KEY_FIELD, max_length=64)] = "") -> Response:
    _analyst(user)
    key = form_key(form_key_sent)
    form = {"list_id": list_id, "entry_id": entry_id, "kind": kind, "value": value, "action": action, "reason": reason,
            "source_agency": source_agency, "valid_from": valid_from, "valid_until": valid_until,
            FORM_KEY_FIELD: key or new_form_key()}
    errors: dict[str, str] = {}
    start_at = _time_field(valid_from, "valid_from", errors, required=True)
    until = _time_field(valid_until, "valid_until", errors, required=False)
    # Generated from the form's key and content: a retry of this form names the same entry.
    entry_id = entry_id.strip() or derived_id("RL", key, list_id.strip(), kind, value.strip(), action, str(start_at), str(until))
    doc = {"entry_id": entry_id, "list_id": list_id.strip(), "kind": kind, "value": value.strip(), "action": action,
           "reason": reason.strip(), "source_agency": source_agency.strip(), "valid_from": start_at, "valid_until": until}
    entry: BaseModel | None = None
    if not errors:
        try:
            entry = _validated(RiskListEntry, doc)
        except ValidationError as exc:
            errors = _field_errors(exc, RISK_FIELDS, "value")
    if entry is None or errors:
        return _risk_page(request, user, form, errors, status_code=422)
    assert isinstance(entry, RiskListEntry)
    action_rec = console_action(user.name, _role(user), ConsoleActionKind.RISK_LIST_ADDED, entry.entry_id,
                                f"{entry.list_id}: {entry.kind.value} {entry.value} -> {entry.action.value}; {entry.reason}")
    return _publish_once(request, f"risk-list-added:{key or entry.entry_id}",
                         record_of(topics.RISK_LISTS, entry.entry_id, entry), action_rec,
                         f"/analyst/risk-lists?message=added&entry={entry.entry_id}",
                         lambda failed: _risk_page(request, user, form, {"value": failed}, status_code=503))


def _publish_once(request: Request, once: str, record: Record, action_rec: ConsoleAction, answer_url: str,
                  refused: Callable[[str], Response]) -> Response:
    """Publish a form's record and then its console action, once per form (``console.forms``): a
    form already published gets its first answer again; a record the broker did not acknowledge
    shows the form again with why (``refused``, a 503)."""
    book = submitted(request)
    with book.lock(once):
        done = book.answer(once)
        if done is not None:
            return RedirectResponse(done, status_code=303)
        audited, failed = _publish(request, record, action_rec)
        if failed:
            return refused(failed)
        answer = audit_note(answer_url, audited)
        book.remember(once, answer)
    if audited:
        metrics.ACTIONS.labels(action_rec.action.value).inc()
    return RedirectResponse(answer, status_code=303)


@router.post("/risk-lists/{entry_id}/retract")
def retract_risk_entry(request: Request, entry_id: str, user: Annotated[User, Depends(current_user)],
                       reason: Annotated[str, Form(max_length=512)] = "") -> Response:
    _analyst(user)
    feed: Feed = request.app.state.feed
    if not 0 < len(entry_id) <= 64:
        raise HTTPException(404, "no such entry")
    book = submitted(request)
    once = f"risk-list-retracted:{entry_id}"
    with book.lock(once):  # the check and the publication together: one retraction of a current entry
        with feed.lock:
            known = entry_id in feed.risk_entries
        if not known:
            raise HTTPException(404, f"no current risk-list entry {entry_id}")
        action_rec = console_action(user.name, _role(user), ConsoleActionKind.RISK_LIST_RETRACTED, entry_id, reason.strip())
        audited, failed = _publish(request, (topics.RISK_LISTS, entry_id, None), action_rec)
        if failed:
            raise HTTPException(503, failed)
        with feed.lock:
            feed.apply_risk_entry(entry_id, None)  # the page shows the retraction at once; the topic brings it too
    if audited:
        metrics.ACTIONS.labels(ConsoleActionKind.RISK_LIST_RETRACTED.value).inc()
    return RedirectResponse(audit_note(f"/analyst/risk-lists?message=retracted&entry={entry_id}", audited), status_code=303)


# ---- credit actions -----------------------------------------------------------------------------------
CREDIT_FIELDS = ("enterprise_id", "credit_action", "source_agency", "reason")


def _credit_page(request: Request, form: dict[str, str] | None = None, errors: dict[str, str] | None = None,
                 status_code: int = 200) -> Response:
    return page(request, "credit.html", {
        "form": form or {"enterprise_id": "", "credit_action": "place-focus-list", "source_agency": "customs", "reason": "",
                         FORM_KEY_FIELD: new_form_key()},
        "errors": errors or {}, "actions": CREDIT_ACTIONS, "message": request.query_params.get("message"),
        "subject": request.query_params.get("enterprise", "")[:64], "agency": request.query_params.get("agency", "")[:64],
        "customs": CUSTOMS,
    }, status_code=status_code)


@router.get("/credit")
def credit(request: Request, user: Annotated[User, Depends(current_user)]) -> Response:
    _analyst(user)
    return _credit_page(request)


@router.post("/credit")
def credit_action(request: Request, user: Annotated[User, Depends(current_user)],
                  enterprise_id: Annotated[str, Form(max_length=128)] = "",
                  credit_action: Annotated[str, Form(max_length=32)] = "",
                  source_agency: Annotated[str, Form(max_length=512)] = "",
                  reason: Annotated[str, Form(max_length=512)] = "",
                  form_key_sent: Annotated[str, Form(alias=FORM_KEY_FIELD, max_length=64)] = "") -> Response:
    _analyst(user)
    key = form_key(form_key_sent)
    form = {"enterprise_id": enterprise_id, "credit_action": credit_action, "source_agency": source_agency, "reason": reason,
            FORM_KEY_FIELD: key or new_form_key()}
    errors: dict[str, str] = {}
    if credit_action not in CREDIT_ACTIONS:
        errors["credit_action"] = "choose an action"
    if not reason.strip():
        errors["reason"] = "give the reason (it goes on the enterprise's credit record)"
    event: BaseModel | None = None
    if not errors:
        kind, credit_class = CREDIT_ACTIONS[credit_action]
        try:
            event = _validated(CreditEvent, {
                "event_id": derived_id("CON", key, enterprise_id.strip(), credit_action, source_agency.strip(), reason.strip()),
                "enterprise_id": enterprise_id.strip(),
                "event_type": kind.value, "credit_class": None if credit_class is None else credit_class.value,
                "source_agency": source_agency.strip(), "reason": reason.strip(), "event_time": datetime.now(UTC).isoformat()})
        except ValidationError as exc:
            errors = _field_errors(exc, CREDIT_FIELDS, "enterprise_id")
    if event is None or errors:
        return _credit_page(request, form, errors, status_code=422)
    assert isinstance(event, CreditEvent)
    action_rec = console_action(user.name, _role(user), ConsoleActionKind.CREDIT_ACTION, event.enterprise_id,
                                f"{credit_action} ({event.credit_class.value if event.credit_class else '-'}) by "
                                f"{event.source_agency}: {event.reason}")
    return _publish_once(request, f"credit-action:{event.event_id}",
                         record_of(topics.CREDIT_EVENTS, event.enterprise_id, event), action_rec,
                         f"/analyst/credit?message={credit_action}&enterprise={event.enterprise_id}"
                         f"&agency={quote(event.source_agency[:64])}",
                         lambda failed: _credit_page(request, form, {"enterprise_id": failed}, status_code=503))


# ---- an enterprise's credit record -----------------------------------------------------------------
@router.get("/enterprises")
def find_enterprise(user: Annotated[User, Depends(current_user)], enterprise: str = "") -> Response:
    _analyst(user)
    wanted = enterprise.strip()[:64]
    if not wanted:
        return RedirectResponse("/analyst/credit", status_code=303)
    return RedirectResponse(f"/analyst/enterprises/{quote(wanted, safe='')}", status_code=303)


@router.get("/enterprises/{enterprise_id}")
def enterprise_credit(request: Request, enterprise_id: str, user: Annotated[User, Depends(current_user)]) -> Response:
    """The enterprise's credit record as the workers hold it: the effective state, then each agency's entry."""
    _analyst(user)
    if not 0 < len(enterprise_id) <= 64:
        raise HTTPException(404, "no such enterprise")
    feed: Feed = request.app.state.feed
    try:
        found = look_up(enterprise_id, feed.credit_position(enterprise_id), request.app.state.credit_reader)
    except Exception as exc:
        log.warning("credit record of %s not read", enterprise_id, exc_info=True)
        raise HTTPException(503, f"the credit record could not be read now ({type(exc).__name__}): try again") from None
    return page(request, "enterprise_credit.html", {
        "found": found, "caught_up": feed.caught_up.is_set(), "customs": CUSTOMS, "not_held": feed.credit_positions.dropped,
        "agencies": sorted(found.record.agencies.items()) if found.record else [],
    }, status_code=200 if found.record or not feed.caught_up.is_set() else 404)


# ---- figures and dead letters (from the archive) ----------------------------------------------------------
def _window(request: Request) -> tuple[date, date, str | None]:
    day_from, day_to = day_window(request, MAX_WINDOW_DAYS)
    return day_from, day_to, known_port(request, request.query_params.get("port") or None)


def _archive(request: Request) -> Any:
    from archive.location import from_settings

    return from_settings(request.app.state.settings)


def _figures_context(request: Request) -> dict[str, Any]:
    """The figures part of the page for the request's window: the figures, or why they are not shown yet."""
    from archive.figures import Figures

    day_from, day_to, port = _window(request)
    window = (day_from, day_to, port)
    # Never computed in the request (a month takes seconds): kept, or queued for the background computer.
    answer = request.app.state.figures.ask(window, retry=request.query_params.get("retry") == "1")
    query = urlencode({"from": day_from.isoformat(), "to": day_to.isoformat(), **({"port": port} if port else {})})
    context: dict[str, Any] = {"day_from": day_from, "day_to": day_to, "port": port, "ports": request.app.state.ports,
                               "query": query, "state": type(answer).__name__.lower(), "answer": answer,
                               "poll_s": FIGURES_POLL_S}
    if isinstance(answer, Figures):
        context.update({**answer.doc, "risk_lists": answer.doc["risk_lists"][:200],
                        "computed_at": datetime.fromtimestamp(answer.computed_at, UTC).isoformat(), "compute_s": answer.seconds})
    else:
        metrics.FIGURES_NOT_READY.labels(context["state"]).inc()
    return context


@router.get("/figures")
def figures(request: Request, user: Annotated[User, Depends(current_user)]) -> Response:
    _analyst(user)
    return page(request, "figures.html", _figures_context(request))


@router.get("/figures/part")
def figures_part(request: Request, user: Annotated[User, Depends(current_user)]) -> Response:
    """The figures part alone: what the page's poll swaps in while the window is being computed."""
    _analyst(user)
    return page(request, "figures_part.html", _figures_context(request))


@router.get("/dead-letters")
def dead_letters(request: Request, user: Annotated[User, Depends(current_user)]) -> Response:
    _analyst(user)
    from archive import analytics

    day_from, day_to, _ = _window(request)
    reason = (request.query_params.get("reason") or "")[:64] or None
    try:
        rows = analytics.dead_letters(day_from, day_to, reason=reason, limit=200, archive_dir=_archive(request))
    except ValueError as exc:
        raise HTTPException(400, str(exc)) from None
    return page(request, "dead_letters.html", {"rows": rows, "day_from": day_from, "day_to": day_to, "reason": reason or ""})
