"""Unit tests build topologies without a worker: their tables in memory and any data directory
under the test's own temporary directory, unless a test asks for the RocksDB store itself."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(autouse=True)
def _memory_tables_and_a_private_data_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("TABLE_STORE", "memory")
    monkeypatch.setenv("DATA_DIR", str(tmp_path / "worker-data"))
