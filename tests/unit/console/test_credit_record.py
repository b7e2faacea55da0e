"""The analyst's view of an enterprise's credit record: the effective state and each agency's entry,
read from the record's position on the enterprise-credit changelog."""

from __future__ import annotations

import re
from datetime import UTC, datetime

from console.creditrecords import CreditPositions, look_up
from policy.credit import UNKNOWN_ENTERPRISE, fold_credit_events
from schemas import CreditEvent
from tests.unit.console.conftest import Console


def folded(enterprise_id: str, *events: tuple[str, str, dict[str, str]]) -> bytes:
    """The record the workers' fold writes for these (event type, agency, fields) events."""
    docs = [{"event_id": f"EV-{n}", "enterprise_id": enterprise_id, "event_type": kind, "source_agency": agency,
             "reason": f"reason {n}", "event_time": datetime(2026, 12, 1, n, tzinfo=UTC).isoformat(), **fields}
            for n, (kind, agency, fields) in enumerate(events)]
    state = fold_credit_events(UNKNOWN_ENTERPRISE, [CreditEvent.model_validate(d, strict=False) for d in docs]).state
    return state.to_bytes()


def test_the_record_is_shown_by_agency(console: Console) -> None:
    console.login("analyst")
    console.credit_record("ENT-7", folded("ENT-7", ("credit-class-changed", "customs", {"credit_class": "aeo"}),
                                          ("credit-class-changed", "market regulation", {"credit_class": "focus-list"}),
                                          ("joint-penalty-imposed", "tax bureau", {}),
                                          ("qualification-registered", "customs", {"qualification": "zero-tariff"})))
    page = console.client.get("/analyst/enterprises/ENT-7")
    assert page.status_code == 200
    text = page.text
    assert re.search(r'id="effective-class">joint-penalty<', text)
    assert re.search(r"Class</dt><dd>aeo ", text) and "zero-tariff active" in text  # customs' class stands; the penalty overrides it
    rows = dict(re.findall(r'data-agency="([^"]+)">(.*?)</tr>', text, re.S))
    assert set(rows) == {"customs", "market regulation", "tax bureau"}
    assert "focus-list" in rows["market regulation"] and "EV-1" in rows["market regulation"] and "reason 1" in rows["market regulation"]
    assert ">yes<" in rows["tax bureau"] and "(authoritative)" in rows["customs"]


def test_the_latest_record_counts_and_a_deleted_one_is_gone(console: Console) -> None:
    console.login("analyst")
    console.credit_record("ENT-8", folded("ENT-8", ("credit-class-changed", "customs", {"credit_class": "focus-list"})))
    console.credit_record("ENT-8", folded("ENT-8", ("credit-class-changed", "customs", {"credit_class": "white-list"})))
    assert 'id="effective-class">white-list<' in console.client.get("/analyst/enterprises/ENT-8").text
    console.credit_record("ENT-8", None)
    page = console.client.get("/analyst/enterprises/ENT-8")
    assert page.status_code == 404 and 'id="no-record"' in page.text and "treats the enterprise as general" in page.text


def test_an_enterprise_beyond_the_bound_is_not_called_general(console: Console) -> None:
    console.login("analyst")
    console.feed.credit_positions.limit = 1
    console.credit_record("ENT-A", folded("ENT-A", ("credit-class-changed", "customs", {"credit_class": "aeo"})))
    console.credit_record("ENT-B", folded("ENT-B", ("credit-class-changed", "customs", {"credit_class": "focus-list"})))
    assert 'id="effective-class">aeo<' in console.client.get("/analyst/enterprises/ENT-A").text
    page = console.client.get("/analyst/enterprises/ENT-B").text
    assert 'id="not-held"' in page and "riskctl credit show ENT-B" in page and "treats the enterprise as general" not in page


def test_the_lookup_form_and_access(console: Console) -> None:
    console.login("officer.hak")
    assert console.client.get("/analyst/enterprises/ENT-7").status_code == 403
    console.client.post("/logout", data={"csrf_token": console.csrf(path="/queue")})
    console.login("analyst")
    response = console.client.get("/analyst/enterprises?enterprise=%20ENT/9%20", follow_redirects=False)
    assert response.status_code == 303 and response.headers["location"] == "/analyst/enterprises/ENT%2F9"
    assert 'id="find-enterprise"' in console.client.get("/analyst/credit").text


def test_an_unreadable_broker_is_a_503_not_a_crash(console: Console) -> None:
    def broken(partition: int, offset: int) -> None:
        raise TimeoutError("not read within 10s")

    console.login("analyst")
    console.credit_record("ENT-9", folded("ENT-9", ("credit-class-changed", "customs", {"credit_class": "general"})))
    console.client.app.state.credit_reader = broken  # type: ignore[attr-defined]
    page = console.client.get("/analyst/enterprises/ENT-9")
    assert page.status_code == 503 and "could not be read now (TimeoutError)" in page.text


def test_a_record_compacted_away_while_read_asks_again() -> None:
    found = look_up("ENT-1", (0, 5), lambda p, o: (b"ENT-2", b"\x02"))  # the offset now holds another enterprise's record
    assert found.moved and found.record is None
    assert look_up("ENT-1", None, lambda p, o: None).record is None
    assert look_up("ENT-1", (0, 5), lambda p, o: None).moved  # nothing at or after it any more


def test_positions_are_bounded() -> None:
    at = CreditPositions(limit=2)
    for n in range(4):
        at.put(f"E-{n}", 0, n, deleted=False)
    assert len(at) == 2 and at.dropped == 2 and at.get("E-3") is None
    at.put("E-0", 0, 9, deleted=False)  # a held enterprise still moves on at the limit
    assert at.get("E-0") == (0, 9)
    at.put("E-0", 0, 10, deleted=True)
    assert at.get("E-0") is None and len(at) == 1
