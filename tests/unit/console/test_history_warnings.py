"""A declaration's history page shows its own early warnings (with the analyst's verdict) and the
earlier warnings about its duty-free shopper or its registered goods, from the same archive query
as ``riskctl explain`` (the console's history is ``audit.explain.explain``): a duty-free departure
shows the shopper's quota warning raised before its decision, not a later one, not another
shopper's."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from archive.queries import Archive
from audit.explain import explain
from clients import topics
from common.settings import Settings
from console.app import create_app
from console.live import Feed
from console.users import Role, UserStore
from policy.dutyfree import FLAGGED_DEPARTURE
from tests.unit.archive import fakes
from tests.unit.console.conftest import PASSWORD, Console, FakePublisher


@pytest.fixture(scope="module")
def archive_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("archive")
    settings = fakes.archive_settings(directory)
    b = fakes.FakeBroker(settings)
    b.add(topics.DECLARATIONS, "DEP1", fakes.declaration("DEP1", scenario="duty-free-shopping", shopper_token="SH1"))
    b.add(topics.INSTRUCTIONS, "DEP1", fakes.instruction("DEP1", action="inspect", selection_reason="rule",
                                                          reasons=["duty-free shopper SH1: yearly duty-free quota exceeded"]))
    b.add(topics.WARNINGS, "DEP1", {**fakes.warning("DEP1", rule=FLAGGED_DEPARTURE), "subject_kind": "shopper", "subject_id": "SH1",
                                    "scenario": "duty-free-shopping", "evidence": ["departure declared at HAK-SEA, declaration DEP1"]})
    b.add(topics.WARNINGS, "SH1", fakes.subject_warning(
        "SH1:q", "shopper", "SH1", "duty-free-quota-exceeded", -30, "120,000.00 CNY spent this year"))
    b.add(topics.WARNINGS, "SH1", fakes.subject_warning(
        "SH1:late", "shopper", "SH1", "duty-free-repeat-goods", 5, "raised after the decision"))
    b.add(topics.WARNINGS, "SH2", fakes.subject_warning(
        "SH2:q", "shopper", "SH2", "duty-free-quota-exceeded", -1, "another shopper"))
    b.add(topics.DECLARATIONS, "GT1", fakes.declaration("GT1"))
    b.add(topics.INSTRUCTIONS, "GT1", fakes.instruction("GT1"))
    fakes.archive_all(settings, b, records=8)
    return directory


@pytest.fixture
def console(archive_dir: Path, tmp_path: Path) -> Iterator[Console]:
    settings = Settings(data_dir=tmp_path, archive_dir=archive_dir)
    users = UserStore(tmp_path / "users.json")
    users.add("officer.hak", Role.OFFICER, PASSWORD, ("HAK-SEA",))
    feed = Feed(settings)
    feed.caught_up.set()
    archive = Archive(archive_dir)

    def history(did: str, day: date | None = None, port: str | None = None) -> tuple[dict[str, Any], list[str]]:
        # The console's own history (console.app.archive_history) with the topics left out: no broker here.
        return explain(settings, did, archive=archive, day=day, port=port, use_topics=False)

    app = create_app(settings, feed=feed, publisher=FakePublisher(), users=users, history=history, start_feed=False)  # type: ignore[arg-type]
    with TestClient(app) as client:
        yield Console(client, FakePublisher(), feed, users, {}, settings)


def table_rows(page: str, table_id: str) -> list[str]:
    match = re.search(rf'<table class="grid" id="{table_id}">(.*?)</table>', page, re.S)
    assert match, page[:2000]
    return re.findall(r"<tr[^>]*>(.*?)</tr>", match.group(1), re.S)[1:]  # past the header


def test_a_departure_page_shows_its_warning_and_the_shoppers_earlier_warnings(console: Console) -> None:
    console.login("officer.hak")
    page = console.client.get("/declarations/DEP1").text
    (own,) = table_rows(page, "declaration-warnings")
    assert FLAGGED_DEPARTURE in own and "shopper SH1" in own and "departure declared at HAK-SEA" in own and "confirmed" not in own
    (earlier,) = table_rows(page, "subject-warnings")
    assert "duty-free-quota-exceeded" in earlier and "120,000.00 CNY spent this year" in earlier and "shopper SH1" in earlier
    assert "raised after the decision" not in page and "another shopper" not in page


def test_a_declaration_without_shopper_or_goods_says_there_are_none(console: Console) -> None:
    console.login("officer.hak")
    page = console.client.get("/declarations/GT1").text
    assert "No warnings about this declaration." in table_rows(page, "declaration-warnings")[0]
    assert "No earlier warnings about its shopper or goods." in table_rows(page, "subject-warnings")[0]
