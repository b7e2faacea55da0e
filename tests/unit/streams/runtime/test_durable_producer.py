"""The worker's outputs (instructions, dead letters, changelogs) go out with acks=all, and idempotent when set."""

from __future__ import annotations

import asyncio
from pathlib import Path

from common.settings import Settings
from streams.runtime.app import IdempotentProducer, faust_app


def build(tmp_path: Path, **settings: object) -> tuple[object, int, object]:
    async def build() -> tuple[object, int, object]:
        app = faust_app(Settings(app_id="producer-test", data_dir=tmp_path / "data", **settings))  # type: ignore[arg-type]  # test overrides
        faust_producer = app.producer
        client = faust_producer._new_producer()  # the aiokafka producer Faust would start (never started here)
        try:
            return faust_producer, client._sender._acks, client._txn_manager
        finally:
            await client.stop()

    return asyncio.run(build())


def test_the_workers_aiokafka_producer_waits_for_all_in_sync_replicas_and_is_idempotent_when_set(tmp_path: Path) -> None:
    faust_producer, acks, txn_manager = build(tmp_path, worker_idempotent_producer=True)
    assert isinstance(faust_producer, IdempotentProducer)
    assert acks == -1  # all in-sync replicas
    # aiokafka keeps producer id and sequence numbers in its transaction manager, created only with idempotence.
    assert txn_manager is not None


def test_without_idempotence_for_tansu_the_worker_still_waits_for_all_in_sync_replicas(tmp_path: Path) -> None:
    faust_producer, acks, txn_manager = build(tmp_path)
    assert not isinstance(faust_producer, IdempotentProducer)
    assert acks == -1
    assert txn_manager is None
