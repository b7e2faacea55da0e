"""Per-principal ACLs (clients.acls, ``riskctl acls apply``) on a real Apache Kafka 4.x with KRaft's
StandardAuthorizer, over SCRAM and over mutual TLS.

The brokers refuse whatever no ACL allows (``allow.everyone.if.no.acl.found=false``). An admin
(super user) creates the topics and applies the generated ACLs; then a worker under its own
principal decides declarations that a gateway principal publishes, a station principal reads the
instructions, and the gateway and scanner principals are refused what their roles do not include.
The second broker takes client certificates (made with keytool, signed by the test CA) instead of
SCRAM passwords: the principal is the certificate's CN. Apache Kafka only (Tansu has no ACLs).
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, Producer, TopicPartition

from clients import topics
from clients.acls import station_group_prefix
from common.settings import Settings
from devkit.brokers import ApacheKafkaBroker, BrokerError, ensure_kafka_jars
from devkit.launcher import WorkerProcess, security_env
from tests.integration.conftest import selected_brokers
from tests.integration.pipeline_harness import pipeline_settings, scan
from tests.integration.test_security import Pki, _keytool, make_pki, zero_tariff

pytestmark = pytest.mark.integration

PASSWORDS = {name: f"pw-{secrets.token_hex(12)}" for name in ("admin", "gateway", "scanner", "worker", "station")}
ROLES = ["gateway=User:gateway", "scanner=User:scanner", "worker=User:worker", "station=User:station"]
REFUSED = KafkaError.TOPIC_AUTHORIZATION_FAILED


def _need_kafka(request: pytest.FixtureRequest) -> None:
    if "kafka" not in selected_brokers(request.config):
        pytest.skip("ACLs are tested on Apache Kafka only, which is not selected (--brokers / RISK_TEST_BROKERS)")
    try:
        ensure_kafka_jars()
    except BrokerError as exc:
        pytest.fail(f"Apache Kafka jars unavailable: {exc}", pytrace=False)


def _start(broker: ApacheKafkaBroker) -> ApacheKafkaBroker:
    try:
        broker.start()
    except BrokerError as exc:
        broker.stop()
        pytest.fail(f"Kafka with the authorizer did not start: {exc}", pytrace=False)
    return broker


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def scram_kafka(request: pytest.FixtureRequest, pki: Pki) -> Iterator[ApacheKafkaBroker]:
    _need_kafka(request)
    broker = _start(ApacheKafkaBroker(tls_keystore=pki.keystore, tls_keystore_password=pki.keystore_password,
                                      sasl_users=PASSWORDS, authorizer=True, super_users=["User:admin"]))
    try:
        yield broker
    finally:
        broker.stop()


# ------------------------------------------------------------------------------------------------
# clients under one principal each


def riskctl(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    """``riskctl ARGS`` configured by environment variables only, as an operator runs it."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("KAFKA_") and k != "RISKCTL_SETTINGS"}
    env.update(KAFKA_BOOTSTRAP_SERVERS=settings.kafka_bootstrap_servers, APP_ID=settings.app_id,
               TOPIC_PREFIX=settings.topic_prefix, PARTITIONS=str(settings.partitions), **security_env(settings))
    return subprocess.run([sys.executable, "-m", "cli.main", *args], env=env, capture_output=True, text=True, timeout=120)


def produce(settings: Settings, logical_topic: str, records: dict[str, dict[str, Any]]) -> list[KafkaError | None]:
    """Publish and wait for every delivery report; the error of each record (None: delivered)."""
    reports: list[KafkaError | None] = []
    producer = Producer({**settings.confluent_config(), "partitioner": "murmur2_random", "linger.ms": 1,
                         "message.timeout.ms": 20_000, "log_level": 0})
    for key, value in records.items():
        producer.produce(settings.topic(logical_topic), key=key.encode(), value=orjson.dumps(value),
                         on_delivery=lambda err, _msg: reports.append(err))
        producer.poll(0)
    producer.flush(30)
    assert len(reports) == len(records), "a delivery report is missing"
    return reports


def assert_refused_to_write(settings: Settings, logical_topic: str) -> None:
    errors = produce(settings, logical_topic, {"REFUSED-1": zero_tariff("REFUSED-1")})
    assert [e.code() if e else None for e in errors] == [REFUSED], \
        f"{settings.kafka_sasl_username or settings.kafka_ssl_certfile} writing {logical_topic}: {errors}"


def assert_refused_to_read(settings: Settings, logical_topic: str, timeout_s: float = 20.0) -> None:
    """Reading needs Describe (implied by Read): without it the topic's metadata is refused."""
    name = settings.topic(logical_topic)
    consumer = Consumer({**settings.confluent_config(), "group.id": "unused-no-commit", "log_level": 0})
    try:
        topic = consumer.list_topics(name, timeout=timeout_s).topics[name]
        assert topic.error is not None and topic.error.code() == REFUSED, f"metadata of {name}: {topic.error}"
    finally:
        consumer.close()


def finals_seen(station: Settings, ids: set[str], timeout_s: float, worker: WorkerProcess) -> dict[str, list[str]]:
    """Read instructions as the station until each id has a final one; id -> final actions."""
    # A station's consumer group (clients.acls.station_group_prefix); librdkafka looks its coordinator
    # up even for an assigned reader, and a group outside the station's ACLs is refused.
    reader = Consumer({**station.confluent_config(), "group.id": f"{station_group_prefix(station)}HAK-SEA",
                       "enable.auto.commit": False, "fetch.wait.max.ms": 10})
    name = station.topic(topics.INSTRUCTIONS)
    reader.assign([TopicPartition(name, p, OFFSET_BEGINNING) for p in range(station.partitions)])
    finals: dict[str, list[str]] = {}
    try:
        deadline = time.monotonic() + timeout_s
        while not ids <= finals.keys():
            assert time.monotonic() < deadline, (f"finals for {sorted(ids - finals.keys())[:5]} not seen in {timeout_s:.0f}s; "
                                                 f"worker log:\n{worker.log_tail(30)}")
            for msg in reader.consume(500, timeout=0.3):
                assert msg.error() is None, f"the station cannot read instructions: {msg.error()}"
                ins = orjson.loads(msg.value())
                if ins["final"]:
                    finals.setdefault(ins["declaration_id"], []).append(ins["action"])
    finally:
        reader.close()
    return finals


def start_worker(settings: Settings, tmp_path: Path) -> WorkerProcess:
    # Idempotent as deployed on Apache Kafka: the worker's InitProducerId passes the authorizer too.
    return WorkerProcess(settings, tmp_path / "worker.log", {"WORKER_IDEMPOTENT_PRODUCER": "true"})


def decide_as_principals(admin: Settings, gateway: Settings, worker_settings: Settings, station: Settings,
                         tmp_path: Path, prefix: str) -> WorkerProcess:
    """Topics and ACLs by the admin, then declarations by the gateway decided by the worker; the
    station sees one final instruction for each. Returns the (still running) worker."""
    created = riskctl(admin, "topics", "create")
    assert created.returncode == 0, created.stderr[-3000:]
    # Before the ACLs the gateway may write nothing: the authorizer denies by default.
    assert_refused_to_write(gateway, topics.DECLARATIONS)
    applied = riskctl(admin, "acls", "apply", *[a for r in ROLES for a in ("--role", r)])
    assert applied.returncode == 0 and " ACL bindings created, 0 already present" in applied.stdout, applied.stdout + applied.stderr
    again = riskctl(admin, "acls", "apply", *[a for r in ROLES for a in ("--role", r)])
    assert again.returncode == 0 and again.stdout.startswith("0 ACL bindings created"), again.stdout + again.stderr

    worker = start_worker(worker_settings, tmp_path)
    try:
        worker.wait_ready()
        ids = {f"{prefix}{i}" for i in range(12)}
        assert produce(gateway, topics.DECLARATIONS, {d: zero_tariff(d) for d in ids}) == [None] * len(ids)
        finals = finals_seen(station, ids, 90, worker)
        assert {d: finals[d] for d in ids} == {d: ["inspect"] for d in ids}
    except BaseException:
        worker.stop()
        raise
    return worker


def assert_no_authorization_failures(worker: WorkerProcess) -> None:
    log_text = worker.log_path.read_text(errors="replace")
    assert "AuthorizationFailed" not in log_text and "Authorization failed" not in log_text, worker.log_tail(40)


# ------------------------------------------------------------------------------------------------
# SCRAM principals


def scram(broker: ApacheKafkaBroker, pki: Pki, user: str, name: str, tmp_path: Path) -> Settings:
    return pipeline_settings(broker.secure_bootstrap_servers, name, tmp_path, partitions=2, kafka_security_protocol="SASL_SSL",
                             kafka_sasl_mechanism="SCRAM-SHA-512", kafka_sasl_username=user, kafka_sasl_password=PASSWORDS[user],
                             kafka_ssl_cafile=pki.ca_pem)


def test_each_scram_principal_gets_its_role_and_no_more(scram_kafka: ApacheKafkaBroker, pki: Pki, unique_name: str,
                                                        tmp_path: Path) -> None:
    as_user = {u: scram(scram_kafka, pki, u, unique_name, tmp_path) for u in PASSWORDS}
    worker = decide_as_principals(as_user["admin"], as_user["gateway"], as_user["worker"], as_user["station"], tmp_path, "ACL")
    try:
        gateway, scanner = as_user["gateway"], as_user["scanner"]
        assert_refused_to_write(gateway, topics.SCANS)
        assert_refused_to_write(gateway, topics.INSTRUCTIONS)
        assert_refused_to_read(gateway, topics.INSTRUCTIONS)
        assert_refused_to_write(scanner, topics.DECLARATIONS)
        assert_refused_to_write(as_user["station"], topics.INSTRUCTIONS)
        assert produce(scanner, topics.SCANS, {"ACL0": scan("ACL0", "clear")}) == [None]  # its own topic it may write
        # The worker keeps working after the refusals: a second lot is decided too.
        ids = {f"ACL-B{i}" for i in range(6)}
        assert produce(gateway, topics.DECLARATIONS, {d: zero_tariff(d) for d in ids}) == [None] * len(ids)
        finals = finals_seen(as_user["station"], ids, 60, worker)
        assert {d: finals[d] for d in ids} == {d: ["inspect"] for d in ids}
        assert_no_authorization_failures(worker)
    finally:
        worker.stop()


# ------------------------------------------------------------------------------------------------
# mutual TLS: client certificates instead of passwords


def client_certificate(pki: Pki, cn: str) -> tuple[Path, Path]:
    """A client certificate for CN=<cn> signed by the test CA (keytool), and its key as PEM (openssl
    reads it out of keytool's PKCS12 store: keytool does not export private keys)."""
    if shutil.which("openssl") is None:
        pytest.fail("openssl is not on PATH: it exports the client keys keytool makes", pytrace=False)
    directory, pw = pki.ca_pem.parent, pki.keystore_password
    store = ["-storetype", "PKCS12", "-storepass", pw]
    _keytool("-genkeypair", "-alias", cn, "-keyalg", "EC", "-groupname", "secp256r1", "-validity", "2",
             "-dname", f"CN={cn},O=customs test", "-keystore", f"{cn}.p12", *store, cwd=directory)
    _keytool("-certreq", "-alias", cn, "-keystore", f"{cn}.p12", *store, "-file", f"{cn}.csr", cwd=directory)
    _keytool("-gencert", "-alias", "ca", "-keystore", "ca.p12", *store, "-infile", f"{cn}.csr", "-outfile", f"{cn}.pem", "-rfc",
             "-validity", "2", "-ext", "KU=digitalSignature", "-ext", "EKU=clientAuth", cwd=directory)
    key = directory / f"{cn}.key"
    done = subprocess.run(["openssl", "pkcs12", "-in", f"{cn}.p12", "-nocerts", "-nodes", "-passin", f"pass:{pw}", "-out", key.name],
                          cwd=directory, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    key.chmod(0o600)
    return directory / f"{cn}.pem", key


@pytest.fixture
def mtls_kafka(request: pytest.FixtureRequest, pki: Pki) -> Iterator[ApacheKafkaBroker]:
    _need_kafka(request)
    broker = _start(ApacheKafkaBroker(tls_keystore=pki.keystore, tls_keystore_password=pki.keystore_password,
                                      tls_client_auth=True, tls_truststore=pki.ca_pem, authorizer=True, super_users=["User:admin"]))
    try:
        assert broker.secure_protocol == "SSL"
        yield broker
    finally:
        broker.stop()


def test_each_certificate_principal_gets_its_role_and_no_more(mtls_kafka: ApacheKafkaBroker, pki: Pki, unique_name: str,
                                                               tmp_path: Path) -> None:
    def as_cn(cn: str) -> Settings:
        cert, key = client_certificate(pki, cn)
        return pipeline_settings(mtls_kafka.secure_bootstrap_servers, unique_name, tmp_path, partitions=2,
                                 kafka_security_protocol="SSL", kafka_ssl_cafile=pki.ca_pem, kafka_ssl_certfile=cert,
                                 kafka_ssl_keyfile=key)

    as_user = {cn: as_cn(cn) for cn in ("admin", "gateway", "worker", "station")}
    worker = decide_as_principals(as_user["admin"], as_user["gateway"], as_user["worker"], as_user["station"], tmp_path, "MTLS")
    try:
        assert_refused_to_write(as_user["gateway"], topics.INSTRUCTIONS)
        assert_refused_to_read(as_user["gateway"], topics.INSTRUCTIONS)
        assert_no_authorization_failures(worker)
    finally:
        worker.stop()
    # Without a client certificate the TLS handshake itself fails: no principal, no metadata.
    anonymous = Settings(kafka_bootstrap_servers=mtls_kafka.secure_bootstrap_servers, kafka_security_protocol="SSL",
                         kafka_ssl_cafile=pki.ca_pem)
    consumer = Consumer({**anonymous.confluent_config(), "group.id": "unused-no-commit", "log_level": 0,
                         "socket.connection.setup.timeout.ms": 3000})
    try:
        with pytest.raises(KafkaException):
            consumer.list_topics(timeout=6)
    finally:
        consumer.close()
