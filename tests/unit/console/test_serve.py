"""`riskctl console` serves on loopback unless told otherwise, hands the TLS settings to uvicorn, and
marks the session cookie Secure when it serves HTTPS (uvicorn is replaced by a recorder)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from cli.main import build_parser
from common.settings import Settings
from console.app import create_app as REAL_CREATE_APP
from console.live import Feed
from console.users import Role, UserStore
from tests.unit.console.conftest import PASSWORD, FakePublisher


def serve(monkeypatch: pytest.MonkeyPatch, settings: Settings, *argv: str) -> dict[str, Any]:
    """Run `riskctl console ARGV` with the console's fakes; what it would have passed to uvicorn.run."""
    import uvicorn

    import console.app
    from cli.console import cmd_console

    calls: dict[str, Any] = {}

    def create_app(settings: Settings) -> Any:
        feed = Feed(settings)
        feed.caught_up.set()
        return REAL_CREATE_APP(settings, feed=feed, publisher=FakePublisher(), start_feed=False)  # type: ignore[arg-type]

    def run(app: Any, **kwargs: Any) -> None:
        calls.update(kwargs, app=app)

    monkeypatch.setattr(console.app, "create_app", create_app)
    monkeypatch.setattr(uvicorn, "run", run)
    args = build_parser().parse_args(["console", *argv])
    assert cmd_console(args, settings) == 0
    return calls


def _settings(tmp_path: Path, **over: Any) -> Settings:
    users = UserStore(tmp_path / "users.json")
    if users.get("analyst") is None:
        users.add("analyst", Role.ANALYST, PASSWORD)
    return Settings(data_dir=tmp_path, archive_dir=tmp_path / "archive", console_users_file=tmp_path / "users.json",
                    console_metrics_port=0, **over)


def _login_cookie(app: Any, base_url: str) -> str:
    client = TestClient(app, base_url=base_url)
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', client.get("/login").text)
    assert csrf
    response = client.post("/login", data={"name": "analyst", "password": PASSWORD, "csrf_token": csrf.group(1)},
                           follow_redirects=False)
    assert response.status_code == 303, response.text
    return response.headers["set-cookie"].lower()


def test_the_console_binds_to_loopback_over_http_by_default(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    calls = serve(monkeypatch, _settings(tmp_path))
    assert calls["host"] == "127.0.0.1" and calls["port"] == 8470
    assert calls["ssl_certfile"] is None and calls["ssl_keyfile"] is None
    assert calls["proxy_headers"] is False
    cookie = _login_cookie(calls["app"], "http://testserver")
    assert "console_session=" in cookie and "httponly" in cookie and "samesite=strict" in cookie and "secure" not in cookie
    # --host and --port override the settings.
    calls = serve(monkeypatch, _settings(tmp_path), "--host", "0.0.0.0", "--port", "9443")
    assert (calls["host"], calls["port"]) == ("0.0.0.0", 9443)
    # A named reverse proxy may say who the user is; nobody else may.
    calls = serve(monkeypatch, _settings(tmp_path, console_trusted_proxies="10.0.0.5"))
    assert (calls["proxy_headers"], calls["forwarded_allow_ips"]) == (True, "10.0.0.5")
    assert serve(monkeypatch, _settings(tmp_path))["forwarded_allow_ips"] is None


def test_tls_settings_reach_uvicorn_and_make_the_cookie_secure(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    cert, key = tmp_path / "console.pem", tmp_path / "console.key"
    cert.write_text("-----BEGIN CERTIFICATE-----\n")
    key.write_text("-----BEGIN PRIVATE KEY-----\n")
    calls = serve(monkeypatch, _settings(tmp_path, console_tls_certfile=cert, console_tls_keyfile=key))
    assert calls["host"] == "127.0.0.1"
    assert (calls["ssl_certfile"], calls["ssl_keyfile"]) == (str(cert), str(key))
    cookie = _login_cookie(calls["app"], "https://testserver")
    assert "console_session=" in cookie and "; secure" in cookie and "httponly" in cookie
