"""Every librdkafka producer of the pipeline's tools (gateways, scanners, stations, console) is durable."""

from __future__ import annotations

from typing import Any

import pytest

from clients.producers import producer_config
from common.settings import Settings


def test_producers_wait_for_all_in_sync_replicas_with_idempotence() -> None:
    conf = producer_config(Settings())
    assert conf["acks"] == "all"
    assert conf["enable.idempotence"] is True
    assert conf["partitioner"] == "murmur2_random"


def test_the_simulated_gateway_publishes_with_that_configuration(monkeypatch: pytest.MonkeyPatch) -> None:
    import portsim.gateway as gateway
    from portsim.traffic import PortOffice

    built: list[dict[str, Any]] = []

    class RecordingProducer:  # records the configuration instead of connecting
        def __init__(self, conf: dict[str, Any]) -> None:
            built.append(conf)

    monkeypatch.setattr(gateway, "Producer", RecordingProducer)
    gateway.PortGateway(Settings(topic_prefix="t."), PortOffice(seed=11, enterprises=200))
    assert len(built) == 1
    assert built[0]["acks"] == "all" and built[0]["enable.idempotence"] is True
