"""``riskctl simulate`` (live traffic, scanners, history files) and ``riskctl station``."""

from __future__ import annotations

import argparse
import re
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cli.errors import one_line_errors
from clients.topics import CREDIT_EVENTS, DECLARATIONS, INSPECTION_RESULTS, INSTRUCTIONS, SCANS
from common import cliargs
from common.settings import Settings
from portsim import world
from portsim.gateway import PortGateway, check_topics
from portsim.station import InspectionStation
from portsim.traffic import PortOffice

# History mode imports pyarrow (portsim.history) when it runs: `riskctl --help` stays fast.

IDENTIFIER = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:\-]*$")
DEFAULT_LIVE_RATE = 100.0


def _fail(prog: str, message: str) -> int:
    print(f"{prog}: error: {message}", file=sys.stderr)
    return 2


def _topics_exist(prog: str, settings: Settings, names: list[str]) -> bool:
    """True if every topic exists; otherwise say why (unreachable broker, or which are missing)."""
    try:
        missing = check_topics(settings, names)
    except ConnectionError as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        return False
    if missing:
        print(f"{prog}: topics missing on {settings.kafka_bootstrap_servers}: {', '.join(missing)} "
              "(create them first: riskctl topics create)", file=sys.stderr)
        return False
    return True


def _utc_time(text: str) -> datetime:
    try:
        value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an ISO date/time (e.g. 2025-09-01T00:00:00Z)") from None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _port(text: str) -> str:
    if text != "all" and not IDENTIFIER.match(text):
        raise argparse.ArgumentTypeError(f"{text!r} is not a port id (like YPU-SEA) or 'all'")
    return text


def register(subparsers: Any) -> None:
    sim = subparsers.add_parser(
        "simulate",
        help="publish simulated port traffic (and play the ports' scanners), or write a labelled history file",
        description=(
            "Live mode: publish the credit register, then declarations at --rate per second (0: as fast as "
            "possible) for --duration seconds or --count declarations, with credit lifecycle events mixed in; "
            "meanwhile answer machine-check instructions with scan results after a realistic delay. "
            "History mode (--history --out FILE --count N): write a labelled parquet file for training and "
            "backtests instead. Ports: " + ", ".join(world.PORT_IDS) + "."
        ),
    )
    one_line_errors(sim)
    sim.add_argument("--seed", type=cliargs.seed, default=7, help="simulation seed (default 7); same seed, same traffic")
    sim.add_argument("--enterprises", type=cliargs.positive_int, default=70_000, help="enterprises in the population (default 70000)")
    sim.add_argument("--count", type=cliargs.positive_int, help="number of declarations")
    sim.add_argument("--duration", type=cliargs.positive_float, metavar="SECONDS", help="live mode: publish for this long")
    sim.add_argument("--rate", type=cliargs.non_negative_float, metavar="N",
                     help=f"live mode: declarations per second, 0 = as fast as possible (default {DEFAULT_LIVE_RATE:g}); "
                          "history mode: event-time arrival rate (default: the office's daily rhythm, 1/s on average)")
    sim.add_argument("--first-index", type=cliargs.non_negative_int, default=0, metavar="N",
                     help="index of the first declaration (ids are D{seed}-{index}); continue an earlier run with it")
    sim.add_argument("--history", action="store_true", help="write a labelled history file instead of publishing")
    sim.add_argument("--out", metavar="FILE", help="history mode: output parquet file; the credit events and risk lists it "
                     "is decided with go beside it (<stem>.credit.jsonl, <stem>.risk-lists.jsonl, <stem>.zero-tariff.jsonl), "
                     "and duty-free purchases with planted violations (<stem>.duty-free.jsonl)")
    sim.add_argument("--start", type=_utc_time, metavar="TIME",
                     help="history mode: event time of the first declaration (default 2025-09-01T00:00Z)")
    sim.add_argument("--scan-delay-scale", type=cliargs.non_negative_float, default=1.0, metavar="F",
                     help="multiply the scanners' realistic delays (tens of seconds) by F, e.g. 0.05 for demos (default 1)")
    sim.add_argument("--no-scanners", action="store_true", help="live mode: do not answer machine-check instructions")
    sim.add_argument("--no-credit-population", action="store_true", help="live mode: skip publishing the initial credit register")
    sim.add_argument("--lifecycle-ratio", type=cliargs.non_negative_float, default=0.005, metavar="R",
                     help="live mode: credit lifecycle events per declaration (default 0.005)")
    sim.add_argument("--linger", type=cliargs.non_negative_float, default=30.0, metavar="SECONDS",
                     help="live mode: after the last declaration keep scanning until no machine-check came for this "
                          "long and no scan is pending (default 30)")
    sim.add_argument("--settle", type=cliargs.non_negative_float, default=30.0, metavar="SECONDS",
                     help="live mode: after the credit register, wait up to this long for the workers to fold it "
                          "(watched on their enterprise-credit changelog) before declarations start; 0: do not wait "
                          "(default 30)")
    sim.add_argument("--quiet", action="store_true", help="no progress display")
    sim.set_defaults(handler=simulate)

    st = subparsers.add_parser(
        "station",
        help="an inspection station: the instruction queue for a port, reporting inspection results",
        description=(
            "Consume the instruction topic for one port (or all), deduplicate by instruction id, print the queue "
            "(one line per instruction with its reasons) and, for the simulated ports, publish an inspection "
            "result for each final inspect instruction. Offsets are committed only after the results are "
            "acknowledged and the station's journal is written, so a restarted station neither loses nor "
            "repeats work. Run one station process per port (or one for all ports, not both: each reports results)."
        ),
    )
    one_line_errors(st)
    st.add_argument("--port", type=_port, required=True, help="port id (" + ", ".join(world.PORT_IDS) + ") or 'all'")
    st.add_argument("--station-id", metavar="ID", help="station id in results (default PORT-ST1)")
    st.add_argument("--seed", type=cliargs.seed, help="simulator seed for the ground truth (default: read from the declaration id)")
    st.add_argument("--enterprises", type=cliargs.positive_int, default=70_000, help="simulator population size (default 70000)")
    st.add_argument("--state-dir", metavar="DIR", help="where the dedup journal lives (default: next to the worker data dir, 'stations/')")
    st.add_argument("--group-id", metavar="ID", help="consumer group (default {app_id}.station.{port})")
    st.add_argument("--from", dest="offset_reset", choices=("earliest", "latest"), default="earliest",
                    help="where a new group starts reading (default earliest)")
    st.add_argument("--show-releases", action="store_true", help="also list release instructions")
    st.add_argument("--observe-only", action="store_true", help="show the queue but publish no inspection results")
    st.add_argument("--idle-exit", type=cliargs.positive_float, metavar="SECONDS", help="exit after this long without instructions")
    st.add_argument("--max-instructions", type=cliargs.positive_int, metavar="N", help="exit after consuming N instruction records")
    st.add_argument("--summary-every", type=cliargs.non_negative_float, default=10.0, metavar="SECONDS",
                    help="print a summary line to stderr this often (0: never; default 10)")
    st.add_argument("--quiet", action="store_true", help="do not print the queue lines")
    st.set_defaults(handler=station)


# ---------------------------------------------------------------------- simulate


class _Progress:
    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self.tty = sys.stderr.isatty()
        self.last_decl = 0
        self.last_t = time.monotonic()

    def show(self, text: str, final: bool = False) -> None:
        if not self.enabled:
            return
        if self.tty:
            sys.stderr.write("\r\x1b[2K" + text + ("\n" if final else ""))
        else:
            sys.stderr.write(text + "\n")
        sys.stderr.flush()

    def gateway(self, stats: Any, final: bool = False) -> None:
        now = time.monotonic()
        elapsed = stats.snapshot()["elapsed_s"]
        if final:
            rate_text = f"{stats.declarations / max(elapsed, 1e-6):,.0f}/s overall"
        else:
            rate_text = f"{(stats.declarations - self.last_decl) / max(now - self.last_t, 1e-6):,.0f}/s now"
        self.last_decl, self.last_t = stats.declarations, now
        self.show(
            f"simulate {elapsed:7.1f}s  declarations {stats.declarations:,} ({rate_text})  "
            f"credit {stats.credit_events + stats.lifecycle_events:,}  machine-checks {stats.machine_checks:,}  "
            f"scans {stats.scans_published:,} sent / {stats.scans_scheduled - stats.scans_published:,} pending / "
            f"{stats.scans_withheld:,} withheld  errors {stats.delivery_errors:,}",
            final,
        )


def simulate(args: argparse.Namespace, settings: Settings) -> int:
    prog = "riskctl simulate"
    if args.history:
        if not args.out:
            return _fail(prog, "--history needs --out FILE")
        if not args.count:
            return _fail(prog, "--history needs --count N")
        if args.duration is not None:
            return _fail(prog, "--duration is for live mode; use --count with --history")
        if args.rate == 0:
            return _fail(prog, "--rate 0 means 'as fast as possible', which has no meaning for event times")
        return _history(args)
    if args.out or args.start:
        return _fail(prog, "--out and --start are for --history mode")
    if args.count is None and args.duration is None:
        return _fail(prog, "say how much to publish: --count N and/or --duration SECONDS")
    return _live(args, settings)


def _history(args: argparse.Namespace) -> int:
    from portsim.history import write_history
    from portsim.references import write_references

    out = Path(args.out)
    if not out.parent.is_dir():
        return _fail("riskctl simulate", f"directory {out.parent} does not exist")
    progress = _Progress(not args.quiet)
    t0 = time.monotonic()
    state = {"next": t0 + 1.0}

    def tick(done: int) -> None:
        now = time.monotonic()
        if now >= state["next"]:
            state["next"] = now + 1.0
            progress.show(f"history {done:,} / {args.count:,} declarations ({done / (now - t0):,.0f}/s)")

    office = PortOffice(args.seed, args.enterprises)
    n = write_history(office, out, args.count, start=args.start, rate_per_s=args.rate, first_index=args.first_index,
                      progress=tick)
    progress.show(f"history: wrote {n:,} labelled declarations to {out} in {time.monotonic() - t0:.1f}s", final=True)
    # The credit register and risk lists the history is decided with: `riskctl backtest` reads them from beside it.
    credit, lists, events, entries = write_references(office, out, n, start=args.start, rate_per_s=args.rate)
    progress.show(f"history: wrote {events:,} credit events to {credit} and {entries} risk-list entries to {lists}", final=True)
    from portsim.zerotariff import plant_zero_tariff

    register, records, planted = plant_zero_tariff(office, out, args.seed)
    progress.show(f"history: wrote {records:,} zero-tariff register records to {register}; "
                  f"{planted:,} registered goods declared to the mainland planted", final=True)

    # Offshore duty-free purchases with planted violations and their truth (read by `riskctl backtest`).
    from portsim.dutyfree import write_for_history
    from portsim.traffic import DEFAULT_RATE, DEFAULT_START

    path, purchases, planted = write_for_history(args.seed, out, n, args.start or DEFAULT_START, args.rate or DEFAULT_RATE)
    progress.show(f"history: wrote {purchases:,} duty-free purchases ({planted} planted violations) to {path}", final=True)
    return 0


def _live(args: argparse.Namespace, settings: Settings) -> int:
    prog = "riskctl simulate"
    if not _topics_exist(prog, settings, [DECLARATIONS, SCANS, CREDIT_EVENTS, INSTRUCTIONS]):
        return 1
    office = PortOffice(args.seed, args.enterprises)
    gateway = PortGateway(settings, office, first_index=args.first_index, lifecycle_per_declaration=args.lifecycle_ratio)
    progress = _Progress(not args.quiet)
    stop = threading.Event()
    rate = DEFAULT_LIVE_RATE if args.rate is None else args.rate
    try:
        if not args.no_scanners:
            gateway.start_scanners(scan_delay_scale=args.scan_delay_scale)
        if not args.no_credit_population:
            n = gateway.publish_credit_population()
            progress.show(f"simulate: published the credit register ({n:,} events)", final=True)
            if args.settle > 0:
                t0 = time.monotonic()
                expected = len({e.enterprise_id for e in office.credit_population()})
                seen = gateway.wait_for_credit_register(args.settle, expected)
                note = "" if seen >= expected else " (not all: are the workers running? declarations start anyway)"
                progress.show(f"simulate: workers hold {seen:,} of {expected:,} enterprises' credit state after "
                              f"{time.monotonic() - t0:.1f}s{note}", final=True)
        gateway.publish_declarations(args.count, duration_s=args.duration, rate_per_s=rate, stop=stop,
                                     on_progress=progress.gateway)
        if not args.no_scanners:
            _linger(gateway, args.linger, progress)
    except KeyboardInterrupt:
        stop.set()
        gateway.close()
        progress.gateway(gateway.stats, final=True)
        return 130
    gateway.close()
    progress.gateway(gateway.stats, final=True)
    return 1 if gateway.stats.delivery_errors else 0


def _linger(gateway: Any, linger_s: float, progress: _Progress) -> None:
    """Keep the scanners going until no machine-check came for ``linger_s`` and no scan is pending."""
    quiet_since = time.monotonic()
    next_progress = quiet_since + 1.0
    while True:
        now = time.monotonic()
        last = max(gateway.last_instruction_at, quiet_since)
        if gateway.pending_scans == 0 and now - last >= linger_s:
            return
        if now >= next_progress:
            progress.gateway(gateway.stats)
            next_progress = now + 1.0
        time.sleep(0.1)


# ---------------------------------------------------------------------- station


def station(args: argparse.Namespace, settings: Settings) -> int:
    prog = "riskctl station"
    if args.station_id is not None and not IDENTIFIER.match(args.station_id):
        return _fail(prog, f"--station-id {args.station_id!r} is not an identifier")
    if not _topics_exist(prog, settings, [INSTRUCTIONS, INSPECTION_RESULTS]):
        return 1
    st = InspectionStation(
        settings, args.port, station_id=args.station_id, seed=args.seed, enterprises=args.enterprises,
        state_dir=args.state_dir, group_id=args.group_id, publish_results=not args.observe_only,
        show_releases=args.show_releases, out=None if args.quiet else sys.stdout,
        from_beginning=args.offset_reset == "earliest",
    )
    print(f"{prog}: port {args.port}, group {st.group_id}, journal {st.journal.path} "
          f"({len(st.journal):,} instructions already done)", file=sys.stderr)
    stop = threading.Event()
    try:
        st.run(stop, max_idle_s=args.idle_exit, max_instructions=args.max_instructions,
               summary_every_s=args.summary_every or None)
    except KeyboardInterrupt:
        print(st.summary(), file=sys.stderr)
        return 130
    print(st.summary(), file=sys.stderr)
    return 0
