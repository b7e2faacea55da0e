"""`riskctl archive` refuses what it cannot use with one line and exit 2, before consuming anything."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from cli.main import main


def test_a_busy_metrics_port_is_a_one_line_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("ARCHIVE_DIR", str(tmp_path / "archive"))
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        assert main(["archive", "--no-create-topics", "--metrics-port", str(port)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"riskctl archive: error: metrics port {port}") and err.count("\n") == 1
    assert not (tmp_path / "archive").exists()


def test_an_unreachable_broker_is_a_one_line_error(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:1")
    monkeypatch.setattr("clients.topics.create_topics.__defaults__", (0.5,))
    assert main(["archive", "--metrics-port", "0"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("riskctl archive: error: cannot reach Kafka") and err.count("\n") == 1
