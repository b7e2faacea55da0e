"""The one feature definition, shared by training (polars frames) and serving (micro-batches).

Both paths first reduce their input to the same ``Columns`` (lists of strings, float64 arrays)
and then call :func:`build_matrix`, so a declaration gets bit-identical features offline and
online. The only difference is where history (target-encoded) statistics come from:

* training passes ``history`` computed by :func:`expanding_history`: for each row, counts of
  labelled rows with the same key *strictly earlier in time* (no leakage from the future);
* scoring passes nothing and the statistics learned from the whole training set (stored in the
  artifact as :class:`FeatureState`) are looked up.

Amounts are made comparable before any value feature: ``declared_value`` is divided by the
artifact's exchange rate for the declaration's currency (units of that currency per one unit of
the artifact's base currency; see :func:`fit_fx`). A currency without a rate gives NaN value
features: its amount is not compared with anything.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from dataclasses import field as dataclass_field
from typing import Any, cast

import numpy as np
import polars as pl

from schemas.records import VALUE_ADDED_RATIO_CAP

# Bump whenever the meaning or order of features changes: artifacts record it and loading refuses
# a model built for other definitions. 2: amounts converted to the artifact's base currency;
# history evidence below the artifact's minimum treated as none. 3: processing value-added ratio and
# its deviation from the enterprise's and the HS chapter's history.
FEATURE_VERSION = 3

SEP = "\x1f"  # joins the parts of a crossed key; cannot occur in identifiers
MIN_CATEGORY_COUNT = 3  # rarer values share code 0 with unseen ones
MIN_HS_ROWS = 5  # fewer rows than this: HS statistics fall back to the heading, then the chapter
SMOOTHING = 10.0  # Bayesian prior weight (in rows) of the smoothed fraud rates
# Exchange rates learned from training data (when no table is given, or for currencies it lacks):
MIN_FX_ROWS = 200  # training rows a currency needs for a learned rate
MIN_FX_HS_ROWS = 3  # rows per HS code in both currencies for the code to count in the comparison
MIN_FX_CODES = 20  # HS codes shared with the anchor currency needed for a learned rate
FX_DIGITS = 5  # significant digits kept of a learned rate
# Value-added ratio history (processing value-added declarations): keys with fewer declarations are
# not stored, and at most VA_MAX_KEYS enterprises (those with most declarations) are: a bounded
# artifact. Training treats a row's earlier evidence below VA_MIN_ROWS as none, as serving will.
VA_MIN_ROWS = 10
VA_MAX_KEYS = 100_000
VA_KEYS = {"enterprise": ("enterprise_id",), "hs2": ("hs2",)}

STRING_FIELDS = (
    "port", "enterprise_id", "declarant_id", "seller_id", "scenario", "hs_code", "origin_country",
    "departure_country", "transport_mode", "currency", "procedure_code", "import_type", "import_use",
    "payment_type", "tax_type", "origin_indicator", "courier_id",
)
FLOAT_FIELDS = ("declared_value", "quantity", "net_mass_kg", "tax_rate", "imported_material_value", "value_added")
_ENUM_FIELDS = frozenset({"scenario", "transport_mode"})

CATEGORICAL = (
    "port", "scenario", "transport_mode", "origin_country", "departure_country", "currency",
    "procedure_code", "import_type", "import_use", "payment_type", "tax_type", "origin_indicator", "hs2",
)
# name -> key parts; each yields "<name>_fraud_rate" and "<name>_count".
HISTORY_KEYS: dict[str, tuple[str, ...]] = {
    "importer": ("enterprise_id",),
    "declarant": ("declarant_id",),
    "seller": ("seller_id",),
    "courier": ("courier_id",),
    "hs6": ("hs6",),
    "hs4": ("hs4",),
    "office": ("port",),
    "origin": ("origin_country",),
    "office_x_importer": ("port", "enterprise_id"),
    "office_x_hs6": ("port", "hs6"),
    "importer_x_hs6": ("enterprise_id", "hs6"),
    "declarant_x_importer": ("declarant_id", "enterprise_id"),
    "origin_x_hs6": ("origin_country", "hs6"),
    "seller_x_importer": ("seller_id", "enterprise_id"),
}
NUMERIC = (
    "tax_rate", "log_value", "log_mass", "log_quantity", "log_uv_kg", "log_uv_qty",
    "uv_kg_dev", "uv_kg_z", "uv_qty_dev", "uv_qty_z", "value_dev", "mass_dev", "tax_dev",
    "hs_ref_level", "hs6_num", "hs4_num", "origin_differs", "has_seller", "has_courier",
    "va_ratio", "va_dev_enterprise", "va_dev_hs2", "va_enterprise_rows",
)
FEATURES: tuple[str, ...] = (
    *CATEGORICAL,
    *NUMERIC,
    *(f"{name}_{kind}" for name in HISTORY_KEYS for kind in ("fraud_rate", "count")),
)
INDEX = {name: i for i, name in enumerate(FEATURES)}
# Per-HS statistics, in this order, of the training rows: log unit values (per kg, per unit),
# robust spread, typical value / mass / tax rate.
HS_STATS = ("rows", "uv_kg_med", "uv_kg_iqr", "uv_qty_med", "uv_qty_iqr", "value_med", "mass_med", "tax_med")

Columns = dict[str, Any]  # str field -> list[str | None]; float field -> np.ndarray[float64]


# --------------------------------------------------------------------------------------------
# Inputs -> Columns
# --------------------------------------------------------------------------------------------

def columns_from_frame(df: pl.DataFrame) -> Columns:
    cols: Columns = {f: df[f].cast(pl.String).to_list() for f in STRING_FIELDS}
    for f in FLOAT_FIELDS:
        cols[f] = df[f].cast(pl.Float64).to_numpy().astype(np.float64, copy=False)
    return cols


_GET_ALL = operator.attrgetter(*STRING_FIELDS, *FLOAT_FIELDS)


def columns_from_records(records: Sequence[Any]) -> Columns:
    """Declarations (read by attribute, no model_dump) or plain dicts with the same fields."""
    n_str = len(STRING_FIELDS)
    if records and isinstance(records[0], Mapping):
        fields = (*STRING_FIELDS, *FLOAT_FIELDS)
        rows = [tuple(r.get(f) for f in fields) for r in records]
    else:
        rows = [_GET_ALL(r) for r in records]
    if not rows:
        return {**{f: [] for f in STRING_FIELDS}, **{f: np.empty(0) for f in FLOAT_FIELDS}}
    transposed = list(zip(*rows))
    cols: Columns = {}
    for i, f in enumerate(STRING_FIELDS):
        values: Sequence[Any] = transposed[i]
        if f in _ENUM_FIELDS:
            values = [getattr(v, "_value_", v) for v in values]  # _value_: the plain attribute (see decision.flow)
        cols[f] = list(values)
    for j, f in enumerate(FLOAT_FIELDS):
        cols[f] = np.array(transposed[n_str + j], dtype=np.float64)  # None -> nan
    return cols


def derived(cols: Columns) -> Columns:
    """Add HS chapter/heading/subheading (as strings) to a Columns dict."""
    hs = cols["hs_code"]
    cols["hs6"] = [h[:6] for h in hs]
    cols["hs4"] = [h[:4] for h in hs]
    cols["hs2"] = [h[:2] for h in hs]
    return cols


def key_values(cols: Columns, parts: tuple[str, ...]) -> list[str | None]:
    if len(parts) == 1:
        values: list[str | None] = cols[parts[0]]
        return values
    a, b = cols[parts[0]], cols[parts[1]]
    return [None if x is None or y is None else x + SEP + y for x, y in zip(a, b)]


def key_expr(parts: tuple[str, ...]) -> pl.Expr:
    """The polars twin of :func:`key_values` (null if any part is null)."""
    exprs = [_derived_expr(p) for p in parts]
    return exprs[0] if len(exprs) == 1 else pl.concat_str(exprs, separator=SEP)


def _derived_expr(name: str) -> pl.Expr:
    if name in ("hs6", "hs4", "hs2"):
        return pl.col("hs_code").str.slice(0, int(name[2:]))
    return pl.col(name).cast(pl.String)


def smoothed_rate(n: np.ndarray, s: np.ndarray, prior: np.ndarray | float) -> np.ndarray:
    """Fraud rate shrunk towards the prior: (frauds + m * prior) / (rows + m)."""
    return (s + SMOOTHING * prior) / (n + SMOOTHING)


def _safe_log(x: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.log(np.where(x > 0, x, np.nan))


# --------------------------------------------------------------------------------------------
# Learned state
# --------------------------------------------------------------------------------------------

@dataclass
class History:
    """Per-row history counts: rows ``n`` and frauds ``s`` of each key, and the global prior."""

    counts: dict[str, tuple[np.ndarray, np.ndarray]]
    prior: np.ndarray
    # Value-added ratio of earlier rows per VA_KEYS name: (rows, mean) for each row.
    value_added: dict[str, tuple[np.ndarray, np.ndarray]] = dataclass_field(default_factory=dict)


class FeatureState:
    """Everything learned from training data that scoring needs; JSON-serialisable."""

    def __init__(self, data: dict[str, Any]) -> None:
        self.data = data
        self.prior: float = (data["prior"]["frauds"] + 1.0) / (data["prior"]["rows"] + 2.0)
        self.vocab: dict[str, dict[str, int]] = {f: {v: i + 1 for i, v in enumerate(vals)}
                                                 for f, vals in data["vocab"].items()}
        # HS statistics: one matrix; dicts map an HS code at each level to its row.
        hs = data["hs"]
        rows = [hs["global"]]
        self.hs_index: dict[str, dict[str, int]] = {}
        for level in ("6", "4", "2"):
            idx: dict[str, int] = {}
            for code, stats in hs[level].items():
                idx[code] = len(rows)
                rows.append(stats)
            self.hs_index[level] = idx
        self.hs_matrix = np.array([[np.nan if v is None else v for v in r] for r in rows], dtype=np.float64)
        self.hs_level = np.array([0] + [int(lv) for lv in ("6", "4", "2") for _ in hs[lv]], dtype=np.float64)
        fx = data["fx"]
        self.fx_base: str = fx["base"]
        self.fx: dict[str, float] = {str(c): float(r) for c, r in fx["per_base"].items()}
        if any(not (r > 0 and math.isfinite(r)) for r in self.fx.values()) or self.fx.get(self.fx_base) != 1.0:
            raise ValueError("exchange rates must be positive and the base currency's rate 1")
        self.history_min_rows = int(data["history_min"]["rows"])
        self.history_min_frauds = int(data["history_min"]["frauds"])
        # History: rate/count tables with two extra slots: [-2] unseen key -> prior, [-1] no key -> nan.
        self.history: dict[str, tuple[dict[str, int], np.ndarray, np.ndarray]] = {}
        for name in HISTORY_KEYS:
            t = data["history"][name]
            n = np.asarray(t["n"], dtype=np.float64)
            s = np.asarray(t["s"], dtype=np.float64)
            rate = np.concatenate([smoothed_rate(n, s, self.prior), [self.prior, np.nan]])
            count = np.concatenate([n, [0.0, np.nan]])
            self.history[name] = ({k: i for i, k in enumerate(t["keys"])}, rate, count)
        # The same tables end to end, so that scoring looks every history key of a batch up with one
        # gather (build_matrix): name -> its first slot in history_rates / history_counts.
        self.history_base: dict[str, int] = {}
        slot = 0
        for name, (_, rate, _) in self.history.items():
            self.history_base[name], slot = slot, slot + len(rate)
        self.history_rates = np.concatenate([rate for _, rate, _ in self.history.values()])
        self.history_counts = np.concatenate([count for _, _, count in self.history.values()])
        # Value-added ratio history: (key -> row, rows, mean), with a last slot for unseen keys (0, NaN).
        self.value_added: dict[str, tuple[dict[str, int], np.ndarray, np.ndarray]] = {}
        for name in VA_KEYS:
            t = data["value_added"][name]
            self.value_added[name] = ({k: i for i, k in enumerate(t["keys"])},
                                      np.concatenate([np.asarray(t["n"], dtype=np.float64), [0.0]]),
                                      np.concatenate([np.asarray(t["mean"], dtype=np.float64), [np.nan]]))

    def to_json(self) -> dict[str, Any]:
        return self.data


def _iqr(col: str) -> pl.Expr:
    return pl.col(col).quantile(0.75, "linear") - pl.col(col).quantile(0.25, "linear")


def _hs_frame(df: pl.DataFrame, per_base: Mapping[str, float]) -> pl.DataFrame:
    def lg(c: pl.Expr) -> pl.Expr:
        return pl.when(c > 0).then(c.log()).otherwise(None)
    value = pl.col("declared_value") / _rate_expr(per_base)  # base currency; null without a rate
    return df.select(
        pl.col("hs_code"),
        (lg(value) - lg(pl.col("net_mass_kg"))).alias("uv_kg"),
        (lg(value) - lg(pl.col("quantity"))).alias("uv_qty"),
        lg(value).alias("value"),
        lg(pl.col("net_mass_kg")).alias("mass"),
        pl.col("tax_rate").alias("tax"),
    )


def _rate_expr(per_base: Mapping[str, float]) -> pl.Expr:
    return pl.col("currency").cast(pl.String).replace_strict(dict(per_base), default=None, return_dtype=pl.Float64)


# --------------------------------------------------------------------------------------------
# Exchange rates
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class FxTable:
    """Exchange rates given at training time: units of each currency per one unit of ``base``."""

    base: str
    per_base: Mapping[str, float]  # the base's own rate may be left out (it is 1)

    def __post_init__(self) -> None:
        rates: dict[str, float] = {}
        for cur, rate in self.per_base.items():
            if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not (rate > 0 and math.isfinite(rate)):
                raise ValueError(f"rate of {cur!r} must be a positive number, not {rate!r}")
            rates[str(cur)] = float(rate)
        if rates.setdefault(self.base, 1.0) != 1.0:
            raise ValueError(f"the base currency {self.base!r} must have rate 1")
        object.__setattr__(self, "per_base", rates)

    @classmethod
    def from_json(cls, doc: Any) -> FxTable:
        """``{"base": "USD", "per_base": {"CNY": 7.1, ...}}``."""
        if not isinstance(doc, Mapping) or not isinstance(doc.get("base"), str) or not isinstance(doc.get("per_base"), Mapping):
            raise ValueError('expected {"base": "<currency>", "per_base": {"<currency>": <units per base>, ...}}')
        return cls(doc["base"], doc["per_base"])


def _log_unit_values(df: pl.DataFrame) -> pl.DataFrame:
    """(currency, hs6, log value per kg) of the rows where both are positive."""
    return (df.filter((pl.col("declared_value") > 0) & (pl.col("net_mass_kg") > 0))
            .select(pl.col("currency").cast(pl.String), pl.col("hs_code").str.slice(0, 6).alias("hs6"),
                    (pl.col("declared_value").log() - pl.col("net_mass_kg").log()).alias("luv")))


def fit_fx(df: pl.DataFrame, given: FxTable | None = None) -> dict[str, Any]:
    """The exchange-rate table of an artifact: ``{"base", "per_base", "source"}``.

    Rates from ``given`` are used as they are. Other currencies of the training data get a rate
    learned from it: the median, over HS codes traded in both, of the difference of median log
    value per kg against an *anchor* currency (the most frequent currency that has a rate), when
    the currency has at least ``MIN_FX_ROWS`` rows and ``MIN_FX_CODES`` such codes. Goods of one
    HS code cost about the same whatever currency they are invoiced in, so this recovers the rate
    (to about 1% on the simulator's traffic) without an outside source. Without ``given``, the
    base is the training data's most frequent currency (rate 1), so single-currency data (KCS:
    all KRW) is left exactly as it is. Currencies with neither stay without a rate.
    """
    counts = (df.group_by(pl.col("currency").cast(pl.String)).len().drop_nulls("currency")
              .sort(["len", "currency"], descending=[True, False]))
    present = counts["currency"].to_list()
    rows = dict(zip(present, counts["len"].to_list()))
    if given is not None:
        base, rates = given.base, dict(given.per_base)
        source = {c: "given" for c in rates}
    elif present:
        base, rates, source = present[0], {present[0]: 1.0}, {present[0]: "base"}
    else:
        base, rates, source = "USD", {"USD": 1.0}, {"USD": "base"}
    todo = [c for c in present if c not in rates and rows[c] >= MIN_FX_ROWS]
    anchor = next((c for c in present if c in rates), None)
    if todo and anchor is not None:
        med = (_log_unit_values(df).group_by("currency", "hs6")
               .agg(pl.len().alias("n"), pl.col("luv").median().alias("m"))
               .filter(pl.col("n") >= MIN_FX_HS_ROWS))
        ref = med.filter(pl.col("currency") == anchor).select("hs6", pl.col("m").alias("ref"))
        for cur in todo:
            diff = med.filter(pl.col("currency") == cur).join(ref, on="hs6").select(pl.col("m") - pl.col("ref"))
            if diff.height >= MIN_FX_CODES:
                # The median of a non-empty Float64 column: a float.
                rate = rates[anchor] * math.exp(cast(float, diff.to_series().median()))
                rates[cur] = float(f"{rate:.{FX_DIGITS}g}")
                source[cur] = f"learned ({diff.height} HS codes vs {anchor})"
    return {"base": base, "per_base": dict(sorted(rates.items())), "source": dict(sorted(source.items()))}


def _hs_aggs() -> list[pl.Expr]:
    return [
        pl.col("uv_kg").count().alias("rows"),
        pl.col("uv_kg").median().alias("uv_kg_med"), _iqr("uv_kg").alias("uv_kg_iqr"),
        pl.col("uv_qty").median().alias("uv_qty_med"), _iqr("uv_qty").alias("uv_qty_iqr"),
        pl.col("value").median().alias("value_med"), pl.col("mass").median().alias("mass_med"),
        pl.col("tax").median().alias("tax_med"),
    ]


def _json_rows(frame: pl.DataFrame, key: str) -> dict[str, list[float | None]]:
    out: dict[str, list[float | None]] = {}
    for row in frame.sort(key).iter_rows():
        vals = [None if (v is None or (isinstance(v, float) and math.isnan(v))) else float(v) for v in row[1:]]
        out[row[0]] = vals
    return out


def fit_state(
    df: pl.DataFrame, fx: FxTable | None = None, history_min_rows: int = 1, history_min_frauds: int = 1,
) -> FeatureState:
    """Learn exchange rates, vocabularies, HS value ranges and whole-period history statistics.

    History keys with fewer than ``history_min_rows`` labelled rows *and* fewer than
    ``history_min_frauds`` frauds are not stored (they score like unseen keys); training applies
    the same rule to each row's earlier counts (:func:`build_matrix`), so both paths agree. The
    default (1 row) keeps every key: it only makes artifacts smaller.
    """
    if history_min_rows < 1 or history_min_frauds < 1:
        raise ValueError("history_min_rows and history_min_frauds must be at least 1")
    fx_table = fit_fx(df, fx)
    vocab: dict[str, list[str]] = {}
    for field in CATEGORICAL:
        counts = df.select(_derived_expr(field).alias("v")).drop_nulls().group_by("v").len()
        vocab[field] = sorted(counts.filter(pl.col("len") >= MIN_CATEGORY_COUNT)["v"].to_list())

    base = _hs_frame(df, fx_table["per_base"])
    hs: dict[str, Any] = {"global": [None if v is None else float(v) for v in base.select(_hs_aggs()).row(0)]}
    for level in ("6", "4", "2"):
        agg = (base.with_columns(pl.col("hs_code").str.slice(0, int(level)).alias("k"))
               .group_by("k").agg(_hs_aggs()).filter(pl.col("rows") >= MIN_HS_ROWS))
        hs[level] = _json_rows(agg.select("k", *HS_STATS), "k")

    history: dict[str, Any] = {}
    labelled = df.filter(pl.col("fraud").is_not_null())
    for name, parts in HISTORY_KEYS.items():
        agg = (labelled.select(key_expr(parts).alias("k"), pl.col("fraud"))
               .drop_nulls("k").group_by("k").agg(pl.len().alias("n"), pl.col("fraud").sum().alias("s"))
               .filter((pl.col("n") >= history_min_rows) | (pl.col("s") >= history_min_frauds))
               .sort("k"))
        history[name] = {"keys": agg["k"].to_list(), "n": agg["n"].to_list(), "s": agg["s"].to_list()}
    prior = {"rows": labelled.height, "frauds": int(labelled["fraud"].sum())}
    value_added: dict[str, Any] = {}
    claims = df.select(pl.col("enterprise_id").cast(pl.String), _derived_expr("hs2").alias("hs2"), ratio_expr().alias("r"))
    claims = claims.drop_nulls("r")
    for name, (part,) in VA_KEYS.items():
        agg = (claims.group_by(pl.col(part).alias("k")).agg(pl.len().alias("n"), pl.col("r").mean().alias("mean"))
               .filter(pl.col("n") >= VA_MIN_ROWS).sort(["n", "k"], descending=[True, False]).head(VA_MAX_KEYS).sort("k"))
        value_added[name] = {"keys": agg["k"].to_list(), "n": agg["n"].to_list(),
                             "mean": [round(float(v), 4) for v in agg["mean"].to_list()]}
    return FeatureState({"feature_version": FEATURE_VERSION, "fx": fx_table, "vocab": vocab, "hs": hs,
                         "history": history, "history_min": {"rows": history_min_rows, "frauds": history_min_frauds},
                         "prior": prior, "value_added": value_added})


def ratio_expr() -> pl.Expr:
    """The polars twin of :func:`value_added_ratios` (null where the declaration has none)."""
    imported, added = pl.col("imported_material_value"), pl.col("value_added")
    return (pl.when(imported.is_null() | added.is_null()).then(None)
            .when(imported <= 0).then(pl.lit(VALUE_ADDED_RATIO_CAP))
            .otherwise(pl.min_horizontal(added / imported, pl.lit(VALUE_ADDED_RATIO_CAP))))


def value_added_ratios(imported: np.ndarray, added: np.ndarray) -> np.ndarray:
    """``schemas.Declaration.value_added_ratio`` over arrays (NaN where a declaration has none)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(imported <= 0, VALUE_ADDED_RATIO_CAP, np.minimum(added / imported, VALUE_ADDED_RATIO_CAP))
    return np.where(np.isnan(imported) | np.isnan(added), np.nan, ratio)


def value_added_reference(cols: Columns, state: FeatureState) -> np.ndarray:
    """Per row (enterprise mean ratio, its declarations, HS chapter mean ratio, its declarations)
    from the artifact's statistics: NaN means, 0 rows for keys it does not hold."""
    cols = derived(dict(cols)) if "hs2" not in cols else cols
    out = np.empty((len(cols["hs_code"]), 4), dtype=np.float64)
    for j, (name, (part,)) in enumerate(VA_KEYS.items()):
        index, rows, means = state.value_added[name]
        get, unseen = index.get, len(rows) - 1
        idx = np.fromiter((unseen if k is None else get(k, unseen) for k in cols[part]), dtype=np.intp, count=out.shape[0])
        out[:, 2 * j], out[:, 2 * j + 1] = means[idx], rows[idx]
    return out


def expanding_history(df: pl.DataFrame) -> History:
    """Time-ordered target statistics: each row sees only labelled rows strictly earlier in time.

    Rows at the same instant do not see each other (ties are grouped before the cumulative sum).
    """
    base = df.select(pl.int_range(pl.len()).alias("_row"), pl.col("event_time").alias("t"),
                     pl.col("fraud").fill_null(0).alias("y"), pl.col("fraud").is_not_null().cast(pl.Int64).alias("l"))

    def before(frame: pl.DataFrame, by: list[str]) -> pl.DataFrame:
        g = (frame.group_by([*by, "t"]).agg(pl.col("l").sum().alias("n"), pl.col("y").sum().alias("s"))
             .sort([*by, "t"]))
        if by:
            return g.with_columns((pl.col("n").cum_sum().over(by) - pl.col("n")).alias("nb"),
                                  (pl.col("s").cum_sum().over(by) - pl.col("s")).alias("sb"))
        return g.with_columns((pl.col("n").cum_sum() - pl.col("n")).alias("nb"),
                              (pl.col("s").cum_sum() - pl.col("s")).alias("sb"))

    g = before(base, [])
    glob = base.join(g.select("t", "nb", "sb"), on="t", how="left").sort("_row")
    prior = ((glob["sb"].to_numpy() + 1.0) / (glob["nb"].to_numpy() + 2.0)).astype(np.float64)

    counts: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    keyed_src = df.select([key_expr(parts).alias(name) for name, parts in HISTORY_KEYS.items()])
    for name in HISTORY_KEYS:
        frame = base.with_columns(keyed_src[name].alias("k"))
        g = before(frame.drop_nulls("k"), ["k"])
        joined = frame.join(g.select("k", "t", "nb", "sb"), on=["k", "t"], how="left").sort("_row")
        has_key = joined["k"].is_not_null().to_numpy()
        n = np.where(has_key, joined["nb"].fill_null(0).to_numpy(), np.nan).astype(np.float64)
        s = np.where(has_key, joined["sb"].fill_null(0).to_numpy(), np.nan).astype(np.float64)
        counts[name] = (n, s)
    return History(counts, prior, _expanding_value_added(df, base))


def _expanding_value_added(df: pl.DataFrame, base: pl.DataFrame) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """For each row and VA_KEYS name: the declarations with a value-added ratio of the same key
    strictly earlier in time, and their mean ratio (NaN without any)."""
    keyed = df.select(ratio_expr().alias("r"), *(key_expr(parts).alias(name) for name, parts in VA_KEYS.items()))
    out: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for name in VA_KEYS:
        frame = base.select("_row", "t").with_columns(keyed["r"].alias("r"), keyed[name].alias("k"))
        g = (frame.drop_nulls(["r", "k"]).group_by(["k", "t"]).agg(pl.len().alias("n"), pl.col("r").sum().alias("s"))
             .sort(["k", "t"])
             .with_columns((pl.col("n").cum_sum().over("k") - pl.col("n")).alias("nb"),
                           (pl.col("s").cum_sum().over("k") - pl.col("s")).alias("sb")))
        joined = frame.join(g.select("k", "t", "nb", "sb"), on=["k", "t"], how="left").sort("_row")
        n = joined["nb"].fill_null(0).to_numpy().astype(np.float64)
        total = joined["sb"].fill_null(0.0).to_numpy().astype(np.float64)
        with np.errstate(divide="ignore", invalid="ignore"):
            out[name] = (n, np.where(n > 0, total / n, np.nan))
    return out


# --------------------------------------------------------------------------------------------
# Columns -> feature matrix (the single definition)
# --------------------------------------------------------------------------------------------

def _value_added_features(cols: Columns, state: FeatureState, history: History | None) -> dict[str, np.ndarray]:
    ratio = value_added_ratios(cols["imported_material_value"], cols["value_added"])
    if history is not None and history.value_added:
        ne, me = history.value_added["enterprise"]
        nc, mc = history.value_added["hs2"]
        # Earlier evidence below VA_MIN_ROWS counts as none: the artifact stores no such key.
        me = np.where(ne >= VA_MIN_ROWS, me, np.nan)
        ne = np.where(ne >= VA_MIN_ROWS, ne, 0.0)
        mc = np.where(nc >= VA_MIN_ROWS, mc, np.nan)
    else:
        ref = value_added_reference(cols, state)
        me, ne, mc = ref[:, 0], ref[:, 1], ref[:, 2]
    return {"va_ratio": ratio, "va_dev_enterprise": ratio - me, "va_dev_hs2": ratio - mc,
            "va_enterprise_rows": np.where(np.isnan(ratio), np.nan, ne)}


def build_matrix(cols: Columns, state: FeatureState, history: History | None = None) -> np.ndarray:
    """Feature matrix (rows x len(FEATURES), float64). ``history=None``: look up ``state``'s statistics."""
    cols = derived(dict(cols))
    n = len(cols["hs_code"])
    X = np.empty((n, len(FEATURES)), dtype=np.float64)
    nan = math.nan

    for f in CATEGORICAL:
        voc = state.vocab[f].get
        X[:, INDEX[f]] = [nan if v is None else voc(v, 0) for v in cols[f]]

    value, qty, mass, tax = (cols[f] for f in ("declared_value", "quantity", "net_mass_kg", "tax_rate"))
    fx, nan_rate = state.fx, math.nan
    if not all(c == state.fx_base for c in cols["currency"]):  # base-currency rows: value / 1.0 = value
        rate = np.fromiter((fx.get(c, nan_rate) if c is not None else nan_rate for c in cols["currency"]),
                           dtype=np.float64, count=n)
        value = value / rate  # in the base currency; NaN for a currency without a rate
    lv, lq, lm = _safe_log(value), _safe_log(qty), _safe_log(mass)
    uv_kg, uv_qty = lv - lm, lv - lq

    # HS reference statistics with fallback subheading -> heading -> chapter -> all goods.
    i6, i4, i2 = (state.hs_index[lv_].get for lv_ in ("6", "4", "2"))
    ref = np.fromiter(
        (i6(h6) or i4(h4) or i2(h2) or 0 for h6, h4, h2 in zip(cols["hs6"], cols["hs4"], cols["hs2"])),
        dtype=np.intp, count=n,
    )
    st = state.hs_matrix[ref]
    with np.errstate(invalid="ignore", divide="ignore"):
        numeric = {
            "tax_rate": tax,
            "log_value": lv,
            "log_mass": lm,
            "log_quantity": lq,
            "log_uv_kg": uv_kg,
            "log_uv_qty": uv_qty,
            "uv_kg_dev": uv_kg - st[:, 1],
            "uv_kg_z": (uv_kg - st[:, 1]) / np.maximum(st[:, 2], 0.1),
            "uv_qty_dev": uv_qty - st[:, 3],
            "uv_qty_z": (uv_qty - st[:, 3]) / np.maximum(st[:, 4], 0.1),
            "value_dev": lv - st[:, 5],
            "mass_dev": lm - st[:, 6],
            "tax_dev": tax - st[:, 7],
            "hs_ref_level": state.hs_level[ref],
            "hs6_num": np.array([float(h) if h.isdigit() else nan for h in cols["hs6"]], dtype=np.float64),
            "hs4_num": np.array([float(h) if h.isdigit() else nan for h in cols["hs4"]], dtype=np.float64),
            "origin_differs": np.array([o != d for o, d in zip(cols["origin_country"], cols["departure_country"])],
                                       dtype=np.float64),
            "has_seller": np.array([v is not None for v in cols["seller_id"]], dtype=np.float64),
            "has_courier": np.array([v is not None for v in cols["courier_id"]], dtype=np.float64),
            **_value_added_features(cols, state, history),
        }
    for f in NUMERIC:
        X[:, INDEX[f]] = numeric[f]

    if history is None:
        _history_from_state(X, cols, state, n)
        return X
    for name in HISTORY_KEYS:
        cnt, frauds = history.counts[name]
        # The stored statistics keep only keys with enough evidence (fit_state); a row's earlier
        # evidence below that minimum counts as none, as it will at serving (NaN: no key, kept).
        none = (cnt < state.history_min_rows) & (frauds < state.history_min_frauds)
        if none.any():
            cnt, frauds = np.where(none, 0.0, cnt), np.where(none, 0.0, frauds)
        X[:, INDEX[f"{name}_fraud_rate"]] = smoothed_rate(cnt, frauds, history.prior)
        X[:, INDEX[f"{name}_count"]] = cnt
    return X


_HISTORY_COLUMNS = [INDEX[f"{name}_{kind}"] for kind in ("fraud_rate", "count") for name in HISTORY_KEYS]


def _history_from_state(X: np.ndarray, cols: Columns, state: FeatureState, n: int) -> None:
    """The history features from the artifact's statistics: every key of every row looked up in
    one pass and gathered at once (a fixed cost per batch, not per history key: small micro-batches
    pay it in full). A key the artifact does not hold gets the prior (the table's unseen slot); a
    row without the key NaN (its last slot)."""

    def slots() -> Any:
        for name, parts in HISTORY_KEYS.items():
            index, rates, _ = state.history[name]
            get, base = index.get, state.history_base[name]
            unseen, none = base + len(rates) - 2, base + len(rates) - 1
            for k in key_values(cols, parts):
                if k is None:
                    yield none
                else:
                    i = get(k)
                    yield unseen if i is None else base + i

    idx = np.fromiter(slots(), dtype=np.intp, count=len(HISTORY_KEYS) * n).reshape(len(HISTORY_KEYS), n)
    X[:, _HISTORY_COLUMNS] = np.concatenate([state.history_rates[idx], state.history_counts[idx]]).T
