"""``riskctl credit show``: the record printed by agency."""

from __future__ import annotations

import pytest

from cli.credit import as_document, credit_lines
from cli.main import main
from policy.credit import UNKNOWN_ENTERPRISE, apply_credit_event
from tests.unit.factories import credit_event


def test_the_record_is_shown_by_agency():
    state = UNKNOWN_ENTERPRISE
    for e in (credit_event(event_id="C1", credit_class="aeo", reason="certified"),
              credit_event(event_id="P1", event_type="joint-penalty-imposed", credit_class=None, source_agency="courts",
                           reason="court judgment unfulfilled")):
        state = apply_credit_event(state, e)
    lines = credit_lines("E1", state)
    assert lines[1] == "effective      joint-penalty (joint penalty)"
    [customs] = [line for line in lines if line.startswith("customs ")]
    [courts] = [line for line in lines if line.startswith("courts ")]
    assert " aeo " in customs and customs.endswith("certified")
    assert " yes " in courts and courts.endswith("court judgment unfulfilled")
    doc = as_document("E1", state)
    assert doc["agencies"]["courts"]["joint_penalty"] and doc["agencies"]["customs"]["credit_class"] == "aeo"


def test_help(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["credit", "show", "--help"])
    assert exit_info.value.code == 0
    assert "each agency" in capsys.readouterr().out
