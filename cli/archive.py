"""``riskctl`` subcommands of the decision archive: archive (the sink), archive-maintain, report; and the
archive side of ``riskctl export-labels`` (``export_labels_from_archive``)."""

from __future__ import annotations

import argparse
import json
import re
import signal
import sys
import tempfile
import threading
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

from common import cliargs
from common.cliargs import tcp_port

if TYPE_CHECKING:
    from archive.location import ArchiveLocation
    from archive.queries import Archive

# The handlers import archive.* (pyarrow, deltalake, polars) when they run: `riskctl --help` stays fast.


def _location(command: str, args: argparse.Namespace, settings: Any) -> ArchiveLocation | None:
    """The archive of the command (``--archive-dir``, else the settings), or None after saying why not."""
    from archive.location import ArchiveLocationError, from_settings

    try:
        return from_settings(settings, args.archive_dir or None)
    except ArchiveLocationError as exc:
        print(f"riskctl {command}: error: {exc}", file=sys.stderr)
        return None


def _open_archive(command: str, args: argparse.Namespace, settings: Any) -> Archive | None:
    """The archive the command reads, or None after saying on stderr that there is none or that it is unreachable."""
    from archive.queries import Archive

    location = _location(command, args, settings)
    if location is None:
        return None
    store = Archive(location)
    try:
        exists = store.exists()
    except OSError as exc:  # an object store that refuses the credentials, a missing bucket, no network
        print(f"riskctl {command}: error: cannot read the archive {location}: {_one_line(exc)}", file=sys.stderr)
        return None
    if not exists:
        print(f"riskctl {command}: error: no archive in {location} (run `riskctl archive`)", file=sys.stderr)
        return None
    return store


def _one_line(exc: BaseException) -> str:
    """delta-rs's multi-line, colour-coded error chain as one plain line (it names paths, never credentials)."""
    return " ".join(re.sub(r"\x1b\[[0-9;]*m|↳", " ", str(exc)).split())[:500]


def cmd_archive(args: argparse.Namespace, settings: Any) -> int:
    from archive import metrics
    from archive.sink import ArchiveSink, TopicRecreated
    from clients.topics import BrokerUnreachable, TopicsError, create_topics

    location = _location("archive", args, settings)
    if location is None:
        return 2
    if args.metrics_port is not None:
        settings = settings.model_copy(update={"archive_metrics_port": args.metrics_port})
    if not args.no_create_topics:
        try:
            create_topics(settings)
        except (BrokerUnreachable, TopicsError) as exc:
            print(f"riskctl archive: error: {exc}", file=sys.stderr)
            return 2
    try:
        metrics.serve(settings.metrics_host, settings.archive_metrics_port)
    except OSError as exc:
        print(f"riskctl archive: error: metrics port {settings.archive_metrics_port}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    # SIGTERM and Ctrl-C end the loop after a last flush, so that no consumed record waits for a replay.
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        ArchiveSink(settings, location).run(stop)
    except TopicRecreated as exc:
        print(f"riskctl archive: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # the tables could not be opened or created: credentials, bucket, network
        print(f"riskctl archive: error: cannot open the archive {location}: {_one_line(exc)}", file=sys.stderr)
        return 2
    return 0


def cmd_report(args: argparse.Namespace, settings: Any) -> int:

    if args.day_to < args.day_from:
        print("riskctl report: error: --to is before --from", file=sys.stderr)
        return 2
    store = _open_archive("report", args, settings)
    if store is None:
        return 2
    doc = store.report(args.day_from, args.day_to, args.port)
    print(json.dumps(doc) if args.json else format_report(doc))
    return 0


def cmd_maintain(args: argparse.Namespace, settings: Any) -> int:
    from archive.maintenance import maintain

    store = _open_archive("archive-maintain", args, settings)
    if store is None:
        return 2
    try:
        done = maintain(store.location, settings.archive_retention_years)
    except OSError as exc:  # the object store went away or refused a write or delete midway
        print(f"riskctl archive-maintain: error: maintaining {store.location}: {_one_line(exc)}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(done))
    else:
        for name, d in done.items():
            print(f"{name:<20} compacted {d['files_compacted']} files into {d['files_written']}, expired {d['expired_rows']} rows, "
                  f"vacuumed {d['files_vacuumed']} files; version {d['version']}")
    return 0


def export_labels_from_archive(args: argparse.Namespace, settings: Any) -> int:
    """``riskctl export-labels`` without input files: the training set from the archive's days FROM..TO."""
    from riskmodels.errors import RiskModelError
    from riskmodels.labels import export_labels

    store = _open_archive("export-labels", args, settings)
    if store is None:
        return 2
    decls, results = store.labelling(args.day_from, args.day_to)
    if decls.is_empty() or results.is_empty():
        print(f"riskctl export-labels: error: no {'declarations' if decls.is_empty() else 'inspection results'} "
              f"in the archive for {args.day_from}..{args.day_to}", file=sys.stderr)
        return 1
    # riskmodels.labels owns the labelling rules (latest revision, one label per inspection id, fraud = any
    # finding): the archive's rows go through the same function as exported topic files.
    with tempfile.TemporaryDirectory(prefix="riskctl-labels-") as work:
        declarations = Path(work) / "declarations.parquet"
        inspections = Path(work) / "inspections.jsonl"
        decls.write_parquet(declarations)
        results.with_columns(pl_iso("inspected_at")).write_ndjson(inspections)
        try:
            counts = export_labels(inspections, declarations, Path(args.out))
        except RiskModelError as exc:
            print(f"riskctl export-labels: error: {' '.join(str(exc).split())}", file=sys.stderr)
            return 2
    print(f"riskctl export-labels: wrote {counts['labelled_rows']} labelled declarations ({counts['frauds']} frauds) "
          f"to {args.out} from {args.day_from}..{args.day_to}")
    return 0


def pl_iso(column: str) -> Any:
    """A UTC time column as ISO 8601 text, the form the records' JSON has."""
    import polars as pl

    return pl.col(column).dt.convert_time_zone("UTC").dt.strftime("%Y-%m-%dT%H:%M:%S%.fZ")


def _rate(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.2f} %"


def format_report(doc: dict[str, Any]) -> str:
    ins = doc["inspection_results"]
    dead = doc["dead_letters"]
    lines = [f"archive report {doc['from']} .. {doc['to']}" + (f", port {doc['port']}" if doc["port"] else ""),
             f"declarations {doc['declarations']}   instructions {_counts(doc['instructions'])}",
             f"inspections {ins['total']}  found {ins['found']}  hit rate {_rate(ins['hit_rate'])}  "
             f"duty recovered {ins['duty_recovered']:.2f}   scan timeouts {doc['scan_timeouts']}",
             f"dead letters {dead['total']}" + (f"  by reason {_counts(dead['by_reason'])}" if dead["total"] else ""),
             "",
             f"{'port':<16}{'decl.':>9}{'machine-check':>15}{'inspect':>10}{'mc rate':>10}{'insp. rate':>12}"
             f"{'timeouts':>10}{'inspections':>13}{'hit rate':>10}{'duty':>14}"]
    for port, p in doc["by_port"].items():
        lines.append(f"{port:<16}{p['declarations']:>9}{p['lanes'].get('machine-check', 0):>15}{p['lanes'].get('inspect', 0):>10}"
                     f"{_rate(p['selection_rates']['machine-check']):>10}{_rate(p['selection_rates']['inspect']):>12}"
                     f"{p['scan_timeouts']:>10}{p['inspections']:>13}{_rate(p['hit_rate']):>10}{p['duty_recovered']:>14.2f}")
    return "\n".join(lines)


def _counts(counts: dict[str, int]) -> str:
    return ", ".join(f"{k} {v}" for k, v in counts.items()) or "none"


ARCHIVE_HELP = ("the archive: a directory or an object-store URI such as s3://bucket/prefix, with credentials from the "
                "AWS_* environment or ARCHIVE_STORAGE_OPTIONS (default: setting ARCHIVE_LOCATION, else ARCHIVE_DIR, var/archive)")


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser(
        "archive", help="run the archive sink: every topic's records into Delta tables, exactly once",
        description="Consume every pipeline topic (declarations, gateway batches, centralised declarations, scans, "
                    "instructions, inspection results, credit events, risk lists, dead letters) in the consumer group "
                    "ARCHIVE_GROUP_ID (default <APP_ID>-archive) and append the records to Delta Lake tables under "
                    "ARCHIVE_LOCATION (a directory or s3://bucket/prefix; default ARCHIVE_DIR, var/archive), partitioned "
                    "by day and port. Each commit carries the Kafka positions it completes, so "
                    "a restart resumes from the tables and neither loses nor repeats a record. Records that do not "
                    "parse are archived as dead letters with their original bytes. Metrics on ARCHIVE_METRICS_PORT; "
                    "SIGTERM or Ctrl-C flushes and stops.",
    )
    p.add_argument("--archive-dir", metavar="DIR", help=ARCHIVE_HELP)
    p.add_argument("--metrics-port", type=tcp_port, metavar="PORT", help="Prometheus port (default: setting ARCHIVE_METRICS_PORT; 0: none)")
    p.add_argument("--no-create-topics", action="store_true", help="do not create missing topics first")
    p.set_defaults(handler=cmd_archive)

    p = subparsers.add_parser(
        "archive-maintain", help="compact the archive's small files, delete days past the retention, vacuum",
        description="Once, on every archive table: rewrite the small files the sink's flushes leave into large ones, delete "
                    "the days older than ARCHIVE_RETENTION_YEARS, and delete files no version has referenced for the "
                    "table's deleted-file retention (a week). Safe while `riskctl archive` runs; the sink also does this "
                    "every ARCHIVE_MAINTENANCE_INTERVAL_S seconds.",
    )
    p.add_argument("--archive-dir", metavar="DIR", help=ARCHIVE_HELP)
    p.add_argument("--json", action="store_true", help="print exactly one JSON object")
    p.set_defaults(handler=cmd_maintain)

    p = subparsers.add_parser(
        "report", help="office report from the archive: counts per port and lane, selection and hit rates",
        description="Read the decision archive (no broker) for the UTC days FROM..TO (inclusive; the days of the records' "
                    "event, inspection and reception times) and print per port: declarations, declaration-time lane counts "
                    "and selection rates, scan timeouts, inspections, hit rate and duty recovered; then instructions by "
                    "action and dead letters by reason. Instructions and inspection results count once per id.",
    )
    p.add_argument("--from", dest="day_from", type=cliargs.day, required=True, metavar="DAY", help="first day, YYYY-MM-DD")
    p.add_argument("--to", dest="day_to", type=cliargs.day, required=True, metavar="DAY", help="last day, YYYY-MM-DD (inclusive)")
    p.add_argument("--port", metavar="PORT", help="only this port")
    p.add_argument("--json", action="store_true", help="print exactly one JSON object")
    p.add_argument("--archive-dir", metavar="DIR", help=ARCHIVE_HELP)
    p.set_defaults(handler=cmd_report)

