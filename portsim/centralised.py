"""Centralised declarations in the simulated office: an enterprise the policy trusts declares several
goods items in one message.

The simulator has no separate model for them: a builder takes one generated declaration as the
header and first item, then the goods of the next generated declarations of the same scenario as
further items. Each item keeps the ground truth of the declaration its goods came from, so the
scanners and stations treat it like any other declaration.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Any

from portsim.population import CLASS_VALUES, Population
from portsim.traffic import GroundTruth
from schemas import CreditClass
from schemas.records import FORM_FIELDS

HEADER_FIELDS = ("port", "enterprise_id", "declarant_id", "scenario", "transport_mode", "departure_country", *FORM_FIELDS)
ITEM_FIELDS = ("hs_code", "origin_country", "declared_value", "currency", "quantity", "net_mass_kg", "tax_rate", "seller_id")


def may_centralise(population: Population, enterprise_id: str, allowed: Collection[CreditClass]) -> bool:
    """Initially of an allowed class and not under joint penalty. Lifecycle events may change that
    later: the worker then refuses the declaration (dead letter)."""
    index = int(enterprise_id[3:])  # "460" + 7 digits, see population.enterprise_id
    return CLASS_VALUES[int(population.credit_class[index])] in allowed and not bool(population.joint_penalty[index])


@dataclass
class CentralisedBuilder:
    centralised_id: str
    size: int  # goods items wanted
    header: dict[str, Any]
    goods: list[tuple[dict[str, Any], GroundTruth]] = field(default_factory=list)

    @classmethod
    def start(cls, centralised_id: str, size: int, record: dict[str, Any], truth: GroundTruth) -> CentralisedBuilder:
        return cls(centralised_id, size, {k: record[k] for k in HEADER_FIELDS}, [(record, truth)])

    def offer(self, record: dict[str, Any], truth: GroundTruth) -> bool:
        """Take the goods of ``record`` as the next item if the scenario matches; False: publish it alone."""
        if record["scenario"] != self.header["scenario"] or self.full:
            return False
        self.goods.append((record, truth))
        return True

    @property
    def full(self) -> bool:
        return len(self.goods) >= self.size

    def item_ids(self) -> list[str]:
        return [f"{self.centralised_id}-{n:04d}" for n in range(1, len(self.goods) + 1)]

    def truths(self) -> dict[str, GroundTruth]:
        return dict(zip(self.item_ids(), (truth for _, truth in self.goods)))

    def record(self, event_time: str) -> dict[str, Any]:
        """The JSON-ready ``CentralisedDeclaration`` (optional fields left out when empty)."""
        items = [{"item_no": n, **{k: goods[k] for k in ITEM_FIELDS if goods.get(k) is not None}}
                 for n, (goods, _) in enumerate(self.goods, start=1)]
        header = {k: v for k, v in self.header.items() if v is not None}
        return {"schema_version": 1, "centralised_id": self.centralised_id, "revision": 1, **header,
                "event_time": event_time, "items": items}
