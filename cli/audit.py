"""``riskctl audit-selection``: the post-clearance audit selection of a period (audit/selection.py)."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from common import cliargs

ARCHIVE_HELP = "the archive to read (default: setting ARCHIVE_LOCATION, else ARCHIVE_DIR)"


def cmd_audit_selection(args: argparse.Namespace, settings: Any) -> int:
    from audit.selection import format_report, period_days, population, report, select
    from cli.archive import _open_archive
    from policy.config import load_policy

    if args.period:
        try:
            day_from, day_to = period_days(args.period)
        except ValueError as exc:
            print(f"riskctl audit-selection: error: {exc}", file=sys.stderr)
            return 2
        period = args.period
    elif args.day_from and args.day_to:
        if args.day_to < args.day_from:
            print("riskctl audit-selection: error: --to is before --from", file=sys.stderr)
            return 2
        day_from, day_to = args.day_from, args.day_to
        period = f"{day_from.isoformat()}..{day_to.isoformat()}"
    else:
        print("riskctl audit-selection: error: give --period, or --from and --to", file=sys.stderr)
        return 2
    store = _open_archive("audit-selection", args, settings)
    if store is None:
        return 2
    policy = load_policy(args.policy or settings.policy_file)
    seed = args.seed if args.seed is not None else policy.seed
    doc = report(select(population(day_from, day_to, store.location), policy.audit_selection, seed, period), period, seed)
    doc.update({"from": day_from.isoformat(), "to": day_to.isoformat(), "policy_version": policy.version})
    print(json.dumps(doc) if args.json else format_report(doc))
    return 0


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "audit-selection", help="post-clearance audit selection of a period, weighted by credit class and activity",
        description="Select enterprises for post-clearance audit over a period: each enterprise that declared in it is "
                    "drawn once with a probability from the policy's audit_selection weights (credit class at the end of "
                    "the period, from the archive's credit events; its declarations and findings in the period). "
                    "Deterministic given the seed.")
    p.add_argument("--period", metavar="PERIOD", help="2026-Q4, 2026-H1, 2026-M03 or 2026-Y")
    p.add_argument("--from", dest="day_from", type=cliargs.day, metavar="DAY", help="first day, YYYY-MM-DD (instead of --period)")
    p.add_argument("--to", dest="day_to", type=cliargs.day, metavar="DAY", help="last day, YYYY-MM-DD (inclusive)")
    p.add_argument("--seed", type=int, help="the draw's seed (default: the policy's seed)")
    p.add_argument("--policy", metavar="FILE", help="policy file (default: setting POLICY_FILE)")
    p.add_argument("--json", action="store_true", help="print exactly one JSON object")
    p.add_argument("--archive-dir", metavar="DIR", help=ARCHIVE_HELP)
    p.set_defaults(handler=cmd_audit_selection)
