"""Subcommands for brokers, topics, workers, schemas and the demo."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from clients.topics import TopicsError, create_topics, topic_specs
from common import cliargs
from common.settings import Settings
from devkit.demo import add_demo_arguments, cmd_demo
from schemas.export import export_json_schemas

# The worker (Faust) and the broker runners (libc via ctypes) are imported when their subcommand runs: `riskctl --help` stays fast.


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("broker", help="run the embedded Tansu broker on loopback (foreground)",
                       description="Run the embedded Kafka-compatible Tansu broker (memory storage) on loopback until Ctrl-C.")
    p.add_argument("--port", type=cliargs.tcp_port, default=None, help="listen port (default: the port of KAFKA_BOOTSTRAP_SERVERS)")
    p.set_defaults(handler=cmd_broker)

    p = sub.add_parser("kafka", help="run Apache Kafka 4.x (KRaft, one node or a cluster) on loopback (foreground)",
                       description="Fetch Apache Kafka from Maven Central (once, with mvn) and run one KRaft node, or a cluster of "
                                   "combined broker+controller nodes, on loopback until Ctrl-C. Prints the bootstrap servers on stdout.")
    p.add_argument("--port", type=cliargs.tcp_port, default=None,
                   help="listen port (of the first node; default: the port of KAFKA_BOOTSTRAP_SERVERS)")
    p.add_argument("--data-dir", type=Path, default=None, help="log directory, node-<id>/ under it for a cluster (default: temporary)")
    p.add_argument("--nodes", type=int, choices=range(1, 10), default=1, metavar="N",
                   help="KRaft nodes (1-9, default 1); with 3 or more, topics get 3 replicas and min.insync.replicas=2")
    p.set_defaults(handler=cmd_kafka)

    p = sub.add_parser("topics", help="create or list the pipeline's topics",
                       description="Create every topic the pipeline uses (idempotent), or list them.")
    tsub = p.add_subparsers(dest="topics_command", metavar="ACTION", required=True)
    c = tsub.add_parser("create", help="create missing topics (existing ones are left alone)",
                        description="Create missing topics with the confluent-kafka AdminClient.")
    c.set_defaults(handler=cmd_topics_create)
    c = tsub.add_parser("list", help="print the topic declarations",
                        description="Print every topic: name, partitions, key, cleanup policy.")
    c.set_defaults(handler=cmd_topics_list)

    p = sub.add_parser("worker", help="run one pipeline worker (Faust)",
                       description="Run one Faust worker of the pipeline. Start several for more throughput: they share the partitions.")
    p.add_argument("--metrics-port", type=cliargs.tcp_port, default=None,
                   help="Prometheus endpoint port (0 disables; default from settings: 9464)")
    p.add_argument("--no-create-topics", action="store_true", help="do not create missing topics before starting")
    p.set_defaults(handler=cmd_worker)

    p = sub.add_parser("schemas", help="export the event schemas as JSON Schema",
                       description="Write one JSON Schema file per record type, for the port gateways.")
    ssub = p.add_subparsers(dest="schemas_command", metavar="ACTION", required=True)
    c = ssub.add_parser("export", help="write JSON Schema files", description="Write <type>.schema.json files into DIR.")
    c.add_argument("--out", type=Path, default=Path("schemas/json"), help="output directory (default: schemas/json)")
    c.set_defaults(handler=cmd_schemas_export)

    p = sub.add_parser("demo", help="run the whole pipeline on the embedded broker with simulated port traffic",
                       description="Start the embedded broker, create topics, start a worker, publish simulated port traffic "
                                   "(credit events, declarations, scans) and print instructions as an inspection station would.")
    add_demo_arguments(p)
    p.set_defaults(handler=cmd_demo)


def _settings_port(settings: Settings) -> int:
    return int(settings.kafka_bootstrap_servers.split(",")[0].rsplit(":", 1)[1])


def cmd_broker(args: argparse.Namespace, settings: Settings) -> int:
    from devkit.brokers import EmbeddedBroker, run_foreground

    return run_foreground(EmbeddedBroker(port=args.port or _settings_port(settings)))


def cmd_kafka(args: argparse.Namespace, settings: Settings) -> int:
    from devkit.brokers import ApacheKafkaBroker, run_foreground
    from devkit.cluster import KafkaCluster

    port = args.port or _settings_port(settings)
    if args.nodes > 1:
        return run_foreground(KafkaCluster(args.nodes, first_port=port, data_dir=args.data_dir))
    return run_foreground(ApacheKafkaBroker(port=port, data_dir=args.data_dir))


def cmd_topics_create(args: argparse.Namespace, settings: Settings) -> int:
    try:
        created = create_topics(settings)
    except TopicsError as exc:
        print(f"riskctl: {exc}", file=sys.stderr)
        return 1
    print(f"{len(created)} topics created, {len(topic_specs(settings)) - len(created)} already existed")
    return 0


def cmd_topics_list(args: argparse.Namespace, settings: Settings) -> int:
    for s in topic_specs(settings):
        print(f"{s.name:45} partitions={s.partitions:<3} key={s.key:15} cleanup={s.cleanup_policy:8} {s.description}")
    return 0


def cmd_worker(args: argparse.Namespace, settings: Settings) -> int:
    from streams.worker import run_worker

    if args.metrics_port is not None:
        settings = settings.model_copy(update={"metrics_port": args.metrics_port})
    if not args.no_create_topics:
        try:
            create_topics(settings)
        except TopicsError as exc:
            print(f"riskctl: {exc}", file=sys.stderr)
            return 1
    return run_worker(settings)


def cmd_schemas_export(args: argparse.Namespace, settings: Settings) -> int:
    for path in export_json_schemas(args.out):
        print(path)
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit("use: riskctl")
