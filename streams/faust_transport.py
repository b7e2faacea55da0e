"""One adjustment to Faust's aiokafka transport: the consumer's fetch wait.

Faust hard-codes ``fetch_max_wait_ms=1500`` for its worker consumer. A broker answers a fetch as
soon as data arrives, but some (the embedded Tansu among them) hold it for the whole wait, which
put 0.5-1.5 s of pure waiting into every decision at low traffic. The wait comes from settings.
"""

from __future__ import annotations

from typing import Any

from faust.transport.drivers import aiokafka as faust_aiokafka


def with_fetch_wait(max_wait_ms: int) -> type:
    class ConsumerThread(faust_aiokafka.AIOKafkaConsumerThread):
        def _create_worker_consumer(self, transport: Any) -> Any:
            consumer = super()._create_worker_consumer(transport)
            consumer._fetch_max_wait_ms = max_wait_ms  # read when the consumer starts its fetcher
            return consumer

    class Consumer(faust_aiokafka.Consumer):
        def _new_consumer_thread(self) -> faust_aiokafka.AIOKafkaConsumerThread:
            return ConsumerThread(self, loop=self.loop, beacon=self.beacon)

    return Consumer
