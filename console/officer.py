"""The officer's pages: the live queue of their ports, a declaration's history, recording a result."""

from __future__ import annotations

import asyncio
import threading
import zlib
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Form, Query, Request, Response
from fastapi.responses import RedirectResponse, StreamingResponse
from pydantic import ValidationError
from starlette.exceptions import HTTPException

from clients import topics
from console import metrics
from console.access import current_user, require, require_port, user_ports
from console.app import History, page, templates
from console.live import Feed, QueueItem
from console.publish import PublishError, console_action, publish_with_audit, record_of
from console.users import Role, User
from schemas import ConsoleActionKind, ConsoleRole, ControlInstruction, InspectionResult
from schemas.records import NOTE_MAX

router = APIRouter()

SSE_INTERVAL_S = 0.1  # how often a live page's ports are checked for changes
SSE_KEEPALIVE_S = 15.0
MAX_NOTE = NOTE_MAX
# One lock per instruction id (striped: bounded, and the same id always takes the same lock), so that
# a double click or a retried POST records once.
_LOCKS = [threading.Lock() for _ in range(256)]


def _lock(instruction_id: str) -> threading.Lock:
    return _LOCKS[zlib.crc32(instruction_id.encode()) % len(_LOCKS)]


def _queue_context(request: Request, user: User, port: str | None) -> dict[str, Any]:
    feed: Feed = request.app.state.feed
    mine = user_ports(user, request.app.state.ports)
    ports = [port] if port else mine
    items, total, not_held = feed.snapshot(ports, request.app.state.settings.console_queue_shown)
    return {"items": items, "total": total, "not_held": not_held, "ports": ports, "my_ports": mine, "port": port,
            "caught_up": feed.caught_up.is_set(), "feed_error": feed.error, "now": datetime.now(UTC)}


def _officer_port(request: Request, user: User, port: str | None) -> str | None:
    require(user, Role.OFFICER, Role.SUPERVISOR)
    if port:
        if port not in request.app.state.ports:
            raise HTTPException(404, f"no port {port[:64]} in the port register")
        require_port(user, port)
    return port or None


@router.get("/queue")
def queue(request: Request, user: Annotated[User, Depends(current_user)], port: str | None = None) -> Response:
    port = _officer_port(request, user, port)
    return page(request, "queue.html", _queue_context(request, user, port))


@router.get("/queue/events")
async def queue_events(request: Request, user: Annotated[User, Depends(current_user)], port: str | None = None) -> Response:
    """Server-sent events: the queue's rows again whenever one of the ports changes (at most ten times a second)."""
    port = _officer_port(request, user, port)
    feed: Feed = request.app.state.feed
    ports = [port] if port else user_ports(user, request.app.state.ports)
    name = user.name

    async def stream() -> AsyncIterator[bytes]:
        metrics.SSE_CLIENTS.inc()
        try:
            seen: tuple[int, ...] | None = None
            quiet = 0.0
            while not await request.is_disconnected():
                store = request.app.state.users.get(name)
                if store is None or store.disabled:
                    yield b"event: logout\ndata: -\n\n"  # disabled mid-shift: the live page stops
                    return
                now = feed.versions(ports)
                if now != seen:
                    seen = now
                    quiet = 0.0
                    html = templates.get_template("queue_rows.html").render(_queue_context(request, user, port))
                    yield ("event: queue\n" + "".join(f"data: {line}\n" for line in html.splitlines()) + "\n").encode()
                elif quiet >= SSE_KEEPALIVE_S:
                    quiet = 0.0
                    yield b": keep-alive\n\n"
                await asyncio.sleep(SSE_INTERVAL_S)
                quiet += SSE_INTERVAL_S
        finally:
            metrics.SSE_CLIENTS.dec()

    return StreamingResponse(stream(), media_type="text/event-stream", headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})


def _history(request: Request, declaration_id: str, hint: Hint | None = None) -> dict[str, Any]:
    if not 0 < len(declaration_id) <= 64:
        raise HTTPException(404, "no such declaration")
    history: History = request.app.state.history
    day, port = hint or (None, None)
    try:
        doc, notes = history(declaration_id, day, port)
    except Exception as exc:  # noqa: BLE001 - the archive and the topics both failed: say so on the page
        raise HTTPException(503, f"the declaration's history cannot be read now: {' '.join(str(exc).split())[:300]}") from None
    doc["notes"] = notes
    return doc


# Where the archive holds a declaration, as the queue knows it: its instruction's event day and port.
Hint = tuple[date | None, str | None]


def history_hint(request: Request, day: str | None, port: str | None) -> Hint:
    """The ``day``/``port`` query parameters of a history link, checked (a malformed one is an error, not ignored)."""
    when: date | None = None
    if day:
        try:
            when = date.fromisoformat(day) if len(day) == 10 else None
        except ValueError:
            when = None
        if when is None:
            raise HTTPException(400, "day: a date as YYYY-MM-DD")
    if port and port not in request.app.state.ports:
        raise HTTPException(400, f"port: no port {port[:64]} in the port register")
    return when, port or None


def _item_hint(instruction: ControlInstruction) -> tuple[date, str]:
    return instruction.event_time.astimezone(UTC).date(), instruction.port


def history_query(instruction: ControlInstruction) -> str:
    """The query string of a link to the instruction's declaration history: its event day (UTC) and port."""
    day, port = _item_hint(instruction)
    return "?" + urlencode({"day": day.isoformat(), "port": port})


templates.env.filters["history_query"] = history_query


def _ports_of(doc: dict[str, Any], open_item: QueueItem | None) -> set[str]:
    ports = {str(r["port"]) for r in doc["instructions"] if r.get("port")} | {str(r["port"]) for r in doc["revisions"] if r.get("port")}
    if open_item is not None:
        ports.add(open_item.instruction.port)
    return ports


def _resultable(doc: dict[str, Any], open_item: QueueItem | None, feed: Feed) -> dict[str, Any] | None:
    """The final inspect instruction that awaits a result, if there is one (the queue's, else the latest in the history)."""
    if open_item is not None and open_item.instruction.final and open_item.instruction.action.value == "inspect":
        return open_item.instruction.model_dump(mode="json")
    inspects = [r for r in doc["instructions"] if r["final"] and r["action"] == "inspect"]
    recorded = {r["instruction_id"] for r in doc.get("inspection_results", [])}
    waiting = [r for r in inspects if r["instruction_id"] not in recorded and not feed.has_result(str(r["instruction_id"]))]
    return waiting[-1] if waiting else None


def _declaration_page(request: Request, user: User, declaration_id: str, form: dict[str, Any] | None = None,
                      errors: dict[str, str] | None = None, message: str | None = None, status_code: int = 200,
                      hint: Hint | None = None) -> Response:
    feed: Feed = request.app.state.feed
    open_item = feed.find_open(declaration_id)
    if (hint is None or hint[0] is None) and open_item is not None:
        hint = _item_hint(open_item.instruction)  # an open declaration typed in: the queue knows where it is filed
    doc = _history(request, declaration_id, hint)
    ports = _ports_of(doc, open_item)
    if not ports:
        raise HTTPException(404, f"no declaration {declaration_id} in the archive or on the topics")
    for port in ports:
        require_port(user, port)
    target = _resultable(doc, open_item, feed)
    can_record = target is not None and user.role in (Role.OFFICER, Role.SUPERVISOR)
    return page(request, "declaration.html", {
        "doc": doc, "declaration_id": declaration_id, "open_item": open_item, "target": target, "can_record": can_record,
        "form": form or {"found": "", "category": "", "duty_recovered": "0", "note": ""}, "errors": errors or {},
        "message": message or request.query_params.get("message"), "hint": _hint_query(hint), "note_max": MAX_NOTE,
    }, status_code=status_code)


def _hint_query(hint: Hint | None) -> str:
    day, port = hint or (None, None)
    pairs = {k: v for k, v in (("day", day.isoformat() if day else None), ("port", port)) if v}
    return "?" + urlencode(pairs) if pairs else ""


@router.get("/declarations/")
def goto_declaration(user: Annotated[User, Depends(current_user)], id: str = "") -> Response:
    from urllib.parse import quote

    return RedirectResponse(f"/declarations/{quote(id.strip()[:64], safe='')}" if id.strip() else "/queue", status_code=303)


@router.get("/declarations/{declaration_id}")
def declaration(request: Request, declaration_id: str, user: Annotated[User, Depends(current_user)],
                day: Annotated[str | None, Query(max_length=32)] = None,
                port: Annotated[str | None, Query(max_length=64)] = None) -> Response:
    return _declaration_page(request, user, declaration_id, hint=history_hint(request, day, port))


def validate_result(declaration_id: str, instruction: dict[str, Any], station_id: str, found: str, category: str, duty: str,
                    note: str, recorded_by: str | None = None) -> tuple[InspectionResult | None, dict[str, str]]:
    """The result the form describes, or the errors to show beside its fields (validated by the
    topic's own schema, InspectionResult). ``recorded_by`` is the logged-in user, never a form field."""
    errors: dict[str, str] = {}
    if found not in ("yes", "no"):
        errors["found"] = "say whether anything was found"
    category = category.strip()
    if found == "yes" and not category:
        errors["category"] = "name what was found"
    duty_value = 0.0
    try:
        duty_value = float(duty.strip() or "0")
    except ValueError:
        errors["duty_recovered"] = "a number (0 when no duty was recovered)"
    if len(note) > MAX_NOTE:
        errors["note"] = f"at most {MAX_NOTE} characters"
    if errors:
        return None, errors
    try:
        result = InspectionResult(
            instruction_id=str(instruction["instruction_id"]), declaration_id=declaration_id,
            revision=int(instruction["revision"]), port=str(instruction["port"]), station_id=station_id,
            found=found == "yes", category=category or None, duty_recovered=duty_value, inspected_at=datetime.now(UTC),
            note=note.strip() or None, recorded_by=recorded_by)
    except ValidationError as exc:
        for err in exc.errors():
            field = str(err["loc"][0]) if err["loc"] else "found"
            errors[field if field in ("category", "duty_recovered", "note") else "found"] = err["msg"]
        return None, errors
    return result, {}


@router.post("/declarations/{declaration_id}/result")
def record_result(request: Request, declaration_id: str, user: Annotated[User, Depends(current_user)],
                  instruction_id: Annotated[str, Form(max_length=256)],
                  found: Annotated[str, Form(max_length=8)] = "",
                  category: Annotated[str, Form(max_length=512)] = "",
                  duty_recovered: Annotated[str, Form(max_length=64)] = "0",
                  note: Annotated[str, Form(max_length=4000)] = "",
                  day: Annotated[str | None, Query(max_length=32)] = None,
                  port: Annotated[str | None, Query(max_length=64)] = None) -> Response:
    require(user, Role.OFFICER, Role.SUPERVISOR)
    hint = history_hint(request, day, port)
    feed: Feed = request.app.state.feed
    if not feed.caught_up.is_set():
        raise HTTPException(503, "the console is still reading the results already recorded: try again in a moment")
    form = {"found": found, "category": category, "duty_recovered": duty_recovered, "note": note}
    with _lock(instruction_id):
        open_item = feed.find_open(declaration_id)
        # The history is read even for an open item: it is what knows a result older than the feed's look-back.
        doc = _history(request, declaration_id, hint)
        if open_item is not None and open_item.instruction.instruction_id == instruction_id:
            instruction: dict[str, Any] | None = open_item.instruction.model_dump(mode="json")
        else:
            instruction = next((r for r in doc["instructions"] if r["instruction_id"] == instruction_id), None)
        if instruction is None or instruction.get("declaration_id", declaration_id) != declaration_id:
            raise HTTPException(404, "no such instruction for this declaration")
        require_port(user, str(instruction["port"]))
        if not (instruction["final"] and instruction["action"] == "inspect"):
            raise HTTPException(409, "results are recorded for final inspect instructions only")
        if feed.has_result(instruction_id) or _recorded_in(doc, instruction_id):
            metrics.RESULTS_DUPLICATE.inc()
            return RedirectResponse(_page_url(declaration_id, hint, "already-recorded"), status_code=303)
        station = user.station_id or request.app.state.settings.console_station_id or user.name
        result, errors = validate_result(declaration_id, instruction, station, found, category, duty_recovered, note,
                                         recorded_by=user.name)
        if result is None:
            return _declaration_page(request, user, declaration_id, form, errors, status_code=422, hint=hint)
        detail = f"{'found ' + (result.category or '') if result.found else 'nothing found'}; duty {result.duty_recovered:g}"
        action = console_action(user.name, ConsoleRole(user.role.value), ConsoleActionKind.RESULT_RECORDED, declaration_id,
                                f"{instruction_id}: {detail}" + (f"; note: {result.note}" if result.note else ""))
        try:
            audited = publish_with_audit(request.app.state.publisher, record_of(topics.INSPECTION_RESULTS, declaration_id, result),
                                         action)
        except PublishError as exc:
            return _declaration_page(request, user, declaration_id, form, {"found": f"not recorded, try again: {exc}"}, status_code=503,
                                     hint=hint)
        feed.mark_result(result)  # the result is on the topic: a retry now finds it, whatever became of its action
    metrics.RESULTS_RECORDED.inc()
    if audited:
        metrics.ACTIONS.labels(ConsoleActionKind.RESULT_RECORDED.value).inc()
    return RedirectResponse(_page_url(declaration_id, hint, "recorded" if audited else "recorded-audit-missing"), status_code=303)


def _recorded_in(doc: dict[str, Any], instruction_id: str) -> bool:
    """Whether the declaration's history (the archive, then the topics) lists a result for the instruction."""
    return any(str(r.get("instruction_id")) == instruction_id for r in doc.get("inspection_results", []))


def _page_url(declaration_id: str, hint: Hint, message: str) -> str:
    from urllib.parse import quote

    query = _hint_query(hint)
    return f"/declarations/{quote(declaration_id, safe='')}{query}{'&' if query else '?'}message={message}"
