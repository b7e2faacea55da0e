"""The worker's outputs (instructions, dead letters, changelogs) go out with acks=all and idempotence."""

from __future__ import annotations

import asyncio
from pathlib import Path

from common.settings import Settings
from streams.runtime.app import IdempotentProducer, faust_app


def test_the_workers_aiokafka_producer_waits_for_all_in_sync_replicas_and_is_idempotent(tmp_path: Path) -> None:
    async def build() -> tuple[object, int, object]:
        app = faust_app(Settings(app_id="producer-test", data_dir=tmp_path / "data"))
        faust_producer = app.producer
        client = faust_producer._new_producer()  # the aiokafka producer Faust would start (never started here)
        try:
            return faust_producer, client._sender._acks, client._txn_manager
        finally:
            await client.stop()

    faust_producer, acks, txn_manager = asyncio.run(build())
    assert isinstance(faust_producer, IdempotentProducer)
    assert acks == -1  # all in-sync replicas
    # aiokafka keeps producer id and sequence numbers in its transaction manager, created only with idempotence.
    assert txn_manager is not None
