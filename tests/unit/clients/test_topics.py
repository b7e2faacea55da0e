"""The topic layout check: existing topics must have the partition counts the settings give them."""

from __future__ import annotations

import pytest

from clients import topics
from clients.topics import TopicLayoutMismatch, check_layout, topic_specs
from common.settings import Settings


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
