"""Topics on a 3-node Apache Kafka cluster: three replicas, two in sync, and existing topics judged by
their cleanup policy, retention and replication, not only their partition counts."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from confluent_kafka.admin import AdminClient, AlterConfigOpType, ConfigEntry, ConfigResource, NewTopic, ResourceType

from clients import topics
from common.settings import Settings
from devkit.cluster import KafkaCluster

pytestmark = [pytest.mark.integration, pytest.mark.cluster]


def riskctl(cluster: KafkaCluster, name: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("RISKCTL_SETTINGS", "REPLICATION_FACTOR", "MIN_INSYNC_REPLICAS")}
    env.update(KAFKA_BOOTSTRAP_SERVERS=cluster.bootstrap_servers, TOPIC_PREFIX=f"{name}.", APP_ID=name,
               PARTITIONS="2", METRICS_PORT="0", DATA_DIR=os.devnull)
    return subprocess.run([sys.executable, "-m", "cli.main", *args], env=env, capture_output=True, text=True, timeout=120)


def test_topics_get_three_replicas_and_two_in_sync(kafka_cluster: KafkaCluster, unique_name: str) -> None:
    done = riskctl(kafka_cluster, unique_name, "topics", "create")
    assert done.returncode == 0, done.stderr[-2000:]
    settings = Settings(topic_prefix=f"{unique_name}.", app_id=unique_name, partitions=2)
    names = [s.name for s in topics.topic_specs(settings)]
    admin = AdminClient({"bootstrap.servers": kafka_cluster.bootstrap_servers})
    md = admin.list_topics(timeout=10).topics
    assert {len(p.replicas) for n in names for p in md[n].partitions.values()} == {3}
    configs = admin.describe_configs([ConfigResource(ResourceType.TOPIC, n) for n in names])
    assert {f.result(timeout=10)["min.insync.replicas"].value for f in configs.values()} == {"2"}
    again = riskctl(kafka_cluster, unique_name, "topics", "create")
    assert again.returncode == 0 and f"0 topics created, {len(names)} already existed" in again.stdout, again.stderr[-2000:]


def test_a_changelog_created_to_delete_is_refused_with_the_command_that_fixes_it(kafka_cluster: KafkaCluster, unique_name: str) -> None:
    settings = Settings(topic_prefix=f"{unique_name}.", app_id=unique_name, partitions=2)
    changelog = topics.changelog_topic(settings, topics.TABLE_DECLARATION_STATE)
    admin = AdminClient({"bootstrap.servers": kafka_cluster.bootstrap_servers})
    for future in admin.create_topics([NewTopic(changelog, num_partitions=2, replication_factor=3,
                                                config={"cleanup.policy": "delete", "min.insync.replicas": "2"})]).values():
        future.result(timeout=30)
    for command in (("topics", "create"), ("worker",)):
        refused = riskctl(kafka_cluster, unique_name, *command)
        assert refused.returncode == 1, f"riskctl {' '.join(command)} accepted a deleting changelog:\n{refused.stderr[-2000:]}"
        assert f"{changelog}: cleanup.policy is delete, compact wanted" in refused.stderr, refused.stderr[-2000:]
        assert f"--entity-name {changelog} --add-config cleanup.policy=compact" in refused.stderr
        assert "Traceback" not in refused.stderr
    assert not any(n.startswith(f"{unique_name}.") for n in admin.list_topics(timeout=10).topics), "nothing else is created"
    # Altered as the message says, the topic is accepted.
    compact = ConfigEntry("cleanup.policy", "compact", incremental_operation=AlterConfigOpType.SET)
    for future in admin.incremental_alter_configs([ConfigResource(ResourceType.TOPIC, changelog, incremental_configs=[compact])]).values():
        future.result(timeout=30)
    fixed = riskctl(kafka_cluster, unique_name, "topics", "create")
    assert fixed.returncode == 0, fixed.stderr[-2000:]
