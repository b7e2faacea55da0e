"""Browser tests: headless Chromium (Debian's ``chromium`` and ``chromium-driver``, `make browser-fetch`)
drives the console against a real pipeline on the embedded Tansu broker: a worker process, the
archive sink and ``riskctl console``, started as processes by devkit.launcher. Every test here is
marked ``browser`` (and ``integration``: it needs a broker)."""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from devkit.brokers import Broker, BrokerError, free_port, make_broker
from devkit.launcher import ArchiveProcess, ConsoleProcess
from tests.integration.pipeline_harness import Harness, pipeline_settings, write_policy

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("CHROMEDRIVER", "/usr/bin/chromedriver")
PASSWORD = "browser-test-password"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    here = os.path.dirname(__file__)
    for item in items:
        if str(item.path).startswith(here + os.sep):
            item.add_marker(pytest.mark.browser)
            item.add_marker(pytest.mark.integration)


@dataclass
class Office:
    harness: Harness
    console: ConsoleProcess
    sink: ArchiveProcess
    base_url: str


@pytest.fixture(scope="module")
def office(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Office]:
    """A pipeline where only risk lists select (the model never does, no random selection), with an
    archive sink and the console; users: two officers of different ports, an analyst."""
    if not (shutil.which(CHROMIUM) and shutil.which(CHROMEDRIVER)):
        pytest.skip(f"{CHROMIUM} or {CHROMEDRIVER} missing: run `make browser-fetch`")
    from console.users import Role, UserStore

    tmp = tmp_path_factory.mktemp("office")
    broker: Broker = make_broker("tansu")
    try:
        broker.start()
    except BrokerError as exc:
        broker.stop()
        pytest.fail(f"tansu broker did not start: {exc}", pytrace=False)
    classes = ("aeo", "white-list", "general", "focus-list", "joint-penalty")
    policy = write_policy(
        tmp / "policy.yaml", version="browser-1", thresholds={c: {"machine_check": 1.0, "inspect": 1.0} for c in classes},
        scenario_thresholds={}, random_selection={"share": 0.0, "action": "machine-check"},
        capacity={"default": {"machine_check": None, "inspect": None}, "ports": {}, "bounds": {}},
    )
    name = f"br-{uuid.uuid4().hex[:8]}"
    settings = pipeline_settings(broker.bootstrap_servers, name, tmp, policy_file=policy, partitions=2).model_copy(update={
        "archive_dir": tmp / "archive", "archive_metrics_port": free_port(), "archive_flush_interval_s": 1.0,
        "console_port": free_port(), "console_metrics_port": free_port(), "console_users_file": tmp / "users.json",
        "console_lookback_s": 3600.0,
    })
    users = UserStore(tmp / "users.json")
    users.add("officer.hak", Role.OFFICER, PASSWORD, ("HAK-SEA",), station_id="HAK-SEA-ST1")
    users.add("officer.syx", Role.OFFICER, PASSWORD, ("SYX-AIR",))
    users.add("analyst", Role.ANALYST, PASSWORD)
    harness = Harness(settings, tmp)
    worker = harness.start_worker()
    sink = ArchiveProcess(settings.model_copy(update={"data_dir": tmp / "sink"}), tmp / "archive.log")
    console = ConsoleProcess(settings, tmp / "console.log", archive_dir=tmp / "archive")
    try:
        worker.wait_ready()
        sink.wait_ready()
        console.wait_ready()
        yield Office(harness, console, sink, console.url)
    finally:
        console.stop()
        sink.stop()
        harness.close()
        broker.stop()


@pytest.fixture
def browser() -> Iterator[object]:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1440,900", "--lang=en"):
        options.add_argument(arg)
    driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
    try:
        yield driver
    finally:
        driver.quit()


# Screenshots go to a scratch directory so that `make test` leaves the work tree clean;
# CONSOLE_SCREENSHOTS=docs/images refreshes the README's pictures.
IMAGES = Path(os.environ.get("CONSOLE_SCREENSHOTS") or Path(tempfile.gettempdir()) / "riskctl-console-screenshots").resolve()
