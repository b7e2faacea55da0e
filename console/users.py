"""The console's user store: one JSON file, argon2 password hashes, written atomically.

Every request reads the store again when the file has changed (one ``stat``), so ``riskctl users
disable`` takes effect on the user's next request without restarting the console.
"""

from __future__ import annotations

import contextlib
import enum
import os
import tempfile
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import orjson
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError

UserName = Annotated[str, StringConstraints(min_length=2, max_length=64, pattern=r"^[a-z0-9][a-z0-9._-]*$")]
PortName = Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9._:\-]*$")]
MIN_PASSWORD = 10
MAX_PASSWORD = 256  # argon2 hashes any length; a bound keeps a login request from costing more than it should
MAX_USERS = 10_000


class Role(str, enum.Enum):
    OFFICER = "officer"  # the live queue and results of the ports they are bound to
    ANALYST = "analyst"  # risk lists, credit actions, figures, dead letters; reads any declaration
    SUPERVISOR = "supervisor"  # everything, every port


class User(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: UserName
    role: Role
    ports: tuple[PortName, ...] = Field(default=(), max_length=64)
    station_id: PortName | None = None
    password_hash: str = Field(min_length=20, max_length=512)
    disabled: bool = False
    created_at: datetime

    def sees_port(self, port: str) -> bool:
        return self.role is not Role.OFFICER or port in self.ports


class UserStoreError(ValueError):
    """A user change that cannot be made; the message says why."""


class _File(BaseModel):
    model_config = ConfigDict(extra="forbid")
    users: dict[str, User] = Field(default_factory=dict, max_length=MAX_USERS)


_hasher = PasswordHasher()
# Verifying against this hash when the user does not exist costs what a real check costs: the
# response time does not tell which user names exist.
_DUMMY_HASH = _hasher.hash("not-a-password-of-anyone")


def check_password_rules(password: str) -> None:
    if not MIN_PASSWORD <= len(password) <= MAX_PASSWORD:
        raise UserStoreError(f"a password has {MIN_PASSWORD} to {MAX_PASSWORD} characters")


class UserStore:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._stamp: tuple[int, int] | None = None
        self._users: dict[str, User] = {}

    def _load(self) -> dict[str, User]:
        with self._lock:
            try:
                st = self.path.stat()
            except FileNotFoundError:
                self._stamp, self._users = None, {}
                return self._users
            stamp = (st.st_mtime_ns, st.st_size)
            if stamp != self._stamp:
                try:
                    self._users = _File.model_validate_json(self.path.read_bytes()).users
                except ValidationError as exc:
                    raise UserStoreError(f"user store {self.path} is not valid: {exc.error_count()} error(s)") from None
                self._stamp = stamp
            return self._users

    def get(self, name: str) -> User | None:
        return self._load().get(name)

    def all(self) -> list[User]:
        return sorted(self._load().values(), key=lambda u: u.name)

    def authenticate(self, name: str, password: str) -> User | None:
        """The enabled user with this name and password, else None (same cost either way)."""
        user = self.get(name) if len(name) <= 64 else None
        if len(password) > MAX_PASSWORD:
            return None
        try:
            _hasher.verify(user.password_hash if user else _DUMMY_HASH, password)
        except (VerificationError, InvalidHashError):
            return None
        return user if user is not None and not user.disabled else None

    def add(self, name: str, role: Role, password: str, ports: tuple[str, ...] = (), station_id: str | None = None,
            known_ports: set[str] | None = None) -> User:
        check_password_rules(password)
        if role is Role.OFFICER and not ports:
            raise UserStoreError("an officer is bound to at least one port (--port)")
        if role is not Role.OFFICER and ports:
            raise UserStoreError(f"only officers are bound to ports; a {role.value} sees every port")
        unknown = sorted(set(ports) - known_ports) if known_ports is not None else []
        if unknown:
            raise UserStoreError(f"port(s) {', '.join(unknown)} are not in the policy's port register")
        try:
            user = User(name=name, role=role, ports=tuple(dict.fromkeys(ports)), station_id=station_id,
                        password_hash=_hasher.hash(password), created_at=datetime.now(UTC))
        except ValidationError as exc:
            raise UserStoreError("; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())) from None
        with self._locked_file() as users:
            if name in users:
                raise UserStoreError(f"user {name} exists")
            if len(users) >= MAX_USERS:
                raise UserStoreError(f"the store holds {MAX_USERS} users already")
            users[name] = user
        return user

    def set_disabled(self, name: str, disabled: bool) -> User:
        with self._locked_file() as users:
            if name not in users:
                raise UserStoreError(f"no user {name}")
            users[name] = users[name].model_copy(update={"disabled": disabled})
            return users[name]

    @contextlib.contextmanager
    def _locked_file(self) -> Iterator[dict[str, User]]:
        """The users to change, written back atomically (a temporary file renamed over the store, 0600)."""
        import fcntl

        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path.with_suffix(".lock"), "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # two `riskctl users` at once must not lose a change
            users = dict(self._load())
            yield users
            doc = _File(users=users).model_dump(mode="json")
            fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".users-", suffix=".json")
            try:
                with os.fdopen(fd, "wb") as out:
                    out.write(orjson.dumps(doc, option=orjson.OPT_INDENT_2))
                    out.flush()
                    os.fsync(out.fileno())
                os.chmod(tmp, 0o600)
                os.replace(tmp, self.path)
            except BaseException:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)
                raise
