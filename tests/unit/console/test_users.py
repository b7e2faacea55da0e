"""The user store and `riskctl users`."""

from __future__ import annotations

import io
import json
import os
import stat

import pytest

from cli.main import main
from console.users import Role, UserStore, UserStoreError


@pytest.fixture
def env(tmp_path, monkeypatch):
    monkeypatch.setenv("DATA_DIR", str(tmp_path))
    monkeypatch.delenv("RISKCTL_SETTINGS", raising=False)
    return tmp_path


def test_users_add_list_disable(env, capsys, monkeypatch) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO("a long enough password\n"))
    assert main(["users", "add", "officer.hak", "--role", "officer", "--port", "HAK-SEA", "--password-stdin", "--no-publish"]) == 0
    assert main(["users", "add", "analyst", "--role", "analyst", "--generate-password", "--no-publish"]) == 0
    out = capsys.readouterr().out
    password = out.split("password: ")[1].split()[0]
    store_file = env / "console" / "users.json"
    assert stat.S_IMODE(os.stat(store_file).st_mode) == 0o600
    assert "a long enough password" not in store_file.read_text() and password not in store_file.read_text()
    store = UserStore(store_file)
    assert store.authenticate("analyst", password) is not None
    assert store.authenticate("officer.hak", "a long enough password").ports == ("HAK-SEA",)
    assert main(["users", "list", "--json"]) == 0
    listed = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [(u["name"], u["role"], u["disabled"]) for u in listed] == [("analyst", "analyst", False), ("officer.hak", "officer", False)]
    assert all("password_hash" not in u for u in listed)
    assert main(["users", "disable", "officer.hak", "--no-publish"]) == 0
    assert store.authenticate("officer.hak", "a long enough password") is None
    assert main(["users", "enable", "officer.hak", "--no-publish"]) == 0
    assert store.authenticate("officer.hak", "a long enough password") is not None


@pytest.mark.parametrize("argv,message", [
    (["users", "add", "o1", "--role", "officer", "--generate-password"], "at least one port"),
    (["users", "add", "o1", "--role", "officer", "--port", "ATLANTIS", "--generate-password"], "port register"),
    (["users", "add", "a1", "--role", "analyst", "--port", "HAK-SEA", "--generate-password"], "only officers"),
    (["users", "add", "Bad Name", "--role", "analyst", "--generate-password"], "name"),
    (["users", "disable", "nobody"], "no user nobody"),
])
def test_users_refuses_what_it_cannot_do(env, capsys, argv, message) -> None:
    assert main([*argv, "--no-publish"]) == 2
    assert message in capsys.readouterr().err


def test_short_passwords_and_duplicates_are_refused(tmp_path) -> None:
    store = UserStore(tmp_path / "users.json")
    with pytest.raises(UserStoreError, match="password"):
        store.add("a1", Role.ANALYST, "short")
    store.add("a1", Role.ANALYST, "long enough pass")
    with pytest.raises(UserStoreError, match="exists"):
        store.add("a1", Role.ANALYST, "long enough pass")
    assert store.authenticate("a1", "x" * 10_000) is None
