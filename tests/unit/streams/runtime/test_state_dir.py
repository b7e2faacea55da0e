"""Each worker process gets a state directory of its own under DATA_DIR, and a restarted worker
gets its old one back (its RocksDB databases are there)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from streams.runtime.app import state_dir

REPO = Path(__file__).resolve().parents[4]


def _in_another_process(data_dir: Path) -> str:
    code = "import sys; from pathlib import Path; from streams.runtime.app import state_dir; print(state_dir(Path(sys.argv[1])).name)"
    return subprocess.run([sys.executable, "-c", code, str(data_dir)], cwd=REPO, check=True, capture_output=True, text=True).stdout.strip()


def test_a_second_process_takes_the_next_directory_and_a_restarted_one_its_old_one(tmp_path: Path) -> None:
    assert _in_another_process(tmp_path) == "worker-0"  # that process has exited: its lock went with it
    mine = state_dir(tmp_path)
    assert mine.name == "worker-0" and state_dir(tmp_path) == mine  # held by this process: the same again
    assert _in_another_process(tmp_path) == "worker-1"  # worker-0 is held by a live process (this one)
    assert (mine / ".lock").exists()
