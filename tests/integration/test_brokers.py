"""The brokers the pipeline runs on: plain clients and a real Faust worker, on Tansu and Apache Kafka 4.x.

Every check counts records (Tansu's watermarks are wrong) and waits on conditions under deadlines.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, Producer, TopicPartition
from confluent_kafka.admin import AdminClient

from devkit.brokers import ApacheKafkaBroker, Broker, create_topics

pytestmark = pytest.mark.integration


# ------------------------------------------------------------------------------------------------
# client helpers


def produce(bootstrap: str, topic: str, records: Iterable[tuple[bytes | None, bytes]], timeout: float = 60.0) -> int:
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5, "enable.idempotence": True})
    errors: list[Any] = []
    delivered = 0

    def on_delivery(err: Any, _msg: Any) -> None:
        nonlocal delivered
        if err is not None:
            errors.append(err)
        else:
            delivered += 1

    sent = 0
    for key, value in records:
        while True:
            try:
                producer.produce(topic, key=key, value=value, on_delivery=on_delivery)
                break
            except BufferError:
                producer.poll(0.1)
        sent += 1
        producer.poll(0)
    remaining = producer.flush(timeout)
    assert remaining == 0, f"{remaining} records still queued after {timeout}s"
    assert not errors, f"delivery errors: {errors[:5]}"
    assert delivered == sent
    return delivered


def partitions_of(bootstrap: str, topic: str) -> list[int]:
    md = AdminClient({"bootstrap.servers": bootstrap}).list_topics(topic, timeout=10)
    return sorted(md.topics[topic].partitions)


def consume_until(bootstrap: str, topic: str, done: Callable[[list[Any]], bool], timeout: float,
                  what: str = "") -> list[Any]:
    """Read ``topic`` from the beginning (assign, no group) until ``done(messages)`` or the deadline."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "it-reader", "enable.auto.commit": False,
                         "auto.offset.reset": "earliest", "enable.partition.eof": False})
    try:
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions_of(bootstrap, topic)])
        out: list[Any] = []
        deadline = time.monotonic() + timeout
        while not done(out):
            if time.monotonic() > deadline:
                raise AssertionError(f"{what or topic}: condition not met after {timeout}s; got {len(out)} records")
            for msg in consumer.consume(num_messages=10_000, timeout=0.2):
                if msg.error() is not None:
                    if msg.error().code() == KafkaError._PARTITION_EOF:
                        continue
                    raise AssertionError(f"consume error on {topic}: {msg.error()}")
                out.append(msg)
        return out
    finally:
        consumer.close()


def committed_offsets(bootstrap: str, group: str, topic: str) -> dict[int, int]:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False})
    try:
        tps = consumer.committed([TopicPartition(topic, p) for p in partitions_of(bootstrap, topic)], timeout=10)
        return {tp.partition: tp.offset for tp in tps}
    finally:
        consumer.close()


def wait_for(condition: Callable[[], Any], timeout: float, what: str, interval: float = 0.2) -> Any:
    """Poll ``condition`` until it returns a truthy value; fail with ``what`` at the deadline."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while True:
        last = condition()
        if last:
            return last
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)  # poll interval of a condition, not a stand-in for synchronisation


# ------------------------------------------------------------------------------------------------
# plain clients


def test_produce_consume_1000(broker: Broker, unique_name: str) -> None:
    topic = f"{unique_name}-plain"
    create_topics(broker.bootstrap_servers, {topic: 3})
    n = 1000
    produce(broker.bootstrap_servers, topic,
            ((f"k{i % 37}".encode(), json.dumps({"i": i}).encode()) for i in range(n)))
    msgs = consume_until(broker.bootstrap_servers, topic, lambda got: len(got) >= n, timeout=60)
    values = sorted(json.loads(m.value())["i"] for m in msgs)
    assert values == list(range(n)), f"{broker.kind}: expected each of {n} records exactly once"
    # Same key -> same partition (the co-partitioning the pipeline relies on).
    part_of_key: dict[bytes, set[int]] = {}
    for m in msgs:
        part_of_key.setdefault(m.key(), set()).add(m.partition())
    assert all(len(ps) == 1 for ps in part_of_key.values())


def test_high_watermark_matches_record_count(broker: Broker, unique_name: str,
                                            request: pytest.FixtureRequest) -> None:
    """Known Tansu 0.6.0 bug, kept visible: its high watermark is the last batch's base offset + 1."""
    if broker.kind == "tansu":
        request.applymarker(pytest.mark.xfail(
            strict=True, reason="Tansu 0.6.0 reports high watermark = base offset of the last batch + 1"))
    topic = f"{unique_name}-wm"
    create_topics(broker.bootstrap_servers, {topic: 1})
    produce(broker.bootstrap_servers, topic, ((None, b"%d" % i) for i in range(100)))
    msgs = consume_until(broker.bootstrap_servers, topic, lambda got: len(got) >= 100, timeout=30)
    consumer = Consumer({"bootstrap.servers": broker.bootstrap_servers, "group.id": "it-wm"})
    try:
        low, high = consumer.get_watermark_offsets(TopicPartition(topic, 0), timeout=10)
    finally:
        consumer.close()
    assert (low, high) == (0, max(m.offset() for m in msgs) + 1) == (0, 100)


def test_kafka_restart_keeps_data_and_port(broker: Broker, unique_name: str, broker_timings: Any) -> None:
    if not isinstance(broker, ApacheKafkaBroker):
        pytest.skip("restart() with persistent data is an Apache Kafka feature; Tansu runs in memory")
    topic = f"{unique_name}-restart"
    create_topics(broker.bootstrap_servers, {topic: 2})
    produce(broker.bootstrap_servers, topic, ((None, b"before-%d" % i) for i in range(100)))
    address = broker.bootstrap_servers
    t0 = time.monotonic()
    broker.restart()
    broker_timings.add(broker.kind, "clean restart", time.monotonic() - t0)
    assert broker.bootstrap_servers == address
    produce(broker.bootstrap_servers, topic, ((None, b"after-%d" % i) for i in range(100)))
    t0 = time.monotonic()
    broker.restart(hard=True)  # kill -9: a crash, then log recovery
    broker_timings.add(broker.kind, "restart after kill -9", time.monotonic() - t0)
    msgs = consume_until(broker.bootstrap_servers, topic, lambda got: len(got) >= 200, timeout=60)
    assert Counter(m.value()[:5] for m in msgs) == {b"befor": 100, b"after": 100}


# ------------------------------------------------------------------------------------------------
# a real Faust worker (faust-streaming 0.15 + aiokafka 0.14) in a subprocess

FAUST_APP = textwrap.dedent(
    '''
    """Tiny Faust app for the broker integration test: A -> count per key (Table) -> B."""
    import json
    import os
    import time

    import faust

    APP_ID = os.environ["IT_APP_ID"]
    PARTITIONS = int(os.environ["IT_PARTITIONS"])
    MARKERS = os.environ["IT_MARKERS"]


    def mark(what):
        with open(MARKERS, "a") as fh:
            fh.write(f"{time.time():.3f} {what}\\n")


    app = faust.App(
        APP_ID,
        broker="kafka://" + os.environ["IT_BOOTSTRAP"],
        store="memory://",
        web_enabled=False,
        broker_session_timeout=10,
        broker_heartbeat_interval=1,
        broker_rebalance_timeout=3,
        broker_commit_interval=0.5,
        topic_partitions=PARTITIONS,
        topic_replication_factor=1,
        table_standby_replicas=0,
        datadir=os.environ["IT_DATADIR"],
        **json.loads(os.environ.get("IT_APP_EXTRA", "{}")),
    )
    source = app.topic(f"{APP_ID}-in", key_serializer="raw", value_serializer="json",
                       partitions=PARTITIONS)
    sink = app.topic(f"{APP_ID}-out", key_serializer="raw", value_serializer="json",
                     partitions=PARTITIONS)
    if os.environ.get("IT_WITH_TABLE", "1") == "1":
        counts = app.Table("counts", default=int, partitions=PARTITIONS, key_type=str, value_type=int)
    else:  # no table, hence no changelog recovery at startup
        import collections
        counts = collections.Counter()


    @app.agent(source)
    async def count(stream):
        async for key, value in stream.items():
            k = key.decode()
            counts[k] += 1
            await sink.send(key=key, value={"id": value["id"], "key": k, "count": counts[k]})


    @app.on_partitions_assigned.connect
    def _assigned(sender, assigned, **kwargs):
        mark("assigned " + ",".join(sorted(f"{tp.topic}:{tp.partition}" for tp in assigned)))


    @app.on_rebalance_complete.connect
    def _rebalanced(sender, **kwargs):
        mark("rebalance_complete")
    '''
)


class FaustWorker:
    def __init__(self, tmp_path: Path, bootstrap: str, app_id: str, partitions: int, run: int,
                 app_extra: str = "{}", extra_env: dict[str, str] | None = None) -> None:
        self.dir = tmp_path
        (tmp_path / "itfaustapp.py").write_text(FAUST_APP)
        self.markers = tmp_path / f"markers-{run}.txt"
        self.log = tmp_path / f"worker-{run}.log"
        self.env = dict(os.environ, IT_BOOTSTRAP=bootstrap, IT_APP_ID=app_id, IT_PARTITIONS=str(partitions),
                        IT_MARKERS=str(self.markers), IT_DATADIR=str(tmp_path / "faust-data"),
                        IT_APP_EXTRA=app_extra, PYTHONPATH=str(tmp_path), PYTHONUNBUFFERED="1",
                        **(extra_env or {}))
        self.proc: subprocess.Popen[bytes] | None = None
        self.started_at = 0.0

    def start(self) -> None:
        self._fh = open(self.log, "wb")  # noqa: SIM115 - the worker writes to it until stop() closes it
        self.started_at = time.monotonic()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "faust", "-A", "itfaustapp", "worker", "--loglevel", os.environ.get("IT_FAUST_LOGLEVEL", "info")],
            cwd=self.dir, env=self.env, stdin=subprocess.DEVNULL, stdout=self._fh, stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def tail(self, n: int = 60) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-n:]) if self.log.exists() else ""

    def markers_seen(self) -> list[str]:
        return self.markers.read_text().splitlines() if self.markers.exists() else []

    def stop(self, timeout: float = 30.0) -> int | None:
        proc, self.proc = self.proc, None
        if proc is None:
            return None
        try:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                return proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)
                return None
        finally:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
            self._fh.close()


@contextmanager
def faust_worker(*args: Any, **kwargs: Any) -> Iterator[FaustWorker]:
    worker = FaustWorker(*args, **kwargs)
    worker.start()
    try:
        yield worker
    finally:
        worker.stop()


def _faust_outputs(broker: Broker, topic: str, expected: int, worker: FaustWorker, timeout: float,
                   already: int = 0) -> list[dict[str, Any]]:
    def done(got: list[Any]) -> bool:
        if not worker.alive():
            raise AssertionError(f"faust worker exited ({worker.proc and worker.proc.returncode}):\n{worker.tail()}")
        return len(got) >= already + expected

    try:
        msgs = consume_until(broker.bootstrap_servers, topic, done, timeout=timeout, what=f"{broker.kind} faust output")
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n--- worker log tail ---\n{worker.tail()}") from None
    return [json.loads(m.value()) for m in msgs]


KEYS = [f"k{i}" for i in range(7)]


def _records(ids: range) -> Iterator[tuple[bytes, bytes]]:
    return ((KEYS[i % 7].encode(), json.dumps({"id": i}).encode()) for i in ids)


def _faust_topics(bs: str, app_id: str, parts: int) -> tuple[str, str, str]:
    src, dst, changelog = f"{app_id}-in", f"{app_id}-out", f"{app_id}-counts-changelog"
    create_topics(bs, {src: parts, dst: parts, changelog: parts, f"{app_id}-__assignor-__leader": 1},
                  configs={changelog: {"cleanup.policy": "compact"}})
    return src, dst, changelog


def _wait_worker_ready(worker: FaustWorker, timeout: float = 90.0) -> float:
    """Faust logs '[^Worker]: Ready' once the group is joined and the tables are recovered."""
    def ready() -> bool:
        if not worker.alive():
            raise AssertionError(f"faust worker exited ({worker.proc and worker.proc.returncode}):\n{worker.tail()}")
        return "[^Worker]: Ready" in worker.log.read_text(errors="replace")

    wait_for(ready, timeout=timeout, what="the faust worker to be ready")
    return time.monotonic() - worker.started_at


def _run_first_worker(broker: Broker, tmp_path: Path, app_id: str, parts: int, n1: int,
                      app_extra_env: dict[str, str] | None = None,
                      broker_timings: Any = None) -> dict[int, int]:
    """Run 1: a fresh group with input waiting; everything processed once and committed; clean stop."""
    bs = broker.bootstrap_servers
    src, dst, _ = f"{app_id}-in", f"{app_id}-out", f"{app_id}-counts-changelog"
    produce(bs, src, _records(range(n1)))
    with faust_worker(tmp_path, bs, app_id, parts, run=1, extra_env=app_extra_env) as w1:
        _faust_outputs(broker, dst, 1, w1, timeout=120)  # first output: joined, assigned, recovered
        if broker_timings is not None:
            broker_timings.add(broker.kind, "faust worker start -> first output", time.monotonic() - w1.started_at)
        assert [m for m in w1.markers_seen() if " assigned " in m], f"no partitions assigned:\n{w1.tail()}"
        out1 = _faust_outputs(broker, dst, n1, w1, timeout=120)
        assert sorted(o["id"] for o in out1) == list(range(n1)), "each input exactly once in run 1"
        src_msgs = consume_until(bs, src, lambda got: len(got) >= n1, timeout=30)
        end_offsets = {p: max(m.offset() for m in src_msgs if m.partition() == p) + 1
                       for p in {m.partition() for m in src_msgs}}
        wait_for(lambda: all(committed_offsets(bs, app_id, src).get(p) == o for p, o in end_offsets.items()),
                 timeout=30, what=f"committed offsets {end_offsets} (last seen {committed_offsets(bs, app_id, src)})")
        rc = w1.stop()
    assert rc == 0, f"faust worker did not stop cleanly on SIGTERM (rc={rc}):\n{w1.tail()}"
    return end_offsets


def test_faust_worker_table_commit_and_recovery(broker: Broker, tmp_path: Path, unique_name: str,
                                                broker_timings: Any) -> None:
    """A Faust 0.15 worker joins a group, processes A -> Table -> B, commits, and recovers its table."""
    bs = broker.bootstrap_servers
    app_id, parts, n1, n2 = unique_name, 3, 300, 200
    src, dst, changelog = _faust_topics(bs, app_id, parts)

    # --- run 1: join, process, commit --------------------------------------------------------------
    produce(bs, src, _records(range(n1)))
    with faust_worker(tmp_path, bs, app_id, parts, run=1) as w1:
        _faust_outputs(broker, dst, 1, w1, timeout=120)  # first output: joined, assigned, recovered
        broker_timings.add(broker.kind, "faust worker start -> first output", time.monotonic() - w1.started_at)
        assigned = [m for m in w1.markers_seen() if " assigned " in m]
        assert assigned, f"no partitions assigned marker:\n{w1.tail()}"
        out1 = _faust_outputs(broker, dst, n1, w1, timeout=120)
        assert sorted(o["id"] for o in out1) == list(range(n1)), "each input exactly once in run 1"
        # Per key, counts are 1..n in input order: the Table saw every event once.
        by_key: dict[str, list[int]] = {}
        for o in sorted(out1, key=lambda o: o["id"]):
            by_key.setdefault(o["key"], []).append(o["count"])
        assert all(c == list(range(1, len(c) + 1)) for c in by_key.values()), by_key
        expected_counts = Counter(KEYS[i % 7] for i in range(n1))

        # Offsets committed for the whole input (the next offset to read = last offset + 1).
        src_msgs = consume_until(bs, src, lambda got: len(got) >= n1, timeout=30)
        end_offsets = {p: max(m.offset() for m in src_msgs if m.partition() == p) + 1
                       for p in {m.partition() for m in src_msgs}}
        wait_for(lambda: all(committed_offsets(bs, app_id, src).get(p) == o for p, o in end_offsets.items()),
                 timeout=30, what=f"committed offsets {end_offsets} (last seen "
                                  f"{committed_offsets(bs, app_id, src)})")

        # The consumer group is visible to admin tools with our one member.
        group = _describe_group(bs, app_id)
        summary = None if group is None else (str(group.state), len(group.members), group.partition_assignor)
        print(f"{broker.kind}: describe_consumer_groups({app_id}) -> {summary}")
        if broker.kind == "kafka":
            assert group is not None and len(group.members) == 1 and "STABLE" in str(group.state), summary

        # The changelog holds the final count of every key.
        def changelog_complete(got: list[Any]) -> bool:
            latest = {_loose_json(m.key()): _loose_json(m.value()) for m in got}
            return latest == dict(expected_counts)

        consume_until(bs, changelog, changelog_complete, timeout=30, what="changelog with final counts")
        rc = w1.stop()
    assert rc == 0, f"faust worker did not stop cleanly on SIGTERM (rc={rc}):\n{w1.tail()}"

    # --- run 2: a fresh process recovers the table from the changelog, resumes at the commit -------
    # New input is produced only once the worker is ready: input already waiting while a Table
    # recovers hits a Faust race (test_faust_restart_with_input_waiting).
    with faust_worker(tmp_path, bs, app_id, parts, run=2) as w2:
        broker_timings.add(broker.kind, "faust restart -> ready (table recovered)", _wait_worker_ready(w2))
        t0 = time.monotonic()
        produce(bs, src, _records(range(n1, n1 + n2)))
        out = _faust_outputs(broker, dst, n2, w2, timeout=120, already=n1)
        broker_timings.add(broker.kind, f"faust: {n2} records in -> out after restart", time.monotonic() - t0)
        rc2 = w2.stop()
    _assert_exactly_once(broker, out, n1 + n2, src, dst)
    final = Counter(KEYS[i % 7] for i in range(n1 + n2))
    last = {}
    for o in sorted(out, key=lambda o: o["id"]):
        last[o["key"]] = o["count"]
    assert rc2 == 0, f"run 2 did not stop cleanly (rc={rc2}):\n{w2.tail()}"
    if last != dict(final) and broker.kind == "tansu":
        # Faust recovers a table by reading its changelog up to the high watermark; Tansu reports
        # the last batch's *base* offset + 1 (see test_high_watermark_matches_record_count), so the
        # rest of the last batch of each changelog partition is never read back. Passes when the
        # last batch happened to hold one record.
        pytest.xfail(f"Tansu high-watermark bug: table recovered as {last}, expected {dict(final)}")
    assert last == dict(final), f"table did not recover from its changelog: {last} != {dict(final)}"


def _assert_exactly_once(broker: Broker, out: list[dict[str, Any]], n: int, src: str, dst: str) -> None:
    ids = Counter(o["id"] for o in out)
    if sorted(ids) == list(range(n)) and max(ids.values()) == 1:
        return
    bs = broker.bootstrap_servers
    dup = {i for i, c in ids.items() if c > 1}
    missing = set(range(n)) - set(ids)
    ins = consume_until(bs, src, lambda got: len(got) >= n, timeout=30)
    where_in = {json.loads(m.value())["id"]: (m.partition(), m.offset()) for m in ins}
    raise AssertionError(
        f"{broker.kind}: not exactly once: duplicated (id, (partition, offset)) "
        f"{[(i, where_in.get(i)) for i in sorted(dup)][:10]} ({len(dup)}), missing "
        f"{[(i, where_in.get(i)) for i in sorted(missing)][:10]} ({len(missing)})")


@pytest.mark.parametrize("with_table", [True, False], ids=["table", "no-table"])
def test_faust_restart_with_input_waiting(broker: Broker, tmp_path: Path, unique_name: str, with_table: bool,
                                          request: pytest.FixtureRequest) -> None:
    """Restart a worker while input is already waiting in its source topic.

    Known faust-streaming 0.15.3 race, seen on Apache Kafka 4.1.1 and on Tansu: with a Table, the
    recovering worker already fetches the source partitions while it reads the changelog, then
    ``perform_seek`` rewinds them to the committed offsets; Faust's read-offset/ack bookkeeping
    then drops or repeats records in some restarts (docs/reliability.md). Without a Table the
    restart is correct.
    """
    if with_table:
        # Intermittent, so it cannot be a strict xfail; the worker's own consumer
        # (streams/runtime/consumer.py) is proven against it by tests/integration/test_faults.py.
        pytest.skip("faust-streaming 0.15.3 race: records waiting during table recovery are lost or repeated "
                    "in some restarts (docs/reliability.md, Known broker and Faust issues)")
    bs = broker.bootstrap_servers
    app_id, parts, n1, n2 = unique_name, 3, 150, 150
    src, dst, _ = _faust_topics(bs, app_id, parts)
    env = {"IT_WITH_TABLE": "1" if with_table else "0"}
    _run_first_worker(broker, tmp_path, app_id, parts, n1, app_extra_env=env)
    produce(bs, src, _records(range(n1, n1 + n2)))  # waiting before the worker starts
    with faust_worker(tmp_path, bs, app_id, parts, run=2, extra_env=env) as w2:
        deadline = time.monotonic() + 60
        out = [json.loads(m.value()) for m in consume_until(
            bs, dst, lambda got: len(got) >= n1 + n2 or time.monotonic() > deadline or not w2.alive(),
            timeout=90, what="outputs after restart")]
        # then 3 s more for duplicates beyond the expected count
        settle = time.monotonic() + 3
        out = [json.loads(m.value()) for m in consume_until(
            bs, dst, lambda got: len(got) > len(out) or time.monotonic() > settle, timeout=30)]
        assert w2.alive(), f"faust worker died:\n{w2.tail()}"
    _assert_exactly_once(broker, out, n1 + n2, src, dst)


def _loose_json(raw: bytes) -> Any:
    """Changelog keys/values: JSON, or raw UTF-8 (Faust's default key serializer is 'raw')."""
    try:
        return json.loads(raw)
    except ValueError:
        return raw.decode()


def _describe_group(bootstrap: str, group_id: str) -> Any:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    try:
        return admin.describe_consumer_groups([group_id], request_timeout=10)[group_id].result(timeout=15)
    except Exception as exc:  # noqa: BLE001 - reported, not fatal: only a diagnostics API
        print(f"describe_consumer_groups({group_id}) failed: {exc!r}")
        return None


# ------------------------------------------------------------------------------------------------
# process hygiene: the foreground runner (CLI) stops its broker and leaves nothing behind


def _children(pid: int) -> list[int]:
    kids: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            kids += [int(x) for x in (task / "children").read_text().split()]
        except OSError:
            pass
    return kids


def _gone(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] == "Z"  # a zombie is dead, just not reaped yet


@pytest.mark.parametrize("how", ["SIGINT", "SIGTERM", "SIGKILL"])
def test_foreground_runner_leaves_no_process_behind(broker_kind: str, how: str, tmp_path: Path) -> None:
    if broker_kind == "kafka" and how == "SIGINT":
        pytest.skip("same code path as SIGTERM; saves a JVM start")
    with open(tmp_path / "runner.err", "wb") as err:
        runner = subprocess.Popen([sys.executable, "-m", "devkit.brokers", broker_kind], stdout=subprocess.PIPE,
                                  stderr=err, stdin=subprocess.DEVNULL, start_new_session=True)
        try:
            assert runner.stdout is not None
            address = runner.stdout.readline().decode().strip()  # the runner prints it once ready
            assert address.startswith("127.0.0.1:"), (address, (tmp_path / "runner.err").read_text())
            md = AdminClient({"bootstrap.servers": address}).list_topics(timeout=10)
            assert md.brokers
            brokers = _children(runner.pid)
            assert len(brokers) == 1, brokers
            runner.send_signal(getattr(signal, how))
            rc = runner.wait(timeout=60)
            if how != "SIGKILL":
                assert rc == 0, (rc, (tmp_path / "runner.err").read_text())
            # SIGKILL leaves no chance to clean up: PR_SET_PDEATHSIG takes the broker down with its parent.
            wait_for(lambda: _gone(brokers[0]), timeout=30, what=f"broker pid {brokers[0]} to exit after runner {how}")
            workdir = re.search(r"log (/\S+)/(?:kafka|tansu)\.log", (tmp_path / "runner.err").read_text())
            assert workdir, (tmp_path / "runner.err").read_text()
            if how == "SIGKILL":  # the runner's temp dir (logs, data) is left behind: remove it here
                shutil.rmtree(workdir.group(1), ignore_errors=True)
            else:
                assert not Path(workdir.group(1)).exists(), f"{workdir.group(1)} not removed on {how}"
        finally:
            if runner.poll() is None:
                os.killpg(runner.pid, signal.SIGKILL)
                runner.wait(timeout=10)
