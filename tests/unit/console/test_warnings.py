"""The analyst's early warnings page: listing and filtering the archive's warnings, and a verdict
published once per warning as a WarningReview with its console action."""

from __future__ import annotations

import re
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pyarrow as pa
from deltalake import write_deltalake

from archive import tables as t
from archive.convert import Record, rows_of
from clients import topics
from schemas import WarningReview
from tests.unit.console.conftest import Console

NOW = datetime.now(UTC).replace(microsecond=0)


def warning(did: str, rule: str = "value-added-implausible", severity: str = "high", port: str = "HAK-SEA",
            at: datetime = NOW) -> dict[str, Any]:
    return {"schema_version": 1, "warning_id": f"{did}:1:{rule}", "severity": severity, "subject_kind": "enterprise",
            "subject_id": "E1", "source": "rule", "rule": rule, "evidence": ["claimed ratio 2.00", "history 0.40"],
            "event_time": at.isoformat(), "raised_at": at.isoformat(), "port": port, "scenario": "processing-value-added",
            "declaration_id": did, "revision": 1, "policy_version": "p-1"}


def archive_records(archive_dir: Path, topic: str, docs: list[dict[str, Any]]) -> None:
    """The rows the archive sink writes for these records (its own converter), appended to their tables."""
    tables = t.ensure_tables(archive_dir)
    by_table: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for offset, doc in enumerate(docs):
        rec = Record(topic, 0, offset, None, orjson.dumps(doc), NOW)
        for table, row in rows_of(topic, rec, NOW):
            by_table[table].append(row)
    assert t.DEAD_LETTERS not in by_table, by_table.get(t.DEAD_LETTERS)
    for table, rows in by_table.items():
        spec = t.SPECS[table]
        write_deltalake(tables[table], pa.Table.from_pylist(rows, schema=spec.schema), partition_by=list(spec.partition_by),
                        mode="append")


def test_the_page_lists_and_filters_the_archived_warnings(console: Console) -> None:
    archive_records(console.settings.archive_dir, topics.WARNINGS, [
        warning("D-1"), warning("D-2", rule="duty-due", severity="low"), warning("D-3", port="YPU-SEA"),
        warning("D-OLD", at=NOW - timedelta(days=20)), warning("D-1"),  # a redelivery: one row
    ])
    client = console.login("analyst")
    page = client.get("/analyst/warnings")
    assert page.status_code == 200, page.text
    shown = re.findall(r'data-warning="([^"]+)"', page.text)
    assert sorted(shown) == ["D-1:1:value-added-implausible", "D-2:1:duty-due", "D-3:1:value-added-implausible"]
    assert "claimed ratio 2.00; history 0.40" in page.text and 'href="/analyst/warnings"' in page.text

    def ids(query: str) -> list[str]:
        response = client.get(f"/analyst/warnings?{query}")
        assert response.status_code == 200, response.text
        return sorted(re.findall(r'data-warning="([^"]+)"', response.text))

    assert ids("severity=low") == ["D-2:1:duty-due"]
    assert ids("rule=value-added-implausible&port=YPU-SEA") == ["D-3:1:value-added-implausible"]
    day = (NOW - timedelta(days=20)).date().isoformat()
    assert ids(f"from={day}&to={day}") == ["D-OLD:1:value-added-implausible"]
    assert client.get("/analyst/warnings?severity=extreme").status_code == 400
    assert client.get("/analyst/warnings?port=NOWHERE").status_code == 404
    assert client.get("/analyst/warnings?from=2026-01-01&to=2026-12-31").status_code == 400  # over the window's bound


def test_officers_do_not_see_the_warnings(console: Console) -> None:
    client = console.login("officer.hak")
    assert client.get("/analyst/warnings").status_code == 403
    csrf = console.csrf(client, "/queue")
    response = client.post("/analyst/warnings/D-1:1:value-added-implausible/review",
                           data={"verdict": "confirmed", "reason": "x", "csrf_token": csrf})
    assert response.status_code == 403 and not console.publisher.on(topics.WARNING_REVIEWS)


def test_a_confirmation_is_published_once_with_its_console_action(console: Console) -> None:
    archive_records(console.settings.archive_dir, topics.WARNINGS, [warning("D-1"), warning("D-2")])
    client = console.login("analyst")
    csrf = console.csrf(client, "/analyst/warnings")
    wid = "D-1:1:value-added-implausible"
    form = {"verdict": "confirmed", "reason": "ratio far above the enterprise's history", "day": NOW.date().isoformat(),
            "back": "severity=high&rule=x&next=https://evil.example", "csrf_token": csrf}
    response = client.post(f"/analyst/warnings/{wid}/review", data=form, follow_redirects=False)
    assert response.status_code == 303, response.text
    assert response.headers["location"].startswith("/analyst/warnings?severity=high&rule=x&message=confirmed")
    reviews = console.publisher.on(topics.WARNING_REVIEWS)
    assert len(reviews) == 1
    key, doc = reviews[0]
    review = WarningReview.model_validate_json(orjson.dumps(doc))
    assert key == "D-1" and review.warning_id == wid and review.verdict.value == "confirmed" and review.port == "HAK-SEA"
    assert review.rule == "value-added-implausible" and review.declaration_id == "D-1" and review.revision == 1
    actions = console.publisher.on(topics.CONSOLE_ACTIONS)
    assert [a["action"] for _, a in actions if a["subject"] == wid] == ["warning-reviewed"]
    assert "ratio far above" in actions[-1][1]["detail"] and actions[-1][1]["user"] == "analyst"
    # A second verdict (another tab, a retry) publishes nothing.
    again = client.post(f"/analyst/warnings/{wid}/review", data={**form, "verdict": "dismissed"}, follow_redirects=False)
    assert "already-reviewed" in again.headers["location"] and len(console.publisher.on(topics.WARNING_REVIEWS)) == 1
    page = client.get("/analyst/warnings").text
    assert re.search(rf'data-warning="{re.escape(wid)}".*?confirmed', page, re.S)
    # Nor does a verdict the archive already holds (from another console, or before a restart).
    archive_records(console.settings.archive_dir, topics.WARNING_REVIEWS,
                    [{**review.model_dump(mode="json"), "warning_id": "D-2:1:value-added-implausible", "declaration_id": "D-2"}])
    other = client.post("/analyst/warnings/D-2:1:value-added-implausible/review", data=form, follow_redirects=False)
    assert "already-reviewed" in other.headers["location"] and len(console.publisher.on(topics.WARNING_REVIEWS)) == 1


def test_a_review_needs_a_known_warning_a_verdict_a_reason_and_the_csrf_token(console: Console) -> None:
    archive_records(console.settings.archive_dir, topics.WARNINGS, [warning("D-1")])
    client = console.login("analyst")
    csrf = console.csrf(client, "/analyst/warnings")
    wid = "D-1:1:value-added-implausible"
    assert client.post(f"/analyst/warnings/{wid}/review", data={"verdict": "confirmed", "reason": "x"}).status_code == 403
    assert client.post(f"/analyst/warnings/{wid}/review",
                       data={"verdict": "maybe", "reason": "x", "csrf_token": csrf}).status_code == 422
    assert client.post(f"/analyst/warnings/{wid}/review",
                       data={"verdict": "confirmed", "reason": " ", "csrf_token": csrf}).status_code == 422
    assert client.post("/analyst/warnings/D-9:1:nothing/review",
                       data={"verdict": "confirmed", "reason": "x", "csrf_token": csrf}).status_code == 404
    assert client.post(f"/analyst/warnings/{wid}/review",
                       data={"verdict": "confirmed", "reason": "x" * 600, "csrf_token": csrf}).status_code == 422
    assert not console.publisher.on(topics.WARNING_REVIEWS)
    console.publisher.fail = True
    assert client.post(f"/analyst/warnings/{wid}/review",
                       data={"verdict": "confirmed", "reason": "x", "csrf_token": csrf}).status_code == 503
    console.publisher.fail = False  # not recorded as reviewed: the retry publishes
    assert client.post(f"/analyst/warnings/{wid}/review", data={"verdict": "confirmed", "reason": "x", "csrf_token": csrf},
                       follow_redirects=False).status_code == 303
    assert len(console.publisher.on(topics.WARNING_REVIEWS)) == 1


def test_a_review_whose_audit_record_fails_stands_and_is_not_published_again(console: Console) -> None:
    from console import publish

    archive_records(console.settings.archive_dir, topics.WARNINGS, [warning("D-1")])
    client = console.login("analyst")
    csrf = console.csrf(client, "/analyst/warnings")
    wid = "D-1:1:value-added-implausible"
    form = {"verdict": "dismissed", "reason": "a known seasonal pattern", "day": NOW.date().isoformat(), "csrf_token": csrf}
    console.publisher.failing[topics.CONSOLE_ACTIONS] = publish.AUDIT_ATTEMPTS
    response = client.post(f"/analyst/warnings/{wid}/review", data=form, follow_redirects=False)
    assert response.status_code == 303 and "message=dismissed" in response.headers["location"]
    assert response.headers["location"].endswith("audit=missing")
    assert 'id="audit-missing"' in client.get(response.headers["location"]).text
    again = client.post(f"/analyst/warnings/{wid}/review", data=form, follow_redirects=False)
    assert "already-reviewed" in again.headers["location"]
    assert len(console.publisher.on(topics.WARNING_REVIEWS)) == 1
    assert not [a for _, a in console.publisher.on(topics.CONSOLE_ACTIONS) if a["action"] == "warning-reviewed"]
