"""``riskctl`` subcommands of the supervision policy: backtest, explain.

Problems the user can fix (missing file, bad policy, bad model, bad data) print one line and exit 2.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from audit.explain import explain, format_explanation, format_history
from cli.errors import guarded, one_line_errors
from policy.config import PolicyError, load_policy
from riskmodels.errors import RiskModelError

# The handlers import polars and lightgbm (decision.backtest, riskmodels.serving) when they run: `riskctl --help` stays fast.



def _policy_errors() -> tuple[type[Exception], ...]:
    from decision.backtest import BacktestError

    return PolicyError, BacktestError, RiskModelError


def _existing(path: Path | None, what: str) -> None:
    from decision.backtest import BacktestError

    if path is not None and not path.exists():
        raise BacktestError(f"{what} {path} does not exist")


def _backtest(args: argparse.Namespace, settings: Any) -> int:
    from decision.backtest import (
        backtest,
        format_report,
        load_credit_events,
        load_risk_lists,
        load_zero_tariff,
        read_history,
        stderr_progress,
    )
    from riskmodels.serving import ModelRegistry

    # The reference events `riskctl simulate --history` wrote beside the history, unless given or refused.
    if not args.no_references:
        from portsim.references import reference_paths
        from portsim.zerotariff import zero_tariff_path

        beside = (*reference_paths(args.data), zero_tariff_path(args.data))
        for attr, path in zip(("credit_events", "risk_lists", "zero_tariff"), beside):
            if getattr(args, attr) is None and path.is_file():
                setattr(args, attr, path)
                if not args.quiet:
                    print(f"riskctl backtest: using {path} (beside the history)", file=sys.stderr)
    # Check every input before the (possibly long) scoring starts.
    for path, what in ((args.data, "history file"), (args.model, "model directory"),
                       (args.credit_events, "credit events file"), (args.risk_lists, "risk lists file"),
                       (args.zero_tariff, "zero-tariff register file"),
                       (args.duty_free, "duty-free purchases file")):
        _existing(path, what)
    policy = load_policy(args.policy)
    other = load_policy(args.compare) if args.compare else None
    registry = ModelRegistry.open(args.model)
    events = load_credit_events(args.credit_events) if args.credit_events else []
    lists = load_risk_lists(args.risk_lists) if args.risk_lists else None
    progress = None if args.quiet else stderr_progress()
    frame = read_history(args.data)
    register = load_zero_tariff(args.zero_tariff) if args.zero_tariff else []
    report = backtest(policy, frame, registry, events, lists, other, progress, register)
    report["data"] = str(args.data)
    duty_free = _duty_free(args, policy)
    if duty_free is not None:
        report["duty_free"] = duty_free
    if args.json:
        print(json.dumps(report, sort_keys=False))
    else:
        print(format_report(report))
        if duty_free is not None:
            from decision.dutyfree_backtest import format_duty_free

            print("\n" + format_duty_free(duty_free))
    return 0


def _duty_free(args: argparse.Namespace, policy: Any) -> dict[str, Any] | None:
    """The duty-free rules over the purchases beside the history (``<stem>.duty-free.jsonl``), if any."""
    from decision.backtest import BacktestError
    from decision.dutyfree_backtest import DutyFreeFileError, duty_free_report, load_duty_free

    path = args.duty_free
    if path is None and not args.no_references:
        from portsim.dutyfree import duty_free_path

        beside = duty_free_path(args.data)
        path = beside if beside.is_file() else None
    if path is None:
        return None
    try:
        purchases, truth = load_duty_free(path)
    except DutyFreeFileError as exc:
        raise BacktestError(str(exc)) from None
    report = duty_free_report(policy.duty_free, purchases, truth)
    report["data"] = str(path)
    return report


def _explain(args: argparse.Namespace, settings: Any) -> int:
    try:
        doc, notes = explain(settings, args.declaration_id, args.timeout, archive_dir=args.archive_dir,
                             use_archive=not args.topics_only, use_topics=not args.archive_only)
    except Exception as exc:  # noqa: BLE001 - broker down, topic missing, timeout, unreadable archive: one line, exit 2
        where = getattr(settings, "kafka_bootstrap_servers", "the brokers")
        print(f"riskctl explain: error: cannot read the instructions from {where}: {' '.join(str(exc).split())}", file=sys.stderr)
        return 2
    for note in notes:
        print(f"riskctl explain: note: {note}", file=sys.stderr)
    if args.json:
        print(json.dumps(doc))
    else:
        history = format_history(doc)
        print(format_explanation(doc) + (f"\n\n{history}" if history else ""))
    return 0 if doc["instructions"] else 1


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser(
        "backtest", help="run a policy and a model over labelled history (no broker)",
        description="Score labelled history (parquet/CSV in the Declaration schema plus a 'fraud' column, e.g. "
                    "from `riskctl simulate --history`) with a model, decide every declaration with the worker's "
                    "decision code and report, per port, lane and credit class, selection rates, precision and "
                    "frauds caught and missed. A machine-checked fraud counts as caught (the scan is assumed to "
                    "find it). With --compare, a second policy side by side, with differences. Progress on stderr.",
    )
    one_line_errors(p)
    p.add_argument("--policy", type=Path, metavar="FILE", help="policy file (default: the shipped policy/default.yaml)")
    p.add_argument("--model", type=Path, required=True, metavar="DIR", help="model artifact or registry directory")
    p.add_argument("--data", type=Path, required=True, metavar="HISTORY", help="labelled declarations (parquet or CSV)")
    p.add_argument("--credit-events", type=Path, metavar="FILE",
                   help="CreditEvent JSON lines, folded in event-time order (default: HISTORY's <stem>.credit.jsonl if "
                        "present, else every enterprise general)")
    p.add_argument("--risk-lists", type=Path, metavar="FILE",
                   help="RiskListEntry JSON lines (default: HISTORY's <stem>.risk-lists.jsonl if present)")
    p.add_argument("--zero-tariff", type=Path, metavar="FILE",
                   help="ZeroTariffImport JSON lines, folded in event-time order (default: HISTORY's "
                        "<stem>.zero-tariff.jsonl if present, else an empty register)")
    p.add_argument("--duty-free", type=Path, metavar="FILE",
                   help="duty-free purchases with planted truth, reported per duty-free rule (caught, missed, false "
                        "alarms) (default: HISTORY's <stem>.duty-free.jsonl if present)")
    p.add_argument("--no-references", action="store_true",
                   help="do not read the reference files beside the history (only --credit-events / --risk-lists / --zero-tariff)")
    p.add_argument("--compare", type=Path, metavar="OTHER_POLICY", help="a second policy file to run side by side")
    p.add_argument("--json", action="store_true", help="print exactly one JSON object instead of tables")
    p.add_argument("--quiet", action="store_true", help="no progress on stderr")
    p.set_defaults(handler=guarded("backtest", _backtest, _policy_errors, one_line=True))

    p = subparsers.add_parser(
        "explain", help="show every instruction for a declaration and why it was given",
        description="Print, for each instruction of the declaration ordered by revision and stage: action, stage, "
                    "selection reason, credit class, score, model and policy versions, risk-list hits and the "
                    "plain-language reasons; then the declaration's revisions, scans and inspection results. The "
                    "decision archive (`riskctl archive`) answers first; the instructions, scans and "
                    "inspection-results topics (the declaration's partition) are read only from where the archive "
                    "stops, so a declaration in the archive is explained with no broker running. Exit 1 if there is "
                    "no instruction.",
    )
    one_line_errors(p)
    p.add_argument("declaration_id", metavar="DECLARATION_ID")
    p.add_argument("--json", action="store_true", help="print exactly one JSON object")
    p.add_argument("--timeout", type=float, default=30.0, metavar="SECONDS",
                   help="broker timeout (default 30; at most 5 when the archive holds the declaration)")
    p.add_argument("--archive-dir", metavar="DIR|URI", help="the decision archive, a directory or s3://bucket/prefix "
                   "(default: setting ARCHIVE_LOCATION, else ARCHIVE_DIR)")
    source = p.add_mutually_exclusive_group()
    source.add_argument("--archive-only", action="store_true", help="answer from the archive alone (no broker)")
    source.add_argument("--topics-only", action="store_true", help="read the topics from the beginning, not the archive")
    p.set_defaults(handler=guarded("explain", _explain, _policy_errors, one_line=True))
