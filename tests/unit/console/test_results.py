"""Recording an inspection result: validated by InspectionResult, errors beside the fields,
published once per instruction id whatever the browser sends, nothing published on a bad form."""

from __future__ import annotations

import threading

import pytest

from clients import topics
from console import publish
from tests.unit.console.conftest import Console, instruction, result_form


def _form(console: Console, iid: str, **over: str) -> dict[str, str]:
    return result_form(console, iid, **over)


def test_a_result_is_published_keyed_by_declaration_and_leaves_the_queue(console: Console) -> None:
    console.login("officer.hak")
    ins = instruction("D-1")
    console.feed.apply_instruction(ins)
    assert "D-1" in console.client.get("/queue").text
    response = console.client.post("/declarations/D-1/result", data=_form(console, ins.instruction_id), follow_redirects=False)
    assert response.status_code == 303 and response.headers["location"].endswith("message=recorded")
    [(key, result)] = console.publisher.on(topics.INSPECTION_RESULTS)
    assert key == "D-1"
    assert {k: result[k] for k in ("instruction_id", "declaration_id", "revision", "port", "station_id", "found", "category",
                                   "duty_recovered")} == {
        "instruction_id": "D-1:1:scan", "declaration_id": "D-1", "revision": 1, "port": "HAK-SEA", "station_id": "officer.hak",
        "found": True, "category": "narcotics", "duty_recovered": 1250.5}
    action = console.publisher.on(topics.CONSOLE_ACTIONS)[-1][1]
    assert action["action"] == "result-recorded" and action["subject"] == "D-1" and "under the floor" in action["detail"]
    assert console.feed.snapshot(["HAK-SEA"], 10)[1] == 0


def test_a_double_submit_records_once(console: Console) -> None:
    console.login("officer.hak")
    ins = instruction("D-2")
    console.feed.apply_instruction(ins)
    console.add_history(ins)
    form = _form(console, ins.instruction_id)
    first = console.client.post("/declarations/D-2/result", data=form, follow_redirects=False)
    again = console.client.post("/declarations/D-2/result", data=form, follow_redirects=False)
    assert first.headers["location"].endswith("message=recorded")
    assert again.status_code == 303 and again.headers["location"].endswith("message=already-recorded")
    assert len(console.publisher.on(topics.INSPECTION_RESULTS)) == 1


def test_concurrent_submits_record_once(console: Console) -> None:
    console.login("officer.hak")
    ins = instruction("D-3")
    console.feed.apply_instruction(ins)
    console.add_history(ins)
    form = _form(console, ins.instruction_id)
    codes: list[str] = []

    def submit() -> None:
        client = console.new_client()
        client.cookies = console.client.cookies
        codes.append(client.post("/declarations/D-3/result", data=form, follow_redirects=False).headers["location"])

    threads = [threading.Thread(target=submit) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert len(codes) == 6
    assert sorted(c.rsplit("=", 1)[1] for c in codes) == ["already-recorded"] * 5 + ["recorded"]
    assert len(console.publisher.on(topics.INSPECTION_RESULTS)) == 1


def test_a_result_seen_on_the_topic_is_not_recorded_again(console: Console) -> None:
    from schemas import InspectionResult

    console.login("officer.hak")
    ins = instruction("D-4")
    console.feed.apply_instruction(ins)
    console.add_history(ins)
    console.feed.mark_result(InspectionResult.model_validate_json(
        b'{"instruction_id": "D-4:1:scan", "declaration_id": "D-4", "revision": 1, "port": "HAK-SEA", "station_id": "ST",'
        b' "found": false, "inspected_at": "2026-12-01T10:00:00+00:00"}'))
    response = console.client.post("/declarations/D-4/result", data=_form(console, ins.instruction_id), follow_redirects=False)
    assert response.headers["location"].endswith("already-recorded") and console.publisher.on(topics.INSPECTION_RESULTS) == []


def test_form_errors_are_shown_beside_their_fields_and_nothing_is_published(console: Console) -> None:
    console.login("officer.hak")
    ins = instruction("D-5")
    console.feed.apply_instruction(ins)
    console.add_history(ins)
    cases = {
        "error-found": {"found": ""},
        "error-category": {"found": "yes", "category": ""},
        "error-duty_recovered": {"duty_recovered": "a lot"},
    }
    for error_id, change in cases.items():
        response = console.client.post("/declarations/D-5/result", data=_form(console, ins.instruction_id, **change))
        assert response.status_code == 422 and f'id="{error_id}"' in response.text, error_id
    # The schema's own bounds: negative duty, an overlong category.
    response = console.client.post("/declarations/D-5/result", data=_form(console, ins.instruction_id, duty_recovered="-5"))
    assert response.status_code == 422 and 'id="error-duty_recovered"' in response.text
    response = console.client.post("/declarations/D-5/result", data=_form(console, ins.instruction_id, category="x" * 300))
    assert response.status_code == 422 and 'id="error-category"' in response.text
    response = console.client.post("/declarations/D-5/result", data=_form(console, ins.instruction_id, duty_recovered="1" * 100))
    assert response.status_code == 422  # past the form's size bound
    assert console.publisher.sent == [p for p in console.publisher.sent if p[0] == topics.CONSOLE_ACTIONS]
    assert console.publisher.on(topics.INSPECTION_RESULTS) == []
    # The values typed stay in the form.
    response = console.client.post("/declarations/D-5/result", data=_form(console, ins.instruction_id, found="", category="cigarettes"))
    assert 'value="cigarettes"' in response.text


def test_a_failed_publish_records_nothing_and_a_retry_records_once(console: Console) -> None:
    console.login("officer.hak")
    ins = instruction("D-6")
    console.feed.apply_instruction(ins)
    console.add_history(ins)
    console.publisher.fail = True
    response = console.client.post("/declarations/D-6/result", data=_form(console, ins.instruction_id))
    assert response.status_code == 503 and "not recorded" in response.text
    assert not console.feed.has_result(ins.instruction_id)
    console.publisher.fail = False
    response = console.client.post("/declarations/D-6/result", data=_form(console, ins.instruction_id), follow_redirects=False)
    assert response.headers["location"].endswith("message=recorded")
    assert len(console.publisher.on(topics.INSPECTION_RESULTS)) == 1


def test_only_final_inspect_instructions_take_a_result(console: Console) -> None:
    console.login("officer.hak")
    check = instruction("D-7", action="machine-check", stage="declaration", final=False)
    console.feed.apply_instruction(check)
    console.add_history(check)
    response = console.client.post("/declarations/D-7/result", data=_form(console, check.instruction_id))
    assert response.status_code == 409 and console.publisher.on(topics.INSPECTION_RESULTS) == []
    assert 'id="result-form"' not in console.client.get("/declarations/D-7").text
    response = console.client.post("/declarations/D-7/result", data=_form(console, "D-7:1:nothing"))
    assert response.status_code == 404


def test_an_analyst_reads_a_declaration_but_records_nothing(console: Console) -> None:
    ins = instruction("D-8")
    console.feed.apply_instruction(ins)
    console.add_history(ins)
    console.login("analyst")
    page = console.client.get("/declarations/D-8")
    assert page.status_code == 200 and 'id="result-form"' not in page.text
    response = console.client.post("/declarations/D-8/result", data=_form(console, ins.instruction_id))
    assert response.status_code == 403


def test_the_station_id_is_the_officers_station(console: Console) -> None:
    console.login("officer.ypu")
    ins = instruction("D-9", port="YPU-SEA")
    console.feed.apply_instruction(ins)
    console.client.post("/declarations/D-9/result", data=_form(console, ins.instruction_id, found="no", category=""))
    [(_, result)] = console.publisher.on(topics.INSPECTION_RESULTS)
    assert result["station_id"] == "YPU-ST1" and result["found"] is False and result["category"] is None


def _earlier_result(ins_id: str, did: str) -> dict[str, object]:
    return {"instruction_id": ins_id, "declaration_id": did, "revision": 1, "port": "HAK-SEA", "station_id": "ST",
            "found": False, "category": None, "duty_recovered": 0.0, "inspected_at": "2026-11-01T10:00:00+00:00"}


def test_a_result_only_the_history_knows_is_not_recorded_again(console: Console) -> None:
    """After a restart past CONSOLE_LOOKBACK_S the feed knows neither the instruction nor its result;
    the archive's history lists the result: a bookmarked or retried POST is refused as already recorded."""
    console.login("officer.hak")
    ins = instruction("D-OLD")
    console.add_history(ins, results=[_earlier_result(ins.instruction_id, "D-OLD")])
    assert 'id="result-form"' not in console.client.get("/declarations/D-OLD").text
    response = console.client.post("/declarations/D-OLD/result", data=_form(console, ins.instruction_id), follow_redirects=False)
    assert response.status_code == 303 and response.headers["location"].endswith("message=already-recorded")
    assert console.publisher.on(topics.INSPECTION_RESULTS) == []


def test_an_open_item_whose_result_the_history_lists_is_not_recorded_again(console: Console) -> None:
    """The feed holds the inspect open (its result came before the look-back, or from a station the feed
    has not read yet); the history lists the result: refused as already recorded."""
    console.login("officer.hak")
    ins = instruction("D-OPEN")
    console.feed.apply_instruction(ins)
    console.add_history(ins, results=[_earlier_result(ins.instruction_id, "D-OPEN")])
    response = console.client.post("/declarations/D-OPEN/result", data=_form(console, ins.instruction_id), follow_redirects=False)
    assert response.headers["location"].endswith("message=already-recorded")
    assert console.publisher.on(topics.INSPECTION_RESULTS) == []


def test_a_result_whose_audit_record_fails_counts_as_recorded_and_a_retry_records_nothing(console: Console,
                                                                                          caplog: pytest.LogCaptureFixture) -> None:
    """The result is acknowledged, its console action is not (even after its retries): the result stands,
    the officer is told it is recorded without its audit record, the error is logged and counted, and a
    retry before the feed reads the result back is refused as already recorded."""
    from console import metrics

    console.login("officer.hak")
    ins = instruction("D-HALF")
    console.feed.apply_instruction(ins)
    console.add_history(ins)
    console.publisher.failing[topics.CONSOLE_ACTIONS] = publish.AUDIT_ATTEMPTS
    console.publisher.attempts.clear()  # the login's action
    missing = metrics.AUDIT_MISSING.labels("result-recorded")
    before = missing._value.get()
    response = console.client.post("/declarations/D-HALF/result", data=_form(console, ins.instruction_id), follow_redirects=False)
    assert response.status_code == 303 and response.headers["location"].endswith("message=recorded-audit-missing")
    assert "its audit record" in console.client.get(response.headers["location"]).text
    assert console.publisher.attempts.count(topics.CONSOLE_ACTIONS) == publish.AUDIT_ATTEMPTS
    assert missing._value.get() == before + 1
    assert any(r.levelname == "ERROR" and "D-HALF:1:scan" in r.getMessage() for r in caplog.records)
    retry = console.client.post("/declarations/D-HALF/result", data=_form(console, ins.instruction_id), follow_redirects=False)
    assert retry.headers["location"].endswith("message=already-recorded")
    assert len(console.publisher.on(topics.INSPECTION_RESULTS)) == 1


def test_an_audit_record_that_fails_once_is_retried(console: Console) -> None:
    console.login("officer.hak")
    ins = instruction("D-RETRY")
    console.feed.apply_instruction(ins)
    console.add_history(ins)
    console.publisher.failing[topics.CONSOLE_ACTIONS] = 1
    response = console.client.post("/declarations/D-RETRY/result", data=_form(console, ins.instruction_id), follow_redirects=False)
    assert response.headers["location"].endswith("message=recorded")
    assert len(console.publisher.on(topics.INSPECTION_RESULTS)) == 1
    [(_, action)] = [a for a in console.publisher.on(topics.CONSOLE_ACTIONS) if a[1]["action"] == "result-recorded"]
    assert action["subject"] == "D-RETRY"


def test_a_result_not_acknowledged_produces_no_audit_record(console: Console) -> None:
    console.login("officer.hak")
    ins = instruction("D-NOACK")
    console.feed.apply_instruction(ins)
    console.add_history(ins)
    console.publisher.failing[topics.INSPECTION_RESULTS] = 1
    response = console.client.post("/declarations/D-NOACK/result", data=_form(console, ins.instruction_id))
    assert response.status_code == 503 and "not recorded" in response.text
    assert not [a for a in console.publisher.on(topics.CONSOLE_ACTIONS) if a[1]["action"] == "result-recorded"]
    assert not console.feed.has_result(ins.instruction_id)
