"""Integration fixtures: real brokers on loopback (embedded Tansu and Apache Kafka 4.x KRaft).

Every test in tests/integration is marked ``integration``. The session-scoped ``broker`` fixture is
parametrized over the broker kinds, so each test that uses it runs once per broker (ids ``tansu`` and
``kafka``). Choose brokers with ``--brokers tansu,kafka`` or env ``RISK_TEST_BROKERS`` (default:
both). A broker starts on first use and stops at the end of the session; with both kinds selected,
pytest groups the tests by broker, so only one broker runs at a time. The Kafka jars are fetched
with Maven when they are missing (``ensure_kafka_jars``).

``broker`` yields the ``devkit.brokers`` object itself: ``.bootstrap_servers``, ``.kind``, and for
Kafka ``.restart(hard=False)``, ``.kill()``, ``.suspend()``/``.resume()``. A test that restarts the
broker must leave it running.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from devkit.brokers import BROKER_KINDS, Broker, BrokerError, ensure_kafka_jars, make_broker
from devkit.cluster import KafkaCluster

pytestmark = pytest.mark.integration

ENV_BROKERS = "RISK_TEST_BROKERS"


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("brokers")
    group.addoption(
        "--brokers",
        default=None,
        help=f"comma-separated broker kinds for integration tests ({', '.join(BROKER_KINDS)}); "
        f"default: env {ENV_BROKERS} or all",
    )


def selected_brokers(config: pytest.Config) -> list[str]:
    raw = config.getoption("--brokers") or os.environ.get(ENV_BROKERS) or ",".join(BROKER_KINDS)
    kinds = [k.strip().lower() for k in raw.split(",") if k.strip()]
    unknown = sorted(set(kinds) - set(BROKER_KINDS))
    if unknown:
        raise pytest.UsageError(f"unknown broker kind(s) {unknown}; expected some of {list(BROKER_KINDS)}")
    return list(dict.fromkeys(kinds))


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # conftest-level pytestmark does not reach test modules: mark every test in this directory.
    here = os.path.dirname(__file__)
    for item in items:
        if str(item.path).startswith(here + os.sep):
            item.add_marker(pytest.mark.integration)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    kinds = selected_brokers(metafunc.config)
    if "broker" in metafunc.fixturenames:
        metafunc.parametrize("broker", kinds, ids=kinds, indirect=True, scope="session")
    elif "broker_kind" in metafunc.fixturenames:  # tests that start their own broker processes
        metafunc.parametrize("broker_kind", kinds, ids=kinds)


@pytest.fixture(scope="session")
def broker(request: pytest.FixtureRequest) -> Iterator[Broker]:
    kind: str = request.param
    if kind == "kafka":
        try:
            ensure_kafka_jars()
        except BrokerError as exc:
            pytest.fail(f"Apache Kafka jars unavailable: {exc}", pytrace=False)
    b = make_broker(kind)
    try:
        b.start()
    except BrokerError as exc:
        b.stop()
        pytest.fail(f"{kind} broker did not start: {exc}", pytrace=False)
    request.config.stash.setdefault(_TIMINGS, BrokerTimings()).add(kind, "broker start -> metadata ready",
                                                                    b.startup_seconds or 0.0)
    try:
        yield b
    finally:
        b.stop()


@pytest.fixture
def unique_name(request: pytest.FixtureRequest) -> str:
    """A topic/app-id-safe name unique to this test invocation."""
    base = "".join(c if c.isalnum() else "-" for c in request.node.name)[:40].strip("-")
    return f"it-{base}-{uuid.uuid4().hex[:8]}"


class BrokerTimings:
    """Durations measured by the tests, printed per broker in pytest's terminal summary."""

    def __init__(self) -> None:
        self.rows: list[tuple[str, str, float]] = []

    def add(self, kind: str, label: str, seconds: float) -> None:
        self.rows.append((kind, label, seconds))


_TIMINGS = pytest.StashKey[BrokerTimings]()


@pytest.fixture(scope="session")
def broker_timings(request: pytest.FixtureRequest) -> BrokerTimings:
    return request.config.stash.setdefault(_TIMINGS, BrokerTimings())


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    timings = config.stash.get(_TIMINGS, None)
    if not timings or not timings.rows:
        return
    terminalreporter.section("broker timings")
    for kind, label, seconds in timings.rows:
        terminalreporter.write_line(f"{kind:6} {label:48} {seconds:7.2f}s")


@pytest.fixture(scope="module")
def kafka_cluster(request: pytest.FixtureRequest) -> Iterator[KafkaCluster]:
    """A 3-node Apache Kafka KRaft cluster (devkit.cluster), one per test module that uses it: tests
    that fault a node must leave every node running and fully replicated (``wait_replicated``)."""
    try:
        ensure_kafka_jars()
    except BrokerError as exc:
        pytest.fail(f"Apache Kafka jars unavailable: {exc}", pytrace=False)
    cluster = KafkaCluster(3)
    try:
        cluster.start()
    except BrokerError as exc:
        pytest.fail(f"3-node kafka cluster did not start: {exc}", pytrace=False)
    request.config.stash.setdefault(_TIMINGS, BrokerTimings()).add("kafka3", "cluster start -> every node ready",
                                                                    cluster.startup_seconds or 0.0)
    try:
        yield cluster
    finally:
        cluster.stop()
