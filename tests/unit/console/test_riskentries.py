"""The console's held risk-list entries: the same answers as a plain filter over every entry, at any size."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from console.riskentries import RiskEntries
from schemas import RiskListAction, RiskListEntry, RiskListKind

START = datetime(2026, 1, 1, tzinfo=UTC)


def entry(entry_id: str, list_id: str = "L-1", value: str = "8517", kind: str = "hs-prefix", action: str = "inspect",
          reason: str = "phones", agency: str = "customs", until: datetime | None = None) -> RiskListEntry:
    return RiskListEntry.model_validate({"entry_id": entry_id, "list_id": list_id, "kind": RiskListKind(kind), "value": value,
                                         "action": RiskListAction(action), "reason": reason, "source_agency": agency,
                                         "valid_from": START, "valid_until": until})


def naive(entries: dict[str, RiskListEntry], text: str, list_id: str | None) -> list[str]:
    """What the page means: every field searched, any case; ordered by list, then entry id."""
    needle = text.strip().lower()
    found = [e for e in entries.values() if (list_id is None or e.list_id == list_id)
             and needle in " ".join((e.entry_id, e.list_id, e.kind.value, e.action.value, e.value, e.reason, e.source_agency)).lower()]
    return [e.entry_id for e in sorted(found, key=lambda e: (e.list_id, e.entry_id))]


def test_every_field_is_searched_in_any_case() -> None:
    held = RiskEntries(limit=100)
    held.put("E-1", entry("E-1", list_id="JASC-7", value="8517", reason="Phones under-declared", agency="Port Police"))
    held.put("E-2", entry("E-2", list_id="ORG-1", kind="origin", value="KP", action="watch", reason="sanctions"))
    for text, expected in (("e-1", ["E-1"]), ("jasc", ["E-1"]), ("851", ["E-1"]), ("UNDER-DECL", ["E-1"]), ("police", ["E-1"]),
                           ("ORIGIN", ["E-2"]), ("kp", ["E-2"]), ("watch", ["E-2"]), ("", ["E-1", "E-2"]), ("nothing", [])):
        shown, total = held.search(text)
        assert [e.entry_id for e in shown] == expected and total == len(expected), text


def test_replacing_and_retracting_keep_the_lists_right() -> None:
    held = RiskEntries(limit=100)
    held.put("E-1", entry("E-1", list_id="A"))
    held.put("E-2", entry("E-2", list_id="A", action="watch"))
    held.put("E-1", entry("E-1", list_id="B", value="9303"))  # moved to another list
    assert [(s.list_id, s.entries, s.actions) for s in held.lists()] == [("A", 1, ("watch",)), ("B", 1, ("inspect",))]
    assert held.search("8517")[1] == 1 and held.search("9303")[0][0].list_id == "B"
    held.put("E-2", None)
    assert [s.list_id for s in held.lists()] == ["B"] and "E-2" not in held and len(held) == 1
    held.put("E-1", None)
    assert held.lists() == [] and held.search("")[1] == 0
    assert held._facets == {}  # nothing kept for lists that are gone


def test_a_change_after_a_search_is_shown_by_the_next() -> None:
    held = RiskEntries(limit=100)
    for n in range(3):
        held.put(f"E-{n}", entry(f"E-{n}"))
    assert [e.entry_id for e in held.search("")[0]] == ["E-0", "E-1", "E-2"]  # the list's order is kept from here
    held.put("E-1", None)
    assert [e.entry_id for e in held.search("")[0]] == ["E-0", "E-2"]
    held.put("E-05", entry("E-05"))
    assert [e.entry_id for e in held.search("e-")[0]] == ["E-0", "E-05", "E-2"]


def test_entries_beyond_the_limit_are_counted_not_held() -> None:
    held = RiskEntries(limit=2)
    for n in range(4):
        held.put(f"E-{n}", entry(f"E-{n}"))
    assert len(held) == 2 and held.dropped == 2 and "E-2" not in held
    held.put("E-1", entry("E-1", value="9303"))  # a held entry can still change at the limit
    assert held.get("E-1") is not None and held.get("E-1").value == "9303"  # type: ignore[union-attr]


def test_the_page_shows_the_first_matches_and_counts_them_all() -> None:
    held = RiskEntries(limit=10_000)
    for n in range(500):
        held.put(f"E-{n:04d}", entry(f"E-{n:04d}", list_id=f"L-{n % 7}", value=f"{8500 + n % 50}"))
    shown, total = held.search("85", limit=20)
    assert total == 500 and [e.entry_id for e in shown] == [f"E-{n:04d}" for n in range(0, 500, 7)][:20]  # list L-0 first
    shown, total = held.search("8517", list_id="L-3", limit=5)
    assert total == len([n for n in range(500) if n % 7 == 3 and n % 50 == 17])
    assert held.search("", list_id="NO-SUCH-LIST") == ([], 0)


kinds_values = st.sampled_from([("hs-prefix", "8517"), ("hs-prefix", "93"), ("hs-code", "851712"), ("origin", "KP"),
                                ("route", "SG->KP"), ("enterprise", "ENT-7"), ("seller", "S-1")])
entries = st.lists(st.tuples(st.integers(0, 30), st.sampled_from(["L-A", "L-B", "JASC-1"]), kinds_values,
                             st.sampled_from(["inspect", "watch", "machine-check"]), st.sampled_from(["phones", "Firearms", "x"]),
                             st.booleans()),
                   max_size=60)


@settings(max_examples=150, deadline=None)
@given(entries, st.sampled_from(["", "l-", "851", "kp", "ent", "FIRE", "watch", "e-1", "jasc", "s-1", "zz"]),
       st.sampled_from([None, "L-A", "JASC-1", "L-Z"]), st.integers(1, 8))
def test_search_agrees_with_a_plain_filter(changes: list, text: str, list_id: str | None, limit: int) -> None:
    held = RiskEntries(limit=10_000)
    expected: dict[str, RiskListEntry] = {}
    for n, lst, (kind, value), action, reason, retract in changes:
        entry_id = f"E-{n}"
        if retract:
            held.put(entry_id, None)
            expected.pop(entry_id, None)
        else:
            e = entry(entry_id, list_id=lst, kind=kind, value=value, action=action, reason=reason, until=START + timedelta(days=n))
            held.put(entry_id, e)
            expected[entry_id] = e
        held.search(text, list_id, limit)  # a search between changes must not leave a stale order behind
    want = naive(expected, text, list_id)
    shown, total = held.search(text, list_id, limit)
    assert [e.entry_id for e in shown] == want[:limit] and total == len(want)
    assert sum(s.entries for s in held.lists()) == len(expected) == len(held)
    for e in shown:
        source = expected[e.entry_id]
        assert (e.value, e.valid_until, e.reason, e.list_id) == (source.value, source.valid_until, source.reason, source.list_id)
