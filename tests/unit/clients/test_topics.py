"""The topic layout check: existing topics must have the partition counts the settings give them, and the
cleanup policy, retention and replication their spec and the cluster want."""

from __future__ import annotations

import pytest

from clients import topics
from clients.topic_checks import Durability, durability
from clients.topics import TopicConfigMismatch, TopicLayoutMismatch, TopicsError, check_layout, create_topics, topic_specs
from common.settings import Settings
from tests.unit.clients.fake_admin import FakeAdmin


def counts(settings: Settings) -> dict[str, int]:
    return {spec.name: spec.partitions for spec in topic_specs(settings)}


def test_matching_or_missing_topics_pass() -> None:
    s = Settings(partitions=2)
    check_layout(s, counts(s))
    check_layout(s, {})  # nothing created yet
    check_layout(s, {"someone-elses-topic": 12, **counts(s)})  # topics of other applications are not ours to judge


def test_a_declarations_topic_with_another_count_is_refused_with_what_to_do() -> None:
    s = Settings(partitions=2)
    existing = counts(s)
    existing[s.topic(topics.DECLARATIONS)] = 8
    with pytest.raises(TopicLayoutMismatch) as exc:
        check_layout(s, existing)
    message = str(exc.value)
    assert f"{s.topic(topics.DECLARATIONS)} has 8" in message
    assert "PARTITIONS=2" in message and "TOPIC_PREFIX" in message


def test_every_mismatch_is_counted_and_the_list_is_kept_short() -> None:
    small = Settings(partitions=3)
    existing = counts(Settings(partitions=5))  # a whole layout created with another count
    wrong = sum(1 for spec in topic_specs(small) if spec.partitions == 3)
    with pytest.raises(TopicLayoutMismatch, match=rf"^{wrong} existing topic\(s\)") as exc:
        check_layout(small, existing)
    assert str(exc.value).count(" has 5") == 4 and " ..." in str(exc.value)


# ---- cleanup policy, retention and replication of existing topics (clients.topic_checks) ---------


def test_replication_follows_the_cluster_size_unless_set() -> None:
    assert durability(Settings(), 1) == Durability(1, 1)
    assert durability(Settings(), 2) == Durability(2, 1)
    assert durability(Settings(), 3) == Durability(3, 2)
    assert durability(Settings(), 7) == Durability(3, 2)
    assert durability(Settings(replication_factor=5), 7) == Durability(5, 2)
    assert durability(Settings(replication_factor=3, min_insync_replicas=3), 3) == Durability(3, 3)
    with pytest.raises(ValueError, match="min_insync_replicas must not exceed replication_factor"):
        Settings(replication_factor=2, min_insync_replicas=3)


def test_topics_on_a_three_broker_cluster_get_three_replicas_and_two_in_sync() -> None:
    s = Settings(partitions=2)
    admin = FakeAdmin(brokers=3)
    created = create_topics(s, admin=admin)  # type: ignore[arg-type]  # a fake admin client
    assert len(created) == len(topic_specs(s))
    assert {t.replication_factor for t in admin.created} == {3}
    assert {t.config["min.insync.replicas"] for t in admin.created} == {"2"}
    assert create_topics(s, admin=admin) == []  # type: ignore[arg-type]  # what it made passes its own check


def test_one_broker_keeps_one_replica_and_the_broker_default_in_sync_count() -> None:
    admin = FakeAdmin(brokers=1)
    create_topics(Settings(), admin=admin)  # type: ignore[arg-type]  # a fake admin client
    assert {t.replication_factor for t in admin.created} == {1}
    assert all("min.insync.replicas" not in t.config for t in admin.created)


def test_a_replication_factor_above_the_brokers_up_is_refused_before_anything_is_created() -> None:
    admin = FakeAdmin(brokers=1)
    with pytest.raises(TopicsError, match=r"REPLICATION_FACTOR=3 .* has 1 broker\(s\) up"):
        create_topics(Settings(replication_factor=3), admin=admin)  # type: ignore[arg-type]  # a fake admin client
    assert admin.created == []


def test_a_changelog_that_deletes_is_refused_with_the_alter_command() -> None:
    s = Settings(kafka_bootstrap_servers="kafka-1:9092,kafka-2:9092")
    changelog = topics.changelog_topic(s, topics.TABLE_DECLARATION_STATE)
    admin = FakeAdmin(brokers=1)
    admin.add(changelog, s.partitions, 1, {"cleanup.policy": "delete", "retention.ms": "86400000"})
    with pytest.raises(TopicConfigMismatch) as exc:
        create_topics(s, admin=admin)  # type: ignore[arg-type]  # a fake admin client
    message = str(exc.value)
    assert f"{changelog}: cleanup.policy is delete, compact wanted" in message
    assert (f"kafka-configs.sh --bootstrap-server kafka-1:9092 --alter --entity-type topics --entity-name {changelog} "
            f"--add-config cleanup.policy=compact") in message
    assert admin.created == []  # nothing is created beside a topic that would lose state


def test_retention_shorter_than_the_spec_or_inputs_kept_longer_than_the_state_are_refused() -> None:
    s = Settings()
    admin = FakeAdmin(brokers=1)
    create_topics(s, admin=admin)  # type: ignore[arg-type]  # a fake admin client
    instructions, declarations = s.topic(topics.INSTRUCTIONS), s.topic(topics.DECLARATIONS)
    admin.topics[instructions].config["retention.ms"] = "3600000"
    admin.topics[declarations].config["retention.ms"] = "-1"  # forever: outlives every fingerprint
    with pytest.raises(TopicConfigMismatch) as exc:
        create_topics(s, admin=admin)  # type: ignore[arg-type]  # a fake admin client
    message = str(exc.value)
    assert message.startswith("2 existing topic setting(s)")
    assert f"{instructions}: retention.ms is 3600000, 604800000 or more wanted" in message
    assert f"{declarations}: retention.ms is -1, 604800000 to 1209600000 wanted" in message
    assert f"--entity-name {declarations} --add-config retention.ms=604800000" in message
    # Longer is fine where nothing depends on records going (instructions kept a year).
    admin.topics[instructions].config["retention.ms"] = str(365 * topics.DAY_MS)
    admin.topics[declarations].config["retention.ms"] = str(8 * topics.DAY_MS)
    assert create_topics(s, admin=admin) == []  # type: ignore[arg-type]  # a fake admin client


def test_too_few_replicas_say_recreate_and_a_low_in_sync_count_says_alter() -> None:
    s = Settings()
    small = FakeAdmin(brokers=1)
    create_topics(s, admin=small)  # type: ignore[arg-type]  # made on one broker
    grown = FakeAdmin(brokers=3, topics=small.topics)  # the cluster grew; the topics did not
    with pytest.raises(TopicConfigMismatch) as exc:
        create_topics(s, admin=grown)  # type: ignore[arg-type]  # a fake admin client
    message = str(exc.value)
    n = len(topic_specs(s))
    assert message.startswith(f"{2 * n} existing topic setting(s)") and "... and" in message
    assert f"{s.topic(topics.DECLARATIONS)}: 1 replica(s), 3 or more wanted (REPLICATION_FACTOR): recreate it" in message
    assert "min.insync.replicas is 1, 2 or more wanted" in message and "--add-config min.insync.replicas=2" in message


def test_a_broker_that_reports_only_what_was_set_is_judged_on_that() -> None:
    s = Settings()
    admin = FakeAdmin(brokers=1, defaults={})  # Tansu: no broker defaults in the description
    create_topics(s, admin=admin)  # type: ignore[arg-type]  # a fake admin client
    del admin.topics[s.topic(topics.INSTRUCTIONS)].config["retention.ms"]
    assert create_topics(s, admin=admin) == []  # type: ignore[arg-type]  # nothing reported, nothing to judge
    del admin.topics[topics.changelog_topic(s, topics.TABLE_CAPACITY)].config["cleanup.policy"]
    with pytest.raises(TopicConfigMismatch, match=r"cleanup\.policy is delete, compact wanted"):  # Kafka's default
        create_topics(s, admin=admin)  # type: ignore[arg-type]  # a fake admin client
