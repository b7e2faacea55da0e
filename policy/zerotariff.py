"""Zero-tariff goods: the register of tariff-free imports and the rule for goods that leave with it.

Goods imported tariff-free by qualified enterprises for their own use on the island may not go to
the mainland without duty. Customs registers each import (``schemas.ZeroTariffImport``): the
enterprise, the goods, and the identifiers of the individual goods (VIN, hull, serial numbers).

**The register** is folded (``fold_import``) into one table of two kinds of keys:

* ``i:<import_id>`` -> ``RegisteredImport``: the import's identifiers as last registered, so that a
  corrected record can take the identifiers it no longer names off the register;
* ``g:<IDENTIFIER>`` -> ``RegisteredGoods``: what a declaration or a tracker names, looked up per
  identifier (upper-cased: a declarant cannot dodge the match by the letter case or the kind).

An identifier belongs to one import, the last that registered it (a second import of the same VIN
is a data error customs resolves; it is counted). A ``released`` record takes the goods off the
register and keeps the import's key with no identifiers, so that a stale copy of the import record
cannot put them back; a null value (a tombstone on the compacted topic) deletes the import
altogether. The register's size is what customs keeps on it: unreleased goods.

**Positioning** (``decision.positions``): position and geofence events of registered vehicles and
vessels; ``on_island`` tells a fix on the island from one off it (the policy's outline).

**The rule** (``check_declaration``): a declaration in one of ``zero_tariff.directions`` (second
line out, to the mainland, by default) naming registered, unreleased goods -> the policy's action
(inspect) with the reason, and an early warning whose evidence is the register entry.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import msgspec

from policy.config import ZeroTariff
from policy.valueadded import Finding, WarningProposal
from schemas import Declaration, IdentifierKind, SubjectKind, ZeroTariffImport, ZeroTariffStatus

GOODS_LEAVING = "zero-tariff-goods-leaving"
LEFT_ISLAND = "zero-tariff-left-island"  # a tracked vehicle or vessel left the island
AWAY_TOO_LONG = "zero-tariff-away-too-long"  # ... and stayed away longer than allowed
PORT_PASSAGE = "zero-tariff-port-passage"  # ... passed a port's gate
RULES = (GOODS_LEAVING, LEFT_ISLAND, AWAY_TOO_LONG, PORT_PASSAGE)
MAX_EVIDENCE_GOODS = 12  # register entries quoted in one warning (EarlyWarning holds at most 16 evidence lines)

IMPORT_PREFIX = b"i:"
GOODS_PREFIX = b"g:"


class RegisteredGoods(msgspec.Struct, frozen=True, array_like=True):
    """One identified article on the register (the value of ``g:<IDENTIFIER>``)."""

    identifier: str
    kind: str  # IdentifierKind value
    import_id: str
    enterprise_id: str
    import_declaration_id: str
    hs_code: str
    description: str
    quantity: float
    imported_at: float  # epoch seconds

    def subject_kind(self) -> SubjectKind:
        return _SUBJECT.get(self.kind, SubjectKind.GOODS)

    def evidence(self) -> str:
        return (f"{self.kind} {self.identifier}: zero-tariff import {self.import_id} of {self.enterprise_id} "
                f"(declaration {self.import_declaration_id}, hs {self.hs_code}, {self.description[:60]})")[:200]


class RegisteredImport(msgspec.Struct, frozen=True, array_like=True):
    """An import as last registered (the value of ``i:<import_id>``); a released one has no identifiers."""

    status: str  # ZeroTariffStatus value
    event_time: float  # of the record folded last: an older record is stale
    identifiers: tuple[str, ...] = ()


_SUBJECT = {IdentifierKind.VIN.value: SubjectKind.VEHICLE, IdentifierKind.HULL.value: SubjectKind.VESSEL}
_goods_encoder = msgspec.msgpack.Encoder()
_goods_decoder = msgspec.msgpack.Decoder(RegisteredGoods)
_import_decoder = msgspec.msgpack.Decoder(RegisteredImport)


def goods_key(identifier: str) -> bytes:
    return GOODS_PREFIX + identifier.upper().encode()


def import_key(import_id: str) -> bytes:
    return IMPORT_PREFIX + import_id.encode()


def encode(value: RegisteredGoods | RegisteredImport) -> bytes:
    return _goods_encoder.encode(value)


def decode_goods(raw: bytes) -> RegisteredGoods:
    return _goods_decoder.decode(raw)


def decode_import(raw: bytes) -> RegisteredImport:
    return _import_decoder.decode(raw)


@dataclass(slots=True)
class RegisterChange:
    """The table writes of one register record (value None: delete the key), and what it did."""

    writes: dict[bytes, bytes | None] = field(default_factory=dict)
    outcome: str = "applied"  # applied | released | deleted | stale | unchanged
    conflicts: int = 0  # identifiers taken over from another import


def fold_import(import_id: str, record: ZeroTariffImport | None, read: Callable[[bytes], bytes | None]) -> RegisterChange:
    """The writes that fold one register record (None: the import's tombstone) into the table that
    ``read`` reads. Pure: the same record against the same table gives the same writes, so a
    redelivered record changes nothing."""
    change = RegisterChange()
    raw = read(import_key(import_id))
    previous = decode_import(raw) if raw else None
    if record is None:
        if previous is None:
            change.outcome = "unchanged"
            return change
        _drop(change, import_id, previous.identifiers, read)
        change.writes[import_key(import_id)] = None
        change.outcome = "deleted"
        return change
    at = record.event_time.timestamp()
    if previous is not None and at < previous.event_time:
        change.outcome = "stale"
        return change
    released = record.status is ZeroTariffStatus.RELEASED
    keep = () if released else tuple(i.register_key() for i in record.identifiers)
    if previous is not None:
        _drop(change, import_id, tuple(set(previous.identifiers) - set(keep)), read)
    imported_at = record.imported_at.timestamp()
    for identifier in record.identifiers if not released else ():
        key = goods_key(identifier.value)
        held = read(key)
        if held and decode_goods(held).import_id != import_id:
            change.conflicts += 1
        change.writes[key] = encode(RegisteredGoods(
            identifier.register_key(), identifier.kind.value, import_id, record.enterprise_id, record.import_declaration_id,
            record.hs_code, record.description, record.quantity, imported_at))
    change.writes[import_key(import_id)] = encode(RegisteredImport(record.status.value, at, keep))
    change.outcome = "released" if released else "applied"
    return change


def _drop(change: RegisterChange, import_id: str, identifiers: Sequence[str], read: Callable[[bytes], bytes | None]) -> None:
    """Delete the goods keys of ``identifiers`` that still belong to ``import_id`` (one another import
    took over stays with it)."""
    for identifier in sorted(identifiers):
        key = goods_key(identifier)
        held = read(key)
        if held and decode_goods(held).import_id == import_id:
            change.writes[key] = None


def registered_goods(contents: Mapping[bytes, bytes], declaration: Declaration) -> list[RegisteredGoods]:
    """The register entries of the goods a declaration names, in the declaration's order."""
    found = []
    for identifier in declaration.goods_identifiers or ():
        raw = contents.get(goods_key(identifier.value))
        if raw:
            found.append(decode_goods(raw))
    return found


def check_declaration(config: ZeroTariff, decl: Declaration, registered: Sequence[RegisteredGoods]) -> list[Finding]:
    """What the zero-tariff rule says about a declaration: registered, unreleased goods declared in
    one of the watched directions are not released (inspect by default) and warned of."""
    if not registered or decl.direction not in config.directions:
        return []
    direction = decl.direction.value if decl.direction is not None else "no direction"
    first = registered[0]
    evidence = (
        f"declared {direction} at {decl.port} by {decl.enterprise_id}, declaration {decl.declaration_id}",
        *(goods.evidence() for goods in registered[:MAX_EVIDENCE_GOODS]),
        *((f"and {len(registered) - MAX_EVIDENCE_GOODS} more registered identifiers",) if len(registered) > MAX_EVIDENCE_GOODS else ()),
    )
    warning = WarningProposal(GOODS_LEAVING, config.declared_severity, first.subject_kind(), first.identifier, evidence)
    named = ", ".join(g.identifier for g in registered[:3]) + (f" and {len(registered) - 3} more" if len(registered) > 3 else "")
    reason = (f"zero-tariff goods declared {direction}: {named} on the zero-tariff register "
              f"(import {first.import_id} of {first.enterprise_id}); duty due, not released; early warning raised")
    return [Finding(GOODS_LEAVING, config.declared_action, reason, warning)]


def on_island(config: ZeroTariff, latitude: float, longitude: float) -> bool:
    """Is the fix inside the policy's outline of the island (ray casting; a point on an edge may fall
    either way, which the tracking system's geofence events make moot)?"""
    inside = False
    outline = config.island
    lat_j, lon_j = outline[-1]
    for lat_i, lon_i in outline:
        if (lon_i > longitude) != (lon_j > longitude):
            crossing = lat_i + (longitude - lon_i) * (lat_j - lat_i) / (lon_j - lon_i)
            if latitude < crossing:
                inside = not inside
        lat_j, lon_j = lat_i, lon_i
    return inside
