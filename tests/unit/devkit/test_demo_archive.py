"""The demo's archive checks: how many published declarations an archive holds, and the wait for it to
hold all of them at the end of a run (an archive written by the real sink from fake topics)."""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import pytest

from clients import topics
from common.settings import Settings
from devkit import demo
from tests.unit.archive import fakes

TODAY = fakes.NOW.date()


@pytest.fixture(scope="module")
def archive_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """D1 (two revisions, the second in a gateway batch with D2), D3 on its own, centralised C1 with two items of
    which the worker split off only the first (C1-0001: say the policy refused the rest), and a record that does
    not parse."""
    directory = tmp_path_factory.mktemp("archive")
    settings = fakes.archive_settings(directory)
    broker = fakes.FakeBroker(settings)
    broker.add(topics.DECLARATIONS, "D1", fakes.declaration("D1"))
    broker.add(topics.DECLARATION_BATCHES, "B1", fakes.batch("B1", [fakes.declaration("D1", revision=2), fakes.declaration("D2")]))
    broker.add(topics.DECLARATIONS, "D3", fakes.declaration("D3", port="HAK-AIR"))
    broker.add(topics.CENTRALISED_DECLARATIONS, "C1", fakes.centralised("C1", items=2))
    broker.add(topics.DECLARATIONS, "C1-0001", fakes.declaration("C1-0001", centralised_id="C1"))
    broker.add(topics.DECLARATIONS, "X", b"{")
    fakes.archive_all(settings, broker, records=6)
    return directory


def test_counts_each_published_declaration_once_wherever_it_is_archived(archive_dir: Path) -> None:
    published = ["D1", "D2", "D3", "C1-0001", "C1-0002"]
    assert demo.archived_declarations(archive_dir, published) == 5  # C1-0002 only as a centralised item; D1's revisions once
    assert demo.archived_declarations(archive_dir, ["D1", "D9"]) == 1  # only the ones asked about
    assert demo.archived_declarations(archive_dir, []) == 0


def test_an_archive_not_written_yet_holds_nothing(tmp_path: Path) -> None:
    assert demo.archived_declarations(tmp_path / "none", ["D1"]) == 0


class FakeSink:
    def __init__(self, archive_dir: Path, alive: bool = True, code: int = 0) -> None:
        self.archive_dir = archive_dir
        self.log_path = archive_dir / "archive.log"
        self._alive = alive
        self.code = code
        self.stopped = False
        self.proc = argparse.Namespace(returncode=None if alive else 1)

    def alive(self) -> bool:
        return self._alive

    def stop(self) -> int:
        self.stopped = True
        return self.code

    def log_tail(self) -> str:
        return "the sink's last words"


def _tally(ids: list[str], inspected: str | None = None) -> demo.Tally:
    tally = demo.Tally()
    tally.declaration_ids.extend(ids)
    tally.published["declaration"] = len(ids)
    tally.inspected = inspected
    return tally


def _caught_up(sink: FakeSink, tally: demo.Tally, timeout_s: float = 5.0) -> tuple[int, bool]:
    return demo._archive_caught_up(sink, tally, timeout_s, TODAY, interval_s=0.05)  # type: ignore[arg-type]  # a duck-typed sink


def test_caught_up_stops_the_sink_and_says_how_to_query(archive_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    sink = FakeSink(archive_dir)
    assert _caught_up(sink, _tally(["D1", "D2", "D3", "C1-0001", "C1-0002"], inspected="D3")) == (5, True)
    assert sink.stopped
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1
    assert str(archive_dir) in lines[0] and "holds all 5 declarations" in lines[0]
    assert f"riskctl explain D3 --archive-dir {archive_dir} --archive-only" in lines[0]
    assert f"riskctl report --from {TODAY} --to " in lines[0] and lines[0].endswith(f"--archive-dir {archive_dir}")


def test_not_caught_up_by_the_deadline_fails(archive_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    sink = FakeSink(archive_dir)
    started = time.monotonic()
    assert _caught_up(sink, _tally(["D1", "D2", "D-never"]), timeout_s=0.5) == (2, False)
    assert 0.5 <= time.monotonic() - started < 5.0
    err = capsys.readouterr().err
    assert "error: the archive holds only 2 of 3 published declarations after" in err
    assert str(archive_dir) in err


def test_a_dead_sink_fails_at_once(archive_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    sink = FakeSink(archive_dir, alive=False)
    assert _caught_up(sink, _tally(["D-never"]), timeout_s=60.0) == (0, False)
    assert "the sink's last words" in capsys.readouterr().err


def test_a_sink_that_does_not_stop_cleanly_fails(archive_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    sink = FakeSink(archive_dir, code=-9)
    assert _caught_up(sink, _tally(["D1"])) == (1, False)
    assert "exited with code -9 when stopped" in capsys.readouterr().err


def test_demo_arguments() -> None:
    p = argparse.ArgumentParser()
    demo.add_demo_arguments(p)
    args = p.parse_args([])
    assert args.no_archive is False and args.archive_timeout == 60.0
    args = p.parse_args(["--no-archive", "--archive-timeout", "5"])
    assert args.no_archive is True and args.archive_timeout == 5.0


def test_archive_settings_are_per_run(tmp_path: Path) -> None:
    s = demo._archive_settings(Settings(archive_metrics_port=9465, archive_flush_interval_s=5.0), tmp_path / "archive")
    assert s.archive_dir == tmp_path / "archive" and s.archive_metrics_port == 9465 and s.archive_flush_interval_s == 1.0
    s = demo._archive_settings(Settings(archive_metrics_port=0, archive_flush_interval_s=0.2), tmp_path / "archive")
    assert s.archive_metrics_port not in (0, 9465) and s.archive_flush_interval_s == 0.2
    s = demo._archive_settings(Settings(archive_location="s3://customs-archive/prod"), tmp_path / "archive")
    assert s.archive_location is None and s.archive_dir == tmp_path / "archive"


def test_summary_prints_the_archived_line_only_with_an_archive(capsys: pytest.CaptureFixture[str]) -> None:
    summary: dict[str, Any] = _tally(["D1", "D2"]).summary()
    demo._print_summary({**summary, "archived": 2})
    assert "archived      2 of the 2 declarations" in capsys.readouterr().out
    demo._print_summary({**summary, "archived": None})
    assert "archived" not in capsys.readouterr().out
