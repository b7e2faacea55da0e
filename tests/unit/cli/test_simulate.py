"""``riskctl simulate`` / ``riskctl station`` argument handling and the history mode."""

from __future__ import annotations

import argparse
from pathlib import Path

import polars as pl
import pytest

from cli import simulate as commands
from common.settings import Settings


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="riskctl")
    commands.register(parser.add_subparsers(dest="command", required=True))
    return parser


def _run(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    return args.handler(args, Settings())


@pytest.mark.parametrize("argv", [
    ["simulate", "--count", "x"],
    ["simulate", "--count", "0"],
    ["simulate", "--rate", "-5", "--count", "3"],
    ["simulate", "--seed", "-1", "--count", "3"],
    ["station"],
    ["station", "--port", "not a port"],
    ["station", "--port", "all", "--idle-exit", "0"],
])
def test_bad_arguments_exit_2_with_one_line(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        _parser().parse_args(argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "error:" in err


@pytest.mark.parametrize("argv", [
    ["simulate", "--history", "--count", "10"],
    ["simulate", "--history", "--out", "x.parquet"],
    ["simulate", "--history", "--out", "x.parquet", "--count", "5", "--duration", "3"],
    ["simulate", "--out", "x.parquet", "--count", "5"],
    ["simulate"],
    ["simulate", "--history", "--out", "/no/such/dir/x.parquet", "--count", "5"],
])
def test_inconsistent_options_exit_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert _run(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("riskctl simulate: error:")


def test_history_mode_writes_the_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "h.parquet"
    rc = _run(["simulate", "--history", "--out", str(out), "--count", "2500", "--seed", "5", "--enterprises", "1000",
               "--start", "2026-01-01T00:00:00Z"])
    assert rc == 0
    df = pl.read_parquet(out)
    assert df.height == 2500
    assert df["declaration_id"][0] == "D5-0000000000"
    assert str(df["event_time"][0]).startswith("2026-01-01")
    assert "wrote 2,500" in capsys.readouterr().err


def test_help_exists(capsys: pytest.CaptureFixture[str]) -> None:
    for sub in ("simulate", "station"):
        with pytest.raises(SystemExit) as exc:
            _parser().parse_args([sub, "--help"])
        assert exc.value.code == 0
        assert "usage:" in capsys.readouterr().out


def test_history_mode_writes_its_reference_events_and_backtest_reads_them(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import json

    from decision.backtest import load_credit_events, load_risk_lists

    out = tmp_path / "h.parquet"
    assert _run(["simulate", "--history", "--out", str(out), "--count", "3000", "--seed", "5", "--enterprises", "1000",
                 "--start", "2026-01-01T00:00:00Z", "--quiet"]) == 0
    credit, lists = tmp_path / "h.credit.jsonl", tmp_path / "h.risk-lists.jsonl"
    events = load_credit_events(credit)
    from portsim.traffic import PortOffice

    register = {e.enterprise_id for e in PortOffice(5, 1000).credit_population()}
    assert register and register <= {e.enterprise_id for e in events}  # the whole register
    assert events[0].event_time.isoformat() < "2026-01-01" < events[-1].event_time.isoformat()  # then changes in the period
    assert len(load_risk_lists(lists)) == 3
    capsys.readouterr()

    from cli.main import main

    def backtest(*extra: str) -> dict:
        assert main(["backtest", "--model", "riskmodels/starter", "--data", str(out), "--json", *extra]) == 0
        return json.loads(capsys.readouterr().out)

    with_refs, without = backtest(), backtest("--no-references")
    # Without the register every processing and zero-tariff declaration is inspected by rule (not qualified).
    assert without["selection_reasons"]["rule"] > 3 * with_refs["selection_reasons"].get("rule", 0)
    assert not any(a.startswith("no credit events") for a in with_refs["assumptions"])
    assert any(a.startswith("no credit events") for a in without["assumptions"])
    assert set(with_refs["by_rule"]) == {"value-added-below-threshold", "value-added-implausible", "zero-tariff-goods-leaving"}
    assert "caught" in with_refs["by_rule"]["value-added-implausible"]  # the simulated history holds the truth
    # Registered goods declared to the mainland: all caught with the register beside the history, none of the
    # decoys (released goods, unregistered goods, goods coming onto the island) raised; without it, all missed.
    planted = int((pl.read_parquet(out)["fraud_pattern"] == "zero-tariff-goods-leaving").sum())
    decoys = int(pl.read_parquet(out)["direction"].is_not_null().sum()) - planted
    assert planted == 3 and decoys == 9 and (tmp_path / "h.zero-tariff.jsonl").is_file()
    assert with_refs["by_rule"]["zero-tariff-goods-leaving"] == {"fired": 3, "caught": 3, "missed": 0, "false_alarms": 0, "recall": 1.0}
    assert without["by_rule"]["zero-tariff-goods-leaving"]["missed"] == 3
