"""The station's dedup journal survives restarts, torn writes and compaction."""

from __future__ import annotations

from pathlib import Path

from portsim.station import Journal


def test_ids_survive_a_reopen(tmp_path: Path) -> None:
    j = Journal(tmp_path / "s.journal")
    j.record([{"i": "D1:1:declaration", "p": 0, "o": 5}, {"i": "D2:1:scan", "p": 1, "o": 9}])
    j.close()
    j = Journal(tmp_path / "s.journal")
    assert "D1:1:declaration" in j and "D2:1:scan" in j and "D3:1:scan" not in j
    assert len(j) == 2
    j.close()


def test_a_torn_last_line_is_dropped(tmp_path: Path) -> None:
    path = tmp_path / "s.journal"
    j = Journal(path)
    j.record([{"i": "A"}])
    j.close()
    with open(path, "ab") as fh:
        fh.write(b'{"i":"B"')  # crash in the middle of a write
    j = Journal(path)
    assert "A" in j and "B" not in j
    j.record([{"i": "C"}])
    j.close()
    j = Journal(path)
    assert "C" in j and len(j) == 2
    j.close()


def test_compaction_keeps_the_newest(tmp_path: Path) -> None:
    path = tmp_path / "s.journal"
    j = Journal(path, retain=10)
    for n in range(25):
        j.record([{"i": f"I{n}"}])
    assert "I24" in j and "I15" in j and "I0" not in j
    j.close()
    assert len(path.read_bytes().splitlines()) <= 20
    j = Journal(path, retain=10)
    assert "I24" in j
    j.close()
