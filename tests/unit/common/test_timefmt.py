"""The UTC "Z" time formatter the records' times are written with."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from common.timefmt import utc_iso


def test_epoch_seconds_and_datetimes_in_utc_with_z() -> None:
    assert utc_iso(0) == "1970-01-01T00:00:00Z"
    assert utc_iso(1.5) == "1970-01-01T00:00:01.500000Z"
    assert utc_iso(datetime(2025, 9, 1, 8, 30, tzinfo=UTC)) == "2025-09-01T08:30:00Z"
    beijing = timezone(timedelta(hours=8))
    assert utc_iso(datetime(2025, 9, 1, 16, 30, tzinfo=beijing)) == "2025-09-01T08:30:00Z"
    assert utc_iso(datetime(2025, 9, 1, 8, 30)) == "2025-09-01T08:30:00Z"  # naive: taken as UTC


def test_timespec_as_isoformat_gives_it() -> None:
    at = datetime(2025, 9, 1, 8, 30, tzinfo=UTC)
    assert utc_iso(at, timespec="microseconds") == "2025-09-01T08:30:00.000000Z"
    assert utc_iso(at.replace(microsecond=7), timespec="microseconds") == "2025-09-01T08:30:00.000007Z"
    assert utc_iso(at.replace(microsecond=7)) == "2025-09-01T08:30:00.000007Z"
    assert utc_iso(at.replace(microsecond=7), timespec="seconds") == "2025-09-01T08:30:00Z"


@pytest.mark.parametrize("timespec", ["auto", "microseconds"])
def test_now_is_now_and_reads_back(timespec: str) -> None:
    before = datetime.now(UTC)
    text = utc_iso(timespec=timespec)
    assert text.endswith("Z") and "+" not in text
    assert before - timedelta(seconds=1) <= datetime.fromisoformat(text) <= datetime.now(UTC)
    if timespec == "microseconds":
        assert len(text) == len("2025-09-01T08:30:00.000000Z")
