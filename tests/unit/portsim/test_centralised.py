"""The simulator's centralised declarations: valid records, items with their own ground truth."""

from __future__ import annotations

import orjson

from portsim.centralised import CentralisedBuilder, may_centralise
from portsim.population import CLASS_VALUES
from portsim.traffic import PortOffice
from schemas import CentralisedDeclaration, CreditClass, codec

ALLOWED = (CreditClass.AEO, CreditClass.WHITE_LIST)


def test_builder_makes_a_valid_centralised_declaration_of_same_scenario_goods(small_office: PortOffice) -> None:
    stream = small_office.declaration_dicts(2000)
    record, truth = next((r, t) for r, t in stream if may_centralise(small_office.population, r["enterprise_id"], ALLOWED))
    builder = CentralisedBuilder.start("C11-000000", 5, record, truth)
    declined = 0
    for r, t in stream:
        if builder.full:
            break
        declined += not builder.offer(r, t)
    assert builder.full and not builder.offer(record, truth)
    parsed = codec.parse(CentralisedDeclaration, orjson.dumps(builder.record("2026-11-28T10:00:00Z")))
    assert parsed.enterprise_id == record["enterprise_id"] and len(parsed.items) == 5
    assert [d.declaration_id for d in parsed.item_declarations()] == builder.item_ids() == [f"C11-000000-{n:04d}" for n in range(1, 6)]
    assert {g["scenario"] for g, _ in builder.goods} == {record["scenario"]}
    assert list(builder.truths().values()) == [t for _, t in builder.goods]
    assert parsed.items[1].hs_code == builder.goods[1][0]["hs_code"]


def test_only_allowed_classes_without_joint_penalty_may_centralise(small_office: PortOffice) -> None:
    pop = small_office.population
    for i in range(0, pop.size, 37):
        eid = pop.ids[i]
        expected = CLASS_VALUES[int(pop.credit_class[i])] in ALLOWED and not pop.joint_penalty[i]
        assert may_centralise(pop, eid, ALLOWED) == expected
    assert not any(may_centralise(pop, pop.ids[i], ()) for i in range(50))
