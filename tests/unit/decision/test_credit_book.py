"""The credit book: decisions read the effective view of the stored record, the fold the whole record,
both as the table holds it at the time of the read (nothing kept per enterprise)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from decision.batch import CreditBook
from policy.credit import UNKNOWN_ENTERPRISE, AgencyEntry, EffectiveCredit, EnterpriseCredit
from schemas import CreditClass

classes = st.sampled_from(list(CreditClass))
statuses = st.dictionaries(st.sampled_from(["zero-tariff", "processing-value-added"]), st.sampled_from(["active", "suspended", "revoked"]))
entries = st.builds(AgencyEntry, st.none() | classes, st.booleans(), statuses, st.none() | st.text(max_size=8),
                    st.none() | st.just("2026-12-01T00:00:00+00:00"), st.none() | st.text(max_size=40))
records = st.builds(EnterpriseCredit, classes, st.booleans(), statuses, st.none() | st.text(max_size=8),
                    st.dictionaries(st.text(min_size=1, max_size=12), entries, max_size=20))


@given(records)
def test_the_effective_view_is_the_records_effective_state(record: EnterpriseCredit) -> None:
    table = {b"E": record.to_bytes()}
    book = CreditBook(lambda: table)
    view = book.of("E")
    assert type(view) is EffectiveCredit
    effective = (record.credit_class, record.joint_penalty, record.qualifications)
    assert (view.credit_class, view.joint_penalty, view.qualifications) == effective
    assert view.effective_class is record.effective_class
    assert book.record_of("E") == record


def test_a_changed_record_is_read_at_once_and_an_unknown_enterprise_is_general() -> None:
    table = {b"E0": EnterpriseCredit(credit_class=CreditClass.AEO, last_event_id="C1").to_bytes()}
    book = CreditBook(lambda: table)
    assert book.of("E0").credit_class is CreditClass.AEO
    table[b"E0"] = EnterpriseCredit(credit_class=CreditClass.FOCUS_LIST, joint_penalty=True, last_event_id="C2").to_bytes()
    assert book.of("E0").effective_class is CreditClass.JOINT_PENALTY
    assert book.of("E9") is UNKNOWN_ENTERPRISE and book.record_of("E9") is UNKNOWN_ENTERPRISE


def test_the_first_releases_json_records_are_still_read() -> None:
    table = {b"E0": b'{"credit_class": "white-list", "joint_penalty": false, "qualifications": {"zero-tariff": "active"}}'}
    book = CreditBook(lambda: table)
    assert book.of("E0").credit_class is CreditClass.WHITE_LIST and book.of("E0").qualifications == {"zero-tariff": "active"}
    assert book.record_of("E0").agencies == {}
