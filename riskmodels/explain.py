"""Plain-language reasons for a score, cheap enough to compute for every flagged declaration.

Deviation-based: each candidate reason measures how far the declaration is from what training
data calls normal (unit value vs the HS median, smoothed fraud rates vs the base rate, ...), and
is weighted by the model's gain importance of the features behind it. This costs microseconds
per row; LightGBM's ``pred_contrib`` (TreeSHAP) costs milliseconds per row (see README), so it is
kept only as an optional exact method for investigations.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from riskmodels.features import FEATURES, HISTORY_KEYS, INDEX, FeatureState

_LN2 = math.log(2.0)
MIN_HISTORY_ROWS = 3  # a fraud rate from fewer labelled declarations is not shown as a reason
_HISTORY = [(name, INDEX[f"{name}_fraud_rate"], INDEX[f"{name}_count"]) for name in HISTORY_KEYS]


def _hs_label(level: float, hs6: str) -> str:
    if level == 6:
        return f"HS {hs6}"
    if level == 4:
        return f"HS {hs6[:4]}"
    if level == 2:
        return f"HS chapter {hs6[:2]}"
    return "all goods"


def _history_label(name: str, row: dict[str, Any]) -> str:
    hs6 = row["hs_code"][:6]
    labels = {
        "importer": "importer",
        "declarant": "declarant",
        "seller": "seller",
        "courier": "courier",
        "hs6": f"HS {hs6}",
        "hs4": f"HS {hs6[:4]}",
        "office": f"office {row['port']}",
        "origin": f"origin {row['origin_country']}",
        "office_x_importer": f"importer at office {row['port']}",
        "office_x_hs6": f"HS {hs6} at office {row['port']}",
        "importer_x_hs6": f"importer for HS {hs6}",
        "declarant_x_importer": "declarant for this importer",
        "origin_x_hs6": f"HS {hs6} from {row['origin_country']}",
        "seller_x_importer": "seller-importer pair",
    }
    return labels[name]


def _weight(importance: np.ndarray, *features: str) -> float:
    return float(sum(importance[INDEX[f]] for f in features)) + 1e-3  # never exactly zero


def reasons(x: np.ndarray, row: dict[str, Any], state: FeatureState, importance: np.ndarray, top: int = 3) -> list[str]:
    """Top reasons for one feature row ``x`` (the raw fields in ``row``), strongest first."""
    out: list[tuple[float, str]] = []
    hs_ref = _hs_label(x[INDEX["hs_ref_level"]], row["hs_code"][:6])

    for kind, dev_f, z_f, what in (("kg", "uv_kg_dev", "uv_kg_z", "unit value"),
                                   ("qty", "uv_qty_dev", "uv_qty_z", "value per unit")):
        dev = x[INDEX[dev_f]]
        if not math.isnan(dev) and abs(dev) >= _LN2:
            factor = math.exp(abs(dev))
            side = "below" if dev < 0 else "above"
            w = _weight(importance, dev_f, z_f, f"log_uv_{kind}")
            out.append((w * abs(dev) / _LN2, f"{what} {factor:.0f}x {side} {hs_ref} median" if factor >= 10
                        else f"{what} {factor:.1f}x {side} {hs_ref} median"))

    tax_dev = x[INDEX["tax_dev"]]
    if not math.isnan(tax_dev) and abs(tax_dev) >= 2.0:
        typical = x[INDEX["tax_rate"]] - tax_dev
        out.append((_weight(importance, "tax_dev", "tax_rate") * min(abs(tax_dev) / 5.0, 3.0),
                    f"duty rate {x[INDEX['tax_rate']]:g}% vs {typical:g}% typical for {hs_ref}"))

    prior = state.prior
    for name, i_rate, i_count in _HISTORY:
        rate, count = x[i_rate], x[i_count]
        if count >= MIN_HISTORY_ROWS and rate > prior * 1.5:  # nan compares False: no key, no reason
            w = importance[i_rate] + importance[i_count] + 1e-3
            out.append((w * (rate / prior - 1.0),
                        f"{_history_label(name, row)} fraud rate {rate:.2f} ({int(count)} past declarations)"))
        elif count == 0 and name in ("importer", "seller", "declarant"):
            w = importance[i_rate] + importance[i_count] + 1e-3
            # Artifacts that keep only keys with enough evidence cannot tell new from rarely seen.
            text = (f"new {name}: no inspection history" if state.history_min_rows <= 1 else
                    f"{name} with little inspection history (under {state.history_min_rows} past declarations)")
            out.append((w * 0.5, text))

    currency = row.get("currency")
    if currency is not None and currency not in state.fx:
        out.append((_weight(importance, "currency", "log_value", "uv_kg_dev") * 0.5,
                    f"amount in {currency}: no exchange rate in the model, value not compared"))

    if x[INDEX["origin_differs"]] == 1.0:
        w = _weight(importance, "origin_differs", "origin_country", "departure_country")
        out.append((w * 0.5, f"origin {row['origin_country']} differs from departure {row['departure_country']}"))

    out.sort(key=lambda t: -t[0])
    if not out:  # nothing unusual on its own: the model scored the combination of attributes
        return [f"risk pattern of HS chapter {row['hs_code'][:2]} goods from {row['origin_country']} "
                f"at office {row['port']} (no single dominant factor)"]
    return [text for _, text in out[:top]]


def contrib_reasons(contrib: np.ndarray, top: int = 3) -> list[str]:
    """Reasons from a ``pred_contrib`` row (exact TreeSHAP; slow): the features pushing the score up."""
    order = np.argsort(-contrib[:-1], kind="stable")[:top]
    return [f"{FEATURES[j]} (+{contrib[j]:.2f} log-odds)" for j in order if contrib[j] > 0]
