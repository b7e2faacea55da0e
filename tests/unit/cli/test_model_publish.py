"""``riskctl model-publish``: seeding a shared registry with the starter model, once."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from cli import models as commands
from common.settings import Settings
from riskmodels.serving import ACTIVE, ModelRegistry


def _run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="riskctl")
    commands.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.handler(args, Settings())


def test_the_starter_seeds_an_empty_registry_that_workers_open(tmp_path: Path) -> None:
    registry = tmp_path / "models"
    assert _run(["model-publish", "--starter", "--registry", str(registry), "--if-empty"]) == 0
    active = json.loads((registry / ACTIVE).read_bytes())["active"]
    assert set(active) == {"general"}
    opened = ModelRegistry.open(registry).active_versions()
    assert opened and all(v.startswith(active["general"] + "/") for v in opened.values())


def test_if_empty_leaves_a_published_registry_alone(tmp_path: Path) -> None:
    registry = tmp_path / "models"
    _run(["model-publish", "--starter", "--registry", str(registry)])
    doc = json.loads((registry / ACTIVE).read_bytes())
    doc["active"]["zero-tariff"] = doc["active"]["general"]  # what an analyst published since
    (registry / ACTIVE).write_text(json.dumps(doc))
    assert _run(["model-publish", "--starter", "--registry", str(registry), "--if-empty"]) == 0
    assert json.loads((registry / ACTIVE).read_bytes()) == doc


def test_an_artifact_or_the_starter_is_required(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        _run(["model-publish", "--registry", "x"])
    assert "--artifact" in capsys.readouterr().err
