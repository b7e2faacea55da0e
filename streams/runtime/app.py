"""The worker's Faust application: settings mapped onto Faust's, and the consumer this project runs."""

from __future__ import annotations

import fcntl
import os
import ssl
from pathlib import Path
from typing import Any

import faust
from faust.auth import SASLCredentials, SSLCredentials
from faust.transport.drivers.aiokafka import Producer as AIOKafkaProducer

from common.settings import Settings
from streams.runtime.checkpoint import Checkpoint
from streams.runtime.consumer import in_order_consumer
from streams.runtime.fetchsession import FetchBounds


def faust_app(settings: Settings, checkpoint: Checkpoint | None = None, bounds: FetchBounds | None = None) -> faust.App:
    """The worker's app (not started: ``faust.Worker`` starts it), its consumer guarded by
    ``checkpoint`` (``streams.runtime.consumer.in_order_consumer``) and fetching within ``bounds``."""
    servers = ";".join(s.strip() for s in settings.kafka_bootstrap_servers.split(","))
    app = faust.App(
        settings.app_id,
        broker=f"kafka://{servers}",
        broker_credentials=faust_credentials(settings),
        store="memory://",
        datadir=str(state_dir(settings.data_dir)),
        web_enabled=False,
        topic_allow_declare=False,  # `riskctl topics create` owns topic creation
        topic_partitions=settings.partitions,
        consumer_auto_offset_reset="earliest",
        broker_session_timeout=settings.session_timeout_s,
        broker_heartbeat_interval=settings.heartbeat_interval_s,
        broker_rebalance_timeout=settings.rebalance_timeout_s,
        broker_commit_interval=settings.commit_interval_s,
        # An output batch is complete when it is handed over: a linger would only delay it
        # (docs/benchmark.md).
        producer_acks=-1,  # all in-sync replicas (IdempotentProducer insists too)
        producer_linger_ms=0,
        producer_max_batch_size=1_000_000,  # streams.runtime.producer sends a micro-batch per partition at once
        producer_max_request_size=4_000_000,
        stream_buffer_maxsize=max(4096, settings.batch_max * 2),
        table_standby_replicas=settings.standby_replicas,
        logging_config=None,
        loghandlers=[],
    )
    transport: Any = app.transport  # Transport.Consumer is the class its create_consumer() builds
    transport.Consumer = in_order_consumer(settings.fetch_max_wait_ms, checkpoint, settings.rebalance_delivery_timeout_s,
                                           settings.fetch_min_bytes, settings.consumer_in_loop, settings.prefetch_backoff_ms,
                                           settings.fetch_sessions, bounds)
    if settings.worker_idempotent_producer:
        transport.Producer = IdempotentProducer
    return app


class IdempotentProducer(AIOKafkaProducer):
    """Faust's aiokafka producer with ``acks=all`` and idempotence, outside transactions too.

    A leader that fails over mid-request makes the producer retry a batch the broker may already
    have written; with idempotence the broker drops the second copy by sequence number, so a retry
    never duplicates a changelog record or reorders a partition's outputs (Faust enables it only
    for its transactions, which the pipeline does not use)."""

    def _settings_extra(self) -> dict[str, Any]:
        return {**super()._settings_extra(), "acks": "all", "enable_idempotence": True}


MAX_STATE_DIRS = 64
_held: dict[Path, int] = {}  # state directories this process holds -> their lock, open until it exits


def state_dir(data_dir: Path) -> Path:
    """This worker's own state directory under ``data_dir``: the first ``worker-<n>`` that no other
    live process holds (an exclusive ``flock`` on its ``.lock`` file, released by the kernel when the
    process ends, even by kill -9). A restarted worker takes its old directory back and finds its
    RocksDB databases; two workers sharing a data dir never open the same database. Within one
    process (tests that restart an app) the directory already held is given again."""
    data_dir.mkdir(parents=True, exist_ok=True)
    for n in range(MAX_STATE_DIRS):
        path = (data_dir / f"worker-{n}").resolve()
        if path in _held:
            return path
        path.mkdir(exist_ok=True)
        fd = os.open(path / ".lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            continue
        _held[path] = fd
        return path
    raise RuntimeError(f"every state directory under {data_dir} (worker-0 to worker-{MAX_STATE_DIRS - 1}) is held by a live process")


def faust_credentials(settings: Settings) -> Any:
    """Faust/aiokafka credentials matching the confluent-kafka ones (TLS and/or SASL)."""
    context = None
    if settings.kafka_security_protocol in ("SSL", "SASL_SSL"):
        cafile = str(settings.kafka_ssl_cafile) if settings.kafka_ssl_cafile else None
        context = ssl.create_default_context(cafile=cafile)
        if settings.kafka_ssl_certfile:
            keyfile = str(settings.kafka_ssl_keyfile) if settings.kafka_ssl_keyfile else None
            context.load_cert_chain(str(settings.kafka_ssl_certfile), keyfile)
    if settings.kafka_security_protocol.startswith("SASL_"):  # like confluent_config(): the protocol decides
        password = settings.kafka_sasl_password.get_secret_value() if settings.kafka_sasl_password else ""
        return SASLCredentials(
            username=settings.kafka_sasl_username, password=password, ssl_context=context, mechanism=settings.kafka_sasl_mechanism
        )
    if context is not None:
        return SSLCredentials(context)
    return None
