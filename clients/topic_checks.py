"""What an existing topic must be, beyond its partition count, for the pipeline to keep its promises.

A changelog that deletes instead of compacting drops table state that a worker taking a partition
over needs; an input topic kept shorter than ``INPUT_TOPIC_RETENTION_S`` (or longer than
``STATE_RETENTION_S``) breaks the rule that every record still readable meets its declaration's
fingerprint; fewer replicas or a lower ``min.insync.replicas`` than the settings want lets a broker
failure lose acknowledged writes. ``riskctl topics create`` and the worker's start-up check refuse
such topics (``clients.topics.create_topics``) with what to do: alter a config (the
``kafka-configs.sh`` command is given) or, for replication, recreate the topic.

Pure functions over what the admin client described; ``clients.topics`` does the I/O.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from common.settings import Settings

if TYPE_CHECKING:  # clients.topics imports this module
    from clients.topics import TopicSpec

#: Kafka's default cleanup policy, assumed when a broker leaves the config out of its description.
DEFAULT_CLEANUP_POLICY = "delete"
#: Problems listed in full in one message; the rest are counted.
LISTED_PROBLEMS = 8


@dataclass(frozen=True, slots=True)
class Durability:
    """The replication the settings want for every topic on this cluster."""

    replication_factor: int
    min_insync_replicas: int

    def topic_config(self) -> dict[str, str]:
        """Topic-level configs to create topics with (nothing on a one-replica cluster: the broker default holds)."""
        return {"min.insync.replicas": str(self.min_insync_replicas)} if self.replication_factor > 1 else {}


def durability(settings: Settings, brokers: int) -> Durability:
    """``REPLICATION_FACTOR`` or min(3, brokers); ``MIN_INSYNC_REPLICAS`` or min(2, replicas - 1), at
    least 1: with acks=all an acknowledged write is then on two brokers and one broker may be down."""
    replicas = settings.replication_factor or max(1, min(3, brokers))
    isr = settings.min_insync_replicas or max(1, min(2, replicas - 1))
    return Durability(replicas, isr)


@dataclass(frozen=True, slots=True)
class ExistingTopic:
    """An existing topic as the cluster describes it."""

    partitions: int
    replication_factor: int  # the fewest replicas of any of its partitions
    config: Mapping[str, str]  # a broker may leave defaults out (Tansu reports only what was set)


@dataclass(frozen=True, slots=True)
class TopicProblem:
    topic: str
    what: Literal["cleanup.policy", "retention.ms", "min.insync.replicas", "replication"]
    have: str
    want: str
    fix: str  # the config value to set ("" for replication: the topic is recreated)


def _policies(value: str) -> frozenset[str]:
    return frozenset(p.strip() for p in value.split(",") if p.strip())


def topic_problems(spec: TopicSpec, topic: ExistingTopic, wanted: Durability,
                   longest_retention_ms: int | None = None) -> list[TopicProblem]:
    """How ``topic`` falls short of ``spec`` and ``wanted``. Retention shorter than the spec's is a
    problem (records go before the pipeline is done with them), longer only beyond
    ``longest_retention_ms`` (input topics: the declaration state's fingerprints must outlive them)."""
    out: list[TopicProblem] = []
    have_policy = topic.config.get("cleanup.policy", DEFAULT_CLEANUP_POLICY)
    if _policies(have_policy) != _policies(spec.cleanup_policy):
        out.append(TopicProblem(spec.name, "cleanup.policy", have_policy, spec.cleanup_policy, f"cleanup.policy={spec.cleanup_policy}"))
    raw_retention = topic.config.get("retention.ms")
    if "delete" in _policies(spec.cleanup_policy) and raw_retention is not None and raw_retention.lstrip("-").isdigit():
        have_ms = int(raw_retention)  # -1: kept forever
        too_short = 0 <= have_ms < spec.retention_ms
        too_long = longest_retention_ms is not None and (have_ms < 0 or have_ms > longest_retention_ms)
        if too_short or too_long:
            want = f"{spec.retention_ms}" + (f" to {longest_retention_ms}" if longest_retention_ms is not None else " or more")
            out.append(TopicProblem(spec.name, "retention.ms", raw_retention, want, f"retention.ms={spec.retention_ms}"))
    raw_isr = topic.config.get("min.insync.replicas")
    if raw_isr is not None and raw_isr.isdigit() and int(raw_isr) < wanted.min_insync_replicas:
        out.append(TopicProblem(spec.name, "min.insync.replicas", raw_isr, f"{wanted.min_insync_replicas} or more",
                                f"min.insync.replicas={wanted.min_insync_replicas}"))
    if topic.replication_factor < wanted.replication_factor:
        out.append(TopicProblem(spec.name, "replication", str(topic.replication_factor), f"{wanted.replication_factor} or more", ""))
    return out


def describe_problems(problems: Iterable[TopicProblem], settings: Settings) -> str:
    """One line per problem with what to do: the ``kafka-configs.sh`` alter command for a config,
    recreating the topic for its replication."""
    problems = list(problems)
    bootstrap = settings.kafka_bootstrap_servers.split(",")[0].strip()
    lines = [f"{len(problems)} existing topic setting(s) differ from what the pipeline needs "
             f"(a topic's retention, cleanup or replication decides what survives a failure):"]
    for p in problems[:LISTED_PROBLEMS]:
        if p.what == "replication":
            lines.append(f"  {p.topic}: {p.have} replica(s), {p.want} wanted (REPLICATION_FACTOR): recreate it while no "
                         f"worker runs (delete it, then `riskctl topics create`), or add replicas with kafka-reassign-partitions.sh")
        else:
            lines.append(f"  {p.topic}: {p.what} is {p.have}, {p.want} wanted: kafka-configs.sh --bootstrap-server {bootstrap} "
                         f"--alter --entity-type topics --entity-name {p.topic} --add-config {p.fix}")
    if len(problems) > LISTED_PROBLEMS:
        lines.append(f"  ... and {len(problems) - LISTED_PROBLEMS} more")
    return "\n".join(lines)
