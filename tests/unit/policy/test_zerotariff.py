"""Zero-tariff goods: the register folded from its records, and the rule for registered goods
declared to the mainland."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pydantic import ValidationError

from policy.config import ZeroTariff, load_policy
from policy.credit import UNKNOWN_ENTERPRISE
from policy.decide import decide
from policy.zerotariff import (
    GOODS_LEAVING,
    decode_goods,
    decode_import,
    fold_import,
    goods_key,
    import_key,
    on_island,
    registered_goods,
)
from schemas import Action, SelectionReason, Severity, SubjectKind, ZeroTariffImport
from tests.unit.factories import FIXTURE_POLICY, declaration

POLICY = load_policy(FIXTURE_POLICY).model_copy(
    update={"random_selection": load_policy(FIXTURE_POLICY).random_selection.model_copy(update={"share": 0.0})})
VIN = "LSVAU2180N2183294"
VIN2 = "LFV3A23C0J3000001"
T = datetime(2026, 6, 1, tzinfo=UTC)


def record(import_id: str = "ZT-1", identifiers: tuple[tuple[str, str], ...] = (("vin", VIN),), status: str = "imported",
           at: datetime = T, **over: Any) -> ZeroTariffImport:
    return ZeroTariffImport.model_validate(dict(
        import_id=import_id, enterprise_id="E-ZT", import_declaration_id="IMP-1", status=status, hs_code="870323",
        description="passenger car", quantity=1.0, identifiers=[{"kind": k, "value": v} for k, v in identifiers],
        imported_at=(T - timedelta(days=30)).isoformat(), event_time=at.isoformat(), **over), strict=False)


class Table(dict[bytes, bytes]):
    def fold(self, import_id: str, rec: ZeroTariffImport | None) -> str:
        change = fold_import(import_id, rec, self.get)
        for key, value in change.writes.items():
            if value is None:
                self.pop(key, None)
            else:
                self[key] = value
        return change.outcome


def leaving(*identifiers: str, direction: str | None = "second-line-out"):
    return declaration(direction=direction, goods_identifiers=[{"kind": "vin", "value": v} for v in identifiers])


def test_an_import_registers_its_goods_by_identifier_and_a_redelivery_changes_nothing():
    table = Table()
    assert table.fold("ZT-1", record(identifiers=(("vin", VIN), ("serial", "sn-0042")))) == "applied"
    assert decode_goods(table[goods_key(VIN)]).import_id == "ZT-1"
    assert decode_goods(table[goods_key("SN-0042")]).kind == "serial"  # matched upper-cased
    before = dict(table)
    assert fold_import("ZT-1", record(identifiers=(("vin", VIN), ("serial", "sn-0042"))), table.get).writes == {
        k: v for k, v in before.items()}  # the same record writes the same bytes


def test_a_corrected_record_takes_dropped_identifiers_off_and_release_and_tombstone_empty_the_register():
    table = Table()
    table.fold("ZT-1", record(identifiers=(("vin", VIN), ("vin", VIN2))))
    table.fold("ZT-1", record(identifiers=(("vin", VIN),), at=T + timedelta(hours=1)))
    assert goods_key(VIN2) not in table and goods_key(VIN) in table
    assert table.fold("ZT-1", record(status="released", at=T + timedelta(days=2))) == "released"
    assert goods_key(VIN) not in table and decode_import(table[import_key("ZT-1")]).identifiers == ()
    # A stale copy of the import record cannot put the released goods back.
    assert table.fold("ZT-1", record(at=T + timedelta(days=1))) == "stale" and goods_key(VIN) not in table
    assert table.fold("ZT-1", None) == "deleted" and table == {}
    assert table.fold("ZT-1", None) == "unchanged"


def test_an_identifier_belongs_to_the_last_import_that_registered_it():
    table = Table()
    table.fold("ZT-1", record())
    change = fold_import("ZT-2", record("ZT-2"), table.get)
    assert change.conflicts == 1
    table.fold("ZT-2", record("ZT-2"))
    table.fold("ZT-1", record(status="released", at=T + timedelta(days=1)))  # ZT-1's release leaves ZT-2's entry
    assert decode_goods(table[goods_key(VIN)]).import_id == "ZT-2"


def test_registered_goods_declared_to_the_mainland_are_inspected_and_warned_of():
    table = Table()
    table.fold("ZT-1", record())
    decl = leaving(VIN.lower(), VIN2)
    found = registered_goods(table, decl)
    assert [g.identifier for g in found] == [VIN]
    d = decide(POLICY, decl, UNKNOWN_ENTERPRISE, 0.0, registered=found)
    assert d.action is Action.INSPECT and d.selection_reason is SelectionReason.RULE and d.rules == (GOODS_LEAVING,)
    assert d.reasons[0].startswith(f"zero-tariff goods declared second-line-out: {VIN} on the zero-tariff register (import ZT-1 of E-ZT)")
    (warning,) = d.warnings
    assert (warning.rule, warning.severity, warning.subject_kind, warning.subject_id) == (
        GOODS_LEAVING, Severity.HIGH, SubjectKind.VEHICLE, VIN)
    assert any("zero-tariff import ZT-1 of E-ZT (declaration IMP-1, hs 870323" in line for line in warning.evidence)


@pytest.mark.parametrize("direction", ["second-line-in", "first-line-in", None])
def test_other_directions_are_not_the_rules_business(direction):
    table = Table()
    table.fold("ZT-1", record())
    decl = leaving(VIN, direction=direction)
    d = decide(POLICY, decl, UNKNOWN_ENTERPRISE, 0.0, registered=registered_goods(table, decl))
    assert d.action is Action.RELEASE and d.rules == () and d.warnings == ()


def test_the_policy_names_the_action_severity_and_directions():
    table = Table()
    table.fold("ZT-1", record(identifiers=(("hull", "CN-HN-42"),)))
    config = ZeroTariff(declared_action=Action.MACHINE_CHECK, declared_severity=Severity.MEDIUM)
    policy = POLICY.model_copy(update={"zero_tariff": config})
    decl = declaration(direction="second-line-out", goods_identifiers=[{"kind": "serial", "value": "cn-hn-42"}])
    d = decide(policy, decl, UNKNOWN_ENTERPRISE, 0.0, registered=registered_goods(table, decl))
    assert d.action is Action.MACHINE_CHECK and d.warnings[0].severity is Severity.MEDIUM
    assert d.warnings[0].subject_kind is SubjectKind.VESSEL  # the register's kind, not the declarant's


def test_hostile_identifiers_are_refused_by_the_schema():
    with pytest.raises(ValidationError, match="is not a VIN"):
        leaving("LSVAU2180N218329O")  # the letter O is not in a VIN
    with pytest.raises(ValidationError, match="given twice"):
        leaving(VIN, VIN.lower())
    with pytest.raises(ValidationError):
        leaving(*[f"LSVAU2180N2{n:06d}" for n in range(101)])  # more than 100 per declaration
    with pytest.raises(ValidationError):
        declaration(goods_identifiers=[{"kind": "serial", "value": "a/b"}])  # not an identifier's characters
    with pytest.raises(ValidationError):
        record(identifiers=tuple(("serial", f"SN{n:05d}") for n in range(1001)))  # more than 1000 per import


def test_the_island_outline_tells_haikou_from_the_mainland_and_the_sea():
    config = ZeroTariff()
    assert on_island(config, 20.03, 110.32) and on_island(config, 18.25, 109.50)
    assert not on_island(config, 20.35, 110.15) and not on_island(config, 20.60, 110.40) and not on_island(config, 23.1, 113.3)
