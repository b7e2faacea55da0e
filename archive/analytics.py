"""What a risk analyst asks of the archive: how risk-list entries, rules and models perform on the
inspections that followed, how selection rates track their targets, and what was rejected.

Every function reads the archive's Delta tables with polars lazy scans (``archive.queries.Archive``)
and returns JSON-ready rows (times as ISO 8601 strings in UTC). The window ``day_from``..``day_to``
(inclusive) selects the decisions by their tables' ``day``; the inspection results that label them
are read from ``day_from`` on, since an inspection happens after its decision. A declaration revision
counts as *inspected* when any inspection result names it, and as *found* when one of them found
something; ``hit_rate`` is found / inspected (None when nothing was inspected).

Labels exist only where an inspection took place, and inspections follow the champion's choices:
the challenger's figures on the declarations it alone would have selected are not observed (see
docs/operations.md, "Champion and challenger").
"""

from __future__ import annotations

import base64
import binascii
import unicodedata
from datetime import date
from typing import Any

import polars as pl

from archive import tables as t
from archive.location import LocationLike
from archive.queries import SELECTION_LANES, Archive, _rows, _unique, selection_rate
from policy.config import Policy, load_policy

# Bounds on what a caller (the console, from a user's query) may ask for and on what comes back.
MAX_DEAD_LETTERS = 1000
MAX_REASON_LENGTH = 64
PREVIEW_BYTES = 768  # of the original payload, decoded for the preview
PREVIEW_CHARS = 300
ERROR_CHARS = 500

_LABEL_KEYS = ["declaration_id", "revision"]


def _labels(archive: Archive, day_from: date, port: str | None) -> pl.DataFrame:
    """One row per inspected declaration revision: declaration_id, revision, found (any result found)."""
    results = _unique(archive.window(t.INSPECTION_RESULTS, day_from, None, port)
                      .select("instruction_id", *_LABEL_KEYS, "found").collect(), ["instruction_id"])
    return results.group_by(_LABEL_KEYS).agg(pl.col("found").any())


def _performance(decisions: pl.DataFrame, labels: pl.DataFrame, keys: list[str], count: str) -> pl.DataFrame:
    """Per ``keys``: ``count`` decisions, how many were inspected and found, and the hit rate."""
    joined = decisions.join(labels, on=_LABEL_KEYS, how="left")
    grouped = joined.group_by(keys).agg(
        pl.len().alias(count),
        pl.col("found").is_not_null().sum().alias("inspected"),
        pl.col("found").fill_null(False).sum().alias("found"),
    )
    hit_rate = pl.when(pl.col("inspected") > 0).then((pl.col("found") / pl.col("inspected")).round(6))
    return grouped.with_columns(hit_rate.alias("hit_rate")).sort([count, *keys], descending=[True] + [False] * len(keys))


def risk_list_performance(day_from: date, day_to: date, port: str | None = None,
                          archive_dir: LocationLike | None = None) -> list[dict[str, Any]]:
    """Per risk-list entry that matched a declaration: list_id, entry_id, hits (declaration revisions
    it matched, watch entries included), inspected, found, hit_rate."""
    archive = Archive(archive_dir)
    decided = archive.instructions(day_from, day_to, port, ["instruction_id", *_LABEL_KEYS, "stage", "risk_hits"])
    hits = (decided.filter((pl.col("stage") == "declaration") & (pl.col("risk_hits").list.len() > 0))
            .explode("risk_hits")
            .with_columns(pl.col("risk_hits").str.splitn("/", 2).struct.rename_fields(["list_id", "entry_id"]).alias("ref"))
            .unnest("ref"))
    frame = _performance(hits, _labels(archive, day_from, port), ["list_id", "entry_id"], "hits")
    return _rows(frame.select("list_id", "entry_id", "hits", "inspected", "found", "hit_rate"))


def rule_performance(day_from: date, day_to: date, port: str | None = None,
                     archive_dir: LocationLike | None = None) -> list[dict[str, Any]]:
    """Per selection reason (rule, risk-list, model-threshold, random at declaration time; scan and
    timeout after a machine-check): selected (instructions that chose machine-check or inspect for
    that reason), inspected, found, hit_rate."""
    archive = Archive(archive_dir)
    decided = archive.instructions(day_from, day_to, port, ["instruction_id", *_LABEL_KEYS, "action", "selection_reason"])
    selected = decided.filter(pl.col("action") != "release")
    frame = _performance(selected, _labels(archive, day_from, port), ["selection_reason"], "selected")
    return _rows(frame.select("selection_reason", "selected", "inspected", "found", "hit_rate"))


def selection_rates(day_from: date, day_to: date, port: str | None = None, archive_dir: LocationLike | None = None,
                    policy: Policy | None = None) -> list[dict[str, Any]]:
    """Per port and lane (machine-check, inspect): declarations (declaration-time decisions),
    selected, rate, and the policy's target for the lane (None: the lane has no target). ``policy``
    defaults to the settings' policy file."""
    if policy is None:
        from common.settings import Settings

        policy = load_policy(Settings().policy_file)
    decided = Archive(archive_dir).instructions(day_from, day_to, port, ["instruction_id", "port", "stage", "action"])
    counts = decided.filter(pl.col("stage") == "declaration").group_by("port", "action").len()
    lanes: dict[str, dict[str, int]] = {}
    for p, action, n in counts.iter_rows():
        lanes.setdefault(p, {})[action] = n
    rows = []
    for p in sorted(lanes):
        targets = policy.capacity.targets_for(p)
        for lane in SELECTION_LANES:
            rows.append({"port": p, "lane": lane, "declarations": sum(lanes[p].values()), "selected": lanes[p].get(lane, 0),
                         "rate": selection_rate(lanes[p], lane), "target": getattr(targets, lane.replace("-", "_"))})
    return rows


def _auc(score: str) -> pl.Expr:
    """Area under the ROC curve of ``score`` against ``found`` (Mann-Whitney, ties averaged); None
    unless both classes occur."""
    positives = pl.col("found").sum()
    negatives = pl.len() - positives
    rank_sum = pl.col(score).rank("average").filter(pl.col("found")).sum()
    auc = (rank_sum - positives * (positives + 1) / 2) / (positives * negatives)
    return pl.when((positives > 0) & (negatives > 0)).then(auc.round(6)).alias("auc")


def model_comparison(day_from: date, day_to: date, port: str | None = None,
                     archive_dir: LocationLike | None = None) -> dict[str, Any]:
    """The champion against its shadow challenger on the shadow scores of the window (of ``port``
    only, when given) and the inspection results that followed.

    ``pairs``: per (champion, challenger) version pair, the declaration revisions both scored, how
    many were inspected and the agreement rate (same action at the same thresholds). ``models``: per
    role and model version, scored, inspected, selected (would have chosen machine-check or
    inspect), selected_inspected, found (among those), hit_rate (found / selected_inspected) and
    auc (over every inspected revision it scored; None unless something was found and something
    not)."""
    archive = Archive(archive_dir)
    shadow = _unique(archive.window(t.SHADOW_SCORES, day_from, day_to, port).select(
        "instruction_id", *_LABEL_KEYS, "champion_version", "champion_score", "champion_action",
        "challenger_version", "challenger_score", "challenger_action").collect(), ["instruction_id"])
    scored = shadow.join(_labels(archive, day_from, port), on=_LABEL_KEYS, how="left")
    agree = pl.col("champion_action") == pl.col("challenger_action")
    pairs = (scored.group_by("champion_version", "challenger_version")
             .agg(pl.len().alias("scored"), pl.col("found").is_not_null().sum().alias("inspected"),
                  agree.mean().round(6).alias("agreement_rate"))
             .sort("scored", "champion_version", "challenger_version", descending=[True, False, False]))
    long = pl.concat([
        scored.select(pl.lit(role).alias("role"), pl.col(f"{role}_version").alias("model_version"),
                      pl.col(f"{role}_score").alias("score"), pl.col(f"{role}_action").alias("action"), "found")
        for role in ("champion", "challenger")
    ])
    chose = pl.col("action") != "release"
    inspected = pl.col("found").is_not_null()
    models = (long.group_by("role", "model_version").agg(
        pl.len().alias("scored"), inspected.sum().alias("inspected"), chose.sum().alias("selected"),
        (chose & inspected).sum().alias("selected_inspected"), (chose & pl.col("found").fill_null(False)).sum().alias("found"))
        .with_columns(pl.when(pl.col("selected_inspected") > 0)
                      .then((pl.col("found") / pl.col("selected_inspected")).round(6)).alias("hit_rate")))
    aucs = long.filter(inspected).group_by("role", "model_version").agg(_auc("score"))
    models = (models.join(aucs, on=["role", "model_version"], how="left")
              .sort("role", "scored", "model_version", descending=[False, True, False]))
    n_inspected = int(scored.get_column("found").is_not_null().sum())
    return {
        "from": day_from.isoformat(), "to": day_to.isoformat(), "port": port,
        "scored": scored.height, "inspected": n_inspected,
        "agreement_rate": round(float(scored.select(agree.mean()).item()), 6) if scored.height else None,
        "pairs": _rows(pairs),
        "models": _rows(models),
    }


def _plain(text: str, limit: int) -> str:
    """``text`` as one line of plain text: control and format characters (bidirectional overrides,
    zero-width characters, escape sequences) removed, whitespace controls as spaces, at most
    ``limit`` characters (an ellipsis marks a cut)."""
    kept = "".join(" " if ch in "\t\n\r" else ch for ch in text if ch in "\t\n\r" or not unicodedata.category(ch).startswith("C"))
    return kept if len(kept) <= limit else kept[:limit - 1] + "\u2026"


def payload_preview(value_b64: str | None, max_chars: int = PREVIEW_CHARS) -> str | None:
    """The start of a dead letter's original bytes as plain text: invalid UTF-8 replaced, control
    characters removed, at most ``max_chars`` characters. None when there is no payload or it is
    not base64 (a dead letter published by someone else may carry anything)."""
    if value_b64 is None:
        return None
    head = value_b64[: -(-PREVIEW_BYTES // 3) * 4]  # whole base64 quanta: the first PREVIEW_BYTES bytes
    try:
        raw = base64.b64decode(head, validate=True)
    except (binascii.Error, ValueError):
        return None
    text = _plain(raw.decode("utf-8", errors="replace"), max_chars)
    cut = len(head) < len(value_b64)
    return text + "\u2026" if cut and not text.endswith("\u2026") else text


def dead_letters(day_from: date, day_to: date, reason: str | None = None, limit: int = 100,
                 archive_dir: LocationLike | None = None) -> list[dict[str, Any]]:
    """The newest dead letters of the window first (at most ``limit``, 1..MAX_DEAD_LETTERS), of one
    ``reason`` if given: received_at, reason, origin, source (topic), partition, offset, error,
    value_size, truncated and a plain-text preview of the payload and of the key."""
    if not 1 <= limit <= MAX_DEAD_LETTERS:
        raise ValueError(f"limit must be between 1 and {MAX_DEAD_LETTERS}, not {limit}")
    if reason is not None and not 0 < len(reason) <= MAX_REASON_LENGTH:
        raise ValueError(f"a dead-letter reason has 1 to {MAX_REASON_LENGTH} characters")
    frame = Archive(archive_dir).window(t.DEAD_LETTERS, day_from, day_to)
    if reason is not None:
        frame = frame.filter(pl.col("reason") == reason)
    newest = (frame.sort("received_at", "kafka_offset", descending=True, nulls_last=True).head(limit)
              .select("received_at", "reason", "origin", "source_topic", "source_partition", "source_offset", "error",
                      "value_size", "truncated", "value_b64", "key_b64").collect())
    rows = []
    for row in _rows(newest):
        value_b64, key_b64 = row.pop("value_b64"), row.pop("key_b64")
        row["source"] = row.pop("source_topic")
        row["partition"] = row.pop("source_partition")
        row["offset"] = row.pop("source_offset")
        row["error"] = _plain(row["error"] or "", ERROR_CHARS)
        row["payload_preview"] = payload_preview(value_b64)
        row["key_preview"] = payload_preview(key_b64, 80)
        rows.append(row)
    return rows
