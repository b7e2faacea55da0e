"""A crash on purpose, for the crash tests: ``RISKCTL_WORKER_FAILPOINT=kill-before-send:<agent or
timer>:<n>`` makes the worker kill itself (SIGKILL, as ``kill -9``) when the named agent or timer
is about to hand its n-th output batch (counting those with records) to the producer: its table
writes are made, nothing of it is sent, no offset past it is committed. Unset in production; a
value that does not parse is ignored with a warning, never a crash of its own."""

from __future__ import annotations

import logging
import os
import signal

from streams.outputs import OutputBatch

log = logging.getLogger(__name__)

FAILPOINT_ENV = "RISKCTL_WORKER_FAILPOINT"
KINDS = ("kill-before-send",)


class Failpoint:
    def __init__(self, text: str) -> None:
        self.target: tuple[str, str, int] | None = parse(text)
        if text and self.target is None:
            log.warning("%s=%r is not <kind>:<agent or timer>:<n> with kind in %s: ignored", FAILPOINT_ENV, text, KINDS)
        self._seen = 0

    @classmethod
    def from_env(cls) -> Failpoint:
        return cls(os.environ.get(FAILPOINT_ENV, ""))

    def before_send(self, name: str, out: OutputBatch) -> None:
        if self.target is None or not out.count or self.target[1] != name:
            return
        self._seen += 1
        if self._seen == self.target[2]:
            log.warning("failpoint %s: killing the worker before %s sends output batch %d", FAILPOINT_ENV, name, self._seen)
            logging.shutdown()
            os.kill(os.getpid(), signal.SIGKILL)


def parse(text: str) -> tuple[str, str, int] | None:
    parts = text.split(":")
    if len(parts) == 3 and parts[0] in KINDS and parts[1] and parts[2].isdigit() and int(parts[2]) > 0:
        return parts[0], parts[1], int(parts[2])
    return None
