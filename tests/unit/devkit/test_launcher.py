"""Process helpers of devkit.launcher: CPU time from /proc and waiting for a busy worker to settle."""

from __future__ import annotations

import math
import os
import subprocess
import sys

import pytest

from devkit.launcher import WorkerProcess, cpu_seconds

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")

# Spins for the given seconds of wall time, then sleeps (stands in for a worker after a burst).
SPIN_THEN_SLEEP = "import sys, time; end = time.monotonic() + float(sys.argv[1])\nwhile time.monotonic() < end: pass\ntime.sleep(60)"


def _process(spin_s: float) -> WorkerProcess:
    worker = object.__new__(WorkerProcess)  # only the process handle: no riskctl worker needed here
    worker.proc = subprocess.Popen([sys.executable, "-c", SPIN_THEN_SLEEP, str(spin_s)])
    return worker


def test_cpu_seconds_counts_work_and_is_nan_for_no_process() -> None:
    before = cpu_seconds(os.getpid())
    total = 0
    for i in range(3_000_000):
        total += i
    assert cpu_seconds(os.getpid()) > before
    assert math.isnan(cpu_seconds(2**22 + 12345))  # above the default pid_max: no such process


@pytest.mark.parametrize("spin_s", [0.0, 1.5])
def test_wait_settled_waits_out_a_busy_spell_and_no_longer(spin_s: float) -> None:
    worker = _process(spin_s)
    try:
        waited = worker.wait_settled(busy_below=0.3, timeout_s=20, interval_s=0.25)
    finally:
        worker.proc.kill()
        worker.proc.wait()
    assert waited < 10  # settled, not timed out
    if spin_s:
        assert waited >= 1.0  # it did not return while the process was still spinning
    else:
        assert waited < 1.5  # two quiet probes
