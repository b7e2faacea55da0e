"""`riskctl explain` shows an inspection result's note and who recorded it."""

from __future__ import annotations

from audit.explain import INSPECTION_FIELDS, format_history


def _result(**over: object) -> dict[str, object]:
    return {"instruction_id": "D1:1:scan", "revision": 1, "port": "HAK-SEA", "station_id": "ST1", "found": True,
            "category": "narcotics", "duty_recovered": 10.0, "inspected_at": "2026-12-05T08:00:00Z", **over}


def test_the_note_and_the_recorder_are_printed() -> None:
    text = format_history({"inspection_results": [_result(note="false floor", recorded_by="officer.hak")]})
    assert "recorded by officer.hak" in text and "note: false floor" in text
    assert {"note", "recorded_by"} <= set(INSPECTION_FIELDS)


def test_a_station_result_without_them_prints_as_before() -> None:
    text = format_history({"inspection_results": [_result()]})
    assert "recorded by" not in text and "note:" not in text
