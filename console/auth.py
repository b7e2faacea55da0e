"""Login, logout, and the start page of each role."""

from __future__ import annotations

import math
from typing import Annotated

from fastapi import APIRouter, Depends, Form, Request, Response
from fastapi.responses import RedirectResponse

from console import metrics
from console.access import current_user
from console.app import page
from console.publish import PublishError, action_record, console_action
from console.throttle import LoginThrottle
from console.users import Role, User, UserStore
from schemas import ConsoleActionKind, ConsoleRole

router = APIRouter()

_ID_CHARS = set("abcdefghijklmnopqrstuvwxyz0123456789._-")


def record_action(request: Request, user: str, role: ConsoleRole, action: ConsoleActionKind, subject: str, detail: str = "") -> None:
    """Publish one console action and wait for it (raises PublishError)."""
    request.app.state.publisher.send_many([action_record(console_action(user, role, action, subject, detail))])
    metrics.ACTIONS.labels(action.value).inc()


@router.get("/")
def start(user: Annotated[User, Depends(current_user)]) -> Response:
    return RedirectResponse("/analyst/risk-lists" if user.role is Role.ANALYST else "/queue", status_code=303)


@router.get("/login")
def login_form(request: Request) -> Response:
    return page(request, "login.html", {"error": None, "name": ""})


@router.post("/login")
def login(request: Request, name: Annotated[str, Form(max_length=64)], password: Annotated[str, Form(max_length=256)]) -> Response:
    store: UserStore = request.app.state.users
    throttle: LoginThrottle = request.app.state.login_throttle
    address = request.client.host if request.client else "-"
    wait = throttle.wait_s(name, address)
    if wait > 0:
        metrics.LOGINS_THROTTLED.inc()
        refused = page(request, "login.html", {"error": f"too many failed logins: try again in {math.ceil(wait)} s",
                                               "name": name[:64]}, status_code=429)
        refused.headers["Retry-After"] = str(math.ceil(wait))
        return refused
    user = store.authenticate(name, password)
    if user is None:
        throttle.failed(name, address)
        # The name as typed is untrusted: it is recorded only if it could be a user name.
        who = name if name and len(name) <= 64 and set(name) <= _ID_CHARS and name[0].isalnum() else "unknown"
        known = store.get(who)
        try:
            record_action(request, who, ConsoleRole(known.role.value) if known else ConsoleRole.ANONYMOUS,
                          ConsoleActionKind.LOGIN_FAILED, who, f"from {request.client.host if request.client else '-'}")
        except PublishError:
            pass  # a refused login stays refused whether or not its record reached the topic
        return page(request, "login.html", {"error": "unknown user name or wrong password", "name": name[:64]}, status_code=401)
    try:
        record_action(request, user.name, ConsoleRole(user.role.value), ConsoleActionKind.LOGIN, user.name,
                      f"from {request.client.host if request.client else '-'}")
    except PublishError as exc:
        return page(request, "login.html", {"error": f"the login could not be recorded, try again ({exc})", "name": name},
                    status_code=503)
    throttle.succeeded(name, address)
    request.session.clear()  # a fresh session and CSRF token on login: nothing carries over from before
    request.session["user"] = user.name
    return RedirectResponse("/", status_code=303)


@router.post("/logout")
def logout(request: Request, user: Annotated[User, Depends(current_user)]) -> Response:
    try:
        record_action(request, user.name, ConsoleRole(user.role.value), ConsoleActionKind.LOGOUT, user.name)
    except PublishError:
        pass  # the user leaves either way
    request.session.clear()
    return RedirectResponse("/login", status_code=303)
