"""The console with fakes around it: a publisher that keeps what it is given, a feed that no consumer
fills (the tests apply records to it), a history of declarations from a dict, a user store in tmp."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest
from fastapi.testclient import TestClient

from common.settings import Settings
from console.app import create_app
from console.live import Feed
from console.publish import PublishError
from console.users import Role, UserStore
from schemas import ControlInstruction

PASSWORD = "correct horse battery"


@dataclass
class FakePublisher:
    sent: list[tuple[str, str, Any]] = field(default_factory=list)
    fail: bool = False
    lock: threading.Lock = field(default_factory=threading.Lock)
    # topic -> how many more sends with a record for it fail (nothing of that send is kept)
    failing: dict[str, int] = field(default_factory=dict)
    attempts: list[str] = field(default_factory=list)  # the topics of every send, failed or not

    def send_many(self, records: list[tuple[str, str, bytes | None]]) -> None:
        self.attempts += [topic for topic, _, _ in records]
        if self.fail:
            raise PublishError("broker down")
        for topic, _, _ in records:
            if self.failing.get(topic, 0) > 0:
                self.failing[topic] -= 1
                raise PublishError(f"{topic}: timed out")
        with self.lock:
            self.sent += [(topic, key, None if value is None else orjson.loads(value)) for topic, key, value in records]

    def close(self) -> None:
        pass

    def on(self, topic: str) -> list[tuple[str, Any]]:
        return [(key, value) for t, key, value in self.sent if t == topic]


def result_form(console: Console, iid: str, **over: str) -> dict[str, str]:
    """The officer's result form for instruction ``iid`` as the browser posts it (``over`` replaces fields)."""
    return {"instruction_id": iid, "found": "yes", "category": "narcotics", "duty_recovered": "1250.5", "note": "under the floor",
            "csrf_token": console.csrf(path="/queue"), **over}


def instruction(did: str, port: str = "HAK-SEA", action: str = "inspect", stage: str = "scan", final: bool = True,
                revision: int = 1, **over: Any) -> ControlInstruction:
    now = datetime.now(UTC).isoformat()
    return ControlInstruction.model_validate_json(orjson.dumps(dict(
        instruction_id=f"{did}:{revision}:{stage}", declaration_id=did, revision=revision, port=port, enterprise_id="E1",
        scenario="general-trade", stage=stage, action=action, final=final,
        selection_reason="scan" if stage == "scan" else "model-threshold",
        credit_class="general", score=0.42, model_version="m1", policy_version="p1", reasons=["anomaly score 0.9"],
        risk_hits=["JASC/E1"], suspected_categories=["narcotics"] if stage == "scan" else [], scan_id="S1" if stage == "scan" else None,
        event_time=now, decided_at=now, **over)))


@dataclass
class Console:
    client: TestClient
    publisher: FakePublisher
    feed: Feed
    users: UserStore
    histories: dict[str, dict[str, Any]]
    settings: Settings
    hints: list[tuple[str, Any, Any]] = field(default_factory=list)
    # The enterprise-credit changelog as the console reads it: (partition, offset) -> (key, value).
    credit_log: dict[tuple[int, int], tuple[bytes | None, bytes | None]] = field(default_factory=dict)

    def credit_record(self, enterprise_id: str, value: bytes | None, partition: int = 0) -> None:
        """Append a record to the fake changelog and let the feed see it, as its consumer would."""
        offset = sum(1 for p, _ in self.credit_log if p == partition)
        self.credit_log[(partition, offset)] = (enterprise_id.encode(), value)
        with self.feed.lock:
            self.feed._credit_record(enterprise_id.encode(), partition, offset, value is None)

    def login(self, name: str, password: str = PASSWORD, client: TestClient | None = None) -> TestClient:
        client = client or self.client
        csrf = self.csrf(client, "/login")
        response = client.post("/login", data={"name": name, "password": password, "csrf_token": csrf}, follow_redirects=False)
        assert response.status_code == 303, response.text
        return client

    def csrf(self, client: TestClient | None = None, path: str = "/login") -> str:
        import re

        page = (client or self.client).get(path).text
        match = re.search(r'name="csrf_token" value="([^"]+)"', page)
        assert match, page[:500]
        return match.group(1)

    def new_client(self) -> TestClient:
        return TestClient(self.client.app)

    def add_history(self, ins: ControlInstruction, results: list[dict[str, Any]] | None = None) -> None:
        from audit.explain import explanation

        doc = explanation(ins.declaration_id, [ins.model_dump(mode="json")])  # the rows as `riskctl explain` gives them
        doc.update(revisions=[], centralised=[], scans=[], inspection_results=results or [], sources={})
        self.histories[ins.declaration_id] = doc


@pytest.fixture
def console(tmp_path: Path) -> Iterator[Console]:
    settings = Settings(data_dir=tmp_path, archive_dir=tmp_path / "archive")
    users = UserStore(tmp_path / "users.json")
    users.add("officer.hak", Role.OFFICER, PASSWORD, ("HAK-SEA",))
    users.add("officer.ypu", Role.OFFICER, PASSWORD, ("YPU-SEA",), station_id="YPU-ST1")
    users.add("analyst", Role.ANALYST, PASSWORD)
    users.add("chief", Role.SUPERVISOR, PASSWORD)
    feed = Feed(settings)
    feed.caught_up.set()
    publisher = FakePublisher()
    histories: dict[str, dict[str, Any]] = {}
    hints: list[tuple[str, Any, Any]] = []  # (declaration id, day, port) of every history read

    def history(did: str, day: Any = None, port: Any = None) -> tuple[dict[str, Any], list[str]]:
        hints.append((did, day, port))
        empty = {"declaration_id": did, "instructions": [], "outcome": None, "revisions": [], "centralised": [], "scans": [],
                 "inspection_results": [], "sources": {}}
        return dict(histories.get(did, empty)), []

    credit_log: dict[tuple[int, int], tuple[bytes | None, bytes | None]] = {}
    app = create_app(settings, feed=feed, publisher=publisher, users=users, history=history, start_feed=False,  # type: ignore[arg-type]
                     credit_reader=lambda partition, offset: credit_log.get((partition, offset)))
    with TestClient(app) as client:
        yield Console(client, publisher, feed, users, histories, settings, hints, credit_log)
