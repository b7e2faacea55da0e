"""Run one pipeline worker: Faust app + metrics endpoint. Several may run in one consumer group."""

from __future__ import annotations

import logging

import faust
from prometheus_client import start_http_server

from streams.services import Services
from streams.settings import Settings
from streams.topology import Topology

log = logging.getLogger(__name__)


def run_worker(settings: Settings) -> int:
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
    worker = faust.Worker(topology.app, loglevel=settings.log_level.lower(), quiet=True, redirect_stdouts=False)
    worker.execute_from_commandline()  # returns when the worker stops (SIGINT / SIGTERM)
    return 0
