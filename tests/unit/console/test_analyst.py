"""The analyst's forms: risk-list entries and credit actions validated by the topics' schemas."""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from archive.figures import FigureCache, compute
from clients import topics
from policy.config import load_policy
from schemas import RiskListEntry
from tests.unit.console.conftest import Console


def _entry_form(console: Console, **over: str) -> dict[str, str]:
    return {"list_id": "JASC-2026-12", "entry_id": "E-8517", "kind": "hs-prefix", "value": "8517", "action": "inspect",
            "reason": "telephone sets under false origin", "source_agency": "anti-smuggling bureau",
            "valid_from": "2026-12-01T00:00", "valid_until": "", "csrf_token": console.csrf(path="/analyst/risk-lists"), **over}


def test_adding_an_entry_publishes_it_keyed_by_its_id(console: Console) -> None:
    console.login("analyst")
    response = console.client.post("/analyst/risk-lists", data=_entry_form(console), follow_redirects=False)
    assert response.status_code == 303
    [(key, entry)] = console.publisher.on(topics.RISK_LISTS)
    assert key == "E-8517"
    parsed = RiskListEntry.model_validate(entry, strict=False)
    assert parsed.valid_from.isoformat() == "2026-12-01T00:00:00+00:00" and parsed.valid_until is None
    action = console.publisher.on(topics.CONSOLE_ACTIONS)[-1][1]
    assert (action["action"], action["subject"], action["user"]) == ("risk-list-added", "E-8517", "analyst")


def test_an_entry_id_is_generated_when_left_empty(console: Console) -> None:
    console.login("analyst")
    console.client.post("/analyst/risk-lists", data=_entry_form(console, entry_id=""))
    [(key, entry)] = console.publisher.on(topics.RISK_LISTS)
    assert key.startswith("RL-") and entry["entry_id"] == key


def test_bad_entries_show_errors_beside_their_fields_and_publish_nothing(console: Console) -> None:
    console.login("analyst")
    cases = {
        "error-value": {"kind": "origin", "value": "8517"},
        "error-valid_until": {"valid_until": "2026-11-01T00:00"},
        "error-valid_from": {"valid_from": "yesterday"},
        "error-list_id": {"list_id": "bad list id!"},
        "error-reason": {"reason": ""},
        "error-kind": {"kind": "planet"},
    }
    for error_id, change in cases.items():
        response = console.client.post("/analyst/risk-lists", data=_entry_form(console, **change))
        assert response.status_code == 422 and f'id="{error_id}"' in response.text, (error_id, response.text[-3000:])
    assert console.publisher.on(topics.RISK_LISTS) == [] and console.publisher.on(topics.CONSOLE_ACTIONS)[-1][1]["action"] == "login"


def test_search_and_retract(console: Console) -> None:
    console.login("analyst")
    for entry_id, value in (("E-1", "8517"), ("E-2", "9303")):
        entry = RiskListEntry.model_validate_json(
            f'{{"entry_id": "{entry_id}", "list_id": "L", "kind": "hs-prefix", "value": "{value}", "action": "inspect", '
            f'"reason": "r {value}", "source_agency": "customs", "valid_from": "2026-01-01T00:00:00+00:00"}}')
        console.feed.apply_risk_entry(entry_id, entry)
    page = console.client.get("/analyst/risk-lists?q=9303").text
    assert 'data-entry="E-2"' in page and 'data-entry="E-1"' not in page
    csrf = console.csrf(path="/analyst/risk-lists")
    response = console.client.post("/analyst/risk-lists/E-1/retract", data={"csrf_token": csrf}, follow_redirects=False)
    assert response.status_code == 303
    assert console.publisher.on(topics.RISK_LISTS) == [("E-1", None)]  # a tombstone
    assert 'data-entry="E-1"' not in console.client.get("/analyst/risk-lists").text
    assert console.client.post("/analyst/risk-lists/E-404/retract", data={"csrf_token": csrf}).status_code == 404


def test_the_lists_page_browses_list_by_list_and_says_what_it_does_not_hold(console: Console) -> None:
    console.login("analyst")
    for n in range(5):
        list_id = "JASC-1" if n < 3 else "ORG-2"
        entry = RiskListEntry.model_validate_json(
            f'{{"entry_id": "E-{n}", "list_id": "{list_id}", "kind": "hs-prefix", "value": "85{n}1", "action": "watch", '
            f'"reason": "r", "source_agency": "port police", "valid_from": "2026-01-01T00:00:00+00:00"}}')
        console.feed.apply_risk_entry(f"E-{n}", entry)
    page = console.client.get("/analyst/risk-lists").text
    assert "2 lists, 5 current entries" in page and 'id="entries-dropped"' not in page
    assert re.search(r'data-list="JASC-1">.*?<td class="num">3</td>', page)
    assert re.search(r'data-list="ORG-2">.*?<td class="num">2</td>', page)
    page = console.client.get("/analyst/risk-lists?list=ORG-2").text
    assert re.findall(r'data-entry="([^"]+)"', page) == ["E-3", "E-4"] and "2 entries match" in page
    page = console.client.get("/analyst/risk-lists?list=ORG-2&q=8531").text
    assert re.findall(r'data-entry="([^"]+)"', page) == ["E-3"]
    console.feed.risk_entries.limit = 5  # the bound reached: one more entry is counted, not held
    console.feed.apply_risk_entry("E-9", RiskListEntry.model_validate_json(
        '{"entry_id": "E-9", "list_id": "ORG-2", "kind": "origin", "value": "KP", "action": "inspect", "reason": "r", '
        '"source_agency": "customs", "valid_from": "2026-01-01T00:00:00+00:00"}'))
    page = console.client.get("/analyst/risk-lists").text
    assert 'id="entries-dropped">1 more entry is on the topic' in page and 'data-entry="E-9"' not in page


def test_a_credit_action_is_a_credit_class_change(console: Console) -> None:
    console.login("analyst")
    csrf = console.csrf(path="/analyst/credit")
    form = {"enterprise_id": "ENT-42", "credit_action": "place-focus-list", "source_agency": "customs",
            "reason": "repeated undervaluation", "csrf_token": csrf}
    assert console.client.post("/analyst/credit", data=form, follow_redirects=False).status_code == 303
    [(key, event)] = console.publisher.on(topics.CREDIT_EVENTS)
    assert key == "ENT-42"
    assert (event["event_type"], event["credit_class"]) == ("credit-class-changed", "focus-list")
    assert event["reason"] == "repeated undervaluation"
    console.client.post("/analyst/credit", data={**form, "credit_action": "lift-focus-list"})
    lift = console.publisher.on(topics.CREDIT_EVENTS)[-1][1]
    assert (lift["event_type"], lift["credit_class"], lift["source_agency"]) == ("focus-list-lifted", None, "customs")
    bad = console.client.post("/analyst/credit", data={**form, "enterprise_id": "no spaces allowed"})
    assert bad.status_code == 422 and 'id="error-enterprise_id"' in bad.text
    bad = console.client.post("/analyst/credit", data={**form, "reason": ""})
    assert bad.status_code == 422 and 'id="error-reason"' in bad.text
    assert len(console.publisher.on(topics.CREDIT_EVENTS)) == 2


def _figures_when_ready(console: Console, query: str) -> str:
    """The figures part once the background computer has kept them (the page polls the same way)."""
    deadline = time.monotonic() + 30
    while 'id="figures-computing"' in (part := console.client.get(f"/analyst/figures/part?{query}").text):
        assert time.monotonic() < deadline, "the figures were never computed"
        time.sleep(0.02)  # probe interval; the deadline bounds the wait
    return part


def test_figures_and_dead_letters_read_an_empty_archive(console: Console) -> None:
    console.login("analyst")
    page = console.client.get("/analyst/figures?from=2026-12-01&to=2026-12-05")
    assert page.status_code == 200 and ('id="figures-computing"' in page.text or "No decisions in the archive" in page.text)
    part = _figures_when_ready(console, "from=2026-12-01&to=2026-12-05")
    assert "No decisions in the archive" in part and "of every port scored by both" in part
    assert "of HAK-SEA scored by both" in _figures_when_ready(console, "from=2026-12-01&to=2026-12-05&port=HAK-SEA")
    assert console.client.get("/analyst/figures?from=2026-12-05&to=2026-12-01").status_code == 400
    assert console.client.get("/analyst/figures?port=NOWHERE").status_code == 404
    assert console.client.get("/analyst/figures/part?port=NOWHERE").status_code == 404
    assert console.client.get("/analyst/dead-letters?reason=schema-violation").status_code == 200


class GatedFigures:
    """The figures' computer, held until the test lets it go (or makes it fail)."""

    def __init__(self) -> None:
        self.go = threading.Event()
        self.error: str | None = None

    def __call__(self, window: Any) -> dict[str, Any]:
        assert self.go.wait(10), "the test never let the computation finish"
        if self.error:
            raise OSError(self.error)
        return compute(window, None, load_policy())


@pytest.fixture
def gated(console: Console) -> Iterator[GatedFigures]:
    gate = GatedFigures()
    cache = FigureCache(None, load_policy(), computer=gate, max_waiting=2)
    console.client.app.state.figures = cache  # type: ignore[attr-defined]
    try:
        yield gate
    finally:
        gate.go.set()
        cache.stop()


def test_figures_not_kept_answer_at_once_and_the_page_polls_until_they_are(console: Console, gated: GatedFigures) -> None:
    console.login("analyst")
    page = console.client.get("/analyst/figures?from=2026-11-01&to=2026-11-30&port=HAK-SEA")
    assert page.status_code == 200 and 'id="figures-computing"' in page.text
    assert "Computing the figures for 2026-11-01 to 2026-11-30, HAK-SEA" in page.text and "updates by itself" in page.text
    assert 'hx-get="/analyst/figures/part?from=2026-11-01&amp;to=2026-11-30&amp;port=HAK-SEA"' in page.text
    assert 'hx-trigger="every 2s"' in page.text and 'hx-swap="outerHTML"' in page.text
    poll = console.client.get("/analyst/figures/part?from=2026-11-01&to=2026-11-30&port=HAK-SEA", headers={"HX-Request": "true"})
    assert 'id="figures-computing"' in poll.text and "<html" not in poll.text  # a fragment, not a page
    gated.go.set()
    part = _figures_when_ready(console, "from=2026-11-01&to=2026-11-30&port=HAK-SEA")
    assert "of HAK-SEA scored by both" in part and "hx-trigger" not in part  # the figures stop the polling
    assert "Computed " in console.client.get("/analyst/figures?from=2026-11-01&to=2026-11-30&port=HAK-SEA").text


def test_a_failed_computation_is_shown_as_an_error_and_can_be_retried(console: Console, gated: GatedFigures) -> None:
    console.login("analyst")
    gated.error = "the archive cannot be read"
    gated.go.set()
    console.client.get("/analyst/figures?from=2026-11-01&to=2026-11-07")
    part = _figures_when_ready(console, "from=2026-11-01&to=2026-11-07")
    assert 'id="figures-failed"' in part and "OSError: the archive cannot be read" in part and "hx-trigger" not in part
    assert 'id="figures-failed"' in console.client.get("/analyst/figures?from=2026-11-01&to=2026-11-07").text
    gated.error = None
    retried = console.client.get("/analyst/figures?from=2026-11-01&to=2026-11-07&retry=1").text
    assert 'id="figures-computing"' in retried or "No decisions in the archive" in retried
    assert "No decisions in the archive" in _figures_when_ready(console, "from=2026-11-01&to=2026-11-07")


def test_a_user_cannot_queue_more_windows_than_the_limit(console: Console, gated: GatedFigures) -> None:
    console.login("analyst")
    for day in ("01", "02"):
        assert 'id="figures-computing"' in console.client.get(f"/analyst/figures?from=2026-11-{day}&to=2026-11-{day}").text
    refused = console.client.get("/analyst/figures?from=2026-11-03&to=2026-11-03").text
    assert 'id="figures-refused"' in refused and "2 windows are being computed already" in refused and "hx-trigger" not in refused


def _form_key(console: Console, path: str) -> str:
    import re

    match = re.search(r'name="form_key" value="([^"]+)"', console.client.get(path).text)
    assert match
    return match.group(1)


def test_an_entry_form_is_published_once_however_often_it_is_sent(console: Console) -> None:
    """A generated entry id follows from the form's key and content: a retry after a failure names the
    same entry, and a second submission of a published form publishes nothing."""
    console.login("analyst")
    form = {**_entry_form(console, entry_id=""), "form_key": _form_key(console, "/analyst/risk-lists")}
    console.publisher.failing[topics.RISK_LISTS] = 1
    assert console.client.post("/analyst/risk-lists", data=form).status_code == 503
    first = console.client.post("/analyst/risk-lists", data=form, follow_redirects=False)
    again = console.client.post("/analyst/risk-lists", data=form, follow_redirects=False)
    assert first.status_code == again.status_code == 303 and first.headers["location"] == again.headers["location"]
    [(key, _)] = console.publisher.on(topics.RISK_LISTS)
    assert key.startswith("RL-") and f"entry={key}" in first.headers["location"]
    assert [a["subject"] for _, a in console.publisher.on(topics.CONSOLE_ACTIONS) if a["action"] == "risk-list-added"] == [key]
    # The same content from a new page (a new key) is another entry.
    other = {**form, "form_key": _form_key(console, "/analyst/risk-lists")}
    console.client.post("/analyst/risk-lists", data=other)
    assert len({k for k, _ in console.publisher.on(topics.RISK_LISTS)}) == 2


def test_an_entry_whose_audit_record_fails_stands_and_the_page_says_so(console: Console) -> None:
    from console import publish

    console.login("analyst")
    form = {**_entry_form(console), "form_key": _form_key(console, "/analyst/risk-lists")}
    console.publisher.failing[topics.CONSOLE_ACTIONS] = publish.AUDIT_ATTEMPTS
    response = console.client.post("/analyst/risk-lists", data=form, follow_redirects=False)
    assert response.status_code == 303 and response.headers["location"].endswith("audit=missing")
    assert 'id="audit-missing"' in console.client.get(response.headers["location"]).text
    again = console.client.post("/analyst/risk-lists", data=form, follow_redirects=False)
    assert again.headers["location"] == response.headers["location"]
    assert len(console.publisher.on(topics.RISK_LISTS)) == 1


def test_a_credit_form_is_published_once_with_an_id_from_its_key(console: Console) -> None:
    console.login("analyst")
    form = {"enterprise_id": "ENT-7", "credit_action": "place-focus-list", "source_agency": "customs",
            "reason": "repeated undervaluation", "csrf_token": console.csrf(path="/analyst/credit"),
            "form_key": _form_key(console, "/analyst/credit")}
    console.publisher.failing[topics.CREDIT_EVENTS] = 1
    assert console.client.post("/analyst/credit", data=form).status_code == 503
    assert not [a for _, a in console.publisher.on(topics.CONSOLE_ACTIONS) if a["action"] == "credit-action"]
    for _ in range(2):
        assert console.client.post("/analyst/credit", data=form, follow_redirects=False).status_code == 303
    [(_, event)] = console.publisher.on(topics.CREDIT_EVENTS)
    assert event["event_id"].startswith("CON-")
    assert len([a for _, a in console.publisher.on(topics.CONSOLE_ACTIONS) if a["action"] == "credit-action"]) == 1


def test_lifting_from_the_console_never_demotes_an_aeo_and_the_page_explains_other_agencies(console: Console) -> None:
    """The console's credit events folded as the worker folds them: lifting an AEO that was never
    focus-listed leaves it AEO; a placement by another agency is said to have no effect under customs' class."""
    from policy.credit import UNKNOWN_ENTERPRISE, apply_credit_event
    from schemas import CreditClass, CreditEvent
    from tests.unit.factories import credit_event

    console.login("analyst")
    aeo = apply_credit_event(UNKNOWN_ENTERPRISE, credit_event(event_id="C0", enterprise_id="ENT-9", credit_class="aeo"))
    base = {"enterprise_id": "ENT-9", "reason": "review", "csrf_token": console.csrf(path="/analyst/credit")}
    console.client.post("/analyst/credit", data={**base, "credit_action": "lift-focus-list", "source_agency": "customs"})
    placed = console.client.post("/analyst/credit", data={**base, "credit_action": "place-focus-list",
                                                          "source_agency": "anti-smuggling bureau"})
    assert 'id="agency-note"' in placed.text and "has no effect" in placed.text
    state = aeo
    for _, doc in console.publisher.on(topics.CREDIT_EVENTS):
        state = apply_credit_event(state, CreditEvent.model_validate(doc, strict=False))
    assert state.credit_class is CreditClass.AEO
    assert state.agencies["anti-smuggling bureau"].credit_class is CreditClass.FOCUS_LIST
