"""The live feed's queue rules: what opens an item, what finishes it, and its bounds."""

from __future__ import annotations

from common.settings import Settings
from console.live import Feed
from schemas import InspectionResult
from tests.unit.console.conftest import instruction


def _open(feed: Feed, port: str = "HAK-SEA") -> list[str]:
    items, _, _ = feed.snapshot([port], 1000)
    return [f"{i.declaration_id}:{i.instruction.action.value}" for i in items]


def _result(did: str, iid: str, port: str = "HAK-SEA") -> InspectionResult:
    return InspectionResult.model_validate_json(
        f'{{"instruction_id": "{iid}", "declaration_id": "{did}", "revision": 1, "port": "{port}", "station_id": "ST", '
        f'"found": true, "category": "x", "inspected_at": "2026-12-01T10:00:00+00:00"}}')


def test_a_machine_check_waits_until_its_final_instruction(tmp_path) -> None:
    feed = Feed(Settings(data_dir=tmp_path))
    feed.apply_instruction(instruction("D1", action="machine-check", stage="declaration", final=False))
    feed.apply_instruction(instruction("D2", action="machine-check", stage="declaration", final=False))
    assert _open(feed) == ["D1:machine-check", "D2:machine-check"]
    feed.apply_instruction(instruction("D1", action="release", stage="scan"))  # clean scan
    feed.apply_instruction(instruction("D2", action="inspect", stage="scan"))  # suspicious scan
    assert _open(feed) == ["D2:inspect"]
    feed.apply_result(_result("D2", "D2:1:scan"))
    assert _open(feed) == []


def test_redeliveries_and_late_records_do_not_reopen_work(tmp_path) -> None:
    feed = Feed(Settings(data_dir=tmp_path))
    check = instruction("D1", action="machine-check", stage="declaration", final=False)
    feed.apply_instruction(check)
    feed.apply_instruction(instruction("D1", action="release", stage="scan"))
    feed.apply_instruction(check)  # redelivered after the final one
    assert _open(feed) == []
    feed.apply_result(_result("D3", "D3:1:timeout"))  # the result is read before its instruction
    feed.apply_instruction(instruction("D3", stage="timeout"))
    assert _open(feed) == []
    feed.apply_instruction(instruction("D4", revision=2, stage="declaration"))
    feed.apply_instruction(instruction("D4", revision=1, stage="declaration"))  # an older revision, late
    [item] = feed.snapshot(["HAK-SEA"], 10)[0]
    assert item.instruction.revision == 2


def test_a_newer_revision_released_at_declaration_closes_the_older_ones_work(tmp_path) -> None:
    feed = Feed(Settings(data_dir=tmp_path))
    feed.apply_instruction(instruction("D1", action="machine-check", stage="declaration", final=False))
    feed.apply_instruction(instruction("D1", revision=2, action="release", stage="declaration"))
    assert _open(feed) == []


def test_each_port_holds_a_bounded_queue_and_counts_the_rest(tmp_path) -> None:
    feed = Feed(Settings(data_dir=tmp_path, console_queue_max_per_port=10))
    for n in range(25):
        feed.apply_instruction(instruction(f"D{n:02d}"))
    feed.apply_instruction(instruction("Y1", port="YPU-SEA"))
    items, total, not_held = feed.snapshot(["HAK-SEA"], 4)
    assert [i.declaration_id for i in items] == ["D00", "D01", "D02", "D03"] and total == 10 and not_held == 15
    assert feed.snapshot(["YPU-SEA"], 4)[1:] == (1, 0)
    before = feed.versions(["HAK-SEA", "YPU-SEA"])
    feed.apply_result(_result("D00", "D00:1:scan"))
    after = feed.versions(["HAK-SEA", "YPU-SEA"])
    assert after[0] > before[0] and after[1] == before[1]


def test_instructions_of_ports_outside_the_register_are_ignored(tmp_path) -> None:
    feed = Feed(Settings(data_dir=tmp_path))
    feed.apply_instruction(instruction("D1", port="ATLANTIS"))
    assert "ATLANTIS" not in feed.ports and feed.snapshot(["ATLANTIS"], 10)[1] == 0


def test_releases_of_declarations_not_held_skip_validation_and_others_do_not(tmp_path) -> None:
    feed = Feed(Settings(data_dir=tmp_path))
    release = instruction("D1", action="release", stage="declaration")
    assert feed._irrelevant(release.model_dump_json().encode())
    feed.apply_instruction(instruction("D1", action="machine-check", stage="declaration", final=False, revision=1))
    newer = instruction("D1", action="release", stage="declaration", revision=2).model_dump_json().encode()
    assert not feed._irrelevant(newer)  # it closes the held machine-check
    feed._apply(feed.settings.topic("instructions"), b"D1", newer, feed.settings.topic("instructions"), "-")
    assert _open(feed) == []
    for other in (instruction("D2"), instruction("D3", action="machine-check", stage="declaration", final=False)):
        assert not feed._irrelevant(other.model_dump_json().encode())


def test_known_results_are_bounded(tmp_path) -> None:
    feed = Feed(Settings(data_dir=tmp_path, console_known_results_max=1000))
    for n in range(1500):
        feed.apply_result(_result(f"D{n}", f"D{n}:1:scan"))
    assert len(feed.results) == 1000 and feed.has_result("D1499:1:scan") and not feed.has_result("D0:1:scan")
