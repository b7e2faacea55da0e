"""The archive on object storage: a real ``riskctl archive`` process writing to ``s3://`` on a real S3
server (s3s-fs, see ``s3_server.py``), credentials and endpoint from the standard ``AWS_*`` variables.

``test_archive_on_s3_exactly_once_across_kill_9_then_queries_and_maintenance``: with a backlog on
every topic, the sink is killed with ``kill -9`` after a few commits, more records arrive, and a new
sink resumes from the positions in the S3 tables: every record is in the archive exactly once
(topic, partition, offset and item of every row, per table, against the producer's delivery
reports), on the S3 server and not on local disk. Then ``riskctl explain`` (broker unreachable) and
``riskctl report --json`` answer from the S3 archive, ``riskctl archive-maintain`` compacts it
without changing a row, and a wrong secret is a one-line error that does not repeat the secret.

The sink's own background maintenance runs every few seconds meanwhile, so appends and compactions
race on S3 (delta-rs commits with conditional puts). The larger crash test is test_archive.py's.
"""

from __future__ import annotations

import json
import os
import random
import re
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import polars as pl

from archive import tables as t
from archive.location import ArchiveLocation
from clients.topics import create_topics
from common.settings import Settings
from tests.integration.s3_server import S3Server, s3_server  # noqa: F401 - the fixture
from tests.integration.test_archive import PORTS, REPO, SinkProcess, Stream, archive_settings, wait_for

ROUNDS_BEFORE_KILL = 30
ROUNDS_AFTER_KILL = 10


def caught_up(location: ArchiveLocation, settings: Settings, ends: dict[tuple[str, int], int]) -> bool:
    logical = {settings.topic(name): name for name in t.ARCHIVED_TOPICS}
    opened = {name: t.open_table(location, name) for name in t.SPECS}
    for (topic, partition), end in ends.items():
        for name in t.TOPIC_TABLES[logical[topic]]:
            table = opened[name]
            version = table.transaction_version(t.app_id(topic, partition)) if table is not None else None
            if version is None or version < end:
                return False
    return True


def frame(location: ArchiveLocation, name: str) -> pl.DataFrame:
    return pl.read_delta(location.table(name), storage_options=location.options())


def riskctl(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "cli.main", *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=180)


def test_archive_on_s3_exactly_once_across_kill_9_then_queries_and_maintenance(broker: Any, unique_name: str, tmp_path: Path,
                                                                                s3_server: S3Server,  # noqa: F811 - the fixture
                                                                                broker_timings: Any) -> None:
    first_day = datetime.now(UTC).date().isoformat()  # the stream's records are stamped from here on
    prefix = "archive"  # a fresh server per test; and s3s-fs cannot store keys much longer than 140 characters
    uri = s3_server.uri(prefix)
    # archive_dir is set to show that nothing lands there: the location wins.
    settings = archive_settings(broker, unique_name, tmp_path, archive_flush_interval_s=0.3, archive_flush_records=400,
                                archive_idle_commit_s=1.0, archive_maintenance_interval_s=3.0)
    location = ArchiveLocation(uri, s3_server.env())
    sink_env = {"ARCHIVE_LOCATION": uri, **s3_server.env()}
    create_topics(settings)
    stream = Stream(settings)
    rnd = random.Random(11)
    for n in range(ROUNDS_BEFORE_KILL):
        stream.round(n, rnd)
    stream.flush()
    sinks: list[SinkProcess] = []

    def logs() -> str:
        return "\n---\n".join(s.log_tail() for s in sinks)

    def commits(sink: SinkProcess) -> float:
        value = sink.metric("customs_archive_commits_total")
        return 0.0 if value != value else value

    started = time.monotonic()
    try:
        sinks.append(SinkProcess(settings, tmp_path / "sink0.log", extra_env=sink_env))
        wait_for(lambda: commits(sinks[0]) >= 3, 90, "the first sink to commit to S3", logs)
        sinks[0].kill()
        assert not caught_up(location, settings, stream.ends), "the first sink archived everything before its kill -9"
        for n in range(ROUNDS_BEFORE_KILL, ROUNDS_BEFORE_KILL + ROUNDS_AFTER_KILL):
            stream.round(n, rnd)
        stream.flush()
        sinks.append(SinkProcess(settings, tmp_path / "sink1.log", extra_env=sink_env))
        wait_for(lambda: caught_up(location, settings, stream.ends), 120, "the S3 archive to hold every partition's end", logs,
                 interval_s=0.25)
        assert sinks[1].stop() == 0, logs()
    finally:
        for sink in sinks:  # a failed wait leaves no sink behind
            sink.kill()
    broker_timings.add(broker.kind, f"archive on s3: {stream.records} records, one kill -9", time.monotonic() - started)
    assert "archive maintenance failed" not in logs() and "writing the archive failed" not in logs(), logs()
    assert f"tables in {uri}" in sinks[1].log_path.read_text(), sinks[1].log_tail()
    assert s3_server.secret_key not in logs()

    for name in t.SPECS:
        rows = frame(location, name)
        quads = list(zip(rows["kafka_topic"], rows["kafka_partition"], rows["kafka_offset"], rows["item_index"]))
        assert len(quads) == len(set(quads)), f"{name}: {len(quads) - len(set(quads))} rows archived twice"
        missing, extra = stream.expected[name] - set(quads), set(quads) - stream.expected[name]
        assert not missing and not extra, f"{name}: {len(missing)} missing (e.g. {sorted(missing)[:3]}), {len(extra)} extra"
    # The tables are objects on the S3 server; the local archive directory was never created.
    assert any(p.name.endswith(".parquet") for p in s3_server.objects(f"{prefix}/{t.INSTRUCTIONS}"))
    assert not settings.archive_dir.exists()

    # explain with no broker, report and maintenance: everything from the S3 archive, located by the same variables.
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ARCHIVE_", "RISKCTL_", "AWS_"))}
    env.update({"KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:1", "TOPIC_PREFIX": settings.topic_prefix,
                "PARTITIONS": str(settings.partitions), **sink_env})
    story = "D-5-0"
    out = riskctl(["explain", story, "--json", "--timeout", "2"], env)
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    assert doc["sources"]["archive"] is True and doc["sources"]["archived_instructions"] == 2, doc["sources"]
    assert doc["outcome"]["action"] == "inspect" and doc["scans"][0]["scan_id"] == f"S-{story}"
    assert doc["inspection_results"][0]["duty_recovered"] == 310.5
    assert "the topics were not read" in out.stderr

    today = datetime.now(UTC).date().isoformat()  # a run may cross midnight
    out = riskctl(["report", "--from", first_day, "--to", today, "--json"], env)
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    assert report["declarations"] == len(stream.ids[t.DECLARATIONS])
    assert report["inspection_results"]["total"] == ROUNDS_BEFORE_KILL + ROUNDS_AFTER_KILL
    assert report["dead_letters"]["total"] == len(stream.expected[t.DEAD_LETTERS])

    files_before = len(t.open_table(location, t.DECLARATIONS).file_uris())  # type: ignore[union-attr]  # archived above
    out = riskctl(["archive-maintain", "--json"], env)
    assert out.returncode == 0, out.stderr
    done = json.loads(out.stdout)
    assert set(done) == set(t.SPECS)
    # Compacted: one file per (day, port) partition, by the sink's background runs or this one.
    compacted = t.open_table(location, t.DECLARATIONS)
    assert compacted is not None and len(compacted.file_uris()) == len(PORTS) <= files_before, (files_before, done[t.DECLARATIONS])
    in_background = sum(int(n) for n in re.findall(r"archive maintenance in \S+: (\d+) small files compacted", logs()))
    assert in_background + sum(d["files_compacted"] for d in done.values()) > 0, logs()
    assert frame(location, t.DECLARATIONS).height == len(stream.expected[t.DECLARATIONS])

    wrong = {**env, "AWS_SECRET_ACCESS_KEY": "not-the-secret-0b1c"}
    out = riskctl(["report", "--from", today, "--to", today], wrong)
    assert out.returncode == 2 and out.stderr.startswith(f"riskctl report: error: cannot read the archive {uri}: "), out.stderr
    assert out.stderr.count("\n") == 1 and "not-the-secret-0b1c" not in out.stderr and s3_server.secret_key not in out.stderr
