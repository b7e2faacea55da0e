"""Processes: benchmark children, pausing, CPU accounting and py-spy sampling."""

from __future__ import annotations

import contextlib
import ctypes
import os
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from devkit.launcher import cpu_seconds

REPO_ROOT = Path(__file__).resolve().parents[1]


# ---- child processes ----------------------------------------------------------------------------
class Child:
    """A benchmark subprocess (``python -m bench.<module>``) in its own process group."""

    def __init__(self, module: str, args: list[str], log_path: Path) -> None:
        self.log_path = log_path
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")]))}
        with open(log_path, "ab") as out:
            self.proc = subprocess.Popen([sys.executable, "-m", module, *args], cwd=REPO_ROOT, env=env, stdout=out,
                                         stderr=subprocess.STDOUT, start_new_session=True, preexec_fn=_die_with_parent)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def dead(self) -> str | None:
        """Why the child is gone, or None while it runs (or once it finished its work with status 0)."""
        if self.proc.poll() in (None, 0):
            return None
        tail = "\n".join(self.log_path.read_text(errors="replace").splitlines()[-20:])
        return f"process exited with code {self.proc.returncode} (log {self.log_path}):\n{tail}"

    def stop(self, grace_s: float = 10.0) -> None:
        stop_group(self.proc, grace_s)


def _die_with_parent() -> None:
    """In the child before exec: SIGKILL it if the benchmark itself dies (Linux; elsewhere a no-op)."""
    with contextlib.suppress(Exception):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def stop_group(proc: subprocess.Popen, grace_s: float = 10.0) -> None:
    """SIGTERM the child's own process group, SIGKILL after the grace period."""
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGCONT)  # in case it was paused
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)


def rss_mb(pid: int) -> float:
    """A process's resident memory now, in MB (Linux /proc)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return round(int(line.split()[1]) / 1024, 1)
    return 0.0


# ---- profiling ----------------------------------------------------------------------------------
class Profile:
    """py-spy sampling one process for as long as a measurement runs (``--profile``)."""

    def __init__(self, pid: int, out: Path) -> None:
        self.out = out
        spy = Path(sys.executable).with_name("py-spy")
        if not spy.exists():
            raise RuntimeError(f"--profile needs py-spy beside {sys.executable}: pip install -e '.[bench]'")
        # --nonblocking: do not pause the measured process to sample it (a little less exact).
        self.proc = subprocess.Popen([str(spy), "record", "-p", str(pid), "-f", "raw", "-o", str(out), "-r", "100", "--nonblocking"],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)

    def stop(self, top: int = 12) -> dict[str, float]:
        """Stop sampling (py-spy writes its file on SIGINT); return the top functions by self time (%)."""
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGINT)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        leaf: Counter = Counter()
        with contextlib.suppress(OSError):
            for line in self.out.read_text().splitlines():  # "frame;frame;...;leaf COUNT"
                stack, _, count = line.rpartition(" ")
                if not count.isdigit():
                    continue  # a frame name that spans lines (py-spy writes it as it gets it)
                m = re.fullmatch(r"(.*) \((.*?)(:\d+)?\)", stack.rsplit(";", 1)[-1])
                leaf[f"{m.group(1)} ({Path(m.group(2)).name})" if m else stack.rsplit(";", 1)[-1]] += int(count)
        total = sum(leaf.values()) or 1
        return {name: round(100 * n / total, 1) for name, n in leaf.most_common(top)}


@contextlib.contextmanager
def paused(pids: list[int]) -> Iterator[None]:
    """SIGSTOP the process groups for a moment (heartbeats stop too: keep it well under the 10 s
    session timeout)."""
    for pid in pids:
        os.killpg(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGCONT)


# ---- CPU accounting -----------------------------------------------------------------------------
# Processes whose CPU time every measurement reports besides the system under test (the runner
# registers the broker and itself): on a shared 2-core machine CPU per declaration is steadier than wall time.
CPU_ALSO: dict[str, list[int]] = {}


class CpuMeter:
    """CPU seconds used by groups of processes between start and stop, per declaration too."""

    def __init__(self, system_pids: list[int]) -> None:
        self.groups = {"system": system_pids, **CPU_ALSO}
        self.start = {g: sum(cpu_seconds(p) for p in pids) for g, pids in self.groups.items()}
        self.wall = time.monotonic()

    def stop(self, declarations: int) -> dict[str, Any]:
        used = {g: sum(cpu_seconds(p) for p in pids) - self.start[g] for g, pids in self.groups.items()}
        wall = time.monotonic() - self.wall
        return {"cpu_us_per_declaration": {g: round(1e6 * u / max(declarations, 1), 1) for g, u in used.items()},
                "cpu_busy": {g: round(u / wall, 2) for g, u in used.items()}}  # 1.0 = one core all the time


