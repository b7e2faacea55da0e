"""The post-clearance audit selection: rates follow the policy's weights on a synthetic population,
AEO enterprises are selected least, the draw is deterministic given the seed; and the command over
a small archive written by the sink."""

from __future__ import annotations

import json
from datetime import date, datetime
from pathlib import Path

import pytest

from audit.selection import Enterprise, credit_at, draw, period_days, probability, select
from clients import topics
from common.settings import Settings
from policy.config import AuditSelection
from schemas import CreditClass
from tests.unit.archive import fakes

CONFIG = AuditSelection()


def synthetic(n_per_class: int, declarations: int = 9, findings: int = 0) -> list[Enterprise]:
    return [Enterprise(f"E-{cls.value}-{i:05d}", cls, declarations, findings) for cls in CreditClass for i in range(n_per_class)]


def test_selection_rates_follow_the_class_weights_and_aeo_is_selected_least() -> None:
    rows = select(synthetic(4000), CONFIG, seed=7, period="2026-Q4")
    rates = {cls: sum(s.selected for s in rows if s.enterprise.credit_class is cls) / 4000 for cls in CreditClass}
    activity = 1 + CONFIG.activity_weight * 1.0  # log10(1 + 9)
    for cls, rate in rates.items():
        expected = CONFIG.base_rate * CONFIG.class_weights[cls] * activity
        assert abs(rate - expected) < 4 * (expected * (1 - expected) / 4000) ** 0.5 + 0.002, (cls, rate, expected)
    assert min(rates, key=rates.__getitem__) is CreditClass.AEO
    assert rates[CreditClass.AEO] < rates[CreditClass.WHITE_LIST] < rates[CreditClass.GENERAL] < rates[CreditClass.FOCUS_LIST]


def test_activity_and_findings_raise_the_probability_up_to_the_cap() -> None:
    quiet = Enterprise("A", CreditClass.GENERAL, 1, 0)
    busy = Enterprise("B", CreditClass.GENERAL, 10_000, 0)
    caught = Enterprise("C", CreditClass.GENERAL, 1, 3)
    assert probability(quiet, CONFIG) < probability(busy, CONFIG) < probability(caught, CONFIG) * 2
    assert probability(caught, CONFIG) == pytest.approx(probability(quiet, CONFIG) * (1 + 3 * CONFIG.finding_weight))
    assert probability(Enterprise("D", CreditClass.JOINT_PENALTY, 10**6, 500), CONFIG) == CONFIG.max_rate
    assert select([Enterprise("Z", CreditClass.GENERAL, 0, 0)], CONFIG, 1, "2026-Q4") == []  # not active: not drawn


def test_the_draw_is_deterministic_given_the_seed_and_independent_of_the_population() -> None:
    population = synthetic(200)
    first = {s.enterprise.enterprise_id for s in select(population, CONFIG, 7, "2026-Q4") if s.selected}
    again = {s.enterprise.enterprise_id for s in select(list(reversed(population)), CONFIG, 7, "2026-Q4") if s.selected}
    other = {s.enterprise.enterprise_id for s in select(population, CONFIG, 8, "2026-Q4") if s.selected}
    alone = {s.enterprise.enterprise_id for s in select(population[:50], CONFIG, 7, "2026-Q4") if s.selected}
    assert first == again and first != other and alone == {e for e in first if e in {p.enterprise_id for p in population[:50]}}
    assert draw(7, "2026-Q4", "E1") == draw(7, "2026-Q4", "E1") != draw(7, "2027-Q1", "E1")


def test_periods() -> None:
    assert period_days("2026-Q4") == (date(2026, 10, 1), date(2026, 12, 31))
    assert period_days("2026-H1") == (date(2026, 1, 1), date(2026, 6, 30))
    assert period_days("2026-M02") == (date(2026, 2, 1), date(2026, 2, 28))
    assert period_days("2026-Y") == (date(2026, 1, 1), date(2026, 12, 31))
    for bad in ("2026-Q5", "26-Q1", "2026-M13", "2026"):
        with pytest.raises(ValueError):
            period_days(bad)


def test_the_credit_class_is_the_one_at_the_end_of_the_period() -> None:
    def event(eid: str, event_id: str, cls: str, at: str, **kw: str) -> dict:
        return {"event_id": event_id, "enterprise_id": eid, "event_type": "credit-class-changed", "credit_class": cls,
                "source_agency": "customs", "event_time": at, "schema_version": 1, "reason": None, "qualification": None, **kw}

    events = [event("E1", "1", "aeo", "2026-01-05T00:00:00Z"), event("E1", "2", "focus-list", "2027-01-05T00:00:00Z"),
              event("E2", "3", "white-list", "2026-02-01T00:00:00Z"),
              {**event("E2", "4", "aeo", "2026-03-01T00:00:00Z"), "event_type": "joint-penalty-imposed", "credit_class": None}]
    classes = credit_at(events, datetime.fromisoformat("2026-12-31T23:59:59+00:00"))
    assert classes == {"E1": CreditClass.AEO, "E2": CreditClass.JOINT_PENALTY}


def test_the_command_over_a_small_archive(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    from cli.main import main

    settings = Settings(archive_dir=tmp_path / "archive", archive_flush_interval_s=0.05, archive_metrics_port=0,
                        archive_maintenance_interval_s=0)
    broker = fakes.FakeBroker(settings)
    for n in range(30):
        broker.add(topics.DECLARATIONS, f"D{n}", fakes.declaration(f"D{n}", enterprise_id=f"E{n % 3}"))
    broker.add(topics.INSPECTION_RESULTS, "D1", {**fakes.inspection("D1", found=True), "instruction_id": "D1:1:scan"})
    broker.add(topics.INSPECTION_RESULTS, "D1", {**fakes.inspection("D1", found=True), "instruction_id": "D1:1:scan"})  # redelivered
    broker.add(topics.CREDIT_EVENTS, "E0", fakes.credit("E0"))
    fakes.archive_all(settings, broker, records=33)
    monkeypatch.setenv("ARCHIVE_DIR", str(tmp_path / "archive"))
    day = fakes.NOW.date().isoformat()
    assert main(["audit-selection", "--from", day, "--to", day, "--seed", "3", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["enterprises"] == 3 and doc["by_class"]["aeo"]["enterprises"] == 1 and doc["by_class"]["general"]["enterprises"] == 2
    selected = {s["enterprise_id"]: s for s in doc["selection"]}
    config = AuditSelection()
    expected = {f"E{i}": probability(Enterprise(f"E{i}", CreditClass.AEO if i == 0 else CreditClass.GENERAL, 10, int(i == 1)), config)
                for i in range(3)}
    assert {e for e, p in expected.items() if draw(3, f"{day}..{day}", e) < p} == set(selected)
    for eid, s in selected.items():
        assert s["probability"] == round(expected[eid], 6) and s["declarations"] == 10
    assert main(["audit-selection", "--from", day, "--to", day, "--seed", "3"]) == 0
    text = capsys.readouterr().out
    assert text.startswith(f"audit selection {day}..{day} (seed 3): {len(selected)} of 3 active enterprises")
    assert main(["audit-selection", "--period", "2026-Q9"]) == 2
    assert "is not YYYY-Qn" in capsys.readouterr().err
