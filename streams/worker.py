"""Run one pipeline worker: Faust app + metrics endpoint. Several may run in one consumer group."""

from __future__ import annotations

import gc
import logging

import faust
from prometheus_client import start_http_server

from common.settings import Settings
from decision.services import Services
from streams.topology import Topology

log = logging.getLogger(__name__)


def redact_in_logs(*secrets: str) -> None:
    """Replace every occurrence of ``secrets`` in log messages with ``[redacted]``, whatever logs them.

    aiokafka logs each request at DEBUG; with SASL PLAIN that includes
    ``SaslAuthenticateRequest_v1(sasl_auth_bytes=b'user\\x00user\\x00<password>')``. A log record factory
    sees every record that passes the level check, before any handler formats it.
    """
    needles = {variant for s in secrets if s for variant in (s, repr(s.encode())[2:-1], repr(s)[1:-1])}
    if not needles:
        return
    previous = logging.getLogRecordFactory()

    def factory(*args: object, **kwargs: object) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a broken format is logging's own error to report
            return record
        if any(n in message for n in needles):
            for n in sorted(needles, key=len, reverse=True):
                message = message.replace(n, "[redacted]")
            record.msg, record.args = message, ()
        return record

    logging.setLogRecordFactory(factory)


def tune_gc(gen0_threshold: int) -> None:
    """A micro-batch allocates tens of thousands of short-lived objects (parsed declarations,
    instruction dicts); with CPython's default gen0 threshold of 700 the collector ran dozens of
    times per batch and walked every surviving object each time, a large share of the decision CPU
    at large batches (docs/benchmark.md). The models, policy and libraries loaded so
    far are long-lived: ``freeze`` takes them out of every future collection. Handlers also run
    with the collector off (``Topology._run_batch``), so collections fall between micro-batches."""
    gc.collect()
    gc.freeze()
    _, gen1, gen2 = gc.get_threshold()
    gc.set_threshold(gen0_threshold, gen1, gen2)


def run_worker(settings: Settings) -> int:
    if settings.kafka_sasl_password is not None:
        redact_in_logs(settings.kafka_sasl_password.get_secret_value())
    services = Services.from_settings(settings)
    topology = Topology(settings, services)
    if settings.metrics_port:
        try:
            start_http_server(settings.metrics_port, addr=settings.metrics_host)
        except OSError as exc:
            log.error("cannot serve metrics on %s:%d (%s): set METRICS_PORT to a free port, or 0 to disable",
                      settings.metrics_host, settings.metrics_port, exc.strerror)
            return 2
        log.info("metrics on http://%s:%d/metrics", settings.metrics_host, settings.metrics_port)
    log.info(
        "worker %s: brokers %s, policy %s, models %s",
        settings.app_id, settings.kafka_bootstrap_servers, services.policy.version, services.scorer.active_versions(),
    )
    tune_gc(settings.gc_gen0_threshold)
    worker = faust.Worker(topology.app, loglevel=settings.log_level.lower(), quiet=True, redirect_stdouts=False)
    worker.execute_from_commandline()  # returns when the worker stops (SIGINT / SIGTERM)
    return 0
