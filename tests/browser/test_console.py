"""The console in a real browser against a running pipeline (see conftest.py)."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from selenium.common.exceptions import StaleElementReferenceException
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support import expected_conditions as EC
from selenium.webdriver.support.ui import WebDriverWait

from clients import topics
from clients.readers import assigned_reader
from tests.browser.conftest import IMAGES, PASSWORD, Office
from tests.integration.pipeline_harness import declaration, scan

NOW = datetime.now(UTC)


def login(driver: WebDriver, office: Office, name: str) -> None:
    driver.get(f"{office.base_url}/login")
    driver.find_element(By.NAME, "name").send_keys(name)
    driver.find_element(By.NAME, "password").send_keys(PASSWORD)
    driver.find_element(By.CSS_SELECTOR, "form.login button[type=submit]").click()
    WebDriverWait(driver, 10).until(lambda d: "/login" not in d.current_url)


def risk_entry(entry_id: str, hs_prefix: str, action: str) -> dict[str, Any]:
    return {"schema_version": 1, "entry_id": entry_id, "list_id": "BROWSER", "kind": "hs-prefix", "value": hs_prefix, "action": action,
            "reason": f"hs {hs_prefix}: {action} by the browser test", "source_agency": "customs",
            "valid_from": (NOW - timedelta(days=1)).isoformat()}


def hs_declaration(did: str, hs_code: str, port: str = "HAK-SEA") -> dict[str, Any]:
    return {**declaration(did, "ENT-BROWSER"), "hs_code": hs_code, "port": port, "event_time": datetime.now(UTC).isoformat()}


def wait_entries(office: Office, count: int) -> None:
    worker = office.harness.workers[0]
    office.harness.read_until(lambda h: worker.metric("customs_risk_list_entries") >= count, 30, f"{count} risk-list entries")


def records_before_sentinel(office: Office, topic: str, key: str, sentinel: dict[str, Any], id_field: str) -> list[dict[str, Any]]:
    """The records of ``topic`` keyed by ``key``, read up to a sentinel record (same key, so the same
    partition) produced after the console answered: every record the console produced before is ahead of it."""
    h = office.harness
    h.publish(topic, key, sentinel)
    h.flush()
    reader = assigned_reader(h.settings, [topic])
    found: list[dict[str, Any]] = []
    deadline = time.monotonic() + 30
    try:
        while not any(r.get(id_field) == sentinel[id_field] for r in found):
            assert time.monotonic() < deadline, f"the sentinel record did not come back: {found}"
            for msg in reader.consume(500, timeout=0.5):
                if msg.error() is None and msg.key() == key.encode():
                    found.append(orjson.loads(msg.value()))
    finally:
        reader.close()
    return [r for r in found if r.get(id_field) != sentinel[id_field]]


def results_for(office: Office, declaration_id: str, sentinel: str) -> list[dict[str, Any]]:
    """The inspection results keyed by ``declaration_id`` the console produced (read up to a sentinel)."""
    return records_before_sentinel(office, topics.INSPECTION_RESULTS, declaration_id, {
        "schema_version": 1, "instruction_id": sentinel, "declaration_id": declaration_id, "revision": 1, "port": "HAK-SEA",
        "station_id": "SENTINEL", "found": False, "inspected_at": datetime.now(UTC).isoformat()}, "instruction_id")


def archived_actions(office: Office, action: str, subject: str, since: datetime) -> list[dict[str, Any]]:
    """The console's ``action`` rows about ``subject`` in the archive's console_actions table, once the
    sink has written at least one (the table is polled until a deadline)."""
    import polars as pl

    from archive import tables as t
    from archive.queries import Archive

    def rows() -> list[dict[str, Any]]:
        frame = (Archive(office.sink.archive_dir).window(t.CONSOLE_ACTIONS, since.date())
                 .filter((pl.col("action") == action) & (pl.col("subject") == subject)).collect())
        return frame.to_dicts()

    deadline = time.monotonic() + 60
    while not (found := rows()):
        assert time.monotonic() < deadline, f"no {action} action about {subject} in the archive's console_actions"
        time.sleep(0.25)  # poll interval of the archive's commits, bounded by the deadline
    return found


def queue_row(browser: WebDriver, declaration_id: str, *cells: str, timeout_s: float = 30) -> list[str]:
    """The text of a declaration's row in the live queue, and of the given cells in it. The queue
    swaps its rows as instructions arrive, so a row found may be replaced before it is read: the
    read is retried until the row holds still or the deadline passes."""
    def read(d: WebDriver) -> list[str] | None:
        rows = d.find_elements(By.CSS_SELECTOR, f'tr[data-declaration="{declaration_id}"]')
        return [rows[0].text, *(rows[0].find_element(By.CSS_SELECTOR, c).text for c in cells)] if rows else None

    texts: list[str] = WebDriverWait(browser, timeout_s, ignored_exceptions=(StaleElementReferenceException,)).until(read)
    return texts


def assert_when(row: dict[str, Any], since: datetime) -> None:
    at = row["at"] if row["at"].tzinfo else row["at"].replace(tzinfo=UTC)
    assert since - timedelta(seconds=1) <= at <= datetime.now(UTC), (at, since)


def test_officer_sees_a_machine_check_live_and_records_its_result_once(office: Office, browser: WebDriver) -> None:
    h = office.harness
    h.publish(topics.RISK_LISTS, "BR-8517", risk_entry("BR-8517", "8517", "machine-check"))
    h.flush()
    wait_entries(office, 1)
    login(browser, office, "officer.hak")
    browser.get(f"{office.base_url}/queue")
    WebDriverWait(browser, 10).until(EC.presence_of_element_located((By.ID, "open-count")))
    browser.execute_script("window.__notReloaded = true;")  # gone if the page reloads
    WebDriverWait(browser, 10).until(lambda d: d.execute_script(
        "return document.querySelector('#queue[sse-connect]') !== null && window.htmx !== undefined"))

    ids = [f"BR-MC-{n}" for n in range(1, 5)]
    for did in ids:
        h.publish(topics.DECLARATIONS, did, hs_declaration(did, "851712"))
    h.publish(topics.DECLARATIONS, "BR-SYX-1", hs_declaration("BR-SYX-1", "851712", port="SYX-AIR"))
    h.flush()
    for did in ids:
        WebDriverWait(browser, 30).until(EC.presence_of_element_located((By.CSS_SELECTOR, f'tr[data-declaration="{did}"]')))
    [row] = queue_row(browser, ids[0])
    assert "machine-check" in row and "awaiting scan" in row and "BROWSER/BR-8517" in row
    assert browser.execute_script("return window.__notReloaded === true")
    assert not browser.find_elements(By.CSS_SELECTOR, 'tr[data-declaration="BR-SYX-1"]')  # another port's

    # Suspicious scans turn two machine-checks into inspections, a clean one releases (it leaves the queue).
    h.publish(topics.SCANS, ids[0], scan(ids[0], "suspicious"))
    h.publish(topics.SCANS, ids[1], scan(ids[1], "suspicious"))
    h.publish(topics.SCANS, ids[2], scan(ids[2], "clean"))
    h.flush()
    WebDriverWait(browser, 30).until(EC.presence_of_element_located((By.CSS_SELECTOR, f'tr.act-inspect[data-declaration="{ids[0]}"]')))
    WebDriverWait(browser, 30).until(EC.presence_of_element_located((By.CSS_SELECTOR, f'tr.act-inspect[data-declaration="{ids[1]}"]')))
    WebDriverWait(browser, 30).until_not(EC.presence_of_element_located((By.CSS_SELECTOR, f'tr[data-declaration="{ids[2]}"]')))
    assert "narcotics" in browser.find_element(By.CSS_SELECTOR, f'tr[data-declaration="{ids[0]}"]').text
    assert browser.execute_script("return window.__notReloaded === true")
    IMAGES.mkdir(parents=True, exist_ok=True)
    browser.save_screenshot(str(IMAGES / "console-queue.png"))

    # The declaration's history, once the archive holds its revision too.
    did = ids[0]
    browser.find_element(By.LINK_TEXT, did).click()
    deadline = time.monotonic() + 30
    while "The archive does not hold" in browser.page_source:
        assert time.monotonic() < deadline, "the archive did not get the declaration"
        time.sleep(0.5)  # poll interval of the archive's commit, bounded by the deadline
        browser.refresh()
    text = browser.find_element(By.TAG_NAME, "main").text
    assert "machine-check" in text and "inspect" in text and "suspicious" in text and "851712" in text

    # A bad form: errors beside the fields, nothing recorded.
    browser.find_element(By.NAME, "duty_recovered").clear()
    browser.find_element(By.NAME, "duty_recovered").send_keys("lots")
    browser.find_element(By.ID, "record").click()
    WebDriverWait(browser, 10).until(EC.presence_of_element_located((By.ID, "error-duty_recovered")))
    assert browser.find_elements(By.ID, "error-found")

    browser.find_element(By.CSS_SELECTOR, "input[name=found][value=yes]").click()
    browser.find_element(By.NAME, "category").send_keys("narcotics")
    browser.find_element(By.NAME, "duty_recovered").clear()
    browser.find_element(By.NAME, "duty_recovered").send_keys("1250")
    browser.find_element(By.NAME, "note").send_keys("in the spare tyre")
    # A double submit: the form posted twice at once (a double click), then once more (a retried request).
    submitted_at = datetime.now(UTC)
    statuses = browser.execute_script("""
        const form = document.getElementById('result-form');
        const send = () => fetch(form.action, {method: 'POST', body: new FormData(form), redirect: 'follow'})
            .then(r => r.url.includes('message=') ? r.url : r.text().then(t => r.status + ' ' + t.slice(0, 3000)));
        return Promise.all([send(), send()]).then(urls => send().then(last => [...urls, last]));
    """)
    assert all("message=" in url for url in statuses), statuses
    outcomes = sorted(url.rsplit("message=", 1)[1] for url in statuses)
    assert outcomes == ["already-recorded", "already-recorded", "recorded"], statuses
    browser.get(f"{office.base_url}/declarations/{did}?message=recorded")
    results = browser.find_element(By.ID, "inspection-results").text
    assert "HAK-SEA-ST1" in results and "narcotics" in results and "1250" in results
    assert "in the spare tyre" in results and "officer.hak" in results  # the note and who recorded it
    browser.save_screenshot(str(IMAGES / "console-declaration.png"))
    [result] = results_for(office, did, "SENTINEL-1")
    assert (result["instruction_id"], result["found"], result["category"], result["duty_recovered"], result["station_id"]) == (
        f"{did}:1:scan", True, "narcotics", 1250.0, "HAK-SEA-ST1")
    assert (result["note"], result["recorded_by"]) == ("in the spare tyre", "officer.hak")
    # Who recorded what, and when, is in the archive's console_actions table: once, for three submissions.
    [action] = archived_actions(office, "result-recorded", did, submitted_at)
    assert (action["user"], action["role"]) == ("officer.hak", "officer")
    assert action["detail"].startswith(f"{did}:1:scan: found narcotics; duty 1250") and "in the spare tyre" in action["detail"]
    assert_when(action, submitted_at)
    # It has left the queue.
    browser.get(f"{office.base_url}/queue")
    assert not browser.find_elements(By.CSS_SELECTOR, f'tr[data-declaration="{did}"]')
    assert browser.find_elements(By.CSS_SELECTOR, f'tr[data-declaration="{ids[1]}"]')


def test_an_officer_of_another_port_gets_403(office: Office, browser: WebDriver) -> None:
    h = office.harness
    h.publish(topics.RISK_LISTS, "BR-8517", risk_entry("BR-8517", "8517", "machine-check"))
    h.publish(topics.DECLARATIONS, "BR-HAK-403", hs_declaration("BR-HAK-403", "851712"))
    h.flush()
    h.read_until(lambda x: any(i["declaration_id"] == "BR-HAK-403" for i in x.instructions), 30, "the instruction")
    login(browser, office, "officer.syx")
    browser.get(f"{office.base_url}/declarations/BR-HAK-403")
    text = browser.find_element(By.TAG_NAME, "main").text
    assert "Not allowed" in text and "HAK-SEA is not one of your ports" in text
    browser.get(f"{office.base_url}/queue?port=HAK-SEA")
    assert "Not allowed" in browser.find_element(By.TAG_NAME, "main").text
    browser.get(f"{office.base_url}/analyst/risk-lists")
    assert "Not allowed" in browser.find_element(By.TAG_NAME, "main").text


def test_analyst_adds_an_entry_and_the_next_matching_declaration_is_inspected(office: Office, browser: WebDriver) -> None:
    h = office.harness
    worker = h.workers[0]
    entries_before = worker.metric("customs_risk_list_entries")  # what earlier tests of the module left active
    login(browser, office, "analyst")
    browser.get(f"{office.base_url}/analyst/risk-lists")
    form = browser.find_element(By.ID, "add-entry")
    form.find_element(By.NAME, "list_id").send_keys("FIREARMS-ALERT")
    form.find_element(By.NAME, "entry_id").send_keys("BR-9303")
    form.find_element(By.NAME, "value").send_keys("9303")
    form.find_element(By.NAME, "reason").send_keys("firearms: joint anti-smuggling alert")
    added_at = datetime.now(UTC)
    form.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    WebDriverWait(browser, 15).until(EC.presence_of_element_located((By.ID, "message")))
    assert "BR-9303 published" in browser.find_element(By.ID, "message").text
    WebDriverWait(browser, 30).until(lambda d: (d.refresh() or True) and d.find_elements(By.CSS_SELECTOR, 'tr[data-entry="BR-9303"]'))
    # The list is in the lists table; its link shows that list's entries only.
    browser.find_element(By.CSS_SELECTOR, 'tr[data-list="FIREARMS-ALERT"] a').click()
    WebDriverWait(browser, 10).until(lambda d: "list=FIREARMS-ALERT" in d.current_url)
    listed = {row.get_attribute("data-entry"): row.text for row in browser.find_elements(By.CSS_SELECTOR, "#entries tr[data-entry]")}
    assert "BR-9303" in listed and all(text.startswith("FIREARMS-ALERT") for text in listed.values()), listed

    h.read_until(lambda x: worker.metric("customs_risk_list_entries") >= entries_before + 1, 30, "the analyst's entry in the worker")
    h.publish(topics.DECLARATIONS, "BR-GUN-1", hs_declaration("BR-GUN-1", "930390"))
    h.flush()
    h.read_until(lambda x: "BR-GUN-1" in x.finals(), 30, "the matching declaration's decision")
    ins = next(i for i in h.instructions if i["declaration_id"] == "BR-GUN-1" and i["final"])
    assert ins["action"] == "inspect" and ins["selection_reason"] == "risk-list"
    assert ins["risk_hits"] == ["FIREARMS-ALERT/BR-9303"]
    hit_reason = "risk list FIREARMS-ALERT entry BR-9303 (hs-prefix 9303"
    assert any(hit_reason in r and r.endswith("firearms: joint anti-smuggling alert") for r in ins["reasons"]), ins["reasons"]
    # Who added it, and when, is in the archive's console_actions table.
    [action] = archived_actions(office, "risk-list-added", "BR-9303", added_at)
    assert (action["user"], action["role"]) == ("analyst", "analyst")
    assert action["detail"].startswith("FIREARMS-ALERT: hs-prefix 9303 -> inspect; firearms: joint anti-smuggling alert")
    assert_when(action, added_at)

    # An invalid entry is refused beside its field and nothing is published.
    form = browser.find_element(By.ID, "add-entry")
    form.find_element(By.NAME, "list_id").send_keys("FIREARMS-ALERT")
    form.find_element(By.NAME, "entry_id").send_keys("BR-BAD")
    form.find_element(By.NAME, "value").send_keys("93x3")
    form.find_element(By.NAME, "reason").send_keys("not an hs prefix")
    form.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    WebDriverWait(browser, 10).until(EC.presence_of_element_located((By.ID, "error-value")))
    browser.get(f"{office.base_url}/analyst/risk-lists?q=BR-BAD")
    assert not browser.find_elements(By.CSS_SELECTOR, 'tr[data-entry="BR-BAD"]')

    # The officer of the port sees the inspection with the hit among its reasons.
    browser.delete_all_cookies()
    login(browser, office, "officer.hak")
    browser.get(f"{office.base_url}/queue")
    row, reasons = queue_row(browser, "BR-GUN-1", "td.reasons")
    assert "FIREARMS-ALERT/BR-9303" in row and hit_reason in reasons


def test_analyst_places_an_enterprise_on_the_focus_list_and_sees_its_record_by_agency(office: Office, browser: WebDriver) -> None:
    h = office.harness
    h.publish(topics.CREDIT_EVENTS, "ENT-RECORD", {
        "schema_version": 1, "event_id": "TAX-1", "enterprise_id": "ENT-RECORD", "event_type": "joint-penalty-imposed",
        "source_agency": "tax bureau", "reason": "unpaid taxes", "event_time": datetime.now(UTC).isoformat()})
    h.flush()
    login(browser, office, "analyst")
    browser.get(f"{office.base_url}/analyst/credit")
    form = browser.find_element(By.ID, "credit-form")
    form.find_element(By.NAME, "enterprise_id").send_keys("ENT-RECORD")
    form.find_element(By.NAME, "reason").send_keys("repeated undervaluation")
    form.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    WebDriverWait(browser, 15).until(EC.presence_of_element_located((By.ID, "message")))
    browser.find_element(By.LINK_TEXT, "its credit record").click()

    def both_agencies(d: WebDriver) -> bool:  # the worker folds both events; the console reads its changelog
        d.refresh()
        return {r.get_attribute("data-agency") for r in d.find_elements(By.CSS_SELECTOR, "#agencies tr[data-agency]")} == {
            "customs", "tax bureau"}

    WebDriverWait(browser, 30).until(both_agencies)
    assert browser.find_element(By.ID, "effective-class").text == "joint-penalty"
    rows = {r.get_attribute("data-agency"): r.text for r in browser.find_elements(By.CSS_SELECTOR, "#agencies tr[data-agency]")}
    assert "focus-list" in rows["customs"] and "repeated undervaluation" in rows["customs"]
    assert "yes" in rows["tax bureau"] and "TAX-1" in rows["tax bureau"] and "unpaid taxes" in rows["tax bureau"]
    browser.get(f"{office.base_url}/analyst/enterprises/ENT-NEVER-SEEN")
    assert "treats the enterprise as general" in browser.find_element(By.ID, "no-record").text


def test_a_form_posted_without_its_csrf_token_is_refused(office: Office, browser: WebDriver) -> None:
    login(browser, office, "analyst")
    browser.get(f"{office.base_url}/analyst/credit")
    browser.execute_script("document.querySelector('#credit-form input[name=csrf_token]').remove();")
    form = browser.find_element(By.ID, "credit-form")
    form.find_element(By.NAME, "enterprise_id").send_keys("ENT-CSRF")
    form.find_element(By.NAME, "reason").send_keys("should never be published")
    form.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    WebDriverWait(browser, 10).until(EC.presence_of_element_located((By.ID, "error-detail")))
    assert "security token" in browser.find_element(By.ID, "error-detail").text
    # A cross-site page cannot read the token either: a forged token is refused just the same.
    status = browser.execute_script("""
        const body = new URLSearchParams({enterprise_id: 'ENT-CSRF', credit_action: 'place-focus-list', source_agency: 'x',
                                          reason: 'forged', csrf_token: 'forged-token-forged-token-forged-token'});
        return fetch('/analyst/credit', {method: 'POST', body}).then(r => r.status);
    """)
    assert status == 403
    # Nothing was published for the enterprise: its credit events, read up to a sentinel, are none.
    sentinel = {"schema_version": 1, "event_id": "SENTINEL-CSRF", "enterprise_id": "ENT-CSRF", "event_type": "credit-class-changed",
                "credit_class": "general", "source_agency": "browser test", "event_time": datetime.now(UTC).isoformat()}
    assert records_before_sentinel(office, topics.CREDIT_EVENTS, "ENT-CSRF", sentinel, "event_id") == []


def test_analyst_confirms_an_early_warning_and_the_worker_publishes_the_joint_finding(office: Office, browser: WebDriver) -> None:
    h = office.harness
    h.publish(topics.DECLARATIONS, "BR-WARN-1", hs_declaration("BR-WARN-1", "240220"))
    h.flush()
    h.read_until(lambda x: "BR-WARN-1" in x.finals(), 30, "the declaration's decision")
    wid = "BR-WARN-1:1:value-added-implausible"
    at = datetime.now(UTC).isoformat()
    h.publish(topics.WARNINGS, "BR-WARN-1", {
        "schema_version": 1, "warning_id": wid, "severity": "high", "subject_kind": "enterprise", "subject_id": "ENT-BROWSER",
        "source": "rule", "rule": "value-added-implausible", "evidence": ["claimed ratio 2.40", "enterprise mean ratio 0.41"],
        "event_time": at, "raised_at": at, "port": "HAK-SEA", "declaration_id": "BR-WARN-1", "revision": 1})
    h.flush()
    login(browser, office, "analyst")
    browser.get(f"{office.base_url}/analyst/warnings?severity=high")
    row = f'tr[data-warning="{wid}"]'
    WebDriverWait(browser, 30).until(lambda d: (d.refresh() or True) and d.find_elements(By.CSS_SELECTOR, row))
    form = browser.find_element(By.CSS_SELECTOR, f"{row} form.review")
    form.find_element(By.NAME, "reason").send_keys("ratio far above the enterprise's history")
    form.find_element(By.CSS_SELECTOR, "button[value=confirmed]").click()
    WebDriverWait(browser, 15).until(EC.presence_of_element_located((By.ID, "message")))
    assert f"Warning {wid} confirmed" in browser.find_element(By.ID, "message").text
    assert "severity=high" in browser.current_url  # back to the filtered list
    assert "confirmed" in browser.find_element(By.CSS_SELECTOR, row).text
    assert not browser.find_elements(By.CSS_SELECTOR, f"{row} form.review")

    reader = assigned_reader(h.settings, [topics.JOINT_FINDINGS])
    findings: list[dict[str, Any]] = []
    deadline = time.monotonic() + 30
    try:
        while not findings:
            assert time.monotonic() < deadline, "no joint finding for the confirmed warning"
            for msg in reader.consume(100, timeout=0.5):
                if msg.error() is None and msg.key() == b"BR-WARN-1":
                    findings.append(orjson.loads(msg.value()))
    finally:
        reader.close()
    (finding,) = findings
    assert finding["kind"] == "confirmed-warning" and finding["category"] == "value-added-implausible"
    assert (finding["enterprise_id"], finding["hs_code"], finding["port"]) == ("ENT-BROWSER", "240220", "HAK-SEA")
    assert "reason" not in finding and "user" not in finding


def test_figures_not_kept_yet_show_a_notice_and_arrive_without_a_reload(office: Office, browser: WebDriver) -> None:
    login(browser, office, "analyst")
    today = datetime.now(UTC).date()
    window = f"from={(today - timedelta(days=29)).isoformat()}&to={today.isoformat()}&port=SYX-AIR"  # nobody asked for it
    browser.get(f"{office.base_url}/analyst/figures?{window}")
    notice = browser.find_element(By.ID, "figures-computing").text
    assert "Computing the figures for" in notice and "SYX-AIR" in notice and "updates by itself" in notice
    browser.execute_script("window.notReloaded = true;")  # gone if the page were loaded again
    WebDriverWait(browser, 30).until(EC.presence_of_element_located((By.ID, "models-scope")))
    assert browser.execute_script("return window.notReloaded === true;")
    assert not browser.find_elements(By.ID, "figures-computing")
    assert "of SYX-AIR scored by both" in browser.find_element(By.ID, "models-scope").text
