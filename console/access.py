"""Who may do what: logins, signed sessions, CSRF tokens, roles and ports.

The session is a cookie signed with the console's secret (Starlette's SessionMiddleware, which uses
itsdangerous): it names the user and carries the CSRF token. The user is looked up in the store on
every request, so a disabled user is logged out at their next request. Every unsafe request (POST)
must carry the session's CSRF token, in the form field ``csrf_token`` or the ``X-CSRF-Token`` header
(htmx sends it from the page's ``hx-headers``); one without it gets 403, whoever sent it.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from fastapi import Request
from starlette.exceptions import HTTPException

from common.settings import Settings
from console.users import Role, User, UserStore

CSRF_FIELD = "csrf_token"
CSRF_HEADER = "x-csrf-token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


class LoginRequired(Exception):
    """No valid session: pages redirect to the login form, htmx and POST requests get 401."""


def session_secret(settings: Settings) -> str:
    """The configured secret, else a random one generated once into ``<data_dir>/console/session.key``
    (0600), so that sessions survive a restart of the console."""
    if settings.console_session_secret is not None:
        return settings.console_session_secret.get_secret_value()
    path = settings.console_dir() / "session.key"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(secrets.token_urlsafe(48))
    return Path(path).read_text().strip()


def csrf_token(request: Request) -> str:
    """The session's CSRF token (made on first use: the login form has one too)."""
    token = request.session.get("csrf")
    if not isinstance(token, str) or len(token) < 32:
        token = secrets.token_urlsafe(32)
        request.session["csrf"] = token
    return token


async def csrf_guard(request: Request) -> None:
    """Every route's dependency: an unsafe request without the session's token is refused (403)."""
    if request.method in SAFE_METHODS:
        return
    expected = request.session.get("csrf")
    sent = request.headers.get(CSRF_HEADER)
    if sent is None:
        form = await request.form()  # cached on the request: the route reads the same form
        value = form.get(CSRF_FIELD)
        sent = value if isinstance(value, str) else None
    if not isinstance(expected, str) or not sent or not secrets.compare_digest(expected.encode(), sent.encode()):
        raise HTTPException(403, "the form's security token is missing or out of date: reload the page and try again")


def current_user(request: Request) -> User:
    store: UserStore = request.app.state.users
    name = request.session.get("user")
    user = store.get(name) if isinstance(name, str) else None
    if user is None or user.disabled:
        request.session.pop("user", None)
        raise LoginRequired
    request.scope["console_user"] = user  # the page layout shows who is logged in
    return user


def require(user: User, *roles: Role) -> None:
    if user.role not in roles:
        raise HTTPException(403, f"this page is for {' and '.join(r.value for r in roles)} users")


def require_port(user: User, port: str) -> None:
    if not user.sees_port(port):
        raise HTTPException(403, f"port {port} is not one of your ports")


def user_ports(user: User, all_ports: list[str]) -> list[str]:
    return list(user.ports) if user.role is Role.OFFICER else all_ports
