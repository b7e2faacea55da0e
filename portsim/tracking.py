"""Zero-tariff goods for a live run (``riskctl demo``): the register and the positioning system.

``live_register`` is the register of ``portsim.zerotariff`` as of now (imports of the seed's
zero-tariff enterprises, some released). ``live_positions`` tells a few stories about the
registered vehicles and vessels, each with the warning it should raise:

* away too long: left the island more than ``allowed_days_away`` ago and seen off it since
  (``zero-tariff-left-island``, then ``zero-tariff-away-too-long`` at once);
* away and back: left recently and came back (``zero-tariff-left-island`` only);
* a vessel passing a port's gate (``zero-tariff-port-passage``);
* routine fixes on the island (no warning).

``leaving_declaration`` rewrites a declaration into a second-line-out declaration naming registered,
unreleased goods (``zero-tariff-goods-leaving``). Machines (serial numbers) are not tracked. The
same seed gives the same records.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import numpy as np

from policy.config import ZeroTariff
from portsim.traffic import PortOffice
from portsim.zerotariff import simulate_register
from schemas import GoodsIdentifier, PositionEvent, ZeroTariffImport

STORIES = 4  # identifiers per story (fewer when fewer are registered)
ROUTINE = 20  # identifiers with on-island fixes only
TRACKER = "HN-POS-SIM"
MAINLAND = (21.27, 110.36)  # Zhanjiang, across the strait
ISLAND = (20.03, 110.33)  # Haikou
PASSAGE_PORT = "HAK-SEA"


@dataclass(frozen=True)
class HeldGoods:
    """One identifier of an import still under zero-tariff supervision."""

    import_id: str
    enterprise_id: str
    hs_code: str
    identifier: GoodsIdentifier


def live_register(office: PortOffice, seed: int, now: datetime) -> list[ZeroTariffImport]:
    """The register's records, oldest first (a released import's release follows its import)."""
    return simulate_register(office, seed, now)


def held_goods(register: list[ZeroTariffImport]) -> list[HeldGoods]:
    """The identifiers on the register once every record is applied (an import's last record wins)."""
    last: dict[str, ZeroTariffImport] = {}
    for record in register:
        last[record.import_id] = record
    return [HeldGoods(r.import_id, r.enterprise_id, r.hs_code, i) for r in last.values() if r.status.value == "imported"
            for i in r.identifiers]


def _event(n: int, goods: HeldGoods, event_type: str, at: datetime, **where: Any) -> PositionEvent:
    kind = "vessel" if goods.identifier.kind.value == "hull" else "vehicle"
    return PositionEvent.model_validate({"event_id": f"POS-SIM-{n:06d}", "identifier": goods.identifier.value, "kind": kind,
                                         "event_type": event_type, "tracker_id": TRACKER, "event_time": at, **where}, strict=False)


def live_positions(held: list[HeldGoods], seed: int, now: datetime, config: ZeroTariff) -> tuple[list[PositionEvent], dict[str, int]]:
    """The positioning system's events about ``held`` (each identifier's in time order) and how many
    warnings of each rule they should raise."""
    rng = np.random.default_rng(np.random.SeedSequence([seed, 1818]))
    vehicles = [g for g in held if g.identifier.kind.value == "vin"]
    vessels = [g for g in held if g.identifier.kind.value == "hull"]
    order = rng.permutation(len(vehicles))
    away, back = [vehicles[i] for i in order[:STORIES]], [vehicles[i] for i in order[STORIES:2 * STORIES]]
    routine = [vehicles[i] for i in order[2 * STORIES:2 * STORIES + ROUTINE]]
    passing = [vessels[i] for i in rng.permutation(len(vessels))[:STORIES]]
    allowed = timedelta(days=config.allowed_days_away)
    events: list[PositionEvent] = []
    for goods in away:
        left = now - allowed - timedelta(days=float(rng.uniform(2, 30)))
        events.append(_event(len(events), goods, "exit-island", left))
        events.append(_event(len(events), goods, "position", now - timedelta(hours=float(rng.uniform(1, 20))),
                             latitude=MAINLAND[0], longitude=MAINLAND[1]))
    for goods in back:
        left = now - timedelta(days=float(rng.uniform(5, 20)))
        events.append(_event(len(events), goods, "exit-island", left))
        events.append(_event(len(events), goods, "enter-island", left + timedelta(days=float(rng.uniform(1, 4)))))
    for goods in passing:
        events.append(_event(len(events), goods, "port-passage", now - timedelta(hours=float(rng.uniform(1, 20))), port=PASSAGE_PORT))
    for goods in routine:
        events.append(_event(len(events), goods, "position", now - timedelta(minutes=float(rng.uniform(5, 600))),
                             latitude=ISLAND[0], longitude=ISLAND[1]))
    expected = {"zero-tariff-left-island": len(away) + len(back), "zero-tariff-away-too-long": len(away),
                "zero-tariff-port-passage": len(passing)}
    return events, expected


def leaving_declaration(record: dict[str, Any], goods: HeldGoods) -> dict[str, Any]:
    """``record`` declared to the mainland naming ``goods``: duty is due, so the rule inspects it."""
    return {**record, "direction": "second-line-out", "hs_code": goods.hs_code,
            "goods_identifiers": [goods.identifier.model_dump(mode="json")]}
