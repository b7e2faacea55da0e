"""Zero-tariff goods in a simulated history: the register and planted violations with hidden truth.

``plant_zero_tariff`` writes ``<stem>.zero-tariff.jsonl`` beside a history file: imports of vehicles,
vessels and serial-numbered machines by zero-tariff qualified enterprises (``ZeroTariffImport``
records, imported before the history starts; a share released, duty paid, also before it). It then
rewrites some of the history's clean declarations into second-line declarations naming goods:

* violations (hidden truth ``fraud_pattern = "zero-tariff-goods-leaving"``, fraud 1): declared
  ``second-line-out`` (to the mainland) naming registered, unreleased goods;
* decoys that are not violations: ``second-line-out`` naming released goods or goods that were never
  registered, and ``second-line-in`` (onto the island) naming registered goods.

So ``riskctl backtest`` reports the rule's catches, misses and false alarms. The same seed gives the
same files.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from portsim.history import history_schema
from portsim.traffic import PortOffice
from schemas import ZeroTariffImport

PATTERN = "zero-tariff-goods-leaving"
SHARE = 0.001  # of the history's declarations: violations, and as many decoys of each kind
IMPORTERS = 300  # zero-tariff enterprises with registered imports, at most
RELEASED_SHARE = 0.15  # of imports: duty paid before the history starts
_VIN_CHARS = np.array(list("ABCDEFGHJKLMNPRSTUVWXYZ0123456789"))
# (kind, HS code, description, identifier kind)
GOODS = (
    ("vehicle", "870323", "passenger car for the enterprise's own use", "vin"),
    ("vehicle", "870421", "light goods vehicle for the enterprise's own use", "vin"),
    ("vessel", "890399", "yacht for the enterprise's own use", "hull"),
    ("machine", "847989", "production machinery for the enterprise's own use", "serial"),
)


def zero_tariff_path(history: Path) -> Path:
    stem = history.with_suffix("")
    return stem.with_name(stem.name + ".zero-tariff.jsonl")


def _identifier(rng: np.random.Generator, kind: str, n: int) -> str:
    if kind == "vin":
        return "".join(rng.choice(_VIN_CHARS, 17))
    if kind == "hull":
        return f"HN-{int(rng.integers(2015, 2027))}-{n:06d}"
    return f"SN-{int(rng.integers(16**8)):08X}-{n:05d}"


def _register(office: PortOffice, rng: np.random.Generator, start: datetime) -> list[ZeroTariffImport]:
    pop = office.population
    qualified = np.flatnonzero(pop.zero_tariff)
    importers = rng.choice(qualified, size=min(IMPORTERS, len(qualified)), replace=False) if len(qualified) else []
    records: list[ZeroTariffImport] = []
    serial = 0
    for e in importers:
        for k in range(int(rng.integers(1, 4))):
            _, hs, description, id_kind = GOODS[int(rng.integers(len(GOODS)))]
            count = int(rng.integers(1, 5))
            identifiers = []
            for _ in range(count):
                serial += 1
                identifiers.append({"kind": id_kind, "value": _identifier(rng, id_kind, serial)})
            imported = start - timedelta(days=float(rng.uniform(30, 700)))
            fields = dict(import_id=f"ZT-{pop.ids[e]}-{k}", enterprise_id=pop.ids[e], import_declaration_id=f"IMP-{pop.ids[e]}-{k}",
                          hs_code=hs, description=description, quantity=float(count), identifiers=identifiers,
                          imported_at=imported)
            records.append(ZeroTariffImport.model_validate({**fields, "event_time": imported}, strict=False))
            if rng.random() < RELEASED_SHARE:
                released = start - timedelta(days=float(rng.uniform(1, 29)))
                records.append(ZeroTariffImport.model_validate({**fields, "status": "released", "event_time": released},
                                                               strict=False))
    return sorted(records, key=lambda r: r.event_time)


def plant_zero_tariff(office: PortOffice, history: Path, seed: int) -> tuple[Path, int, int]:
    """Write the register beside ``history`` and plant the violations and decoys in it (rewritten in
    place). Returns the register's path, its records and the violations planted."""
    df = pl.read_parquet(history)
    rng = np.random.default_rng(np.random.SeedSequence([seed, 1717]))
    start = df["event_time"].min()
    assert isinstance(start, datetime)
    records = _register(office, rng, start.astimezone(UTC))
    path = zero_tariff_path(history)
    path.write_bytes(b"".join(r.model_dump_json(exclude_none=True).encode() + b"\n" for r in records))
    released = {r.import_id for r in records if r.status.value == "released"}
    held = [(r, i) for r in records if r.status.value == "imported" and r.import_id not in released for i in r.identifiers]
    gone = [(r, i) for r in records if r.import_id in released and r.status.value == "imported" for i in r.identifiers]
    clean = np.flatnonzero((df["fraud"] == 0).to_numpy())
    k = max(1, round(df.height * SHARE))
    if not held or len(clean) < 4 * k:
        return path, len(records), 0
    rows = rng.choice(clean, size=4 * k, replace=False)
    direction = [None] * df.height
    identifiers: list[list[dict[str, str]] | None] = [None] * df.height
    hs = df["hs_code"].to_list()
    fraud, pattern, critical = df["fraud"].to_list(), df["fraud_pattern"].to_list(), df["critical_fraud"].to_list()
    duty = df["duty_recoverable"].to_list()
    value, rate = df["declared_value"].to_list(), df["tax_rate"].to_list()
    unregistered = 0
    for n, row in enumerate(rows):
        kind = n // k  # 0: violation, 1: released goods, 2: never registered, 3: coming onto the island
        if kind == 0 or kind == 3:
            record, identifier = held[int(rng.integers(len(held)))]
        elif kind == 1 and gone:
            record, identifier = gone[int(rng.integers(len(gone)))]
        else:
            unregistered += 1
            record, identifier = None, {"kind": "vin", "value": "".join(rng.choice(_VIN_CHARS, 17))}
        direction[row] = "second-line-in" if kind == 3 else "second-line-out"
        identifiers[row] = [identifier.model_dump(mode="json") if not isinstance(identifier, dict) else identifier]
        if record is not None:
            hs[row] = record.hs_code
        if kind == 0:
            fraud[row], pattern[row], critical[row] = 1, PATTERN, 1
            duty[row] = round(value[row] * max(rate[row], 10.0) / 100, 2)  # the duty the zero-tariff import saved
    table = df.with_columns(
        pl.Series("direction", direction, dtype=pl.String), pl.Series("hs_code", hs, dtype=pl.String),
        pl.Series("goods_identifiers", identifiers, dtype=pl.List(pl.Struct({"kind": pl.String, "value": pl.String}))),
        pl.Series("fraud", fraud, dtype=df["fraud"].dtype), pl.Series("fraud_pattern", pattern, dtype=pl.String),
        pl.Series("critical_fraud", critical, dtype=df["critical_fraud"].dtype),
        pl.Series("duty_recoverable", duty, dtype=df["duty_recoverable"].dtype),
    ).to_arrow()
    schema = history_schema()
    table = pa.Table.from_arrays([table.column(f.name).cast(f.type) for f in schema], schema=schema)
    tmp = history.with_name(history.name + ".partial")
    pq.write_table(table, tmp, compression="zstd", row_group_size=131_072)
    tmp.replace(history)
    return path, len(records), k


def simulate_register(office: PortOffice, seed: int, start: datetime) -> list[ZeroTariffImport]:
    """The register of ``office``'s zero-tariff enterprises as of ``start`` (imports before it, some
    released before it), oldest record first; what a live run publishes (``portsim.tracking``)."""
    return _register(office, np.random.default_rng(np.random.SeedSequence([seed, 1717])), start.astimezone(UTC))
