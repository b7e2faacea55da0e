"""Who may see and do what: logins, sessions, CSRF, roles, ports, disabled users."""

from __future__ import annotations

from clients import topics
from tests.unit.console.conftest import PASSWORD, Console, instruction


def test_pages_need_a_login(console: Console) -> None:
    response = console.client.get("/queue", follow_redirects=False)
    assert response.status_code == 303 and response.headers["location"] == "/login"
    assert console.client.get("/queue/events", headers={"HX-Request": "true"}).status_code == 401


def test_wrong_password_is_refused_and_recorded(console: Console) -> None:
    csrf = console.csrf()
    response = console.client.post("/login", data={"name": "officer.hak", "password": "wrong password", "csrf_token": csrf})
    assert response.status_code == 401 and "wrong password" in response.text
    actions = [v for _, v in console.publisher.on(topics.CONSOLE_ACTIONS)]
    assert [(a["user"], a["role"], a["action"]) for a in actions] == [("officer.hak", "officer", "login-failed")]
    response = console.client.post("/login", data={"name": "<script>", "password": "x" * 12, "csrf_token": csrf})
    assert response.status_code == 401 and "<script>" not in response.text  # escaped in the form
    assert console.publisher.on(topics.CONSOLE_ACTIONS)[-1][1]["user"] == "unknown"
    assert console.client.get("/queue", follow_redirects=False).status_code == 303


def test_login_is_recorded_and_lands_on_the_role_start_page(console: Console) -> None:
    console.login("officer.hak")
    assert console.client.get("/", follow_redirects=False).headers["location"] == "/queue"
    action = console.publisher.on(topics.CONSOLE_ACTIONS)[-1][1]
    assert (action["user"], action["role"], action["action"], action["subject"]) == ("officer.hak", "officer", "login", "officer.hak")
    analyst = console.login("analyst", client=console.new_client())
    assert analyst.get("/", follow_redirects=False).headers["location"] == "/analyst/risk-lists"


def test_a_post_without_the_csrf_token_is_refused(console: Console) -> None:
    assert console.client.post("/login", data={"name": "officer.hak", "password": PASSWORD}).status_code == 403
    console.login("officer.hak")
    console.feed.apply_instruction(instruction("D-1"))
    form = {"instruction_id": "D-1:1:scan", "found": "no", "duty_recovered": "0"}
    assert console.client.post("/declarations/D-1/result", data=form).status_code == 403
    assert console.client.post("/declarations/D-1/result", data={**form, "csrf_token": "forged" * 8}).status_code == 403
    assert console.client.post("/logout").status_code == 403
    assert console.publisher.on(topics.INSPECTION_RESULTS) == []
    # The header htmx sends works as well as the form field.
    token = console.csrf(path="/queue")
    ok = console.client.post("/declarations/D-1/result", data=form, headers={"X-CSRF-Token": token}, follow_redirects=False)
    assert ok.status_code == 303 and len(console.publisher.on(topics.INSPECTION_RESULTS)) == 1


def test_an_officer_of_one_port_gets_403_on_another_port(console: Console) -> None:
    console.login("officer.hak")
    ypu = instruction("D-YPU", port="YPU-SEA")
    console.feed.apply_instruction(ypu)
    console.add_history(ypu)
    assert console.client.get("/queue?port=YPU-SEA").status_code == 403
    assert console.client.get("/declarations/D-YPU").status_code == 403
    csrf = console.csrf(path="/queue")
    response = console.client.post("/declarations/D-YPU/result", data={"instruction_id": ypu.instruction_id, "found": "no",
                                                                        "duty_recovered": "0", "csrf_token": csrf})
    assert response.status_code == 403 and console.publisher.on(topics.INSPECTION_RESULTS) == []
    queue = console.client.get("/queue").text
    assert "D-YPU" not in queue
    # The officer of that port sees it; a supervisor sees every port.
    other = console.login("officer.ypu", client=console.new_client())
    assert "D-YPU" in other.get("/queue").text and other.get("/declarations/D-YPU").status_code == 200
    chief = console.login("chief", client=console.new_client())
    assert "D-YPU" in chief.get("/queue").text


def test_roles_keep_to_their_pages(console: Console) -> None:
    console.login("officer.hak")
    assert console.client.get("/analyst/risk-lists").status_code == 403
    analyst = console.login("analyst", client=console.new_client())
    assert analyst.get("/queue").status_code == 403
    assert analyst.get("/analyst/risk-lists").status_code == 200


def test_disabling_a_user_ends_their_session_at_the_next_request(console: Console) -> None:
    console.login("officer.hak")
    assert console.client.get("/queue").status_code == 200
    console.users.set_disabled("officer.hak", True)
    response = console.client.get("/queue", follow_redirects=False)
    assert response.status_code == 303 and response.headers["location"] == "/login"
    csrf = console.csrf()
    assert console.client.post("/login", data={"name": "officer.hak", "password": PASSWORD, "csrf_token": csrf}).status_code == 401


def test_logout_ends_the_session(console: Console) -> None:
    console.login("analyst")
    csrf = console.csrf(path="/analyst/risk-lists")
    assert console.client.post("/logout", data={"csrf_token": csrf}, follow_redirects=False).status_code == 303
    assert console.client.get("/analyst/risk-lists", follow_redirects=False).status_code == 303
    assert console.publisher.on(topics.CONSOLE_ACTIONS)[-1][1]["action"] == "logout"


def test_security_headers(console: Console) -> None:
    response = console.client.get("/login")
    assert response.headers["x-frame-options"] == "DENY"
    assert "script-src 'self'" in response.headers["content-security-policy"]
    cookie = response.headers.get("set-cookie", "")
    assert "httponly" in cookie.lower() and "samesite=strict" in cookie.lower()
