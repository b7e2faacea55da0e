"""The credit book's parse cache is bounded and gives way one entry at a time (issue 15, item 7)."""

from __future__ import annotations

from decision.batch import CreditBook
from policy.credit import EnterpriseCredit
from schemas import CreditClass


def stored(n: int) -> dict[bytes, bytes]:
    return {f"E{i}".encode(): EnterpriseCredit(credit_class=CreditClass.AEO, last_event_id=f"C{i}").to_bytes() for i in range(n)}


def test_a_full_cache_drops_the_least_recently_used_entry_not_everything() -> None:
    table = stored(5)
    book = CreditBook(lambda: table, max_cached=3)
    e0, e1 = book.of("E0"), book.of("E1")
    book.of("E2")
    assert book.of("E0") is e0  # a hit; E0 is now the most recently used
    book.of("E3")  # one over: E1, the least recently used, goes
    assert len(book) == 3
    assert book.of("E0") is e0  # still cached: the cache was not emptied
    assert book.of("E1") is not e1 and book.of("E1") == e1  # parsed again, same state
    for i in range(5):
        book.of(f"E{i}")
    assert len(book) == 3


def test_a_changed_credit_state_replaces_its_enterprises_entry() -> None:
    table = stored(2)
    book = CreditBook(lambda: table, max_cached=10)
    assert book.of("E0").credit_class is CreditClass.AEO
    table[b"E0"] = EnterpriseCredit(credit_class=CreditClass.FOCUS_LIST, last_event_id="C9").to_bytes()
    assert book.of("E0").credit_class is CreditClass.FOCUS_LIST
    assert len(book) == 1  # replaced, not added beside the old one
