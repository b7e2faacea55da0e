"""``python -m bench console``: the console's figures.

1. Live queue latency. ``riskctl demo`` (embedded broker, one worker, archive sink, console, simulated
   ports answering scans) offers declarations at ``--rate``; headless Chromium, logged in as the
   demo's officer of HAK-SEA, holds the live queue open. A MutationObserver in the page notes, for
   every row that appears, the time it appeared minus the instruction's ``decided_at`` (the worker
   stamps it just before producing; one machine, one clock): instruction produced -> visible in the
   officer's browser, through the broker, the console's feed, its server-sent events and the DOM.
2. Page loads. An archive of ``--archive-instructions`` generated instructions over a month (bench
   archive's generator), a console on it (and an empty broker, whose topics explain also reads), a
   supervisor's session: GET a declaration's page (its history) for random ids, and the figures and
   dead-letter pages over the month, each timed from the request to the last byte.
"""

from __future__ import annotations

import argparse
import contextlib
import http.cookiejar
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np

from bench.archive import DAYS, FIRST_DAY, generate_archive
from bench.common import BenchError, finish, log, machine
from bench.procs import REPO_ROOT
from clients.topics import create_topics
from common.settings import Settings
from devkit.brokers import free_port, make_broker

FULL = {"rate": 3000.0, "duration": 30.0, "archive_instructions": 10_000_000, "pages": 20}
QUICK = {"rate": 300.0, "duration": 10.0, "archive_instructions": 200_000, "pages": 5}
LIVE_GOAL_P99_S = 1.0
PAGE_GOAL_S = 0.3
CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
PASSWORD = "bench-password-1"

OBSERVER = """
window.__lat = []; window.__seen = new Set(); window.__since = Date.now() / 1000;
const note = () => {
  const now = Date.now() / 1000;
  for (const row of document.querySelectorAll('#queue tr[data-instruction]')) {
    const id = row.dataset.instruction, decided = parseFloat(row.dataset.decided);
    if (!window.__seen.has(id)) { window.__seen.add(id); if (decided > window.__since) window.__lat.push(now - decided); }
  }
};
new MutationObserver(note).observe(document.getElementById('queue'), {childList: true, subtree: true});
"""


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench console", description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="a low rate, a short load, a small archive: checks that everything works")
    p.add_argument("--rate", type=float, help=f"declarations/s offered by the demo (default {FULL['rate']:.0f})")
    p.add_argument("--duration", type=float, help=f"seconds of offered load (default {FULL['duration']:.0f})")
    p.add_argument("--archive-instructions", type=int,
                   help=f"instructions in the generated month (default {FULL['archive_instructions']:,}; 0: skip)")
    p.add_argument("--archive-dir", type=Path, help="generated archive to reuse (or create), as `bench archive --archive-dir`")
    p.add_argument("--pages", type=int, help=f"declaration pages timed (default {FULL['pages']})")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--out", type=Path, default=REPO_ROOT / "bench" / "results" / "console.json", help="result file")
    p.add_argument("--keep", action="store_true", help="keep the work directory")
    args = p.parse_args(argv)
    for key, value in (QUICK if args.quick else FULL).items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.monotonic()
    workdir = Path(tempfile.mkdtemp(prefix="bench-console-"))
    results: dict[str, Any] = {"machine": machine()}
    failed = False
    for name, run in (("live", live_latency), ("pages", page_loads)):
        if name == "pages" and not args.archive_instructions:
            continue
        try:
            results[name] = run(args, workdir)
        except Exception as exc:  # noqa: BLE001 - recorded; the other part still runs
            failed = True
            log(f"{name} FAILED: {exc}")
            results[name] = {"error": str(exc)[:3000]}
    results["config"] = {"rate": args.rate, "duration": args.duration, "archive_instructions": args.archive_instructions,
                         "pages": args.pages, "seed": args.seed, "quick": args.quick}
    return finish(results, args.out, workdir, started, failed, args.keep, print_table, "the work directory")


def _browser() -> Any:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1440,900"):
        options.add_argument(arg)
    return webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))


def _pct(values: list[float], q: float) -> float | None:
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 4) if ordered else None


def live_latency(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    port = free_port()
    err_path = workdir / "demo.err"
    cmd = [sys.executable, "-m", "cli.main", "demo", "--rate", str(args.rate), "--duration", str(args.duration), "--quiet", "--json",
           "--port", str(free_port()), "--console-port", str(port), "--enterprises", "20000", "--seed", str(args.seed)]
    env = {**os.environ, "METRICS_PORT": str(free_port()), "ARCHIVE_METRICS_PORT": str(free_port()), "DATA_DIR": str(workdir / "data")}
    with open(err_path, "wb") as err, open(workdir / "demo.out", "wb") as out:
        demo = subprocess.Popen(cmd, cwd=REPO_ROOT, env=env, stdout=out, stderr=err, start_new_session=True)
    browser = None
    try:
        deadline = time.monotonic() + 180
        password = None
        while password is None:
            if demo.poll() is not None or time.monotonic() > deadline:
                raise BenchError(f"the demo did not start its console:\n{err_path.read_text(errors='replace')[-2000:]}")
            found = re.search(r"^  officer\.hak\s+(\S+)", err_path.read_text(errors="replace"), re.M)
            password = found.group(1) if found else None
            time.sleep(0.2)  # polls the demo's log for its logins, bounded by the deadline
        browser = _browser()
        base = f"http://127.0.0.1:{port}"
        browser.get(f"{base}/login")
        browser.find_element(By.NAME, "name").send_keys("officer.hak")
        browser.find_element(By.NAME, "password").send_keys(password)
        browser.find_element(By.CSS_SELECTOR, "form.login button").click()
        WebDriverWait(browser, 10).until(lambda d: d.find_elements(By.ID, "queue"))
        browser.execute_script(OBSERVER)
        log(f"live: demo at {args.rate:.0f}/s for {args.duration:.0f}s, officer of HAK-SEA watching {base}/queue")
        metrics_url = re.search(r"metrics at (\S+)\); demo logins", err_path.read_text(errors="replace"))
        feed_delay: dict[str, float | None] = {}
        while demo.poll() is None:  # the console's own view (decided -> its queue), read until the demo stops it
            with contextlib.suppress(OSError):
                if metrics_url:
                    feed_delay = _histogram_quantiles(urllib.request.urlopen(metrics_url.group(1), timeout=2).read().decode(),
                                                      "customs_console_feed_delay_seconds")
            time.sleep(1.0)  # sampling interval of the console's metrics while the demo runs
        # Exit 1 with a summary: a worker that did not keep up with the offered rate (undecided > 0), which the
        # result records; the rows the officer saw are measured all the same.
        code = demo.wait(timeout=args.duration + 600)
        latencies = [float(x) for x in browser.execute_script("return window.__lat;")]
        if code not in (0, 1) or not (workdir / "demo.out").read_text().strip():
            raise BenchError(f"the demo failed (exit {code}):\n{err_path.read_text(errors='replace')[-2000:]}")
    finally:
        if browser is not None:
            browser.quit()
        if demo.poll() is None:
            os.killpg(demo.pid, signal.SIGTERM)
            demo.wait(60)
    summary_line = (workdir / "demo.out").read_text().strip().splitlines()[-1]
    import orjson

    summary = orjson.loads(summary_line)
    achieved = summary["published"]["declaration"] / args.duration
    return {"offered_per_s": args.rate, "published_per_s": round(achieved, 1), "rows_seen": len(latencies),
            "undecided_at_end": summary["undecided"], "demo_exit": code, "console_feed_delay_s": feed_delay,
            "visible_s": {"p50": _pct(latencies, 0.5), "p99": _pct(latencies, 0.99), "max": _pct(latencies, 1.0)},
            "decision_latency_ms": summary["latency_ms"], "goal_p99_s": LIVE_GOAL_P99_S}


def _histogram_quantiles(text: str, name: str) -> dict[str, float | None]:
    """p50 and p99 of a Prometheus histogram (the upper bound of the bucket the quantile falls in)."""
    buckets = sorted((float("inf") if le == "+Inf" else float(le), float(v))
                     for le, v in re.findall(rf'^{name}_bucket{{le="([^"]+)"}} (\S+)$', text, re.M))
    total = buckets[-1][1] if buckets else 0.0
    out: dict[str, float | None] = {}
    for label, q in (("p50", 0.5), ("p99", 0.99)):
        out[label] = next((le for le, count in buckets if count >= q * total), None) if total else None
    out["count"] = total
    return out


def _session(base: str) -> urllib.request.OpenerDirector:
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()))
    page = opener.open(f"{base}/login", timeout=30).read().decode()
    token = re.search(r'name="csrf_token" value="([^"]+)"', page)
    if token is None:
        raise BenchError("no CSRF token on the login page")
    body = urllib.parse.urlencode({"name": "chief", "password": PASSWORD, "csrf_token": token.group(1)}).encode()
    opener.open(f"{base}/login", data=body, timeout=30).read()
    return opener


def _timed_get(opener: urllib.request.OpenerDirector, url: str) -> tuple[float, str]:
    t0 = time.perf_counter()
    body = opener.open(url, timeout=120).read().decode()
    return time.perf_counter() - t0, body


def page_loads(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    from console.users import Role, UserStore
    from devkit.launcher import ConsoleProcess

    archive_dir = args.archive_dir or workdir / "generated"
    if not (archive_dir / "bench-generated.json").exists():
        import orjson

        generated = generate_archive(archive_dir, args.archive_instructions, args.seed)
        (archive_dir / "bench-generated.json").write_bytes(orjson.dumps({"requested": args.archive_instructions, **generated}))
    import orjson

    declarations = int(orjson.loads((archive_dir / "bench-generated.json").read_bytes())["declarations"])
    broker = make_broker("tansu")
    broker.start()
    console = None
    try:
        settings = Settings(kafka_bootstrap_servers=broker.bootstrap_servers, data_dir=workdir / "pages", console_port=free_port(),
                            console_metrics_port=free_port(), console_users_file=workdir / "users.json", metrics_port=free_port())
        create_topics(settings)
        UserStore(workdir / "users.json").add("chief", Role.SUPERVISOR, PASSWORD)
        console = ConsoleProcess(settings, workdir / "console.log", archive_dir=archive_dir)
        console.wait_ready()
        opener = _session(console.url)
        rng = np.random.default_rng(args.seed + 2)
        ids = [f"D-2026-{i:08d}" for i in rng.integers(0, declarations, args.pages + 1)]
        cold, body = _timed_get(opener, f"{console.url}/declarations/{ids[0]}")
        if "Revisions" not in body or ids[0] not in body:
            raise BenchError(f"the declaration page of {ids[0]} is not what the bench expects")
        warm = [_timed_get(opener, f"{console.url}/declarations/{i}")[0] for i in ids[1:]]
        window = f"from={FIRST_DAY.isoformat()}&to={(FIRST_DAY + timedelta(days=DAYS - 1)).isoformat()}"
        figures = [_timed_get(opener, f"{console.url}/analyst/figures?{window}")[0] for _ in range(3)]
        dead = [_timed_get(opener, f"{console.url}/analyst/dead-letters?{window}")[0] for _ in range(3)]
        queue = [_timed_get(opener, f"{console.url}/queue")[0] for _ in range(5)]
    finally:
        if console is not None:
            console.stop()
        broker.stop()
    return {"archive_instructions": args.archive_instructions, "declarations": declarations,
            "declaration_page_s": {"cold": round(cold, 4), "median": round(statistics.median(warm), 4), "max": round(max(warm), 4)},
            "figures_month_s": {"first": round(figures[0], 4), "median": round(statistics.median(figures), 4)},
            "dead_letters_month_s": {"median": round(statistics.median(dead), 4)},
            "queue_page_s": {"median": round(statistics.median(queue), 4)}, "goal_s": PAGE_GOAL_S}


def print_table(results: dict[str, Any]) -> None:
    live = results.get("live", {})
    print("\nconsole figures")
    if "error" in live:
        print(f"  live queue: FAILED ({live['error'][:200]})")
    elif live:
        v = live["visible_s"]
        print(f"  instruction produced -> visible in the officer's browser: p50 {v['p50']} s, p99 {v['p99']} s, max {v['max']} s "
              f"over {live['rows_seen']} rows (offered {live['offered_per_s']:.0f}/s, published {live['published_per_s']:.0f}/s, "
              f"{live['undecided_at_end']} undecided at the end; console's feed p50/p99 <= "
              f"{live['console_feed_delay_s'].get('p50')}/{live['console_feed_delay_s'].get('p99')} s; "
              f"goal p99 < {live['goal_p99_s']} s)")
    pages = results.get("pages", {})
    if "error" in pages:
        print(f"  page loads: FAILED ({pages['error'][:200]})")
    elif pages:
        d = pages["declaration_page_s"]
        print(f"  with {pages['archive_instructions']:,} instructions over a month: declaration page cold {d['cold']} s, "
              f"median {d['median']} s, max {d['max']} s; figures (month) {pages['figures_month_s']['median']} s; "
              f"dead letters (month) {pages['dead_letters_month_s']['median']} s; queue {pages['queue_page_s']['median']} s "
              f"(goal {pages['goal_s']} s)")
