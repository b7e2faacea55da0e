"""Same seed, same office: byte-identical traffic, credit events and files; another seed differs."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import orjson

from portsim.history import write_history
from portsim.traffic import CHUNK, PortOffice


def _bytes(office: PortOffice, n: int, **kw) -> list[bytes]:
    return [orjson.dumps(d) + orjson.dumps(t._asdict()) for d, t in office.declaration_dicts(n, **kw)]


def test_same_seed_gives_identical_declarations_and_truth() -> None:
    a = _bytes(PortOffice(seed=3, enterprises=2_000), 6_000)
    b = _bytes(PortOffice(seed=3, enterprises=2_000), 6_000)
    assert a == b


def test_different_seed_gives_different_traffic() -> None:
    a = _bytes(PortOffice(seed=3, enterprises=2_000), 500)
    b = _bytes(PortOffice(seed=4, enterprises=2_000), 500)
    assert a != b
    assert sum(x == y for x, y in zip(a, b)) == 0


def test_credit_and_lifecycle_events_are_reproducible() -> None:
    def dump(office: PortOffice) -> tuple[list[dict], list[dict]]:
        return ([e.model_dump(mode="json") for e in office.credit_population()],
                [e.model_dump(mode="json") for e in office.lifecycle_events(2_000)])

    a, b, c = PortOffice(5, 2_000), PortOffice(5, 2_000), PortOffice(6, 2_000)
    assert dump(a) == dump(b)
    assert dump(a) != dump(c)


def test_start_and_rate_change_times_only() -> None:
    office = PortOffice(seed=3, enterprises=2_000)
    base = list(office.declaration_dicts(300))
    moved = list(office.declaration_dicts(300, start=datetime(2026, 3, 1, tzinfo=UTC), rate_per_s=50.0))
    for (d1, t1), (d2, t2) in zip(base, moved):
        assert t1 == t2
        assert {k: v for k, v in d1.items() if k != "event_time"} == {k: v for k, v in d2.items() if k != "event_time"}
    assert moved[0][0]["event_time"].startswith("2026-03-01T00:00")
    # 300 arrivals at 50/s span about 6 seconds
    t0 = datetime.fromisoformat(moved[0][0]["event_time"])
    t1 = datetime.fromisoformat(moved[-1][0]["event_time"])
    assert 3 < (t1 - t0).total_seconds() < 10


def test_first_index_continues_the_same_sequence() -> None:
    office = PortOffice(seed=3, enterprises=2_000)
    whole = list(office.declaration_dicts(CHUNK + 50))
    tail = list(office.declaration_dicts(100, first_index=CHUNK - 50))
    for (d1, t1), (d2, t2) in zip(whole[CHUNK - 50:], tail):
        assert t1 == t2
        assert {k: v for k, v in d1.items() if k != "event_time"} == {k: v for k, v in d2.items() if k != "event_time"}


def test_history_file_is_byte_identical(tmp_path: Path) -> None:
    a, b = tmp_path / "a.parquet", tmp_path / "b.parquet"
    write_history(PortOffice(seed=9, enterprises=2_000), a, 5_000)
    write_history(PortOffice(seed=9, enterprises=2_000), b, 5_000)
    assert a.read_bytes() == b.read_bytes()
