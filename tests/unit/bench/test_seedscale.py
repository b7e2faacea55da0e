"""The seed-scale runner: sections run in order, a failed one is recorded, sections not run keep their figures."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import orjson
import pytest

import bench.seedscale as seedscale


class FakeSection:
    def __init__(self, figures: dict[str, Any] | None) -> None:
        self.figures = figures
        self.runs = 0

    def add_arguments(self, group: argparse._ArgumentGroup) -> None:
        group.add_argument(f"--fake-{id(self)}", type=int, default=1)

    def run(self, ctx: seedscale.Context) -> dict[str, Any]:
        assert ctx.workdir.is_dir()
        self.runs += 1
        if self.figures is None:
            raise RuntimeError("broker went away")
        return dict(self.figures)


@pytest.fixture
def sections(monkeypatch: pytest.MonkeyPatch) -> dict[str, FakeSection]:
    fakes = {"alpha": FakeSection({"seconds": 1.5}), "beta": FakeSection(None), "gamma": FakeSection({"count": 93})}
    monkeypatch.setattr(seedscale, "SECTIONS", {name: name for name in fakes})
    monkeypatch.setattr(seedscale, "_module", lambda name: fakes[name])
    return fakes


def test_every_section_runs_and_a_failure_is_recorded(sections: dict[str, FakeSection], tmp_path: Path) -> None:
    out = tmp_path / "seed-scale.json"
    assert seedscale.main(["--out", str(out)]) == 1
    results = orjson.loads(out.read_bytes())
    assert results["alpha"]["seconds"] == 1.5 and results["gamma"]["count"] == 93
    assert results["beta"] == {"error": "broker went away"}
    assert [s.runs for s in sections.values()] == [1, 1, 1]


def test_only_keeps_the_other_sections_figures(sections: dict[str, FakeSection], tmp_path: Path) -> None:
    out = tmp_path / "seed-scale.json"
    out.write_bytes(orjson.dumps({"alpha": {"seconds": 9.0}, "gamma": {"count": 1}, "config": {}}))
    assert seedscale.main(["--only", "gamma", "--out", str(out)]) == 0
    results = orjson.loads(out.read_bytes())
    assert results["alpha"] == {"seconds": 9.0}
    assert results["gamma"]["count"] == 93
    assert "beta" not in results and sections["alpha"].runs == 0


def test_an_unknown_section_is_refused(sections: dict[str, FakeSection], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        seedscale.main(["--only", "delta"])
    assert "unknown section(s) delta" in capsys.readouterr().err
