"""The one typed settings object. Read from the environment and an optional TOML file.

Precedence (highest first): explicit keyword arguments, environment variables, the settings file
(``--settings FILE`` or env ``RISKCTL_SETTINGS``), defaults. Environment variables are the field
names upper-cased, e.g. ``KAFKA_BOOTSTRAP_SERVERS``, ``METRICS_PORT``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict, TomlConfigSettingsSource

DEFAULT_EMBEDDED_PORT = 19092


class Settings(BaseSettings):
    # hide_input_in_errors: a validation error never echoes input values. pydantic otherwise quotes
    # the offending value (a numeric password from a TOML file) or, for a model-level check, every
    # input at once (the SASL password included) in the message that `riskctl` prints.
    model_config = SettingsConfigDict(extra="forbid", validate_default=True, hide_input_in_errors=True)

    # --- Kafka connection -------------------------------------------------------------------
    kafka_bootstrap_servers: str = Field(
        default=f"127.0.0.1:{DEFAULT_EMBEDDED_PORT}",
        description="Comma-separated host:port list. Defaults to the embedded broker.",
    )
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    kafka_sasl_mechanism: Literal["SCRAM-SHA-256", "SCRAM-SHA-512", "PLAIN"] | None = None
    kafka_sasl_username: str | None = None
    kafka_sasl_password: SecretStr | None = None
    kafka_ssl_cafile: Path | None = None
    kafka_ssl_certfile: Path | None = None
    kafka_ssl_keyfile: Path | None = None

    # --- Topics ---------------------------------------------------------------------------------
    topic_prefix: str = Field(default="customs.", pattern=r"^[A-Za-z0-9._-]*$")
    # Partitions of the keyed topics: the most workers that can share the work. Each one costs on
    # every fetch and every gateway batching window, so a small machine wants few and a cluster
    # more (docs/operations.md, "Partitions: how many"; figures in docs/benchmark.md).
    # Fixed once the topics exist (keys would move away from their state); a cluster sets its own
    # (24 in deploy/k8s).
    partitions: int = Field(default=2, ge=1, le=1024, description="Partitions of the keyed event topics (the most workers that get work).")
    # Durability of the topics `riskctl topics create` makes. None: from the cluster's broker count at
    # creation, min(3, brokers) replicas and min.insync.replicas of min(2, replicas - 1) (at least 1), so
    # that with acks=all a write survives the loss of any one broker and one broker may be down.
    replication_factor: int | None = Field(default=None, ge=1, le=16, description=(
        "Replicas of every topic `riskctl topics create` makes; None: min(3, brokers in the cluster)."))
    min_insync_replicas: int | None = Field(default=None, ge=1, le=16, description=(
        "min.insync.replicas of every topic `riskctl topics create` makes; None: min(2, replicas - 1), at least 1."))

    # --- Worker ---------------------------------------------------------------------------------
    # aiokafka's InitProducerId is refused by Tansu (the embedded broker of the demo and the tests),
    # so idempotence of the worker's own producer is opted into on a real Kafka cluster; acks=all
    # holds either way, and the librdkafka producers (gateways, stations, console) are always idempotent.
    worker_idempotent_producer: bool = Field(default=False, description=(
        "The worker's producer (instructions, dead letters, changelogs) is idempotent: set it on Apache Kafka "
        "(deploy/k8s does); the embedded Tansu broker refuses it."))
    app_id: str = Field(default="customs-risk", pattern=r"^[A-Za-z0-9._-]+$")
    data_dir: Path = Path("var/worker")
    # Short group timeouts: a worker is ready in seconds on one machine. Raise them in production.
    session_timeout_s: float = Field(default=10.0, gt=0)
    heartbeat_interval_s: float = Field(default=1.0, gt=0)
    rebalance_timeout_s: float = Field(default=3.0, gt=0)
    commit_interval_s: float = Field(default=1.0, gt=0)
    fetch_max_wait_ms: int = Field(default=20, ge=1, le=10_000, description="Longest a consumer fetch waits for data.")
    # Every fetch the worker makes names all its input and global-table partitions, and costs the
    # same CPU whether it brings one record or a thousand: a broker that answers as soon as any record
    # is there makes one fetch per gateway batch at moderate load (docs/benchmark.md, "Headroom").
    fetch_min_bytes: int = Field(default=1, ge=1, le=16 << 20, description=(
        "Bytes of records a consumer fetch waits for (at most fetch_max_wait_ms) before the broker answers."))
    # aiokafka sends a broker no fetch while records fetched from it wait to be delivered: on a busy
    # event loop fetching and delivering take turns; shorter trades that for more fetches in flight at
    # moderate load (streams/runtime/consumer.py, point 1; docs/benchmark.md, "Credit reload").
    prefetch_backoff_ms: int = Field(default=100, ge=0, le=1000, description=(
        "Longest records fetched and not yet delivered hold back the worker's next fetch from their broker, for every partition."))
    # Faust runs its consumer in a thread of its own and hands every fetch across; on the worker's own
    # event loop the same consumer skips the hand-offs (streams/runtime/consumer.py, point 5).
    consumer_in_loop: bool = Field(default=True, description=(
        "Run the Kafka consumer on the worker's event loop instead of in a thread of its own."))
    # A full fetch names every partition the worker reads; in a session only those that moved
    # (streams/runtime/fetchsession.py). A broker without sessions gets full fetches either way.
    fetch_sessions: bool = Field(default=True, description=(
        "Fetch through incremental fetch sessions (KIP-227) where the broker offers them."))
    batch_max: int = Field(default=2000, ge=1, le=100_000, description="Max declarations per micro-batch.")
    # Warm copies of each table partition on other workers: a failover then skips re-reading the
    # changelog, but the holder applies every change of the partitions it stands by for: on a small
    # machine that work takes the CPU a second worker would add (docs/benchmark.md). So one machine
    # runs without (Kafka Streams' default too); a cluster with cores to spare sets 1 (deploy/k8s).
    standby_replicas: int = Field(default=0, ge=0, le=8, description="Warm standby copies of each table partition on other workers.")
    takeover_grace_s: float = Field(default=5.0, ge=0, le=300, description=(
        "Seconds after this worker takes over a partition (or starts) before that partition's overdue scan deadlines fire, "
        "so that scans already waiting are read first."))
    rebalance_delivery_timeout_s: float = Field(default=30.0, gt=0, le=600, description=(
        "Longest a worker waits, when a rebalance revokes its partitions, for its outputs still in flight to be acknowledged "
        "before it rejoins the group; past it the worker exits (and is restarted) rather than let a partition's tables be "
        "recovered without them."))
    gc_gen0_threshold: int = Field(default=50_000, ge=700, le=10_000_000, description=(
        "Allocations between young-generation garbage collections (CPython's default is 700; see streams.worker.tune_gc)."))
    batch_within_s: float = Field(default=0.005, gt=0, le=5, description="Max wait to fill a micro-batch.")
    model_dir: Path | None = Field(default=None, description="Model registry directory; None uses the bundled starter model.")
    policy_file: Path | None = Field(default=None, description="Policy YAML; None uses the shipped default policy.")

    # --- Bounds on records, micro-batches and reference caches (issue 15) -----------------------
    # batch_max counts declarations: a gateway batch record weighs the declarations it carries, a
    # centralised declaration its goods items (streams.limits). A gateway batch record with more
    # declarations than this is refused whole (dead letter `batch-too-large`); the schema allows 5,000
    # and the reference gateway client sends at most 500. A micro-batch then decides at most
    # max(batch_max, gateway_batch_max_declarations) declarations.
    gateway_batch_max_declarations: int = Field(default=1000, ge=1, le=5000, description=(
        "Most declarations one gateway batch record may carry; a larger record is dead-lettered as batch-too-large."))
    # As gateway_batch_max_declarations, for credit-event batch records (dead letter `batch-too-large`).
    credit_batch_max_events: int = Field(default=1000, ge=1, le=5000, description=(
        "Most credit events one credit-event batch record may carry; a larger record is dead-lettered as batch-too-large."))
    credit_fold_share: float = Field(default=0.5, gt=0, le=1, description=(
        "Most share of the event loop the credit fold takes while events keep coming (it pauses after each micro-batch "
        "for the rest): a bulk reload leaves the declarations their turn. 1: no pause."))
    credit_batches_buffered: int = Field(default=64, ge=1, le=4096, description=(
        "Credit-event records waiting for the fold past which the worker stops fetching credit-event batches until it "
        "catches up: a bulk reload is read as it is folded, not into memory at once (with FETCH_SESSIONS)."))
    risk_list_prune_after_s: float = Field(default=7 * 86_400.0, ge=0, le=366 * 86_400.0, description=(
        "Seconds after an entry's valid_until before the risk-list index drops it (declarations with older event "
        "times then no longer see it)."))

    handler_failures_before_exit: int = Field(default=10, ge=1, le=10_000, description=(
        "Records in a row that a handler fails on alone, none handled in between, before the worker exits to be restarted "
        "(each is dead-lettered as handler-error until then), within a batch or across batches."))

    # --- Operations ----------------------------------------------------------------------------
    metrics_host: str = "127.0.0.1"
    metrics_port: int = Field(default=9464, ge=0, le=65535)
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"

    @field_validator("kafka_bootstrap_servers")
    @classmethod
    def _check_servers(cls, value: str) -> str:
        for server in value.split(","):
            host, sep, port = server.strip().rpartition(":")
            if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
                raise ValueError(f"bootstrap server {server!r} is not host:port")
        return value

    @model_validator(mode="after")
    def _check_security(self) -> Settings:
        """TLS and SASL settings must agree with the protocol. Every client (confluent-kafka and Faust)
        follows ``kafka_security_protocol``, so SASL fields or TLS files that the protocol does not use
        are a mistake, refused here: ignored, they would let a connection meant to be secured go out
        in plaintext."""
        protocol = self.kafka_security_protocol
        if protocol.startswith("SASL_"):
            missing = [name for name, value in (("kafka_sasl_mechanism", self.kafka_sasl_mechanism),
                                                ("kafka_sasl_username", self.kafka_sasl_username),
                                                ("kafka_sasl_password", self.kafka_sasl_password)) if not value]
            if missing:
                raise ValueError(f"kafka_security_protocol {protocol} needs {', '.join(missing)}")
        elif self.kafka_sasl_mechanism or self.kafka_sasl_username or self.kafka_sasl_password:
            raise ValueError(f"SASL credentials are set but kafka_security_protocol is {protocol}: "
                             "they would not be used (set SASL_SSL or SASL_PLAINTEXT)")
        ssl_files = [self.kafka_ssl_cafile, self.kafka_ssl_certfile, self.kafka_ssl_keyfile]
        if not protocol.endswith("SSL") and any(ssl_files):
            raise ValueError(f"kafka_ssl_* files are set but kafka_security_protocol is {protocol}: "
                             "TLS would not be used (set SSL or SASL_SSL)")
        if self.kafka_ssl_keyfile and not self.kafka_ssl_certfile:
            raise ValueError("kafka_ssl_keyfile needs kafka_ssl_certfile")
        return self

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        path = os.environ.get("RISKCTL_SETTINGS")
        if path:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=Path(path)))
        return tuple(sources)

    def topic(self, name: str) -> str:
        return f"{self.topic_prefix}{name}"

    def confluent_config(self) -> dict[str, Any]:
        """librdkafka connection settings (security included) for confluent-kafka clients."""
        conf: dict[str, Any] = {
            "bootstrap.servers": self.kafka_bootstrap_servers,
            "security.protocol": self.kafka_security_protocol,
        }
        if self.kafka_sasl_mechanism:
            conf["sasl.mechanism"] = self.kafka_sasl_mechanism
            conf["sasl.username"] = self.kafka_sasl_username or ""
            conf["sasl.password"] = self.kafka_sasl_password.get_secret_value() if self.kafka_sasl_password else ""
        if self.kafka_ssl_cafile:
            conf["ssl.ca.location"] = str(self.kafka_ssl_cafile)
        if self.kafka_ssl_certfile:
            conf["ssl.certificate.location"] = str(self.kafka_ssl_certfile)
        if self.kafka_ssl_keyfile:
            conf["ssl.key.location"] = str(self.kafka_ssl_keyfile)
        return conf

    # --- Declaration state lifecycle (decision.retention, streams.expiry) -----------------------
    # A declaration's full state (with the exact instruction bytes) is kept a while after its final
    # outcome, for the redeliveries a crash can cause; then only a fingerprint, deleted with a
    # changelog tombstone after the retention. The retention must outlive the input topics', so that
    # any record still in them meets its fingerprint (refused otherwise).
    # RocksDB by default: a memory store re-reads the whole retained changelog at every start (minutes
    # per million declarations); RocksDB re-reads only what its data dir does not hold (seconds).
    table_store: Literal["memory", "rocksdb"] = Field(default="rocksdb", description=(
        "Store of the per-declaration tables: 'rocksdb' (on disk under data_dir, one state directory per worker; a restart "
        "reads only the changelog written since; needs the 'rocksdb' extra) or 'memory' (all in RAM, rebuilt from the "
        "whole changelog at every start)."))
    # Faust's RocksDB defaults are for a big machine: 3 x 64 MB of memtables and a 2 GB block cache per
    # database, and there is one database per table and partition. A worker's RocksDB memory is at most
    # 2 tables x owned partitions x (2 x write buffer + block cache): 4 x 48 MB with these defaults.
    rocksdb_write_buffer_mb: int = Field(default=8, ge=1, le=1024, description=(
        "RocksDB memtable size per table partition database (two are kept); larger: fewer flushes to disk."))
    rocksdb_block_cache_mb: int = Field(default=32, ge=1, le=16_384, description=(
        "RocksDB block cache per table partition database; larger: more reads served from memory."))
    state_compact_after_s: float = Field(default=300.0, gt=0, le=86_400, description=(
        "Seconds a declaration's full state (its instruction bytes, re-emitted on a redelivery) is kept after its final outcome, "
        "before it is replaced by a fingerprint. Must be longer than commit_interval_s."))
    state_retention_s: float = Field(default=14 * 86_400.0, gt=0, le=10 * 365 * 86_400, description=(
        "Seconds a declaration's fingerprint (duplicate and late-revision detection) is kept after its final outcome; "
        "must be longer than input_topic_retention_s."))
    input_topic_retention_s: float = Field(default=7 * 86_400.0, gt=0, le=10 * 365 * 86_400, description=(
        "Retention of the input topics (declarations, gateway batches, centralised declarations, scans) "
        "that `riskctl topics create` sets."))
    orphan_scan_ttl_s: float = Field(default=6 * 3600.0, gt=0, le=30 * 86_400, description=(
        "Seconds a scan whose declaration has not come is kept; then it goes to the dead letters (orphan-scan)."))
    # Every decided declaration costs two expiry steps (compaction, deletion): 5,000 keys every 0.2 s keep
    # up with a worker's full decision rate (docs/benchmark.md, soak), each tick holding the loop briefly.
    state_expiry_interval_s: float = Field(default=0.2, gt=0, le=60, description="Seconds between state expiry ticks.")
    state_expiry_max_per_tick: int = Field(default=5000, ge=1, le=1_000_000, description=(
        "Most keys one expiry tick looks at (per table): the rest waits for the next tick, so the event loop is never held long."))
    # The timer gets only the event loop's leftovers at a worker's full rate; the batch that writes
    # states also expires due ones, so expiry keeps pace with deciding whatever the load.
    state_expiry_per_write: float = Field(default=3.0, ge=1, le=100, description=(
        "Due keys each decide_declarations micro-batch expires per declaration state it wrote (at most "
        "state_expiry_max_per_tick a batch); the expiry timer handles the rest in quiet periods."))

    @model_validator(mode="after")
    def _check_replication(self) -> Settings:
        if self.replication_factor and self.min_insync_replicas and self.min_insync_replicas > self.replication_factor:
            raise ValueError("min_insync_replicas must not exceed replication_factor: no write could be acknowledged")
        return self

    @model_validator(mode="after")
    def _check_lifecycle(self) -> Settings:
        if self.state_retention_s <= self.input_topic_retention_s:
            raise ValueError("state_retention_s must be longer than input_topic_retention_s: a record still in an input topic "
                             "would otherwise meet no fingerprint and be decided again")
        if self.state_compact_after_s <= self.commit_interval_s:
            raise ValueError("state_compact_after_s must be longer than commit_interval_s: a redelivery after a crash "
                             "must still find the instruction bytes to re-emit")
        if self.state_retention_s <= self.state_compact_after_s:
            raise ValueError("state_retention_s must be longer than state_compact_after_s")
        return self

    # --- Archive (`riskctl archive`, archive/) ----------------------------------------------------
    archive_dir: Path = Field(default=Path("var/archive"), description="Directory of the archive's Delta tables.")
    # Object storage: s3://bucket/prefix (gs://, az:// likewise) with credentials and endpoint from the
    # standard AWS_* variables that delta-rs reads, or from archive_storage_options (archive/location.py).
    archive_location: str | None = Field(default=None, min_length=1, description=(
        "Where the archive's Delta tables live: a directory or an object-store URI (s3://bucket/prefix); None: archive_dir."))
    archive_storage_options: dict[str, SecretStr] = Field(default_factory=dict, description=(
        "delta-rs/object_store options for archive_location, over the AWS_* environment (JSON in the environment, e.g. "
        '{"AWS_ENDPOINT_URL": "http://minio:9000", "AWS_ALLOW_HTTP": "true"}); values never logged.'))
    archive_group_id: str | None = Field(default=None, pattern=r"^[A-Za-z0-9._-]+$", description=(
        "Consumer group of the archive sink; None: '<app_id>-archive'. Only a hint for lag tools: the tables hold the positions."))
    archive_metrics_port: int = Field(default=9465, ge=0, le=65535, description="The archive sink's Prometheus port (0: none).")
    archive_flush_records: int = Field(default=50_000, ge=1, le=5_000_000, description="Rows buffered before the sink commits.")
    archive_flush_interval_s: float = Field(default=5.0, gt=0, le=3600, description="Longest a consumed record waits for its commit.")
    # A table that gets no rows (dead_letters, usually) still gets its positions committed this often:
    # the replay after a restart never goes further back.
    archive_idle_commit_s: float = Field(default=60.0, gt=0, le=86_400, description="Most seconds between commits of a lagging table.")
    archive_retention_years: int = Field(default=10, ge=1, le=100, description="Years of days the archive keeps; older days are deleted.")
    archive_maintenance_interval_s: float = Field(default=3600.0, ge=0, le=7 * 86_400, description=(
        "Seconds between the sink's compaction, retention and vacuum runs (0: never; `riskctl archive-maintain` runs one)."))

    # --- Console (`riskctl console`, console/) -------------------------------------------------------
    console_host: str = Field(default="127.0.0.1", description="Address the console listens on (loopback unless set).")
    console_port: int = Field(default=8470, ge=0, le=65535, description="The console's HTTP(S) port.")
    console_metrics_port: int = Field(default=9467, ge=0, le=65535, description="The console's Prometheus port (0: none).")
    console_tls_certfile: Path | None = Field(default=None, description="PEM certificate: the console serves HTTPS with it.")
    console_tls_keyfile: Path | None = Field(default=None, description="PEM private key of console_tls_certfile.")
    console_trusted_proxies: str | None = Field(default=None, max_length=1024, pattern=r"^[0-9A-Fa-f.:/,* ]+$", description=(
        "Comma-separated addresses of reverse proxies whose X-Forwarded-For names the user's address (the "
        "login throttle counts per address); None: the connection's own address is the user's."))
    console_session_secret: SecretStr | None = Field(default=None, description=(
        "Key that signs session cookies; None: a random key generated once into <data_dir>/console/session.key (0600)."))
    console_session_max_age_s: int = Field(default=10 * 3600, ge=60, le=7 * 86_400, description=(
        "Seconds a login lasts (a shift); disabling a user ends their sessions at their next request."))
    console_users_file: Path | None = Field(default=None, description=(
        "The console's user store (JSON); None: <data_dir>/console/users.json."))
    console_station_id: str | None = Field(default=None, pattern=r"^[A-Za-z0-9][A-Za-z0-9._:\-]{0,63}$", description=(
        "Station id on results recorded by officers without their own; None: the officer's user name."))
    console_lookback_s: float = Field(default=24 * 3600.0, gt=0, le=7 * 86_400, description=(
        "How far back the console reads instructions and results at start, to rebuild the open queue."))
    console_queue_max_per_port: int = Field(default=2000, ge=10, le=100_000, description=(
        "Open instructions held per port; more are counted, not held (the page says how many)."))
    console_queue_shown: int = Field(default=200, ge=10, le=5000, description="Rows of the officer's queue page (oldest first).")
    console_risk_entries_max: int = Field(default=1_000_000, ge=1000, le=10_000_000, description=(
        "Most current risk-list entries the console holds (about 400 bytes each); more are counted and the page says so."))
    console_credit_enterprises_max: int = Field(default=2_000_000, ge=1000, le=50_000_000, description=(
        "Most enterprises whose credit record the console can show (it keeps where each record is, about 180 bytes each)."))
    console_known_results_max: int = Field(default=500_000, ge=1000, le=10_000_000, description=(
        "Instruction ids with a recorded result the console remembers (idempotent recording; oldest forgotten first)."))
    console_figures_refresh_s: float = Field(default=120.0, ge=5, le=86_400, description=(
        "The analyst's figures are recomputed in the background this often (the last week's always; another window "
        "once it was asked for and its figures are older than this): pages show the kept figures with their time."))

    @model_validator(mode="after")
    def _check_console_tls(self) -> Settings:
        if (self.console_tls_certfile is None) != (self.console_tls_keyfile is None):
            raise ValueError("console_tls_certfile and console_tls_keyfile go together")
        return self

    def console_dir(self) -> Path:
        return self.data_dir / "console"


def load_settings(settings_file: str | Path | None = None, **overrides: Any) -> Settings:
    """Build the settings; ``settings_file`` (TOML) takes the place of env ``RISKCTL_SETTINGS``."""
    if settings_file is not None:
        path = Path(settings_file)
        if not path.is_file():
            raise FileNotFoundError(f"settings file {path} does not exist")
        os.environ["RISKCTL_SETTINGS"] = str(path)
    return Settings(**overrides)

