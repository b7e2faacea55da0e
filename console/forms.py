"""Analyst forms submitted once: a retried or double-clicked form never publishes its record twice.

Every analyst form carries a key made when the page is rendered (``form_key``, a hidden field). The
record's own id (a risk-list entry's generated id, a credit event's id) is derived from that key and
the form's content, so a retry after an unclear failure produces the same record again (the compacted
risk-lists topic keeps one entry per id; the credit fold skips an event repeated in a row); and the
console keeps the answer of each form it has published (bounded: the oldest are forgotten first), so
a second submission of a published form gets the first one's answer and publishes nothing.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import threading
import zlib
from collections import OrderedDict

from fastapi import Request

FORM_KEY_FIELD = "form_key"
KEPT_FORMS = 10_000
_KEY = re.compile(r"^[A-Za-z0-9_\-]{16,64}$")


def new_form_key() -> str:
    return secrets.token_urlsafe(16)


def form_key(sent: str) -> str:
    """The form's key as sent, or "" when it is missing or not one the console makes (then the
    record's id comes from the form's content alone)."""
    return sent if _KEY.fullmatch(sent) else ""


def derived_id(prefix: str, key: str, *content: str) -> str:
    """A record id fixed by the form's key and content (an Identifier: at most 64 characters)."""
    digest = hashlib.sha256("\x1f".join((key, *content)).encode()).hexdigest()[:24]
    return f"{prefix}-{digest}"


class SubmittedForms:
    """The answers of the forms this console has published, and a lock per form (striped, bounded)."""

    def __init__(self, kept: int = KEPT_FORMS) -> None:
        self.kept = kept
        self._locks = [threading.Lock() for _ in range(64)]
        self._guard = threading.Lock()
        self._answers: OrderedDict[str, str] = OrderedDict()

    def lock(self, key: str) -> threading.Lock:
        return self._locks[zlib.crc32(key.encode()) % len(self._locks)]

    def answer(self, key: str) -> str | None:
        with self._guard:
            return self._answers.get(key)

    def remember(self, key: str, answer: str) -> None:
        with self._guard:
            self._answers[key] = answer
            self._answers.move_to_end(key)
            while len(self._answers) > self.kept:
                self._answers.popitem(last=False)


def submitted(request: Request) -> SubmittedForms:
    state = request.app.state
    if not hasattr(state, "submitted_forms"):
        with _CREATE:
            if not hasattr(state, "submitted_forms"):
                state.submitted_forms = SubmittedForms()
    forms: SubmittedForms = state.submitted_forms
    return forms


_CREATE = threading.Lock()


def audit_note(url: str, audited: bool) -> str:
    """The answer's URL, marked when the record stands without its audit record (the page says so)."""
    return url if audited else url + ("&" if "?" in url else "?") + "audit=missing"
