"""`riskctl topics create` and `riskctl worker` against topics that already exist, on a real broker."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from clients import topics
from common.settings import Settings
from devkit.brokers import Broker

pytestmark = pytest.mark.integration


def riskctl(broker: Broker, name: str, partitions: int, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "RISKCTL_SETTINGS"}
    env.update(KAFKA_BOOTSTRAP_SERVERS=broker.bootstrap_servers, TOPIC_PREFIX=f"{name}.", APP_ID=name,
               PARTITIONS=str(partitions), METRICS_PORT="0", DATA_DIR=os.devnull)
    return subprocess.run([sys.executable, "-m", "cli.main", *args], env=env, capture_output=True, text=True, timeout=120)


def test_topics_created_with_another_partition_count_are_refused(broker: Broker, unique_name: str) -> None:
    n = len(topics.topic_specs(Settings(topic_prefix=f"{unique_name}.", app_id=unique_name)))
    first = riskctl(broker, unique_name, 2, "topics", "create")
    assert first.returncode == 0, first.stderr[-2000:]
    assert f"{n} topics created, 0 already existed" in first.stdout

    again = riskctl(broker, unique_name, 2, "topics", "create")
    assert again.returncode == 0, again.stderr[-2000:]
    assert f"0 topics created, {n} already existed" in again.stdout

    declarations = f"{unique_name}.{topics.DECLARATIONS}"
    for command in (("topics", "create"), ("worker",)):
        refused = riskctl(broker, unique_name, 3, *command)
        assert refused.returncode == 1, f"riskctl {' '.join(command)} accepted the wrong layout:\n{refused.stderr[-2000:]}"
        assert f"{declarations} has 2" in refused.stderr and "PARTITIONS=3" in refused.stderr, refused.stderr[-2000:]
        assert "Traceback" not in refused.stderr
