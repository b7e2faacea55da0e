"""A real S3 server for the archive's object-storage tests: s3s-fs (the s3s project's S3 server over
a directory), built by ``make s3-fetch`` into ``.tools/s3s/bin``.

``s3_server`` starts one on a free loopback port with a fresh root directory and one bucket (a bucket
is a top-level directory of the root), waits until it answers HTTP, and stops it at the end. The
binary is found in env ``S3S_FS`` (``make test`` sets it), then ``.tools/s3s/bin/s3s-fs``, then
``PATH``; without it the test is skipped with the command that builds it.

s3s-fs keeps each object's metadata in a file named after the base64 of bucket and key, so keys
longer than about 140 characters fail with "File name too long" (real S3 allows 1024 bytes): keep
the test's bucket and prefix short.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from devkit.brokers import free_port

REPO = Path(__file__).resolve().parents[2]
START_TIMEOUT_S = 30.0


@dataclass(frozen=True)
class S3Server:
    endpoint: str
    bucket: str
    root: Path
    access_key: str = "riskctl-test"
    secret_key: str = "riskctl-test-secret-9f3a"

    def env(self) -> dict[str, str]:
        """The standard variables that delta-rs's object_store (and polars) read."""
        return {"AWS_ENDPOINT_URL": self.endpoint, "AWS_ACCESS_KEY_ID": self.access_key, "AWS_SECRET_ACCESS_KEY": self.secret_key,
                "AWS_REGION": "us-east-1", "AWS_ALLOW_HTTP": "true"}

    def uri(self, prefix: str) -> str:
        return f"s3://{self.bucket}/{prefix}"

    def objects(self, prefix: str) -> list[Path]:
        """The files s3s-fs keeps for the objects under ``prefix`` (it stores an object at bucket/key)."""
        return sorted(p for p in (self.root / self.bucket / prefix).rglob("*") if p.is_file())


def s3s_fs_binary() -> str | None:
    for candidate in (os.environ.get("S3S_FS"), str(REPO / ".tools" / "s3s" / "bin" / "s3s-fs")):
        if candidate and Path(candidate).is_file() and os.access(candidate, os.X_OK):
            return candidate
    return shutil.which("s3s-fs")


def _answers(endpoint: str) -> bool:
    try:
        urllib.request.urlopen(endpoint, timeout=1)
    except urllib.error.HTTPError:
        return True  # an unsigned request is refused: the server is up
    except OSError:
        return False
    return True


@pytest.fixture
def s3_server(tmp_path: Path) -> Iterator[S3Server]:
    binary = s3s_fs_binary()
    if binary is None:
        pytest.skip("s3s-fs not found: run `make s3-fetch` (or set S3S_FS)")
    port = free_port()
    server = S3Server(endpoint=f"http://127.0.0.1:{port}", bucket="arc", root=tmp_path / "s3-root")
    (server.root / server.bucket).mkdir(parents=True)
    with open(tmp_path / "s3s-fs.log", "ab") as log:
        proc = subprocess.Popen([binary, "--host", "127.0.0.1", "--port", str(port), "--access-key", server.access_key,
                                 "--secret-key", server.secret_key, str(server.root)], stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while not _answers(server.endpoint):
            if proc.poll() is not None or time.monotonic() > deadline:
                log_text = (tmp_path / "s3s-fs.log").read_text(errors="replace")[-2000:]
                pytest.fail(f"s3s-fs did not answer on port {port} (exit {proc.poll()}):\n{log_text}", pytrace=False)
            time.sleep(0.05)  # poll interval of a condition with a deadline
        yield server
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
