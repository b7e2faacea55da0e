"""``riskctl`` subcommands of the model lifecycle: train, evaluate, export-labels, model-publish.

Problems the user can fix (missing file, bad data, refused artifact) print one line and exit 2.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

from cli.errors import guarded
from common import cliargs
from riskmodels.errors import DataError, RiskModelError

# The handlers import polars and lightgbm (riskmodels.*) when they run: `riskctl --help` stays fast.



def _fx_table(path: Path | None) -> Any:
    from riskmodels.features import FxTable

    if path is None:
        return None
    try:
        return FxTable.from_json(json.loads(path.read_bytes()))
    except FileNotFoundError:
        raise DataError(f"{path}: no such file") from None
    except ValueError as exc:  # bad JSON or bad table
        raise DataError(f"{path}: not an exchange-rate table: {str(exc).splitlines()[0]}") from None


def _train_routed(args: argparse.Namespace, settings: Any) -> int:
    from policy.config import load_policy
    from riskmodels.data import read_labelled
    from riskmodels.routed import ROUTED_CONFIG, train_routed
    from riskmodels.routing import parse_routing

    try:
        routing = parse_routing(json.loads(args.routing.read_bytes()), where=str(args.routing))
    except FileNotFoundError:
        raise DataError(f"{args.routing}: no such file") from None
    except ValueError as exc:
        raise DataError(f"{args.routing}: malformed JSON ({exc})") from None
    ports = set(load_policy(settings.policy_file).ports)
    unknown = sorted({p for group in routing.port_groups.values() for p in group} - ports)
    if unknown:  # a port the policy refuses could never be routed: a typo in the plan
        raise DataError(f"{args.routing}: port groups name ports that are not in the policy: {', '.join(unknown[:10])}")
    cfg = replace(ROUTED_CONFIG, seed=args.seed, **({"rounds": args.rounds} if args.rounds else {}))
    valid = read_labelled(args.valid, args.format) if args.valid else None
    result = train_routed(read_labelled(args.train, args.format), routing, args.out, cfg, fx=_fx_table(args.fx),
                          valid_df=valid, source={"train": args.train.name, "routing": args.routing.name})
    print(result.version)
    return 0


def _train(args: argparse.Namespace, settings: Any) -> int:
    from riskmodels.train import TrainConfig, train_files

    if args.routing is not None:
        return _train_routed(args, settings)

    cfg = TrainConfig(seed=args.seed, **({"rounds": args.rounds} if args.rounds else {}))
    result = train_files(args.train, args.valid, args.out, args.format, cfg, fx=_fx_table(args.fx))
    valid = result.metrics.get("valid")
    if valid:
        p = valid["precision_at"]
        print(f"riskctl train: valid rows {valid['rows']} AUC {valid['auc']:.4f} "
              f"P@1% {p['1']:.3f} P@2% {p['2']:.3f} P@5% {p['5']:.3f} P@10% {p['10']:.3f}", file=sys.stderr)
    print(result.version)
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    from riskmodels.evaluate import evaluate, format_table

    result = evaluate(args.model, args.data, args.format)
    print(json.dumps(result) if args.json else format_table(result))
    return 0


def _export_labels(args: argparse.Namespace, settings: Any) -> int:
    from cli.archive import export_labels_from_archive
    from riskmodels.labels import export_labels

    files = args.input is not None or args.declarations is not None
    if files and (args.input is None or args.declarations is None or args.day_from or args.day_to):
        args.parser.error("files need both --input and --declarations, and no --from/--to")
    if not files:
        if args.day_from is None or args.day_to is None:
            args.parser.error("the archive needs --from and --to (or give --input and --declarations)")
        return export_labels_from_archive(args, settings)
    counts = export_labels(args.input, args.declarations, args.out)
    print(f"riskctl export-labels: wrote {counts['labelled_rows']} labelled declarations "
          f"({counts['frauds']} frauds) to {args.out}; {counts['without_declaration']} inspected "
          "declarations had no declaration record", file=sys.stderr)
    return 0


def _publish(args: argparse.Namespace) -> int:
    from riskmodels.serving import ACTIVE, STARTER_DIR, publish

    if args.if_empty and (args.registry / ACTIVE).exists():
        print(f"riskctl model-publish: {args.registry} already has active models: nothing published", file=sys.stderr)
        return 0
    version = publish(args.registry, STARTER_DIR if args.starter else args.artifact, args.scenario or ["general"], shadow=args.shadow)
    print(version)
    return 0


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    fmt_help = ("input format: 'project' (Declaration fields + fraud/critical_fraud/duty_recoverable), "
                "'kcs' (KCS customs dataset CSV) or 'auto' (by header; default)")

    p = subparsers.add_parser(
        "train", help="train risk models from labelled declarations into an artifact directory",
        description="Train LightGBM risk models (a general model, plus one per supervision scenario with "
                    "enough data) from labelled historical declarations (parquet or CSV) and write a "
                    "verified artifact directory. Progress goes to stderr; the version id to stdout.",
    )
    p.add_argument("--train", type=Path, required=True, metavar="FILE", help="labelled training declarations")
    p.add_argument("--valid", type=Path, metavar="FILE",
                   help="labelled later-period declarations for early stopping, thresholds and metrics")
    p.add_argument("--out", type=Path, required=True, metavar="DIR", help="artifact directory to write (replaced if it is an artifact)")
    p.add_argument("--format", choices=("auto", "project", "kcs"), default="auto", help=fmt_help)
    p.add_argument("--seed", type=cliargs.seed, default=7, help="random seed; same data + seed = same model (default 7)")
    p.add_argument("--rounds", type=cliargs.positive_int, metavar="N", help="maximum boosting rounds per model (default 300)")
    p.add_argument("--fx", type=Path, metavar="FILE",
                   help='exchange rates, JSON {"base": "USD", "per_base": {"CNY": 7.1, ...}} (units of each currency '
                        "per base unit); currencies it lacks get rates learned from the training data "
                        "(default: all learned, base = the most frequent currency)")
    p.add_argument("--routing", type=Path, metavar="FILE",
                   help="train a routed artifact: one small model per (scenario, port group, risk type) route of "
                        "this routing table (riskmodels/plans/office.json: the simulated office's 93 models); "
                        "needs the simulator's fraud_pattern labels; port groups are checked against the policy")
    p.set_defaults(handler=guarded("train", _train, lambda: (RiskModelError,)))

    p = subparsers.add_parser(
        "evaluate", help="Precision/Recall/Revenue@n%% and AUC of a model on labelled data",
        description="Score labelled declarations (ideally from a later period than the training data) and "
                    "print Precision@n%%, Recall@n%% and Revenue@n%% for n = 1, 2, 5, 10 (the n%% highest "
                    "scores are selected), ROC AUC and the row count.",
    )
    p.add_argument("--model", type=Path, required=True, metavar="DIR", help="artifact directory or model registry directory")
    p.add_argument("--data", type=Path, required=True, metavar="FILE", help="labelled declarations (parquet or CSV)")
    p.add_argument("--format", choices=("auto", "project", "kcs"), default="auto", help=fmt_help)
    p.add_argument("--json", action="store_true", help="print exactly one JSON object instead of a table")
    p.set_defaults(handler=guarded("evaluate", lambda args, _settings: _evaluate(args), lambda: (RiskModelError,)))

    p = subparsers.add_parser(
        "export-labels", help="a labelled training set from the archive (or from exported files)",
        description="Join inspected declarations with their inspection results into a labelled training set in the "
                    "project format (latest revision of each inspected declaration, fraud = any finding, "
                    "duty_recoverable = the largest amount; only inspected declarations are written), the input "
                    "`riskctl train` reads. By default from the decision archive's UTC days FROM..TO (no broker); "
                    "with --input and --declarations from InspectionResult JSON lines and Declaration JSON lines or "
                    "parquet. OUT ending in .parquet is Parquet, anything else CSV. Exit 1 if the archive has nothing to label.",
    )
    p.add_argument("--from", dest="day_from", type=cliargs.day, metavar="DAY", help="archive: first day, YYYY-MM-DD")
    p.add_argument("--to", dest="day_to", type=cliargs.day, metavar="DAY", help="archive: last day, YYYY-MM-DD (inclusive)")
    p.add_argument("--archive-dir", metavar="DIR", help="archive: a directory or s3://bucket/prefix (default: setting ARCHIVE_LOCATION)")
    p.add_argument("--input", type=Path, metavar="FILE", help="files: inspection results, JSON lines")
    p.add_argument("--declarations", type=Path, metavar="FILE", help="files: declarations, JSON lines or parquet")
    p.add_argument("--out", type=Path, required=True, metavar="FILE", help="output file (.parquet, otherwise CSV)")
    p.set_defaults(handler=guarded("export-labels", _export_labels, lambda: (RiskModelError,)), parser=p)

    p = subparsers.add_parser(
        "model-publish", help="publish an artifact into a model registry (workers hot-swap to it)",
        description="Verify an artifact, copy it into REGISTRY/versions/<version>/ and point the given "
                    "scenarios (default: general) at it in REGISTRY/active.json. Running workers load it on "
                    "their next refresh; a broken artifact is refused here and by the workers.",
    )
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("--artifact", type=Path, metavar="DIR", help="artifact directory (from riskctl train)")
    what.add_argument("--starter", action="store_true", help="the starter model bundled with the package")
    p.add_argument("--registry", type=Path, required=True, metavar="DIR", help="model registry directory (created if absent)")
    p.add_argument("--if-empty", action="store_true",
                   help="publish only into a registry without active models (seeds a shared registry once; "
                        "later runs leave what analysts published alone)")
    p.add_argument("--scenario", action="append", metavar="NAME",
                   help="'general' or a scenario name (general-trade, zero-tariff, ...); repeatable")
    p.add_argument("--shadow", action="store_true", help="publish as the shadow (challenger) model: scored, never acted on")
    p.set_defaults(handler=guarded("model-publish", lambda args, _settings: _publish(args), lambda: (RiskModelError,)))
