"""The hidden truth shows in the declared fields the way each fraud pattern should."""

from __future__ import annotations

from collections import defaultdict

import numpy as np

from portsim import world
from portsim.population import AEO, FOCUS
from portsim.traffic import ALL_PATTERNS, PortOffice


def _usd_unit_value(d: dict) -> float:
    return d["declared_value"] / world.FX_PER_USD[d["currency"]] / d["net_mass_kg"]


def test_fraud_rate_is_plausible(sample: list) -> None:
    rate = np.mean([t.fraud for _, t in sample])
    assert 0.01 < rate < 0.05
    patterns = {t.pattern for _, t in sample if t.fraud}
    assert patterns == set(ALL_PATTERNS)


def test_labels_are_consistent(sample: list) -> None:
    for _, t in sample:
        if not t.fraud:
            assert (t.pattern, t.category, t.duty_recoverable, t.critical) == (None, None, 0.0, 0)
        else:
            assert t.pattern in ALL_PATTERNS and t.category and t.critical in (1, 2)
            assert t.duty_recoverable >= 0
            if t.critical == 2:
                assert t.category in ("narcotics", "weapons")
    revenue = [t for _, t in sample if t.fraud and t.pattern != "risky-route"]
    assert np.mean([t.duty_recoverable > 0 for t in revenue]) > 0.9


def test_undervalued_goods_have_lower_unit_value_for_the_same_code(sample: list) -> None:
    clean: dict[str, list[float]] = defaultdict(list)
    for d, t in sample:
        if not t.fraud:
            clean[d["hs_code"]].append(np.log(_usd_unit_value(d)))
    gaps = [np.log(_usd_unit_value(d)) - np.mean(clean[d["hs_code"]])
            for d, t in sample if t.pattern == "undervaluation" and len(clean[d["hs_code"]]) >= 20]
    assert len(gaps) > 500
    assert np.mean(gaps) < -0.6  # declared at 20-60% of the true value: about log(0.4)


def test_misclassification_declares_a_cheaper_code(sample: list, office: PortOffice) -> None:
    cat = office.catalogue
    index = {c: i for i, c in enumerate(cat.codes)}
    rows = [(d, t) for d, t in sample if t.pattern == "hs-misclassification"]
    assert len(rows) > 200
    for d, t in rows:
        assert d["hs_code"] != t.true_hs_code
        assert d["hs_code"][:2] == t.true_hs_code[:2]
        assert cat.rate[index[d["hs_code"]]] < cat.rate[index[t.true_hs_code]]


def test_origin_laundering_claims_a_transit_origin(sample: list) -> None:
    rows = [(d, t) for d, t in sample if t.pattern == "origin-laundering"]
    assert len(rows) > 100
    for d, t in rows:
        assert d["origin_country"] in world.TRANSIT_COUNTRIES
        assert d["departure_country"] == d["origin_country"] != t.true_origin
        assert d["origin_indicator"] == "P"
        assert (t.true_origin, d["hs_code"][:2]) in world.SURCHARGES
    # Transit origins are unusual for these goods among clean declarations.
    clean_share = np.mean([d["origin_country"] in world.TRANSIT_COUNTRIES for d, t in sample if not t.fraud])
    assert clean_share < 0.35


def test_risky_routes(sample: list) -> None:
    rows = [(d, t) for d, t in sample if t.pattern == "risky-route"]
    assert len(rows) > 100
    for d, _t in rows:
        assert (d["origin_country"], d["departure_country"]) in world.RISKY_ROUTES
    on_route = [t.fraud for d, t in sample if (d["origin_country"], d["departure_country"]) in world.RISKY_ROUTES]
    assert np.mean(on_route) > 5 * np.mean([t.fraud for _, t in sample])


def test_repeat_offenders_and_credit_classes(sample: list, office: PortOffice) -> None:
    pop = office.population
    offender = np.array([t.repeat_offender for _, t in sample])
    fraud = np.array([t.fraud for _, t in sample])
    assert offender.any()
    assert fraud[offender].mean() > 5 * fraud[~offender].mean()
    cls = pop.credit_class[[int(d["enterprise_id"][3:]) for d, _ in sample]]
    assert fraud[cls == FOCUS].mean() > 3 * fraud[cls == AEO].mean()
    # Offenders are concentrated: a few enterprises commit a large share of the fraud.
    assert offender[fraud].mean() > 0.1


def test_truth_for_regenerates_from_the_id(office: PortOffice, sample: list) -> None:
    for d, t in sample[::4_999]:
        assert office.truth_for(d["declaration_id"]) == t
        record = office.record_for(d["declaration_id"])
        assert record["port"] == d["port"] and record["enterprise_id"] == d["enterprise_id"]
    assert office.truth_for("D8-0000000001") is None  # another seed
    assert office.truth_for("CUSTOMS-123") is None
    # A separate office with the same seed (another process) reproduces it.
    other = PortOffice(seed=7)
    d, t = sample[98_765]
    assert other.truth_for(d["declaration_id"]) == t


def test_value_added_inflation_claims_pass_the_threshold_it_truly_misses(sample: list) -> None:
    inflated = [(d, t) for d, t in sample if t.pattern == "value-added-inflation"]
    processing = [(d, t) for d, t in sample if d["scenario"] == "processing-value-added"]
    assert inflated and len(inflated) < 0.2 * len(processing)
    for d, t in inflated:
        assert d["value_added"] / d["imported_material_value"] > 0.30  # the claim passes
        assert t.category == "value-added-overstated" and t.duty_recoverable >= 0
    assert np.mean([t.duty_recoverable > 0 for _, t in inflated]) > 0.5  # goods at a 0 % rate owe nothing
    for d, _ in sample:  # the amounts come with the processing scenario only, and add up to the declared value
        if d["scenario"] == "processing-value-added":
            assert abs(d["imported_material_value"] + d["value_added"] - d["declared_value"]) < 0.02
        else:
            assert d["imported_material_value"] is None and d["value_added"] is None
