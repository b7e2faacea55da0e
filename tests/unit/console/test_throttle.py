"""Failed logins are throttled per address and per name from that address, with bounded memory."""

from __future__ import annotations

from console.throttle import LoginThrottle
from tests.unit.console.conftest import PASSWORD, Console


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_name_is_throttled_from_one_address_only_and_the_window_moves_on() -> None:
    clock = Clock()
    throttle = LoginThrottle(per_name=3, per_address=10, window_s=60.0, clock=clock)
    for _ in range(3):
        assert throttle.wait_s("officer.hak", "10.0.0.9") == 0
        throttle.failed("officer.hak", "10.0.0.9")
        clock.now += 1
    assert throttle.wait_s("officer.hak", "10.0.0.9") == 57.0  # the first failure leaves the window at 1060
    assert throttle.wait_s("officer.hak", "10.0.0.1") == 0  # the officer's own desk is not locked out
    assert throttle.wait_s("analyst", "10.0.0.9") == 0
    clock.now = 1060.0
    assert throttle.wait_s("officer.hak", "10.0.0.9") == 0


def test_an_address_guessing_many_names_is_throttled_and_a_success_clears_only_its_name() -> None:
    clock = Clock()
    throttle = LoginThrottle(per_name=3, per_address=5, window_s=60.0, clock=clock)
    for i in range(5):
        throttle.failed(f"user{i}", "10.0.0.9")
    assert throttle.wait_s("someone.else", "10.0.0.9") == 60.0
    throttle.succeeded("user0", "10.0.0.9")
    assert throttle.wait_s("someone.else", "10.0.0.9") == 60.0


def test_memory_is_bounded() -> None:
    throttle = LoginThrottle(tracked=100, clock=Clock())
    for i in range(1_000):
        throttle.failed(f"name{i}", f"10.0.{i // 256}.{i % 256}")
    assert len(throttle._failures) <= 100


def test_the_console_refuses_with_429_without_checking_the_password(console: Console) -> None:
    csrf = console.csrf()
    for _ in range(5):
        response = console.client.post("/login", data={"name": "officer.hak", "password": "wrong password", "csrf_token": csrf})
        assert response.status_code == 401
    refused = console.client.post("/login", data={"name": "officer.hak", "password": PASSWORD, "csrf_token": csrf})
    assert refused.status_code == 429 and "too many failed logins" in refused.text
    assert 0 < int(refused.headers["Retry-After"]) <= 300
    assert console.client.get("/queue", follow_redirects=False).status_code == 303  # not logged in
    console.login("analyst", client=console.new_client())  # another name from the same address still may
