"""What streams/runtime/ relies on in Faust, aiokafka and mode, pinned.

Written against faust-streaming 0.15.3, aiokafka 0.14.0 and mode-streaming 0.7.1 (pyproject allows
faust-streaming >=0.15.3,<0.16 and aiokafka >=0.14,<0.15). Three kinds of pin:

- Source pins: every Faust method the adapter rewrites, overrides or mirrors, by the sha256 of its
  source. When an upgrade changes one, the test says what to re-check in the adapter; once done,
  put the new digest (printed in the failure) in ``REWRITTEN``.
- Signature pins: every other internal the adapter calls, by parameter list.
- Behaviour pins: the facts the adapter assumes, checked on real (never started) objects.
"""

from __future__ import annotations

import asyncio
import hashlib
import inspect
from collections import defaultdict
from importlib.metadata import version
from pathlib import Path
from typing import Any

import aiokafka
import faust
import pytest
from aiokafka.consumer.fetcher import Fetcher
from aiokafka.producer.message_accumulator import BatchBuilder, MessageBatch
from aiokafka.protocol.fetch import FetchRequest
from faust.stores import memory
from faust.stores import rocksdb as rocksdb_store
from faust.streams import Stream
from faust.transport import base as faust_transport
from faust.transport import consumer as faust_consumer
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types import TP
from mode import threads as mode_threads
from mode.utils import futures as mode_futures

from common.settings import Settings
from streams.runtime import status, tables
from streams.runtime.app import faust_app
from streams.runtime.checkpoint import Checkpoint

PINNED = "faust-streaming 0.15.3 / aiokafka 0.14.0 / mode-streaming 0.7.1"
SUPPORTED = {"faust-streaming": "0.15.", "aiokafka": "0.14."}


def test_installed_versions_are_the_ones_the_adapter_was_checked_against() -> None:
    for package, prefix in SUPPORTED.items():
        assert version(package).startswith(prefix), (
            f"{package} {version(package)} is installed; streams/runtime/ was checked against {PINNED}. "
            "Run this file: every pin below must hold (or be re-checked) before the range in pyproject.toml moves."
        )


# ---- source pins: what the adapter rewrites, overrides or mirrors --------------------------------
C = faust_consumer.Consumer
REWRITTEN: dict[str, tuple[Any, str, str]] = {
    "faust.transport.consumer.Consumer.getmany": (
        C.getmany, "4b168d84882a70d6e3e2f9804430a63b92f8fd117d3187cbb4aeb54305bda34e",
        "streams/runtime/consumer.py getmany is a copy with in-order delivery added: carry the change over",
    ),
    "faust.transport.consumer.Consumer._add_gap": (
        C._add_gap, "4df2573ded7c1c2cde04dc6bde6d4480cb5875ef565256e56966b585ae39b1c1",
        "the override skips it for input partitions: is a gap still marked processed?",
    ),
    "faust.transport.consumer.Consumer._new_offset": (
        C._new_offset, "1d2c7ea89a7ad4f1a216c1d51936e569162cd66bd56f889e13fd29c910b58eb0",
        "the override returns None while the head of an input partition is unacknowledged; "
        "does Faust still read _acked/_committed_offset that way, and commit past a missing head?",
    ),
    "faust.transport.consumer.Consumer._commit_offsets": (
        C._commit_offsets, "1a6979904118844111259d182ca1c6e92ccc16364ccbe55c58e59d6e254a7adb",
        "the commit guard (Checkpoint.may_commit) runs before it: is it still the one place every commit goes through?",
    ),
    "faust.transport.consumer.Consumer.perform_seek": (
        C.perform_seek, "0e8c130ff4b0afd82c0be9c5fd831316e10febc62c94032833911096e156d7c6",
        "the override sets the expected offsets from _committed_offset after it: does it still fill it?",
    ),
    "faust.transport.consumer.Consumer.on_partitions_revoked": (
        C.on_partitions_revoked, "d04b7ae72c6fc206924a2879d6c90dd383f3e8ba6f4b10a19ca99a921eb8f4db",
        "the override forgets the revoked partitions' expected offsets first, and once it returns (streams stopped, "
        "agents drained) waits for every output in flight (Checkpoint.before_rebalance) before the consumer rejoins",
    ),
    "faust.transport.consumer.Consumer._drain_messages": (
        C._drain_messages, "44a2500309e83c630493f6828af50166ec8d96a0b3e4fb2bab735f704ae93417",
        "the loop that calls getmany and _add_gap and moves _read_offset (the lag gauge reads it): "
        "does a re-fetched record still get through, and are gaps still reported through _add_gap?",
    ),
    "faust.transport.drivers.aiokafka.Consumer._new_consumer_thread": (
        faust_aiokafka.Consumer._new_consumer_thread, "0870ec53dea75083995e3565c0f0a25a1c63ecceaeb238e92e2585e3623af5a9",
        "the override builds our ConsumerThread the same way",
    ),
    "faust.transport.drivers.aiokafka.AIOKafkaConsumerThread._create_worker_consumer": (
        faust_aiokafka.AIOKafkaConsumerThread._create_worker_consumer,
        "c2701bfc3e6f6cad95c2be36d6a255a86e2c57d18d36cc1082b5fb5c482d99d7",
        "the override sets _fetch_max_wait_ms on the consumer it returns: is the wait still hard-coded, or now a setting?",
    ),
    # streams/runtime/consumer.py InLoopConsumerThread: Faust's consumer thread without the thread.
    "mode.threads.ServiceThread.start": (
        mode_threads.ServiceThread.start, "f11841038a033a05f2523901082d51dec9b4ef42b226ab2dd4b6223078a10680",
        "the in-loop thread replaces it (sets _thread_started, starts as a plain Service): does it still only start "
        "a thread and wait for it, or does it now set up something the service needs?",
    ),
    "mode.threads.ServiceThread._serve": (
        mode_threads.ServiceThread._serve, "67809eae09573ac7b43d0679e70a5394acc739bee5809d30b89e9ea8a7ac4b38",
        "what the thread runs: the in-loop thread runs _default_start on the worker's loop instead, and skips "
        "on_thread_started (the method queue it never uses): does _serve now do more?",
    ),
    "mode.threads.ServiceThread._shutdown_thread": (
        mode_threads.ServiceThread._shutdown_thread, "d7377862e73421a2261ef5af3bd2b178a2f058706c3f8e7171d6af2ec3fafab2",
        "the in-loop thread's on_stop and its _stop_children/_stop_futures/_stop_exit_stacks do what this does in the "
        "thread: does it still stop only these?",
    ),
    "mode.threads.ServiceThread.stop": (
        mode_threads.ServiceThread.stop, "32d026539c3665b2ceaa8dcdc0c3f49195ceb5b6059947e7104a4b258d1d4efd",
        "the in-loop thread keeps it (no _thread to join): does it still only call Service.stop and join the thread?",
    ),
    "mode.threads.ServiceThread.maybe_start": (
        mode_threads.ServiceThread.maybe_start, "f0e40d3d648ea6f7b7fba143b7bbda3f55dcc8f2321db18576e609b841cfbfba",
        "the in-loop thread's start sets _thread_started: is that still what says it started?",
    ),
    "mode.threads.QueueServiceThread.call_thread": (
        mode_threads.QueueServiceThread.call_thread, "479edda75b54734b48dabbb33071259949ded0a6f9fa6f82e81afdc42aff6e55",
        "the in-loop thread awaits the call directly: is call_thread still the only way Faust hands calls to it?",
    ),
    "faust.streams.Stream.take_events": (
        Stream.take_events, "607d48aead118ba8ea868718a0df87de1c5fcecd10ec542c659b448796728e08",
        "streams/runtime/batching.py take_batches mirrors it (buffering processor, passive drain, "
        "manual acks): carry the change over, and check it still acks a crashed batch and polls a quiet stream",
    ),
    # streams/runtime/fetchsession.py: aiokafka's fetcher, its requests put in fetch sessions.
    "aiokafka Fetcher._get_actions_per_node": (
        Fetcher._get_actions_per_node, "1dab2cf937d165d0eeacc8da8ed2b0ebd80b321bb6583757e01cdc1013d31635",
        "install() wraps it: does it still return (fetch requests by node, ...) first, one FetchRequest per node, "
        "never for a node with a request in flight?",
    ),
    "aiokafka Fetcher._proc_fetch_request": (
        Fetcher._proc_fetch_request, "59bf948fff47eed580671971252454daa614df479733f3bedfefe95bc4d8ad30",
        "does it still send through self._client.send and read each answered partition's offset from request.topics?",
    ),
    "aiokafka Fetcher._fetch_requests_routine": (
        Fetcher._fetch_requests_routine, "2a8ec5932644c9b04ff222ee7f27c9b0d6a0a7e89ce5a158ed340ceedc2ec7a9",
        "does it still call _get_actions_per_node each round and keep a node in _in_flight until its fetch is done?",
    ),
    "aiokafka FetchRequest.__init__": (
        FetchRequest.__init__, "f31b6b74cc94dae4a4b6a83f202518b80ae24ef00393885d92f85a56451fbf3f",
        "SessionFetchRequest copies its fields (_max_wait_ms, _min_bytes, _max_bytes, _isolation_level, topics, _rack_id)",
    ),
}


def _digest(obj: Any) -> str:
    return hashlib.sha256(inspect.getsource(obj).encode()).hexdigest()


@pytest.mark.parametrize("name", sorted(REWRITTEN))
def test_the_faust_code_the_adapter_rewrites_is_unchanged(name: str) -> None:
    obj, pinned, recheck = REWRITTEN[name]
    actual = _digest(obj)
    assert actual == pinned, (
        f"{name} changed since {PINNED} (installed: faust-streaming {version('faust-streaming')}, "
        f"aiokafka {version('aiokafka')}). Re-check: {recheck}. Then pin sha256 {actual}."
    )


# ---- signature pins: the other internals the adapter calls --------------------------------------
def _params(fn: Any) -> list[str]:
    out = []
    for p in inspect.signature(fn).parameters.values():
        text = {p.VAR_POSITIONAL: "*", p.VAR_KEYWORD: "**"}.get(p.kind, "") + p.name
        if p.kind is p.KEYWORD_ONLY:
            text = "kw:" + text
        if p.default is not p.empty:
            text += f"={p.default!r}"
        out.append(text)
    return out


CALLED: dict[str, tuple[Any, list[str], str]] = {
    # streams/runtime/consumer.py
    "Consumer._wait_next_records": (C._wait_next_records, ["self", "timeout"], "getmany"),
    "Consumer._to_message": (faust_aiokafka.Consumer._to_message, ["self", "tp", "record"], "getmany"),
    "Consumer.seek": (C.seek, ["self", "partition", "offset"], "the in-order consumer's seek back"),
    "Consumer.highwater": (faust_aiokafka.Consumer.highwater, ["self", "tp"], "getmany, status.input_lag"),
    "Consumer.crash": (C.crash, ["self", "reason"], "the commit guard"),
    "Consumer.__post_init__": (C.__post_init__, ["self"], "the in-order consumer's state"),
    "Consumer.commit": (C.commit, ["self", "topics=None", "start_new_transaction=True"], "every commit"),
    "Consumer._commit_offsets": (C._commit_offsets, ["self", "offsets", "start_new_transaction=True"], "the guard's override"),
    "Consumer._add_gap": (C._add_gap, ["self", "tp", "offset_from", "offset_to"], "override"),
    "Consumer._new_offset": (C._new_offset, ["self", "tp"], "override"),
    "Consumer.getmany": (C.getmany, ["self", "timeout"], "override"),
    "Consumer.on_partitions_revoked": (C.on_partitions_revoked, ["self", "revoked"], "override"),
    "AIOKafkaConsumerThread.__init__": (
        faust_aiokafka.AIOKafkaConsumerThread.__init__, ["self", "consumer", "**kwargs"], "_new_consumer_thread",
    ),
    "AIOKafkaConsumerThread._create_worker_consumer": (
        faust_aiokafka.AIOKafkaConsumerThread._create_worker_consumer, ["self", "transport"], "the fetch wait",
    ),
    "Transport.create_consumer": (faust_transport.Transport.create_consumer, ["self", "callback", "**kwargs"], "faust_app"),
    # streams/runtime/producer.py
    "faust Producer._ensure_producer": (faust_aiokafka.Producer._ensure_producer, ["self"], "send_records"),
    "AIOKafkaProducer.create_batch": (aiokafka.AIOKafkaProducer.create_batch, ["self"], "send_records"),
    "AIOKafkaProducer.send_batch": (aiokafka.AIOKafkaProducer.send_batch, ["self", "batch", "topic", "kw:partition"], "send_records"),
    "BatchBuilder.append": (BatchBuilder.append, ["self", "kw:timestamp", "kw:key", "kw:value", "kw:headers=[]"], "send_records"),
    # streams/runtime/batching.py
    "Stream.add_processor": (Stream.add_processor, ["self", "processor"], "take_batches"),
    "Stream._enable_passive": (Stream._enable_passive, ["self", "channel", "kw:declare=False"], "take_batches"),
    "Stream.ack": (Stream.ack, ["self", "event"], "take_batches"),
    "Stream.wait_for_stopped": (Stream.wait_for_stopped, ["self", "*coros", "kw:timeout=None"], "take_batches"),
    "Stream.wait": (Stream.wait, ["self", "*coros", "kw:timeout=None"], "take_batches"),
    "mode.utils.futures.notify": (mode_futures.notify, ["fut", "result=None"], "take_batches"),
    # streams/runtime/tables.py (RocksDB store)
    "rocksdb Store._db_for_partition": (rocksdb_store.Store._db_for_partition, ["self", "partition"], "open_partitions, partition_items"),
    # tables.flush_when_delivered writes the offset record as this does (str(offset) under offset_key), in its own write batch.
    "rocksdb Store.set_persisted_offset": (rocksdb_store.Store.set_persisted_offset, ["self", "tp", "offset"],
                                           "tables.flush_when_delivered"),
    # A sent batch's future resolves to RecordMetadata whose offset is the batch's base offset.
    "aiokafka MessageBatch.done": (MessageBatch.done, ["self", "base_offset", "timestamp=None", "log_start_offset=None",
                                                       "_record_metadata_class=<class 'aiokafka.structs.RecordMetadata'>"],
                                   "tables.flush_when_delivered"),
}


@pytest.mark.parametrize("name", sorted(CALLED))
def test_the_faust_internals_the_adapter_calls_keep_their_signature(name: str) -> None:
    fn, expected, user = CALLED[name]
    assert _params(fn) == expected, (
        f"{name} changed its signature since {PINNED}: now {_params(fn)}. Re-check its use in streams/runtime/ ({user})."
    )


# ---- behaviour pins -------------------------------------------------------------------------------
def _app(tmp_path: Path, checkpoint: Checkpoint | None = None) -> Any:
    return faust_app(Settings(app_id="contract", partitions=4, data_dir=tmp_path / "data"), checkpoint)


def test_faust_app_builds_without_a_broker_and_runs_our_consumer(tmp_path: Path) -> None:
    async def scenario() -> None:
        app = _app(tmp_path, Checkpoint())
        consumer = app.consumer  # Transport.create_consumer builds transport.Consumer
        assert type(consumer) is app.transport.Consumer
        assert type(consumer).__module__ == "streams.runtime.consumer"
        assert isinstance(consumer, faust_aiokafka.Consumer)
        assert type(consumer._thread).__module__ == "streams.runtime.consumer"  # our ConsumerThread

    asyncio.run(scenario())


def test_the_consumer_state_the_in_order_consumer_reads(tmp_path: Path) -> None:
    async def scenario() -> None:
        consumer = _app(tmp_path).consumer
        for name in ("_acked", "_committed_offset", "_read_offset", "_gap"):
            assert isinstance(getattr(consumer, name), defaultdict), name
        assert consumer._acked[("t", 0)] == []
        assert consumer._committed_offset[("t", 0)] is None and consumer._read_offset[("t", 0)] is None
        assert isinstance(consumer._buffered_partitions, set)
        assert callable(consumer.scheduler.iterate)
        assert consumer.flow_active is True and consumer.should_stop is False
        assert isinstance(consumer.app.consumer_generation_id, int)
        assert callable(consumer.app.monitor.track_tp_end_offset)

    asyncio.run(scenario())


def test_aiokafka_starts_its_fetcher_with_the_consumer_s_fetch_wait() -> None:
    async def scenario() -> int:
        consumer = aiokafka.AIOKafkaConsumer(bootstrap_servers="127.0.0.1:1", fetch_max_wait_ms=37)
        wait: int = consumer._fetch_max_wait_ms
        return wait

    assert asyncio.run(scenario()) == 37
    assert "fetch_max_wait_ms=self._fetch_max_wait_ms" in inspect.getsource(aiokafka.AIOKafkaConsumer.start)
    assert "fetch_min_bytes=self._fetch_min_bytes" in inspect.getsource(aiokafka.AIOKafkaConsumer.start)


def test_aiokafka_s_fetcher_reads_its_prefetch_backoff_when_it_buffers_records() -> None:
    """streams.runtime.consumer sets ``_fetcher._prefetch_backoff`` once the consumer has started:
    the consumer builds its fetcher in ``start`` and the fetcher reads the attribute each time it
    buffers a partition's records (or an error), which then holds the node's fetches back that long."""
    from aiokafka.consumer import fetcher

    assert "self._fetcher = Fetcher(" in inspect.getsource(aiokafka.AIOKafkaConsumer.start)
    assert "self._prefetch_backoff = prefetch_backoff" in inspect.getsource(fetcher.Fetcher.__init__)
    source = inspect.getsource(fetcher.Fetcher)
    assert source.count("backoff=self._prefetch_backoff") == 2
    assert "backoff = record.calculate_backoff()" in inspect.getsource(fetcher.Fetcher._get_actions_per_node)
    assert "self._consumer = self._create_consumer(" in inspect.getsource(faust_aiokafka.AIOKafkaConsumerThread.on_start)


def test_aiokafka_s_client_keeps_one_cluster_metadata_object_and_its_fetcher_is_per_consumer() -> None:
    """streams.runtime.fetchsession wraps the fetcher's client and keeps the client's ``cluster``
    (read for every partition of every fetch round) as it was: aiokafka updates that one object in
    place. The fetcher's client is the consumer's own, so wrapping it touches no other consumer."""
    assert inspect.getsource(aiokafka.AIOKafkaClient).count("self.cluster =") == 1
    # The fetch rounds keep each partition's state and leader until one of these objects is replaced:
    # a metadata update replaces the partitions map, a new assignment its partitions and states.
    from aiokafka.cluster import ClusterMetadata
    from aiokafka.consumer.subscription_state import Assignment

    update = inspect.getsource(ClusterMetadata.update_metadata)
    assert "self._partitions = _new_partitions" in update
    assert "self._partitions[" not in update  # never changed in place
    assert "partitions = self._partitions[partition.topic]" in inspect.getsource(ClusterMetadata.leader_for_partition)
    assert "self._topic_partitions = frozenset(topic_partitions)" in inspect.getsource(Assignment.__init__)
    assert inspect.getsource(Assignment).count("self._tp_state[tp] =") == 1
    assert "self._client = client" in inspect.getsource(Fetcher.__init__)
    assert "self._client," in inspect.getsource(aiokafka.AIOKafkaConsumer.start)


def test_a_batch_builder_signals_full_with_none_and_takes_any_first_record() -> None:
    batch = BatchBuilder(100, 0)
    assert batch.append(timestamp=None, key=b"k", value=b"x" * 500) is not None  # the first always fits
    assert batch.append(timestamp=None, key=b"k", value=b"x") is None  # full: start a new batch


def test_faust_s_producer_hands_out_the_aiokafka_producer_once_started(tmp_path: Path) -> None:
    async def scenario() -> None:
        producer = _app(tmp_path).producer
        with pytest.raises(Exception, match="not yet started"):
            producer._ensure_producer()
        producer._producer = sentinel = object()
        assert producer._ensure_producer() is sentinel

    asyncio.run(scenario())


def test_a_memory_table_store_wraps_a_plain_dict_and_names_its_changelog(tmp_path: Path) -> None:
    async def scenario() -> None:
        app = _app(tmp_path)
        table = app.Table("state", partitions=4, key_type=bytes, value_type=bytes)
        assert isinstance(table.data, memory.Store)
        assert type(table.data.data) is dict
        table.data[b"k"] = b"v"  # a direct store write: no changelog record, visible to the table
        assert table[b"k"] == b"v" and table.data.data == {b"k": b"v"}
        assert table.data.pop(b"k", None) == b"v" and table.data.pop(b"k", None) is None
        # streams.runtime.tables.is_changelog tells changelogs from inputs by this suffix.
        assert table.changelog_topic.get_topic_name() == "contract-state-changelog"

    asyncio.run(scenario())


def test_the_readiness_facts(tmp_path: Path) -> None:
    async def scenario() -> None:
        app = _app(tmp_path)
        assert app.rebalancing is False
        assert app.tables.recovery.completed.is_set() is False  # set by Faust once tables recovered
        assert app.assignor.assigned_actives() == set()

    asyncio.run(scenario())


def test_faust_counts_each_rebalance_as_it_begins(tmp_path: Path) -> None:
    """``status.rebalances``: the aiokafka rebalance listener calls ``on_rebalance_start`` when the
    group revokes the partitions, before anything else of the rebalance (Topology.settled)."""

    async def scenario() -> None:
        app = _app(tmp_path)
        assert status.rebalances(app) == 0
        app.on_rebalance_start()
        assert status.rebalances(app) == 1 and app.rebalancing is True
        source = inspect.getsource(faust_aiokafka.ConsumerRebalanceListener.on_partitions_revoked)
        assert "app.on_rebalance_start()" in source

    asyncio.run(scenario())


def test_a_stream_s_buffering_hooks(tmp_path: Path) -> None:
    async def scenario() -> None:
        app = faust.App("contract-stream", broker="kafka://127.0.0.1:1", store="memory://", web_enabled=False,
                        datadir=str(tmp_path))
        stream: Any = app.stream(app.channel())
        assert stream.enable_acks is True and stream.current_event is None
        assert isinstance(stream._processors, list)

        def processor(value: Any) -> Any:
            return value

        stream.add_processor(processor)
        assert stream._processors[-1] is processor
        stream._processors.remove(processor)
        assert processor not in stream._processors

    asyncio.run(scenario())


def test_a_global_table_calls_back_on_every_changelog_event_before_applying_it(tmp_path: Path) -> None:
    """The risk-list index is updated entry by entry from ``on_changelog_event`` (public API), and the
    next tick reads the changed key from the table: so recovery must call back for each event and
    apply it before the next await (buffers of one record)."""
    import inspect

    from faust.tables import recovery

    async def scenario() -> None:
        app = _app(tmp_path)
        seen: list[Any] = []

        async def changed(event: Any) -> None:
            seen.append(event)

        table = app.GlobalTable("refs", partitions=1, recovery_buffer_size=1, key_type=bytes, value_type=bytes,
                                on_changelog_event=changed)
        assert table.recovery_buffer_size == 1 and table.standby_buffer_size == 1
        await table.on_changelog_event("event")
        assert seen == ["event"]

    asyncio.run(scenario())
    source = inspect.getsource(recovery.Recovery)
    callback = "await table.on_changelog_event(event)"
    call = source.index(callback)
    apply = source.index("table.apply_changelog_batch(buf)", call)
    assert "await" not in source[call + len(callback):apply]  # nothing runs between the call back and the apply


def test_a_rocksdb_table_store_and_what_the_adapter_reads_of_it(tmp_path: Path) -> None:
    async def scenario() -> None:
        app = _app(tmp_path)
        # A store URL without a path is falsy in yarl, and Faust then falls back to the app's store:
        # the topology names each table's store "rocksdb:<table>".
        assert isinstance(app.Table("bare", partitions=4, store="rocksdb://").data, memory.Store)
        table = app.Table("state", partitions=4, store="rocksdb:state", use_partitioner=True, key_type=bytes, value_type=bytes)
        store = table.data
        assert isinstance(store, rocksdb_store.Store) and type(store).__module__ == "faust.stores.rocksdb"
        with pytest.raises(AssertionError):
            store[b"k"] = b"v"  # Faust's own write needs a current event: the adapter writes to a partition's database
        db = store._db_for_partition(1)  # opened on first use
        db.put(b"k", b"v")
        store._key_index[b"k"] = 1  # the key -> partition cache its reads use first
        assert store[b"k"] == b"v" and b"k" in store and store.offset_key == b"__faust\0offset__"
        it = db.iter()  # rocksdict's iterator: what tables.partition_items walks
        it.seek_to_first()
        assert it.valid() and (it.key(), it.value()) == (b"k", b"v")

    asyncio.run(scenario())


def test_a_table_hands_each_recovered_changelog_event_to_its_callback(tmp_path: Path) -> None:
    seen: list[Any] = []

    async def on_event(event: Any) -> None:
        seen.append(event)

    async def scenario() -> None:
        table = _app(tmp_path).Table("state", partitions=4, key_type=bytes, value_type=bytes, on_changelog_event=on_event)
        await table.on_changelog_event("event")  # faust/tables/recovery.py calls this for every event it recovers

    asyncio.run(scenario())
    assert seen == ["event"]


def test_the_memory_store_s_recovery_bookkeeping_is_read_before_the_recover_callbacks(tmp_path: Path) -> None:
    # streams.runtime.tables.forget_recovered_keys clears it from an on_recover callback.
    class Event:
        def __init__(self, key: bytes, value: bytes | None, partition: int) -> None:
            self.key, self.value = key, value
            self.message = type("M", (), {"key": key, "value": value, "partition": partition, "tp": TP("t", partition)})()

    seen: list[int] = []

    async def scenario() -> None:
        table = _app(tmp_path).Table("state", partitions=4, key_type=bytes, value_type=bytes)

        @table.on_recover
        async def forget() -> None:
            seen.append(len(table.data._key_partition))
            tables.forget_recovered_keys(table)

        table.apply_changelog_batch([Event(b"a", b"1", 0), Event(b"b", b"2", 1)])
        assert table.data._key_partition == {b"a": 0, b"b": 1}
        await table.on_recovery_completed({TP("contract-state-changelog", 0)}, set())
        assert dict(table.data.data) == {b"a": b"1"}  # Faust dropped the key of the unassigned partition first
        assert table.data._key_partition == {}

    asyncio.run(scenario())
    assert seen == [1]
