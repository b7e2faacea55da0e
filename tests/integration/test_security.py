"""Kafka TLS + SASL from settings, on a real Apache Kafka 4.x, and credentials kept out of logs/metrics.

A module fixture makes a throw-away PKI with ``keytool`` (a CA, and a server certificate for
127.0.0.1/localhost signed by it; Java is needed for Kafka anyway) and starts its own
:class:`ApacheKafkaBroker` with a SASL_SSL listener (SCRAM-SHA-512 and PLAIN) beside its loopback
PLAINTEXT one. Every client in these tests -- ``riskctl topics create``, the worker (Faust over
aiokafka, via ``streams.runtime.app.faust_credentials``), the producer and the reader (confluent-kafka, via
``Settings.confluent_config``) -- talks to the SASL_SSL listener only. The embedded Tansu broker
does not do TLS/SASL, so these tests run only when Apache Kafka is selected (``--brokers``).

The password is random per run, so finding it anywhere is never a coincidence.
"""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient
from pydantic import SecretStr, ValidationError

from clients import topics
from clients.topics import create_topics
from common.settings import Settings
from devkit.brokers import ApacheKafkaBroker, BrokerError, ensure_kafka_jars, free_port
from devkit.launcher import WorkerProcess
from streams.runtime.app import faust_credentials
from tests.integration.conftest import selected_brokers
from tests.integration.pipeline_harness import Harness, pipeline_settings

pytestmark = pytest.mark.integration

USER = "alice"
PASSWORD = f"pw-{secrets.token_hex(12)}"
WRONG_PASSWORD = f"pw-{secrets.token_hex(12)}"
NOW = datetime.now(UTC).isoformat()


# ------------------------------------------------------------------------------------------------
# a CA and a server certificate, made with keytool


@dataclass
class Pki:
    ca_pem: Path  # what clients trust
    keystore: Path  # the broker's key and certificate chain (PKCS12)
    keystore_password: str


def _keytool(*args: str, cwd: Path) -> None:
    argv = ["keytool", "-J-XX:TieredStopAtLevel=1", "-J-XX:+UseSerialGC", *args]
    done = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, f"keytool {args[0]} failed:\n{done.stdout}\n{done.stderr}"


def make_pki(directory: Path) -> Pki:
    if shutil.which("keytool") is None:
        pytest.fail("keytool (Java 17+) is not on PATH: it makes the test certificates", pytrace=False)
    pw = secrets.token_hex(12)
    store = ["-storetype", "PKCS12", "-storepass", pw]
    key = ["-keyalg", "EC", "-groupname", "secp256r1", "-validity", "2"]
    san = "SAN=dns:localhost,ip:127.0.0.1"
    _keytool("-genkeypair", "-alias", "ca", *key, "-dname", "CN=riskctl test CA", "-ext", "bc:c",
             "-keystore", "ca.p12", *store, cwd=directory)
    _keytool("-exportcert", "-rfc", "-alias", "ca", "-keystore", "ca.p12", *store, "-file", "ca.pem", cwd=directory)
    _keytool("-genkeypair", "-alias", "broker", *key, "-dname", "CN=localhost", "-ext", san,
             "-keystore", "server.p12", *store, cwd=directory)
    _keytool("-certreq", "-alias", "broker", "-keystore", "server.p12", *store, "-file", "server.csr", cwd=directory)
    _keytool("-gencert", "-alias", "ca", "-keystore", "ca.p12", *store, "-infile", "server.csr", "-outfile", "server.pem",
             "-rfc", "-validity", "2", "-ext", san, "-ext", "KU=digitalSignature", "-ext", "EKU=serverAuth", cwd=directory)
    _keytool("-importcert", "-alias", "ca", "-file", "ca.pem", "-keystore", "server.p12", *store, "-noprompt", cwd=directory)
    _keytool("-importcert", "-alias", "broker", "-file", "server.pem", "-keystore", "server.p12", *store, "-noprompt",
             cwd=directory)
    return Pki(directory / "ca.pem", directory / "server.p12", pw)


@dataclass
class SecureKafka:
    broker: ApacheKafkaBroker
    pki: Pki

    @property
    def bootstrap(self) -> str:
        return self.broker.secure_bootstrap_servers


@pytest.fixture(scope="module")
def secure_kafka(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecureKafka]:
    if "kafka" not in selected_brokers(request.config):
        pytest.skip("TLS/SASL is tested on Apache Kafka only, which is not selected (--brokers / RISK_TEST_BROKERS); "
                    "the embedded Tansu broker has no TLS/SASL")
    try:
        ensure_kafka_jars()
    except BrokerError as exc:
        pytest.fail(f"Apache Kafka jars unavailable: {exc}", pytrace=False)
    pki = make_pki(tmp_path_factory.mktemp("pki"))
    broker = ApacheKafkaBroker(tls_keystore=pki.keystore, tls_keystore_password=pki.keystore_password,
                               sasl_users={USER: PASSWORD}, sasl_mechanisms=("SCRAM-SHA-512", "PLAIN"))
    try:
        broker.start()
    except BrokerError as exc:
        broker.stop()
        pytest.fail(f"secured Kafka did not start: {exc}", pytrace=False)
    try:
        assert broker.secure_protocol == "SASL_SSL"
        yield SecureKafka(broker, pki)
    finally:
        log_text = broker.log_file.read_text(errors="replace") if broker.log_file and broker.log_file.exists() else ""
        broker.stop()
        # The broker only ever sees salted SCRAM credentials on its command line and in its log.
        assert PASSWORD not in log_text, "the SASL password is in the broker's log"


def secure_settings(kafka: SecureKafka, name: str, tmp_path: Path, **over: Any) -> Settings:
    return pipeline_settings(
        kafka.bootstrap, name, tmp_path, partitions=over.pop("partitions", 2),
        kafka_security_protocol="SASL_SSL", kafka_sasl_mechanism=over.pop("mechanism", "SCRAM-SHA-512"),
        kafka_sasl_username=USER, kafka_sasl_password=over.pop("password", PASSWORD),
        kafka_ssl_cafile=kafka.pki.ca_pem, **over,
    )


def riskctl(settings: Settings, *args: str, timeout: float = 120.0) -> subprocess.CompletedProcess[str]:
    """``riskctl ARGS`` in a subprocess, configured as an operator would: environment variables only."""
    env = {k: v for k, v in os.environ.items() if k != "RISKCTL_SETTINGS"}
    env.update(KAFKA_BOOTSTRAP_SERVERS=settings.kafka_bootstrap_servers, APP_ID=settings.app_id,
               TOPIC_PREFIX=settings.topic_prefix, PARTITIONS=str(settings.partitions),
               KAFKA_SECURITY_PROTOCOL=settings.kafka_security_protocol,
               KAFKA_SASL_MECHANISM=str(settings.kafka_sasl_mechanism), KAFKA_SASL_USERNAME=str(settings.kafka_sasl_username),
               KAFKA_SASL_PASSWORD=settings.kafka_sasl_password.get_secret_value() if settings.kafka_sasl_password else "",
               KAFKA_SSL_CAFILE=str(settings.kafka_ssl_cafile))
    return subprocess.run([sys.executable, "-m", "cli.main", *args], env=env, capture_output=True, text=True,
                          timeout=timeout)


def zero_tariff(did: str) -> dict[str, Any]:
    # Unqualified enterprise + zero-tariff scenario: the shipped policy's hard rule says inspect, final.
    return dict(declaration_id=did, revision=1, port="HAK-SEA", enterprise_id="SEC-ENT", declarant_id="DC1",
                scenario="zero-tariff", hs_code="851712", origin_country="CN", departure_country="CN", transport_mode="sea",
                declared_value=1000.0, currency="CNY", net_mass_kg=5.0, tax_rate=5.0, event_time=NOW)


def leaks(secret: str, text: str, window: int = 10) -> bool:
    """Whether ``text`` holds ``secret`` or any 10 consecutive characters of it (pydantic, for one,
    shortens long values in its messages, so a leak may be a fragment)."""
    return any(secret[i:i + window] in text for i in range(max(1, len(secret) - window + 1)))


def assert_no_password(text: str, where: str) -> None:
    for secret in (PASSWORD, WRONG_PASSWORD):
        assert not leaks(secret, text), f"a SASL password (or a piece of it) appears in {where}"


# ------------------------------------------------------------------------------------------------
# the pipeline over SASL_SSL


def test_pipeline_end_to_end_over_sasl_ssl_without_leaking_the_password(secure_kafka: SecureKafka, unique_name: str,
                                                                         tmp_path: Path) -> None:
    settings = secure_settings(secure_kafka, unique_name, tmp_path, log_level="DEBUG")
    created = riskctl(settings, "topics", "create")
    assert created.returncode == 0, f"riskctl topics create failed:\n{created.stderr[-3000:]}"
    assert f"{len(topics.topic_specs(settings))} topics created" in created.stdout
    assert_no_password(created.stdout + created.stderr, "riskctl topics create output")

    harness = Harness(settings, tmp_path)  # confluent-kafka producer + reader over SASL_SSL
    try:
        worker = harness.start_worker()
        assert worker.settings.log_level == "DEBUG"
        worker.wait_ready()
        ids = [f"SEC{i}" for i in range(20)]
        for did in ids:
            harness.publish(topics.DECLARATIONS, did, zero_tariff(did))
        harness.flush()
        harness.read_until(lambda h: set(ids) <= set(h.finals()), 90, "a final instruction for every declaration")
        assert {d: harness.final_action(d) for d in ids} == {d: "inspect" for d in ids}
        assert {d: len(v) for d, v in harness.finals().items() if len(v) != 1} == {}
        metrics_text = worker.metrics_text()
        assert "customs_instructions_total" in metrics_text
        assert_no_password(metrics_text, "the worker's /metrics")
    finally:
        harness.close()
    log_text = worker.log_path.read_text(errors="replace")
    # The log is the one that counts: DEBUG, and it shows the SCRAM login over this listener.
    assert "[DEBUG]" in log_text and f"Authenticated as {USER} via SCRAM-SHA-512" in log_text
    assert_no_password(log_text, "the worker's DEBUG log")


def test_sasl_plain_password_is_redacted_from_debug_logs(secure_kafka: SecureKafka, unique_name: str,
                                                         tmp_path: Path) -> None:
    """aiokafka logs every request at DEBUG: with SASL PLAIN that is the password in clear text
    (``SaslAuthenticateRequest_v1(sasl_auth_bytes=b'alice\\x00alice\\x00<password>')``). The worker redacts it."""
    settings = secure_settings(secure_kafka, unique_name, tmp_path, mechanism="PLAIN", log_level="DEBUG")
    harness = Harness(settings, tmp_path)
    try:
        worker = harness.start_worker()
        worker.wait_ready()
        assert_no_password(worker.metrics_text(), "the worker's /metrics")
    finally:
        harness.close()
    log_text = worker.log_path.read_text(errors="replace")
    assert_no_password(log_text, "the worker's DEBUG log (SASL PLAIN)")
    assert f"Authenticated as {USER} via PLAIN" in log_text
    # aiokafka sends authzid NUL user NUL password: b'alice\x00alice\x00<password>'
    assert "SaslAuthenticateRequest_v1(sasl_auth_bytes=b'alice\\x00alice\\x00[redacted]')" in log_text, \
        "the PLAIN auth request was not logged (redacted): the test no longer exercises the leak"


# ------------------------------------------------------------------------------------------------
# wrong credentials and plaintext fail, clearly and in bounded time


def test_wrong_password_fails_topic_creation_and_worker_quickly_and_clearly(secure_kafka: SecureKafka, unique_name: str,
                                                                           tmp_path: Path) -> None:
    good = secure_settings(secure_kafka, unique_name, tmp_path)
    bad = good.model_copy(update={"kafka_sasl_password": SecretStr(WRONG_PASSWORD)})

    started = time.monotonic()
    done = riskctl(bad, "topics", "create", timeout=120)
    elapsed = time.monotonic() - started
    output = done.stdout + done.stderr
    assert done.returncode != 0, "topic creation with a wrong password must fail"
    assert elapsed < 75, f"topic creation with a wrong password took {elapsed:.0f}s to fail"
    assert "Authentication failed" in output and "invalid credentials" in output, output[-3000:]
    assert_no_password(output, "riskctl topics create output (wrong password)")

    create_topics(good)  # the topics exist: the worker gets as far as authenticating
    worker = WorkerProcess(bad.model_copy(update={"metrics_port": free_port(), "data_dir": tmp_path / "bad-worker"}),
                           tmp_path / "bad-worker.log")
    try:
        started = time.monotonic()
        try:
            code = worker.proc.wait(timeout=90)
        except subprocess.TimeoutExpired:
            pytest.fail(f"a worker with a wrong password was still running after 90 s; log tail:\n{worker.log_tail()}")
        elapsed = time.monotonic() - started
    finally:
        worker.stop()
    log_text = worker.log_path.read_text(errors="replace")
    assert code != 0, "the worker must exit with an error"
    assert "SaslAuthenticationFailed" in log_text and "invalid credentials" in log_text, worker.log_tail()
    assert_no_password(log_text, "the worker's log (wrong password)")
    print(f"wrong password: worker exited with code {code} after {elapsed:.1f}s")


def _metadata_error(conf: dict[str, Any], timeout: float = 6.0) -> tuple[str, float]:
    started = time.monotonic()
    admin = AdminClient({**conf, "log_level": 0, "socket.connection.setup.timeout.ms": 3000})
    with pytest.raises(KafkaException) as info:
        admin.list_topics(timeout=timeout)
    return str(info.value), time.monotonic() - started


def test_plaintext_and_unverified_clients_are_refused_by_the_tls_listener(secure_kafka: SecureKafka) -> None:
    bootstrap = secure_kafka.bootstrap
    creds = {"sasl.mechanism": "SCRAM-SHA-512", "sasl.username": USER, "sasl.password": PASSWORD}
    refused = {
        "plaintext": {"bootstrap.servers": bootstrap},
        "SASL_PLAINTEXT (no TLS)": {"bootstrap.servers": bootstrap, "security.protocol": "SASL_PLAINTEXT", **creds},
        "TLS without SASL": {"bootstrap.servers": bootstrap, "security.protocol": "SSL",
                             "ssl.ca.location": str(secure_kafka.pki.ca_pem)},
    }
    system_cas = Path("/etc/ssl/certs/ca-certificates.crt")
    if system_cas.exists():  # the right password, but the broker's certificate is not trusted
        refused["SASL_SSL, CA not trusted"] = {"bootstrap.servers": bootstrap, "security.protocol": "SASL_SSL", **creds,
                                               "ssl.ca.location": str(system_cas)}
    for what, conf in refused.items():
        error, elapsed = _metadata_error(conf)
        assert elapsed < 15, f"{what}: took {elapsed:.0f}s to fail"
        assert_no_password(error, f"the error of a {what} client")

    # The listener really is TLS with our certificate for 127.0.0.1 (hostname checked), and a
    # correctly configured client gets metadata that advertises only this listener.
    host, port = bootstrap.rsplit(":", 1)
    context = ssl.create_default_context(cafile=str(secure_kafka.pki.ca_pem))
    with socket.create_connection((host, int(port)), timeout=10) as raw, \
            context.wrap_socket(raw, server_hostname=host) as tls:
        assert ("IP Address", "127.0.0.1") in tls.getpeercert()["subjectAltName"]
    ok = Settings(kafka_bootstrap_servers=bootstrap, kafka_security_protocol="SASL_SSL",
                  kafka_sasl_mechanism="SCRAM-SHA-512", kafka_sasl_username=USER, kafka_sasl_password=PASSWORD,
                  kafka_ssl_cafile=secure_kafka.pki.ca_pem)
    md = AdminClient(ok.confluent_config()).list_topics(timeout=20)
    assert [b.port for b in md.brokers.values()] == [int(port)]


# ------------------------------------------------------------------------------------------------
# settings: the password never shows up (no broker needed)


def test_settings_never_show_the_password() -> None:
    s = Settings(kafka_security_protocol="SASL_SSL", kafka_sasl_mechanism="SCRAM-SHA-512", kafka_sasl_username=USER,
                 kafka_sasl_password=PASSWORD)
    for text in (repr(s), str(s), s.model_dump_json(), repr(s.model_dump()), repr(faust_credentials(s))):
        assert_no_password(text, "the settings' text forms")
    assert s.confluent_config()["sasl.password"] == PASSWORD  # only the client config holds it


@pytest.mark.parametrize("bad", [
    pytest.param({"KAFKA_SECURITY_PROTOCOL": "PLAINTEXT"}, id="sasl-password-with-plaintext"),  # model-level check
    pytest.param({"KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "KAFKA_SASL_MECHANISM": "SCRAM"}, id="bad-mechanism"),
    pytest.param({"KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
                  "KAFKA_SASL_USERNAME": USER, "METRICS_PORT": "-1"}, id="other-field-invalid"),
])
def test_riskctl_settings_errors_do_not_echo_the_password(bad: dict[str, str], tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KAFKA_") and k != "RISKCTL_SETTINGS"}
    env.update(KAFKA_SASL_PASSWORD=PASSWORD, **bad)
    done = subprocess.run([sys.executable, "-m", "cli.main", "topics", "list"], env=env, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 2 and "invalid settings" in done.stderr, done.stderr
    assert_no_password(done.stdout + done.stderr, "riskctl's settings error")


def test_settings_file_error_does_not_echo_a_numeric_password(tmp_path: Path) -> None:
    """A TOML password that is not a string: pydantic would quote the value in its error."""
    digits = str(secrets.randbelow(10**15) + 10**15)
    path = tmp_path / "settings.toml"
    path.write_text(f'kafka_security_protocol = "SASL_SSL"\nkafka_sasl_mechanism = "SCRAM-SHA-512"\n'
                    f'kafka_sasl_username = "{USER}"\nkafka_sasl_password = {digits}\n')
    env = {k: v for k, v in os.environ.items() if not k.startswith("KAFKA_") and k != "RISKCTL_SETTINGS"}
    done = subprocess.run([sys.executable, "-m", "cli.main", "--settings", str(path), "topics", "list"], env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "kafka_sasl_password" in done.stderr, done.stderr
    assert not leaks(digits, done.stdout + done.stderr), done.stderr


@pytest.mark.parametrize("fields, message", [
    ({"kafka_security_protocol": "SASL_SSL"}, "needs kafka_sasl_mechanism, kafka_sasl_username, kafka_sasl_password"),
    ({"kafka_sasl_mechanism": "SCRAM-SHA-512", "kafka_sasl_username": USER, "kafka_sasl_password": PASSWORD},
     "kafka_security_protocol is PLAINTEXT"),
    ({"kafka_ssl_cafile": "/ca.pem"}, "TLS would not be used"),
    ({"kafka_security_protocol": "SSL", "kafka_ssl_keyfile": "/key.pem"}, "kafka_ssl_keyfile needs kafka_ssl_certfile"),
])
def test_half_configured_security_is_refused(fields: dict[str, Any], message: str) -> None:
    """The confluent clients follow the protocol, Faust's credentials used to follow the SASL
    fields: a half-configured connection must be an error, not a silent plaintext fallback."""
    with pytest.raises(ValidationError) as info:
        Settings(**fields)
    assert message in str(info.value)
    assert_no_password(str(info.value), "the validation error")
