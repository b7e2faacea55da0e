"""The officer's note and who recorded a result; the day/port hint of a history link."""

from __future__ import annotations

from datetime import date

from clients import topics
from tests.unit.console.conftest import Console, instruction, result_form


def _form(console: Console, iid: str, **over: str) -> dict[str, str]:
    return result_form(console, iid, **{"duty_recovered": "10", "note": "  in the spare tyre ", **over})


def test_the_note_and_the_session_user_go_on_the_result(console: Console) -> None:
    console.login("officer.hak")
    ins = instruction("D-1")
    console.feed.apply_instruction(ins)
    form = {**_form(console, ins.instruction_id), "recorded_by": "someone.else"}  # a form field is never trusted for it
    response = console.client.post("/declarations/D-1/result", data=form, follow_redirects=False)
    assert response.status_code == 303
    [(_, result)] = console.publisher.on(topics.INSPECTION_RESULTS)
    assert (result["note"], result["recorded_by"]) == ("in the spare tyre", "officer.hak")


def test_a_too_long_note_is_shown_beside_the_field_and_nothing_is_published(console: Console) -> None:
    console.login("officer.hak")
    ins = instruction("D-2")
    console.feed.apply_instruction(ins)
    console.add_history(ins)
    response = console.client.post("/declarations/D-2/result", data=_form(console, ins.instruction_id, note="x" * 501))
    assert response.status_code == 422 and 'id="error-note"' in response.text
    assert console.publisher.on(topics.INSPECTION_RESULTS) == []


def test_the_history_page_shows_the_note_and_who_recorded_it(console: Console) -> None:
    console.login("officer.hak")
    ins = instruction("D-3")
    console.add_history(ins, [{"instruction_id": ins.instruction_id, "revision": 1, "port": "HAK-SEA", "station_id": "ST1",
                               "found": True, "category": "narcotics", "duty_recovered": 1.0, "inspected_at": "2026-12-05T08:00:00Z",
                               "note": "false floor", "recorded_by": "officer.hak"}])
    text = console.client.get("/declarations/D-3").text
    assert "false floor" in text and '<td class="recorded-by">officer.hak</td>' in text


def test_the_queue_links_the_history_with_its_day_and_port_and_the_page_passes_them_on(console: Console) -> None:
    console.login("officer.hak")
    ins = instruction("D-4")
    console.feed.apply_instruction(ins)
    console.add_history(ins)
    day = ins.event_time.date().isoformat()
    assert f"/declarations/D-4?day={day}&amp;port=HAK-SEA" in console.client.get("/queue").text
    assert console.client.get(f"/declarations/D-4?day={day}&port=HAK-SEA").status_code == 200
    assert console.hints[-1] == ("D-4", date.fromisoformat(day), "HAK-SEA")
    console.client.get("/declarations/D-4")  # typed in the search box: the open queue item knows where it is filed
    assert console.hints[-1] == ("D-4", date.fromisoformat(day), "HAK-SEA")
    console.client.post("/declarations/D-4/result", data=_form(console, ins.instruction_id), follow_redirects=False)
    assert console.client.get("/declarations/D-4").status_code == 200  # no longer open: the archive locates it
    assert console.hints[-1] == ("D-4", None, None)


def test_a_malformed_hint_is_a_clear_error(console: Console) -> None:
    console.login("officer.hak")
    ins = instruction("D-5")
    console.add_history(ins)
    bad_day = console.client.get("/declarations/D-5?day=yesterday&port=HAK-SEA")
    assert bad_day.status_code == 400 and "YYYY-MM-DD" in bad_day.text
    assert console.client.get("/declarations/D-5?day=2026-12-01&port=NOWHERE").status_code == 400
