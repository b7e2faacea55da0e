"""``riskctl demo``: the whole office on one machine.

Embedded broker -> topics -> one worker process and the decision archive sink (``riskctl archive``,
one fresh archive per run under the run's work directory) -> simulated gateways publish credit events
and declarations -> the simulated scanners answer machine-check instructions -> a station view prints
instructions and, at the end, a summary (and one JSON line with ``--json``) once the archive holds
every published declaration.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import signal
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Collection
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson
import yaml

from clients import topics
from clients.readers import assigned_reader
from common import cliargs
from common.settings import Settings
from common.timefmt import utc_iso
from devkit.launcher import ArchiveProcess, WorkerProcess, archive_process, console_process, worker_process
from policy.config import load_policy

if TYPE_CHECKING:
    from portsim.centralised import CentralisedBuilder
    from portsim.gateway import PortGateway
    from portsim.tracking import HeldGoods
    from portsim.traffic import PortOffice


CENTRALISED_EVERY = 300  # about one centralised declaration (2-8 goods items) per this many declarations
DEMO_SHOPPERS = 400  # simulated duty-free shoppers (a day's purchases published before the declarations)
ZERO_TARIFF_LEAVING_EVERY = 10  # one zero-tariff declaration in this many is declared to the mainland naming registered goods
REGISTER_TIMEOUT_S = 60.0  # for the worker to hold the published zero-tariff register


def add_demo_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--duration", type=cliargs.positive_float, default=None,
                   help="publish for SECONDS, then drain and print a summary (default: until Ctrl-C)")
    p.add_argument("--rate", type=cliargs.positive_float, default=50.0, help="declarations per second (default: 50)")
    p.add_argument("--seed", type=int, default=7, help="simulator seed (default: 7)")
    p.add_argument("--enterprises", type=int, default=70_000, help="simulated enterprise population (default: 70000)")
    p.add_argument("--scan-timeout", type=cliargs.positive_float, default=8.0,
                   help="seconds a machine-check waits for its scan (default: 8)")
    p.add_argument("--scan-delay-scale", type=float, default=0.02, help="scale of the scanners' realistic delays (default: 0.02)")
    p.add_argument("--drain-timeout", type=cliargs.positive_float, default=60.0,
                   help="max seconds to wait for final instructions after publishing (default: 60)")
    p.add_argument("--port", type=int, default=None, help="embedded broker port (default: from KAFKA_BOOTSTRAP_SERVERS)")
    p.add_argument("--external", action="store_true", help="use the broker at KAFKA_BOOTSTRAP_SERVERS instead of starting the embedded one")
    p.add_argument("--quiet", action="store_true", help="do not print each instruction")
    p.add_argument("--single-records", action="store_true", help="publish one record per declaration instead of gateway batches")
    p.add_argument("--json", action="store_true", help="print the summary as one JSON object on the last line")
    p.add_argument("--no-archive", action="store_true",
                   help="do not run the decision archive sink (riskctl archive) beside the worker; the summary's archived is null")
    p.add_argument("--no-console", action="store_true", help="do not start the web console (riskctl console)")
    p.add_argument("--console-port", type=cliargs.tcp_port, default=None,
                   help="the console's port (default from settings: 8470); it listens on CONSOLE_HOST (127.0.0.1)")
    p.add_argument("--archive-timeout", type=cliargs.positive_float, default=60.0,
                   help="max seconds to wait, after draining, for the archive to hold every published declaration; "
                        "exit 1 if it does not (default: 60)")


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


@dataclass
class Tally:
    published: Counter = field(default_factory=Counter)
    actions: Counter = field(default_factory=Counter)
    published_at: dict[str, float] = field(default_factory=dict)
    final: dict[str, str] = field(default_factory=dict)  # declaration id -> final instruction id
    seen_instructions: set[str] = field(default_factory=set)
    duplicates: int = 0
    conflicting_finals: int = 0
    latencies_ms: list[float] = field(default_factory=list)
    dead_letters: int = 0
    inspections: int = 0
    found: int = 0
    duty_recovered: float = 0.0
    declaration_stage: Counter = field(default_factory=Counter)  # action at declaration time
    centralised_items: dict[str, list[str]] = field(default_factory=dict)  # centralised id -> item declaration ids
    refused_centralised: int = 0
    declaration_ids: list[str] = field(default_factory=list)  # every one published["declaration"] counts (refused items too)
    inspected: str | None = None  # a declaration with a final inspect instruction (the archive hint's example)
    warnings: Counter = field(default_factory=Counter)  # early warnings read from the warnings topic, by rule

    @property
    def undecided(self) -> int:
        return sum(1 for d in self.published_at if d not in self.final)

    def summary(self) -> dict[str, Any]:
        lat = sorted(self.latencies_ms)

        def pct(q: float) -> float | None:
            return round(lat[min(len(lat) - 1, int(q * len(lat)))], 2) if lat else None

        return {
            "published": {"declaration": self.published["declaration"], "scan": self.published["scan"], "credit": self.published["credit"],
                          "centralised": self.published["centralised"]},
            "centralised_refused": self.refused_centralised,
            "instructions": {a: self.actions[a] for a in ("release", "machine-check", "inspect")},
            "dead_letters": self.dead_letters,
            "undecided": self.undecided,
            "latency_ms": {"p50": pct(0.50), "p99": pct(0.99)},
            "duplicate_instructions": self.duplicates,
            "conflicting_final_outcomes": self.conflicting_finals,
            "inspection_results": self.inspections,
            "hit_rate": round(self.found / self.inspections, 4) if self.inspections else None,
            "selection_rates": self.selection_rates(),
            "warnings": dict(sorted(self.warnings.items())),
        }

    def selection_rates(self) -> dict[str, float | None]:
        total = sum(self.declaration_stage.values())
        return {lane: (round(self.declaration_stage[lane] / total, 4) if total else None) for lane in ("machine-check", "inspect")}


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


ARCHIVE_FLUSH_INTERVAL_S = 1.0  # the demo's archive commits every second: the catch-up wait at the end is short


def _archive_settings(settings: Settings, archive_dir: Path) -> Settings:
    """The sink's settings: this run's archive (the embedded broker is in memory, so a fresh broker
    gets a fresh archive: partitions are known by topic name), frequent commits, and a metrics port
    (readiness is probed there; 0 in the settings means any free one)."""
    from devkit.brokers import free_port

    return settings.model_copy(update={
        "archive_dir": archive_dir,
        "archive_location": None,  # this run's archive is that directory, whatever ARCHIVE_LOCATION names
        "archive_flush_interval_s": min(settings.archive_flush_interval_s, ARCHIVE_FLUSH_INTERVAL_S),
        "archive_metrics_port": settings.archive_metrics_port or free_port(settings.metrics_host),
    })


def cmd_demo(args: argparse.Namespace, settings: Settings) -> int:
    from clients.topics import create_topics
    from devkit.brokers import EmbeddedBroker

    # Ctrl-C and SIGTERM both unwind through the ExitStack below: worker, then broker, stop.
    signal.signal(signal.SIGINT, _interrupt)
    signal.signal(signal.SIGTERM, _interrupt)

    workdir = Path(tempfile.mkdtemp(prefix="riskctl-demo-"))
    first_day = datetime.now(UTC).date()
    archived: int | None = None
    archive_ok = True
    with contextlib.ExitStack() as stack:
        if not args.external:
            port = args.port or int(settings.kafka_bootstrap_servers.split(",")[0].rsplit(":", 1)[1])
            broker = stack.enter_context(EmbeddedBroker(port=port))
            settings = settings.model_copy(update={"kafka_bootstrap_servers": broker.bootstrap_servers})
            _log(f"embedded broker on {broker.bootstrap_servers}")
        create_topics(settings)
        policy = load_policy(settings.policy_file)
        policy_file = workdir / "policy.yaml"
        demo_policy = policy.model_dump(mode="json")
        demo_policy["version"] = f"{policy.version}+demo"
        demo_policy["scan"]["timeout_s"] = args.scan_timeout
        policy_file.write_text(yaml.safe_dump(demo_policy))
        # The worker's table state is the run's own, like its topics: a RocksDB store left by an
        # earlier run would hold that run's declarations (the simulator's ids repeat) and offsets.
        settings = settings.model_copy(update={"policy_file": policy_file, "data_dir": workdir / "worker"})
        worker = stack.enter_context(worker_process(settings, workdir / "worker.log"))
        _log(f"worker pid {worker.proc.pid}, log {worker.log_path}; metrics at {worker.metrics_url}")
        sink: ArchiveProcess | None = None
        if not args.no_archive:
            # Entered after the worker: the ExitStack stops it first (SIGTERM: a last flush, exit 0), then the worker, then the broker.
            sink = stack.enter_context(archive_process(_archive_settings(settings, workdir / "archive"), workdir / "archive.log"))
            _log(f"archive sink pid {sink.proc.pid}, log {sink.log_path}; metrics at {sink.metrics_url}; archive {sink.archive_dir}")
        _log(f"worker ready after {worker.wait_ready():.1f}s")
        if sink is not None:
            sink.wait_ready()
            _log(f"archive sink ready {time.monotonic() - sink.started_at:.1f}s after its start")
        args.console_ports = ()
        if not args.no_console:
            console_settings = _console_settings(settings, workdir, args)
            logins = create_demo_users(console_settings)
            console = stack.enter_context(console_process(console_settings, workdir / "console.log",
                                                          sink.archive_dir if sink is not None else None))
            console.wait_ready()
            args.console_ports = tuple(sorted({p for _, _, ports, _ in logins for p in ports}))
            _log(f"console at {console.url}/ (log {console.log_path}; metrics at {console.metrics_url}); demo logins:")
            for name, role, ports, password in logins:
                _log(f"  {name:14} {password:18} {role}{' of ' + ', '.join(ports) if ports else ''}")
            _log(f"  the simulated station leaves inspections at {', '.join(args.console_ports)} to the console's officers")
        tally = run_traffic(settings, args, worker, sink)
        if sink is not None:
            archived, archive_ok = _archive_caught_up(sink, tally, args.archive_timeout, first_day)
    summary = tally.summary()
    summary["archived"] = archived
    _print_summary(summary)
    if args.json:
        print(orjson.dumps(summary).decode())
    return 0 if summary["undecided"] == 0 and summary["conflicting_final_outcomes"] == 0 and archive_ok else 1


# The demo's console users: (name, role, ports). Passwords are generated per run and printed.
DEMO_USERS = (
    ("officer.hak", "officer", ("HAK-SEA",)),
    ("officer.syx", "officer", ("SYX-AIR",)),
    ("analyst", "analyst", ()),
)


def _console_settings(settings: Settings, workdir: Path, args: argparse.Namespace) -> Settings:
    from devkit.brokers import free_port

    return settings.model_copy(update={
        "data_dir": workdir, "console_users_file": workdir / "console" / "users.json",
        "console_port": args.console_port or settings.console_port, "console_metrics_port": free_port(settings.metrics_host),
    })


def create_demo_users(settings: Settings) -> list[tuple[str, str, tuple[str, ...], str]]:
    """The demo's users in a fresh user store; (name, role, ports, password) of each."""
    import secrets

    from console.users import Role, UserStore

    store = UserStore(settings.console_users_file or settings.console_dir() / "users.json")
    logins = []
    for name, role, ports in DEMO_USERS:
        password = secrets.token_urlsafe(9)
        store.add(name, Role(role), password, ports)
        logins.append((name, role, ports, password))
    return logins


def archived_declarations(archive_dir: Path, declaration_ids: Collection[str]) -> int:
    """How many of ``declaration_ids`` the archive holds: as a declaration (single record, gateway-batch
    item, or item split off a centralised declaration) or as a centralised declaration's goods item
    (refused ones too: they never become declarations)."""
    import polars as pl

    from archive import tables as t
    from archive.queries import Archive

    if not declaration_ids:
        return 0
    store = Archive(archive_dir)
    held = pl.concat([store.scan(t.DECLARATIONS).select("declaration_id"), store.scan(t.CENTRALISED_ITEMS).select("declaration_id")])
    wanted = pl.LazyFrame({"declaration_id": list(declaration_ids)}, schema={"declaration_id": pl.String})
    return int(held.unique().join(wanted, on="declaration_id", how="semi").select(pl.len()).collect().item())


def _archive_caught_up(sink: ArchiveProcess, tally: Tally, timeout_s: float, first_day: date,
                       interval_s: float = 0.5) -> tuple[int, bool]:
    """Wait, at most ``timeout_s``, until the archive holds every declaration the demo published (a
    query of the tables, not the consumer lag: the embedded broker's watermarks are not reliable).
    Returns how many it holds and whether that is all of them; says which on stderr."""
    wanted = set(tally.declaration_ids)
    expected = len(wanted)
    start = time.monotonic()
    next_line = start + 5.0
    held = 0
    failure = ""
    while True:
        try:
            held = archived_declarations(sink.archive_dir, wanted)
            failure = ""
        except Exception as exc:  # noqa: BLE001 - a read beside the sink's commits may fail now and then: retried until the deadline
            failure = f"; the last query failed: {type(exc).__name__}: {' '.join(str(exc).split())[:300]}"
        now = time.monotonic()
        if held >= expected and not failure:
            break
        if not sink.alive():
            _log(f"error: the archive sink exited with code {sink.proc.returncode} holding {held} of {expected} declarations"
                 f"{failure}; log tail:\n{sink.log_tail()}")
            return held, False
        if now - start >= timeout_s:
            _log(f"error: the archive holds only {held} of {expected} published declarations after {timeout_s:.0f}s{failure} "
                 f"(archive {sink.archive_dir}, sink log {sink.log_path})")
            return held, False
        if now >= next_line:
            _log(f"  archive: {held}/{expected} declarations")
            next_line = now + 5.0
        time.sleep(interval_s)  # poll interval of a condition with a deadline
    code = sink.stop()  # what the ExitStack would do next: its last flush, then exit 0
    if code != 0:
        _log(f"error: the archive sink exited with code {code} when stopped; log tail:\n{sink.log_tail()}")
        return held, False
    last_day = datetime.now(UTC).date()
    example = tally.inspected or (tally.declaration_ids[0] if tally.declaration_ids else "DECLARATION_ID")
    _log(f"archive {sink.archive_dir} holds all {held} declarations ({now - start:.1f}s after draining); query it: "
         f"riskctl explain {example} --archive-dir {sink.archive_dir} --archive-only; "
         f"riskctl report --from {first_day} --to {last_day} --archive-dir {sink.archive_dir}")
    return held, True


def _wait_credit_table(gateway: PortGateway, worker: WorkerProcess, timeout_s: float = 180.0) -> None:
    """Declarations are decided against the enterprise credit table: let it fill first."""
    start = time.monotonic()
    expected = gateway.credit_enterprises
    next_line = start + 1.0

    def check() -> None:
        if not worker.alive():
            raise RuntimeError(f"worker exited with code {worker.proc.returncode}")

    def progress(seen: int) -> None:
        nonlocal next_line
        if time.monotonic() >= next_line:
            _log(f"  credit table: {seen}/{expected} enterprises")
            next_line += 1.0

    seen = gateway.wait_for_credit_register(timeout_s, expected, check=check, progress=progress)
    if seen < expected:
        raise TimeoutError(f"the credit table holds only {seen} of {expected} enterprises after {timeout_s:.0f}s")
    _log(f"credit table ready: {seen} enterprises in {time.monotonic() - start:.1f}s")


def run_traffic(settings: Settings, args: argparse.Namespace, worker: WorkerProcess, sink: ArchiveProcess | None = None) -> Tally:
    from portsim.centralised import CentralisedBuilder, may_centralise
    from portsim.gateway import PortGateway
    from portsim.traffic import PortOffice

    office = PortOffice(seed=args.seed, enterprises=args.enterprises)
    default_targets = load_policy(settings.policy_file).capacity.default
    targets = {"machine-check": default_targets.machine_check, "inspect": default_targets.inspect}
    gateway = PortGateway(settings, office, batching=not args.single_records, gateway_id="DEMO-GW",
                          producer_options={"linger.ms": 2, "enable.idempotence": True})
    consumer = assigned_reader(settings, [topics.INSTRUCTIONS, topics.DEAD_LETTERS, topics.WARNINGS])
    tally = Tally()
    t_insp = settings.topic(topics.INSPECTION_RESULTS)

    gateway.publish_credit_population()
    _count_gateway(tally, gateway)
    _log(f"published {tally.published['credit']} credit events (enterprise population); waiting for the worker to fold them")
    _wait_credit_table(gateway, worker)
    # It is still reading its credit table's changelog back (a cost per record, docs/benchmark.md):
    # the first declarations would wait behind that and the summary would time the backlog.
    _log(f"worker settled {worker.wait_settled():.1f}s after that (credit table changelog read back)")

    _publish_demo_risk_lists(gateway, settings, tally)
    shoppers = _publish_demo_duty_free(gateway, settings, tally, args.seed)
    registered = _publish_demo_zero_tariff(gateway, settings, tally, worker, office, args.seed)
    centralising: CentralisedBuilder | None = None
    allowed = load_policy(settings.policy_file).batch.allowed_classes
    start = time.monotonic()
    stop_at = start + args.duration if args.duration else float("inf")
    next_report = start + 2.0
    interrupted = False
    drain_until: float | None = None
    try:
        while True:
            now = time.monotonic()
            if not worker.alive():
                raise RuntimeError(f"worker exited with code {worker.proc.returncode}; log tail:\n{worker.log_tail()}")
            if sink is not None and not sink.alive():
                raise RuntimeError(f"archive sink exited with code {sink.proc.returncode}; log tail:\n{sink.log_tail()}")
            if now < stop_at:
                due = int((now - start) * args.rate) - tally.published["declaration"]
                for _ in range(max(0, due)):
                    record, truth = gateway.next_declaration()
                    if centralising is not None and centralising.offer(record, truth):
                        if centralising.full:
                            _publish_centralised(centralising, gateway, tally)
                            centralising = None
                        continue
                    if (centralising is None and tally.published["declaration"] // CENTRALISED_EVERY > tally.published["centralised"]
                            and may_centralise(office.population, record["enterprise_id"], allowed)):
                        cid = f"C{args.seed}-{tally.published['centralised']:06d}"
                        centralising = CentralisedBuilder.start(cid, 2 + tally.published["centralised"] % 7, record, truth)
                        continue
                    record["event_time"] = utc_iso()
                    if record["scenario"] == "duty-free-shopping":  # the pick-up / departure of a shopper's goods
                        record["shopper_token"] = shoppers[tally.published["declaration"] % len(shoppers)]
                    if record["scenario"] == "zero-tariff" and registered:
                        record = _maybe_leaving(record, registered, tally)
                    gateway.publish(record, truth)  # agencies' credit lifecycle events go along
                    tally.published_at[record["declaration_id"]] = time.time()
                    tally.declaration_ids.append(record["declaration_id"])
                    tally.published["declaration"] += 1
            elif drain_until is None:
                drain_until = now + args.drain_timeout
                _log(f"published {tally.published['declaration']} declarations; draining")
            gateway.poll()
            for msg in consumer.consume(500, timeout=0.004):
                if msg.error():
                    continue
                if msg.topic() == settings.topic(topics.DEAD_LETTERS):
                    _on_dead_letter(orjson.loads(msg.value()), tally, settings)
                    continue
                if msg.topic() == settings.topic(topics.WARNINGS):
                    tally.warnings[str(orjson.loads(msg.value()).get("rule"))] += 1
                    continue
                _on_instruction(orjson.loads(msg.value()), tally, gateway, t_insp, args)
            if now >= next_report:
                next_report = now + 2.0
                _count_gateway(tally, gateway)
                _progress(tally, now - start, targets)
            if drain_until is not None and (tally.undecided == 0 or now > drain_until):
                break
    except KeyboardInterrupt:
        interrupted = True
        _log("interrupted: shutting down")
    finally:
        gateway.close(10.0)
        _count_gateway(tally, gateway)
        consumer.close()
        # Drop the clients now: an interrupt's traceback would keep them alive after the broker stops.
        gateway = consumer = None
    if interrupted:
        raise KeyboardInterrupt
    return tally


def _count_gateway(tally: Tally, gateway: PortGateway) -> None:
    """The gateway's credit and scan records in the tally (declarations the demo counts itself)."""
    tally.published["credit"] = gateway.stats.credit_events + gateway.stats.lifecycle_events
    tally.published["scan"] = gateway.stats.scans_published


def _publish_centralised(builder: CentralisedBuilder, gateway: PortGateway, tally: Tally) -> None:
    """Each goods item is a declaration the demo expects a final instruction for."""
    truths = builder.truths()
    gateway.publish_centralised(builder.record(utc_iso()), truths)
    now = time.time()
    for did in truths:
        tally.published_at[did] = now
        tally.declaration_ids.append(did)
    tally.centralised_items[builder.centralised_id] = builder.item_ids()
    tally.published["centralised"] += 1
    tally.published["declaration"] += len(builder.goods)


def _on_dead_letter(letter: dict[str, Any], tally: Tally, settings: Settings) -> None:
    tally.dead_letters += 1
    if letter["source_topic"] == settings.topic(topics.CENTRALISED_DECLARATIONS) and letter["key_b64"]:
        # Refused (e.g. the enterprise was downgraded meanwhile): its items will get no instruction.
        for did in tally.centralised_items.pop(base64.b64decode(letter["key_b64"]).decode(), []):
            tally.published_at.pop(did, None)
        tally.refused_centralised += 1


def _publish_demo_risk_lists(gateway: PortGateway, settings: Settings, tally: Tally) -> None:
    """A few risk characteristic list entries, as the office and other agencies would publish them."""
    from portsim.references import office_risk_lists
    for entry in office_risk_lists():
        gateway.publisher.produce(settings.topic(topics.RISK_LISTS), entry.entry_id.encode(),
                                  entry.model_dump_json(exclude_none=True).encode())
        tally.published["risk-list"] += 1
    gateway.flush(10.0)


def _publish_demo_duty_free(gateway: PortGateway, settings: Settings, tally: Tally, seed: int) -> list[str]:
    """A day of simulated duty-free purchases (planted violations among them: the worker warns of
    them on `warnings`); returns the shoppers, whose departures the demo's duty-free-shopping
    declarations then are."""
    from portsim.dutyfree import simulate_purchases

    purchases, _ = simulate_purchases(seed, DEMO_SHOPPERS, datetime.now(UTC) - timedelta(days=1), timedelta(hours=23),
                                      load_policy(settings.policy_file).duty_free)
    for p in purchases:
        gateway.publisher.produce(settings.topic(topics.DUTY_FREE_PURCHASES), p.shopper_token.encode(),
                                  p.model_dump_json(exclude_none=True).encode())
        tally.published["duty-free-purchase"] += 1
    gateway.flush(10.0)
    shoppers = sorted({p.shopper_token for p in purchases})
    _log(f"published {len(purchases)} duty-free purchases by {len(shoppers)} shoppers (planted violations among them)")
    return shoppers


def _publish_demo_zero_tariff(gateway: PortGateway, settings: Settings, tally: Tally, worker: WorkerProcess, office: PortOffice,
                              seed: int) -> list[HeldGoods]:
    """The zero-tariff register, then, once the worker holds it, the positioning system's events of
    the registered vehicles and vessels (planted stories: away too long, away and back, a port
    passage; the worker warns of them on `warnings`). Returns the goods still on the register, which
    some zero-tariff declarations then declare to the mainland."""
    from devkit.launcher import metric_value
    from portsim.tracking import held_goods, live_positions, live_register

    now = datetime.now(UTC)
    register = live_register(office, seed, now)
    for record in register:
        gateway.publisher.produce(settings.topic(topics.ZERO_TARIFF_REGISTER), record.import_id.encode(),
                                  record.model_dump_json(exclude_none=True).encode())
        tally.published["zero-tariff-register"] += 1
    gateway.flush(10.0)
    held = held_goods(register)
    waited = worker.wait_metrics(lambda body: metric_value(body, "customs_zero_tariff_registered_goods") >= len(held),
                                 REGISTER_TIMEOUT_S, "holding the zero-tariff register")
    events, expected = live_positions(held, seed, now, load_policy(settings.policy_file).zero_tariff)
    for event in events:
        gateway.publisher.produce(settings.topic(topics.POSITIONS), event.identifier.encode(),
                                  event.model_dump_json(exclude_none=True).encode())
        tally.published["position"] += 1
    gateway.flush(10.0)
    planted = ", ".join(f"{n} {rule}" for rule, n in expected.items())
    _log(f"published {len(register)} zero-tariff register records ({len(held)} goods held; the worker held them after "
         f"{waited:.1f}s) and {len(events)} position events (planted: {planted}); one zero-tariff declaration in "
         f"{ZERO_TARIFF_LEAVING_EVERY} names registered goods going to the mainland")
    return held


def _maybe_leaving(record: dict[str, Any], registered: list[HeldGoods], tally: Tally) -> dict[str, Any]:
    """Every ZERO_TARIFF_LEAVING_EVERY-th zero-tariff declaration names registered goods declared to the mainland."""
    from portsim.tracking import leaving_declaration

    tally.published["zero-tariff"] += 1
    if tally.published["zero-tariff"] % ZERO_TARIFF_LEAVING_EVERY:
        return record
    tally.published["zero-tariff-leaving"] += 1
    return leaving_declaration(record, registered[tally.published["zero-tariff-leaving"] % len(registered)])


def _on_instruction(instr: dict[str, Any], tally: Tally, gateway: PortGateway, t_insp: str, args: argparse.Namespace) -> None:
    iid = instr["instruction_id"]
    if iid in tally.seen_instructions:
        tally.duplicates += 1
        return
    tally.seen_instructions.add(iid)
    did = instr["declaration_id"]
    tally.actions[instr["action"]] += 1
    if instr["stage"] == "declaration":
        tally.declaration_stage[instr["action"]] += 1
        if did in tally.published_at:
            tally.latencies_ms.append((time.time() - tally.published_at[did]) * 1000)
    if instr["final"]:
        if did in tally.final and tally.final[did] != iid:
            tally.conflicting_finals += 1
        tally.final[did] = iid
        if instr["action"] == "inspect" and tally.inspected is None:
            tally.inspected = did
    if not args.quiet and (instr["action"] != "release" or instr["stage"] != "declaration"):
        reasons = "; ".join(instr["reasons"][:3])
        print(f"{instr['port']:9} {did:14} {instr['stage']:11} {instr['action']:13} {instr['credit_class']:13} {reasons}", flush=True)
    if instr["stage"] == "declaration" and instr["action"] == "machine-check":
        gateway.answer(instr, scan_delay_scale=args.scan_delay_scale)  # the port's scanner: a scan after a delay, or none
    elif instr["final"] and instr["action"] == "inspect" and instr["port"] not in getattr(args, "console_ports", ()):
        from schemas import ControlInstruction

        truth = gateway.truth(did)
        if truth is None:
            return
        result = gateway.office.inspection_for(ControlInstruction.model_validate(instr, strict=False), truth, f"{instr['port']}-STATION")
        gateway.publisher.produce(t_insp, did.encode(), orjson.dumps(result.model_dump(mode="json")))
        tally.inspections += 1
        tally.found += result.found
        tally.duty_recovered += result.duty_recovered


def _progress(tally: Tally, elapsed: float, targets: dict[str, float | None]) -> None:
    lat = sorted(tally.latencies_ms[-2000:])
    p50 = lat[len(lat) // 2] if lat else 0.0
    p99 = lat[min(len(lat) - 1, int(0.99 * len(lat)))] if lat else 0.0
    a = tally.actions
    rates = tally.selection_rates()
    lanes = "  ".join(f"{lane} {(rates[lane] or 0):.1%} (target {targets[lane]:.1%})" if targets.get(lane)
                      else f"{lane} {(rates[lane] or 0):.1%}"
                      for lane in ("machine-check", "inspect"))
    hit = f"{tally.found / tally.inspections:.0%} of {tally.inspections}" if tally.inspections else "-"
    _log(f"[{elapsed:6.1f}s] {tally.published['declaration']} declarations ({tally.published['declaration'] / max(elapsed, 1e-9):.0f}/s), "
         f"latency p50 {p50:.1f} ms p99 {p99:.1f} ms | instructions: release {a['release']} machine-check {a['machine-check']} "
         f"inspect {a['inspect']} | selected at declaration: {lanes} | scans {tally.published['scan']} | "
         f"inspection hit rate {hit} | dead letters {tally.dead_letters} | undecided {tally.undecided}")


def _print_summary(s: dict[str, Any]) -> None:
    print("\n=== demo summary ===")
    print(f"published     declarations {s['published']['declaration']} (of which items of {s['published']['centralised']} centralised "
          f"declarations, {s['centralised_refused']} refused), scans {s['published']['scan']}, credit events {s['published']['credit']}")
    i = s["instructions"]
    print(f"instructions  release {i['release']}, machine-check {i['machine-check']}, inspect {i['inspect']}")
    print(f"dead letters  {s['dead_letters']}")
    print(f"undecided     {s['undecided']}  (declarations published without a final instruction)")
    print(f"latency       p50 {s['latency_ms']['p50']} ms, p99 {s['latency_ms']['p99']} ms"
          "  (declaration published -> first instruction consumed)")
    print(f"duplicates    {s['duplicate_instructions']} redelivered instruction records,"
          f" {s['conflicting_final_outcomes']} conflicting final outcomes")
    rates = s["selection_rates"]
    print(f"selected      machine-check {(rates['machine-check'] or 0):.1%}, inspect {(rates['inspect'] or 0):.1%}"
          " of declarations at declaration time")
    print(f"inspections   {s['inspection_results']} results, hit rate {s['hit_rate'] if s['hit_rate'] is not None else '-'}")
    print(f"warnings      {', '.join(f'{rule} {n}' for rule, n in s['warnings'].items()) or 'none'}")
    if s.get("archived") is not None:
        print(f"archived      {s['archived']} of the {s['published']['declaration']} declarations in the decision archive")
