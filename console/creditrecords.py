"""Enterprise credit records for the analyst: each enterprise's record as the workers hold it, by agency.

The workers fold credit events into the enterprise-credit table (``policy.credit`` says how each
agency's entries combine); its changelog is compacted, so the latest record of every enterprise
stays on it. With 20 agencies an enterprise's record is about 2 KB, 140 MB for the office's 70,000
enterprises: the console does not hold them. Its feed keeps where each enterprise's latest record
is (partition and offset, ``CreditPositions``), and the page reads that one record when an analyst
asks for it (``ChangelogReader``).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass

from clients.topics import TABLE_ENTERPRISE_CREDIT, changelog_topic
from common.settings import Settings
from policy.credit import EnterpriseCredit

READ_TIMEOUT_S = 10.0


class CreditPositions:
    """enterprise id -> (partition, offset) of its latest changelog record, at most ``limit`` of them
    (the rest counted in ``dropped``). Not thread-safe: the feed calls it under its lock."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.dropped = 0
        self._at: dict[str, tuple[int, int]] = {}

    def __len__(self) -> int:
        return len(self._at)

    def put(self, enterprise_id: str, partition: int, offset: int, deleted: bool) -> None:
        if deleted:
            self._at.pop(enterprise_id, None)
        elif enterprise_id in self._at or len(self._at) < self.limit:
            self._at[enterprise_id] = (partition, offset)
        else:
            self.dropped += 1

    def get(self, enterprise_id: str) -> tuple[int, int] | None:
        return self._at.get(enterprise_id)


@dataclass(frozen=True)
class Lookup:
    """What the page shows for one enterprise."""

    enterprise_id: str
    record: EnterpriseCredit | None  # None: no record (the policy treats it as general, no qualifications)
    moved: bool = False  # a newer record replaced the one found while it was read: ask again


# (partition, offset) -> (key, value) of that changelog record, or None when nothing is there any more.
ReadOne = Callable[[int, int], tuple[bytes | None, bytes | None] | None]


def look_up(enterprise_id: str, position: tuple[int, int] | None, read: ReadOne) -> Lookup:
    if position is None:
        return Lookup(enterprise_id, None)
    found = read(*position)
    if found is None or found[0] != enterprise_id.encode():
        return Lookup(enterprise_id, None, moved=True)  # compacted away after a newer record came: the feed has it soon
    if found[1] is None:
        return Lookup(enterprise_id, None)
    return Lookup(enterprise_id, EnterpriseCredit.from_bytes(found[1]))


class ChangelogReader:
    """Reads one record of the enterprise-credit changelog at a time, with one consumer kept open
    (partitions assigned directly: no group, nothing committed)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.topic = changelog_topic(settings, TABLE_ENTERPRISE_CREDIT)
        self._lock = threading.Lock()
        self._consumer: object | None = None

    def read(self, partition: int, offset: int) -> tuple[bytes | None, bytes | None] | None:
        from confluent_kafka import Consumer, KafkaException, TopicPartition

        with self._lock:
            if self._consumer is None:
                self._consumer = Consumer({**self.settings.confluent_config(), "group.id": f"{self.settings.app_id}-console-credit",
                                           "enable.auto.commit": False, "enable.partition.eof": True,
                                           "fetch.wait.max.ms": 10})
            consumer: Consumer = self._consumer  # type: ignore[assignment]
            consumer.assign([TopicPartition(self.topic, partition, offset)])
            msg = consumer.poll(READ_TIMEOUT_S)
            if msg is None:
                raise TimeoutError(f"{self.topic} [{partition}] offset {offset} not read within {READ_TIMEOUT_S:.0f}s")
            err = msg.error()
            if err is not None:
                if err.code() == err._PARTITION_EOF:
                    return None
                raise KafkaException(err)
            return msg.key(), msg.value()

    def close(self) -> None:
        with self._lock:
            if self._consumer is not None:
                self._consumer.close()  # type: ignore[attr-defined]
                self._consumer = None
