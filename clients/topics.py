"""Every topic the pipeline uses, declared in one place, and created idempotently.

Faust must never create topics itself (``topic_allow_declare=False``): a worker that subscribes to a
topic that does not exist yet is never assigned it on some brokers, so
``riskctl topics create`` makes all of them - including Faust's own changelog and assignor
topics - before any worker starts.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient, ConfigResource, NewTopic, ResourceType

from clients.topic_checks import Durability, ExistingTopic, describe_problems, durability, topic_problems
from common.settings import Settings

log = logging.getLogger(__name__)

DAY_MS = 86_400_000

# Logical names, shared by producers, the topology and the tools. Full name = prefix + name.
DECLARATIONS = "declarations"
DECLARATION_BATCHES = "declaration-batches"
CENTRALISED_DECLARATIONS = "centralised-declarations"
SCANS = "scans"
CREDIT_EVENTS = "credit-events"
CREDIT_EVENT_BATCHES = "credit-event-batches"
RISK_LISTS = "risk-lists"
INSTRUCTIONS = "instructions"
INSPECTION_RESULTS = "inspection-results"
DEAD_LETTERS = "dead-letters"
SHADOW_SCORES = "shadow-scores"
CONSOLE_ACTIONS = "console-actions"
WARNINGS = "warnings"
WARNING_REVIEWS = "warning-reviews"
JOINT_FINDINGS = "joint-findings"
ZERO_TARIFF_REGISTER = "zero-tariff-register"
POSITIONS = "positions"
DUTY_FREE_PURCHASES = "duty-free-purchases"
DUTY_FREE_SHOPPER_LINKS = "duty-free-shopper-links"

# Faust tables (their changelogs are named "{app_id}-{table}-changelog").
TABLE_DECLARATION_STATE = "declaration-state"
TABLE_SCAN_DEADLINES = "scan-deadlines"
TABLE_ENTERPRISE_CREDIT = "enterprise-credit"
TABLE_RISK_LISTS = "risk-lists"
TABLE_CAPACITY = "capacity"
TABLE_ZERO_TARIFF_REGISTER = "zero-tariff-register"
TABLE_TRACKED_GOODS = "tracked-goods"
TABLE_DUTY_FREE_SHOPPERS = "duty-free-shoppers"
TABLE_DUTY_FREE_LINKS = "duty-free-links"
TABLE_DUTY_FREE_STANDING = "duty-free-standing"


def changelog_topic(settings: Settings, table: str) -> str:
    """The full name of the changelog topic of one of the app's Faust tables (``TABLE_*`` above)."""
    return f"{settings.app_id}-{table}-changelog"


@dataclass(frozen=True)
class TopicSpec:
    name: str
    partitions: int
    key: str
    description: str
    cleanup_policy: str = "delete"
    retention_ms: int = 7 * DAY_MS
    extra: dict[str, str] = field(default_factory=dict)

    def config(self) -> dict[str, str]:
        conf = {"cleanup.policy": self.cleanup_policy, **self.extra}
        if "delete" in self.cleanup_policy:
            conf["retention.ms"] = str(self.retention_ms)
        return conf


def topic_specs(settings: Settings) -> list[TopicSpec]:
    """All topics, with their full names. Keyed event topics share one partition count so that
    declarations, scans, instructions and the declaration-state changelog are co-partitioned."""
    p = settings.partitions
    t = settings.topic
    app = settings.app_id
    inputs = int(settings.input_topic_retention_s * 1000)  # the declaration state's fingerprints outlive it (settings)
    return [
        TopicSpec(t(DECLARATIONS), p, "declaration_id", "Declarations from the port gateways.", retention_ms=inputs),
        TopicSpec(t(DECLARATION_BATCHES), p, "batch_id",
                  "Declarations packed per partition by high-rate gateways (each on its murmur2 partition).", retention_ms=inputs),
        TopicSpec(t(CENTRALISED_DECLARATIONS), p, "centralised_id",
                  "Centralised declarations (many goods items) from white-list enterprises; split into one declaration per item.",
                  retention_ms=inputs),
        TopicSpec(t(SCANS), p, "declaration_id", "X-ray / CT scan results from inspection equipment.", retention_ms=inputs),
        TopicSpec(
            t(CREDIT_EVENTS), 1, "enterprise_id",
            "Credit and lifecycle events from customs and other agencies (the audit trail; the "
            "folded current state is the compacted enterprise-credit changelog).",
            retention_ms=365 * DAY_MS,
        ),
        TopicSpec(
            t(CREDIT_EVENT_BATCHES), 1, "batch_id",
            "Credit events in bulk (agencies' batches, a register reload): folded like credit-events, event by event.",
            retention_ms=365 * DAY_MS,
        ),
        TopicSpec(t(RISK_LISTS), 1, "entry_id", "Risk characteristic list entries and other agencies' alerts (null value: delete).",
                  cleanup_policy="compact"),
        TopicSpec(t(INSTRUCTIONS), p, "declaration_id", "Control instructions for the inspection stations."),
        TopicSpec(t(INSPECTION_RESULTS), p, "declaration_id", "What the stations found (labels for retraining)."),
        TopicSpec(t(SHADOW_SCORES), p, "declaration_id",
                  "Challenger (shadow) model scores beside the champion's, per decided declaration revision (never acted on)."),
        TopicSpec(t(WARNINGS), p, "declaration_id (or subject id)",
                  "Early warnings for analysts (strict EarlyWarning records; warning_id deduplicates).", retention_ms=30 * DAY_MS),
        TopicSpec(t(WARNING_REVIEWS), p, "declaration_id (or subject id), as the warning",
                  "Analysts' verdicts on early warnings (confirmed or dismissed; warning_id deduplicates).", retention_ms=365 * DAY_MS),
        TopicSpec(t(JOINT_FINDINGS), p, "declaration_id (or subject id)",
                  "Confirmed findings for the other agencies (joint control, outbound; finding_id deduplicates).",
                  retention_ms=365 * DAY_MS),
        TopicSpec(t(DEAD_LETTERS), 1, "source topic", "Rejected records with the reason and the original bytes.", retention_ms=30 * DAY_MS),
        TopicSpec(t(CONSOLE_ACTIONS), 1, "user", "What people did in the console (who, as what, to what, when): its audit trail.",
                  retention_ms=365 * DAY_MS),
        TopicSpec(changelog_topic(settings, TABLE_DECLARATION_STATE), p, "declaration_id",
                  "Faust table: per-declaration decision state.", cleanup_policy="compact"),
        TopicSpec(changelog_topic(settings, TABLE_SCAN_DEADLINES), p, "declaration_id",
                  "Faust table: machine-checks awaiting a scan, with deadlines.", cleanup_policy="compact"),
        TopicSpec(changelog_topic(settings, TABLE_RISK_LISTS), 1, "entry_id",
                  "Faust global table: validated risk-list entries.", cleanup_policy="compact"),
        TopicSpec(changelog_topic(settings, TABLE_CAPACITY), p, "capacity:<partition>",
                  "Faust table: adaptive-threshold controller state per partition.", cleanup_policy="compact"),
        TopicSpec(changelog_topic(settings, TABLE_ENTERPRISE_CREDIT), 1, "enterprise_id",
                  "Faust global table: each enterprise's current credit state.", cleanup_policy="compact"),
        TopicSpec(t(ZERO_TARIFF_REGISTER), 1, "import_id",
                  "Zero-tariff imports of qualified enterprises, with the goods' identifiers (a record replaces the import's "
                  "last; status released or a null value takes the goods off the register).", cleanup_policy="compact"),
        TopicSpec(t(POSITIONS), p, "identifier (VIN or hull number)",
                  "Position and geofence events of tracked vehicles and vessels from the positioning system.", retention_ms=inputs),
        TopicSpec(changelog_topic(settings, TABLE_ZERO_TARIFF_REGISTER), 1, "i:<import_id> | g:<identifier>",
                  "Faust global table: the zero-tariff register by import and by goods identifier.", cleanup_policy="compact"),
        TopicSpec(changelog_topic(settings, TABLE_TRACKED_GOODS), p, "identifier",
                  "Faust table: where each registered vehicle or vessel was last seen (on or off the island).", cleanup_policy="compact"),
        TopicSpec(t(DUTY_FREE_PURCHASES), p, "shopper_token",
                  "Purchases at the offshore duty-free shops (tokens only, never personal data).", retention_ms=400 * DAY_MS),
        TopicSpec(t(DUTY_FREE_SHOPPER_LINKS), p, "link (payer|phone|address:<token>)",
                  "Internal: shoppers tied to a payer, phone or delivery address, re-keyed by the link for the resale index.",
                  retention_ms=30 * DAY_MS),
        TopicSpec(changelog_topic(settings, TABLE_DUTY_FREE_SHOPPERS), p, "shopper_token",
                  "Faust table: each shopper's calendar year of duty-free purchases.", cleanup_policy="compact"),
        TopicSpec(changelog_topic(settings, TABLE_DUTY_FREE_LINKS), p, "link",
                  "Faust table: the shoppers tied to each payer, phone or delivery address this year.", cleanup_policy="compact"),
        TopicSpec(changelog_topic(settings, TABLE_DUTY_FREE_STANDING), 1, "q:<shopper> | l:<shopper>",
                  "Faust global table: flagged duty-free shoppers (why), read by departure decisions.", cleanup_policy="compact"),
        TopicSpec(f"{app}-__assignor-__leader", 1, "-", "Faust's leader-election topic."),
    ]


class TopicsError(RuntimeError):
    """The topics cannot be used as configured; the message says why and what to do."""


class BrokerUnreachable(TopicsError):
    """The cluster refused or could not be reached; the message says why."""


class TopicLayoutMismatch(TopicsError):
    """An existing topic has another partition count than the settings give it."""


def check_layout(settings: Settings, partition_counts: dict[str, int]) -> None:
    """Existing topics (name -> partition count) must match the settings: a gateway places a
    declaration by murmur2 over ``settings.partitions`` and the worker joins its scans and state on
    that partition, so a declarations topic with another count would send records to partitions
    the join never looks at (the worker dead-letters them as wrong-partition)."""
    wrong = [(s.name, partition_counts[s.name]) for s in topic_specs(settings)
             if s.name in partition_counts and partition_counts[s.name] != s.partitions]
    if wrong:
        listed = ", ".join(f"{name} has {have}" for name, have in wrong[:4]) + (" ..." if len(wrong) > 4 else "")
        raise TopicLayoutMismatch(
            f"{len(wrong)} existing topic(s) do not have the partition counts of these settings "
            f"(PARTITIONS={settings.partitions}): {listed}. Set PARTITIONS to the count the topics were "
            f"created with, or use new topics (another TOPIC_PREFIX and APP_ID); changing the count of "
            f"existing topics would move keys away from their state.")


class TopicConfigMismatch(TopicsError):
    """An existing topic's cleanup policy, retention or replication is not what the pipeline needs."""


INPUT_TOPICS = (DECLARATIONS, DECLARATION_BATCHES, CENTRALISED_DECLARATIONS, SCANS)


def check_configs(settings: Settings, existing: dict[str, ExistingTopic], wanted: Durability) -> None:
    """Existing topics of ours must have the cleanup policy, retention and replication of their
    spec (``clients.topic_checks``); raises TopicConfigMismatch saying what to alter or recreate."""
    ceiling = {settings.topic(n): int(settings.state_retention_s * 1000) for n in INPUT_TOPICS}
    problems = [p for s in topic_specs(settings) if s.name in existing
                for p in topic_problems(s, existing[s.name], wanted, ceiling.get(s.name))]
    if problems:
        raise TopicConfigMismatch(describe_problems(problems, settings))


def _describe_existing(admin: AdminClient, md: Any, names: list[str], timeout_s: float) -> dict[str, ExistingTopic]:
    if not names:
        return {}
    futures = admin.describe_configs([ConfigResource(ResourceType.TOPIC, n) for n in names], request_timeout=timeout_s)
    out = {}
    for resource, future in futures.items():
        try:
            entries = future.result(timeout=timeout_s)
        except KafkaException as exc:
            raise TopicsError(f"cannot describe the configuration of topic {resource.name}: {exc.args[0].str()}") from exc
        parts = md.topics[resource.name].partitions.values()
        out[resource.name] = ExistingTopic(partitions=len(parts), replication_factor=min((len(p.replicas) for p in parts), default=0),
                                           config={k: e.value for k, e in entries.items() if e.value is not None})
    return out


def create_topics(settings: Settings, timeout_s: float = 30.0, *, admin: AdminClient | None = None) -> list[str]:
    """Create missing topics and check that existing ones have the partition counts the settings
    give them (raises TopicLayoutMismatch otherwise) and the cleanup policy, retention and
    replication their spec and the cluster want (TopicConfigMismatch). Topics get
    min(3, brokers) replicas unless ``REPLICATION_FACTOR`` says otherwise. Returns the names created.
    ``admin``: an admin client to use instead of a new one (tests pass a fake)."""
    errors: list[KafkaError] = []
    # Authentication failures surface only through the error callback: without it a wrong
    # password looks like a generic metadata timeout.
    # confluent-kafka types AdminClient's config as scalars only; librdkafka takes error_cb as Producer/Consumer do.
    if admin is None:
        admin = AdminClient({**settings.confluent_config(), "error_cb": errors.append})  # type: ignore[dict-item]
    try:
        metadata = admin.list_topics(timeout=timeout_s)
        existing = metadata.topics
    except KafkaException as exc:
        fatal = [e for e in errors if e.code() in (KafkaError._AUTHENTICATION, KafkaError.SASL_AUTHENTICATION_FAILED, KafkaError._SSL)]
        detail = (fatal or errors or [exc.args[0]])[0]
        raise BrokerUnreachable(f"cannot reach Kafka at {settings.kafka_bootstrap_servers}: {detail.str()}") from exc
    check_layout(settings, {name: len(t.partitions) for name, t in existing.items() if t.error is None})
    brokers = len(metadata.brokers)
    if settings.replication_factor and settings.replication_factor > brokers:
        raise TopicsError(f"REPLICATION_FACTOR={settings.replication_factor} but the cluster at {settings.kafka_bootstrap_servers} "
                          f"has {brokers} broker(s) up: start the brokers, or lower REPLICATION_FACTOR")
    replication = durability(settings, brokers)
    ours = [s.name for s in topic_specs(settings) if s.name in existing and existing[s.name].error is None]
    check_configs(settings, _describe_existing(admin, metadata, ours, timeout_s), replication)
    wanted = [s for s in topic_specs(settings) if s.name not in existing]
    if not wanted:
        return []
    futures = admin.create_topics(
        [NewTopic(s.name, num_partitions=s.partitions, replication_factor=replication.replication_factor,
                  config={**s.config(), **replication.topic_config()}) for s in wanted],
        operation_timeout=timeout_s,
        request_timeout=timeout_s,
    )
    created = []
    for name, future in futures.items():
        try:
            future.result()
            created.append(name)
        except KafkaException as exc:
            if exc.args[0].name() != "TOPIC_ALREADY_EXISTS":  # another process won the race
                raise
    log.info("created %d topics", len(created))
    return created
