"""``riskctl train --routing``: the routing plan is validated (and its ports checked against the
policy) before any training data is read."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from cli import models as commands
from common.settings import Settings
from tests.unit.riskmodels.plans import small_plan


def _run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="riskctl")
    commands.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.handler(args, Settings())


@pytest.mark.parametrize(("plan", "message"), [
    ({**small_plan(), "port_groups": {**small_plan()["port_groups"], "ghost": ["NOWHERE-SEA"]}}, "not in the policy: NOWHERE-SEA"),
    ({**small_plan(), "format": 9}, "format 9 not supported"),
    ("{not json", "malformed JSON"),
])
def test_a_bad_plan_is_refused_in_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str], plan: object, message: str) -> None:
    path = tmp_path / "plan.json"
    path.write_text(plan if isinstance(plan, str) else json.dumps(plan))
    rc = _run(["train", "--routing", str(path), "--train", str(tmp_path / "absent.parquet"), "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert rc == 2 and message in err and not (tmp_path / "out").exists()
