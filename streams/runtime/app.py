"""The worker's Faust application: settings mapped onto Faust's, and the consumer this project runs."""

from __future__ import annotations

import ssl
from typing import Any

import faust
from faust.auth import SASLCredentials, SSLCredentials

from common.settings import Settings
from streams.runtime.checkpoint import Checkpoint
from streams.runtime.consumer import in_order_consumer


def faust_app(settings: Settings, checkpoint: Checkpoint | None = None) -> faust.App:
    """The worker's app (not started: ``faust.Worker`` starts it), its consumer guarded by
    ``checkpoint`` (``streams.runtime.consumer.in_order_consumer``)."""
    servers = ";".join(s.strip() for s in settings.kafka_bootstrap_servers.split(","))
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    app = faust.App(
        settings.app_id,
        broker=f"kafka://{servers}",
        broker_credentials=faust_credentials(settings),
        store="memory://",
        datadir=str(settings.data_dir),
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
        producer_linger_ms=0,
        producer_max_batch_size=1_000_000,  # streams.runtime.producer sends a micro-batch per partition at once
        producer_max_request_size=4_000_000,
        stream_buffer_maxsize=max(4096, settings.batch_max * 2),
        table_standby_replicas=settings.standby_replicas,
        logging_config=None,
        loghandlers=[],
    )
    transport: Any = app.transport  # Transport.Consumer is the class its create_consumer() builds
    transport.Consumer = in_order_consumer(settings.fetch_max_wait_ms, checkpoint)
    return app


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
