"""The console application: ``create_app(settings)`` wires the user store, the live feed, the
publisher, sessions, CSRF, the pages and the metrics."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import date
from pathlib import Path
from typing import Any

from fastapi import Depends, FastAPI, Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from starlette.exceptions import HTTPException
from starlette.middleware.sessions import SessionMiddleware

from archive.figures import FigureCache, last_days
from common.settings import Settings
from console import metrics
from console.access import LoginRequired, csrf_guard, csrf_token, session_secret
from console.creditrecords import ChangelogReader, ReadOne
from console.live import Feed
from console.publish import Publisher
from console.throttle import LoginThrottle
from console.users import User, UserStore

log = logging.getLogger(__name__)

HERE = Path(__file__).parent
templates = Jinja2Templates(directory=str(HERE / "templates"))
templates.env.globals["csrf_token"] = csrf_token


def _when(value: object) -> str:
    """An ISO 8601 time as officers read it: 2026-12-05 07:46:23 (UTC, to the second)."""
    text = str(value or "")
    return text[:19].replace("T", " ") if len(text) >= 19 and text[10:11] == "T" else (text or "-")


templates.env.filters["when"] = _when


def users_path(settings: Settings) -> Path:
    return settings.console_users_file or settings.console_dir() / "users.json"


def port_register(settings: Settings) -> list[str]:
    from policy.config import load_policy

    return sorted(load_policy(settings.policy_file).ports)


# A declaration's history: (declaration id, day hint, port hint) -> (document, notes for the reader).
History = Callable[[str, date | None, str | None], tuple[dict[str, Any], list[str]]]


def archive_history(settings: Settings) -> History:
    """A declaration's history as ``riskctl explain`` gives it: the archive, then the topics' records
    it lacks. The archive's tables stay open for the next page (refreshed every few seconds)."""
    from archive.location import from_settings
    from archive.queries import Archive

    archive = Archive(from_settings(settings))
    # The tables are opened (their logs read) behind the console's start, not by the first page that needs them.
    threading.Thread(target=_open_tables, args=(archive,), name="archive-open", daemon=True).start()

    def history(declaration_id: str, day: date | None = None, port: str | None = None) -> tuple[dict[str, Any], list[str]]:
        from audit.explain import explain

        if day is None:  # an id typed in the search box: where the archive files it, then those partitions only
            day, port = located(archive, declaration_id)
        return explain(settings, declaration_id, timeout_s=10.0, archive=archive, day=day, port=port)
    return history


def _open_tables(archive: Any) -> None:
    from archive.queries import HISTORY

    try:
        for table, _, _ in HISTORY.values():
            archive.table(table)
        archive.locate("")  # and the query engine's first run
    except Exception:  # the first page then opens them and says what is wrong
        log.warning("the archive's tables could not be opened at start", exc_info=True)


def located(archive: Any, declaration_id: str) -> tuple[date | None, str | None]:
    """The day/port hint of a declaration as the archive files it (``Archive.locate``); none when the
    archive does not hold it or cannot be read now (the full read then decides what to say)."""
    try:
        where = archive.locate(declaration_id)
    except Exception:  # a hint is an optimisation: the history read reports the archive's error
        log.warning("declaration %s could not be located in the archive", declaration_id[:64], exc_info=True)
        return None, None
    return where if where is not None else (None, None)


def figure_cache(settings: Settings) -> FigureCache:
    """The analyst's figures, kept and recomputed in the background (the archive of the settings)."""
    from archive.location import from_settings
    from policy.config import load_policy

    return FigureCache(from_settings(settings), load_policy(settings.policy_file), max_age_s=settings.console_figures_refresh_s)


def create_app(settings: Settings, feed: Feed | None = None, publisher: Publisher | None = None,
               users: UserStore | None = None, history: History | None = None, start_feed: bool = True,
               credit_reader: ReadOne | None = None) -> FastAPI:
    """The console. ``feed``/``publisher``/``users``/``history``/``credit_reader`` default to the real
    ones (Kafka, the users file, the archive, the enterprise-credit changelog); tests pass fakes. The
    feed starts with the application and stops with it."""
    from console import analyst, auth, officer
    from console import warnings as warning_pages

    feed = feed if feed is not None else Feed(settings)
    figures = figure_cache(settings)
    changelog = ChangelogReader(settings) if credit_reader is None else None

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if start_feed:
            feed.start()
            figures.warm(lambda: [last_days(7)], settings.console_figures_refresh_s)
        try:
            yield
        finally:
            figures.stop()
            if start_feed:
                feed.stop()
            if app.state.publisher is not None:
                app.state.publisher.close()
            if changelog is not None:
                changelog.close()

    app = FastAPI(title="Customs risk control console", lifespan=lifespan, dependencies=[Depends(csrf_guard)],
                  docs_url=None, redoc_url=None, openapi_url=None)
    app.state.settings = settings
    app.state.feed = feed
    app.state.publisher = publisher if publisher is not None else Publisher(settings)
    app.state.users = users if users is not None else UserStore(users_path(settings))
    app.state.login_throttle = LoginThrottle()
    app.state.ports = port_register(settings)
    app.state.history = history if history is not None else archive_history(settings)
    app.state.figures = figures
    app.state.credit_reader = credit_reader if credit_reader is not None else changelog.read  # type: ignore[union-attr]
    app.add_middleware(SessionMiddleware, secret_key=session_secret(settings), session_cookie="console_session",
                       max_age=settings.console_session_max_age_s, same_site="strict",
                       https_only=settings.console_tls_certfile is not None)
    app.mount("/static", StaticFiles(directory=str(HERE / "static")), name="static")
    for module in (auth, officer, analyst, warning_pages):
        app.include_router(module.router)

    @app.middleware("http")
    async def measure(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        start = time.perf_counter()
        response = await call_next(request)
        route = request.scope.get("route")
        name = getattr(route, "path", "unmatched")  # the template, never the raw path: bounded labels
        metrics.REQUESTS.labels(name, str(response.status_code)).inc()
        metrics.REQUEST_SECONDS.labels(name).observe(time.perf_counter() - start)
        response.headers.setdefault("X-Frame-Options", "DENY")
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("Referrer-Policy", "same-origin")
        response.headers.setdefault("Content-Security-Policy",
                                    "default-src 'self'; style-src 'self'; script-src 'self'; frame-ancestors 'none'")
        return response

    @app.exception_handler(LoginRequired)
    async def login_required(request: Request, exc: LoginRequired) -> Response:
        if request.method != "GET" or request.headers.get("hx-request"):
            return HTMLResponse("login required", status_code=401)
        return RedirectResponse("/login", status_code=303)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> Response:
        return page(request, "error.html", {"status": exc.status_code, "detail": exc.detail}, status_code=exc.status_code)

    @app.get("/healthz")
    def healthz() -> dict[str, Any]:
        return {"feed": "caught-up" if feed.caught_up.is_set() else ("failed" if feed.error else "reading")}

    return app


def page(request: Request, name: str, context: dict[str, Any], status_code: int = 200) -> HTMLResponse:
    """A page in the console's layout, which names the logged-in user (set by ``access.current_user``)."""
    user = request.scope.get("console_user")
    return templates.TemplateResponse(request, name, {"user": user if isinstance(user, User) else None, **context},
                                      status_code=status_code)
