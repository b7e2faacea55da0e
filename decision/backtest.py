"""Backtest: run a policy and a model over labelled history, with the worker's own decision code.

Per declaration, in event-time order: the credit state is the fold (``apply_credit_event``) of
the credit events with ``event_time <= `` the declaration's (every enterprise is ``general``
without them); risk-list hits come from a ``RiskListIndex`` (validity windows checked at the
declaration's event time); the capacity controller adapts thresholds per port as in the worker
(one controller per port over the whole history; a worker runs one per partition, i.e. on a
random sample of each port's traffic, which tracks the same targets); then ``decide()``.

Counting (documented in the report's ``assumptions``):

* Only the declaration-time instruction is simulated. A fraud counts as caught if it was
  inspected **or machine-checked**: the scan is assumed to find every fraud it is sent (the
  history has no scan outcomes). ``frauds_caught_by_inspect`` / ``..._by_machine_check`` let a
  reader apply their own scan detection rate.
* Precision of a lane is frauds / declarations in that lane; for ``release`` that is the share of
  released declarations that were frauds (the misses).
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Protocol

import numpy as np
import polars as pl
from pydantic import ValidationError

from decision.batch import decide_batch
from decision.services import Services
from decision.state import Stored
from policy.capacity import CapacityController
from policy.config import Policy, validation_summary
from policy.credit import UNKNOWN_ENTERPRISE, EnterpriseCredit, apply_credit_event
from policy.dutyfree import Standing
from policy.risklists import RiskHit, RiskListIndex, load_jsonl
from policy.valueadded import BELOW_THRESHOLD, IMPLAUSIBLE
from policy.valueadded import RULES as VALUE_ADDED_RULES
from policy.zerotariff import GOODS_LEAVING, RegisteredGoods, fold_import, registered_goods
from riskmodels.data import IDENTIFIERS_COLUMN, identifiers_of, read_labelled
from schemas import Action, CreditClass, CreditEvent, Declaration, SelectionReason, ZeroTariffImport

# The simulator's hidden truth of zero-tariff goods declared to the mainland (portsim.zerotariff).
ZERO_TARIFF_PATTERN = "zero-tariff-goods-leaving"
# The named rules a declaration-time decision can fire (the positioning rules fire outside decisions).
RULES = (*VALUE_ADDED_RULES, GOODS_LEAVING)
LANES = (Action.RELEASE.value, Action.MACHINE_CHECK.value, Action.INSPECT.value)
CHUNK = 20_000  # rows validated, scored and decided at a time: bounds memory (~120 MB per chunk)
PROGRESS_EVERY = 100_000
ASSUMPTIONS = (
    "only the declaration-time instruction is simulated (no scans, no timeouts)",
    "a machine-checked fraud counts as caught (the scan is assumed to find it); see frauds_caught_by_machine_check",
    "lane precision = frauds / declarations in the lane (for release: the share of misses)",
    "capacity thresholds adapt per port over the history in event-time order, starting from a fresh controller",
)

Progress = Callable[[str], None]


class BacktestError(ValueError):
    """An input the backtest cannot use; the message names the file and the problem."""


class Scorer(Protocol):
    """What the backtest needs of ``riskmodels.serving.ModelRegistry``."""

    def score_frame(self, df: pl.DataFrame) -> Any: ...  # -> .scores, .model_versions


def load_credit_events(path: Path | str) -> list[CreditEvent]:
    """CreditEvent JSON lines, sorted by event time (stable: same-time events keep file order)."""
    events = []
    try:
        with open(path, "rb") as fh:
            for n, line in enumerate(fh, 1):
                if line.strip():
                    try:
                        events.append(CreditEvent.model_validate_json(line))
                    except ValidationError as exc:
                        raise BacktestError(f"{path} line {n}: not a credit event: {validation_summary(exc, 2)}") from None
    except OSError as exc:
        raise BacktestError(f"cannot read credit events {path}: {exc.strerror}") from None
    return sorted(events, key=lambda e: e.event_time)


def load_zero_tariff(path: Path | str) -> list[ZeroTariffImport]:
    """ZeroTariffImport JSON lines (the zero-tariff register's records), sorted by event time (stable)."""
    records = []
    try:
        with open(path, "rb") as fh:
            for n, line in enumerate(fh, 1):
                if line.strip():
                    try:
                        records.append(ZeroTariffImport.model_validate_json(line))
                    except ValidationError as exc:
                        raise BacktestError(f"{path} line {n}: not a zero-tariff register record: {validation_summary(exc, 2)}") from None
    except OSError as exc:
        raise BacktestError(f"cannot read the zero-tariff register {path}: {exc.strerror}") from None
    return sorted(records, key=lambda r: r.event_time)


def load_risk_lists(path: Path | str) -> RiskListIndex:
    try:
        with open(path, "rb") as fh:
            return load_jsonl(fh, str(path))
    except OSError as exc:
        raise BacktestError(f"cannot read risk lists {path}: {exc.strerror}") from None
    except ValueError as exc:
        raise BacktestError(str(exc)) from None


_ACTIONS = list(Action)
_REASONS = list(SelectionReason)
_CLASSES = list(CreditClass)


class _Scored:
    """A ``Scorer`` that answers from scores computed once per chunk, so every policy decides on
    the same scores without scoring again; explanations are not needed for a backtest."""

    def __init__(self, declarations: Sequence[Declaration], scores: Sequence[float], versions: Sequence[str],
                 value_added: np.ndarray | None = None) -> None:
        self._by_key = {(d.declaration_id, d.revision): (float(s), v, None if value_added is None else value_added[i])
                        for i, (d, s, v) in enumerate(zip(declarations, scores, versions))}

    def score(self, declarations: Sequence[Declaration]) -> Any:
        found = [self._by_key[(d.declaration_id, d.revision)] for d in declarations]
        history = None
        if any(va is not None for _, _, va in found):
            history = np.array([np.full(4, np.nan) if va is None else va for _, _, va in found])
        return SimpleNamespace(scores=[s for s, _, _ in found], model_versions=[v for _, v, _ in found],
                               value_added=history, explain=lambda i, top=3: [])

    def active_versions(self) -> dict[str, str]:
        return {}

    def shadow_versions(self) -> dict[str, str]:
        return {}

    def refresh(self) -> bool:
        return False


class _AsOf:
    """``References`` as of each declaration's event time: credit events are folded up to it (the
    history is in event-time order), risk-list hits are matched once and shared by every policy."""

    def __init__(self, credit: dict[tuple[str, int], EnterpriseCredit], hits: dict[tuple[str, int], list[RiskHit]],
                 zero_tariff: dict[tuple[str, int], list[RegisteredGoods]] | None = None) -> None:
        self._credit = credit
        self._hits = hits
        self._zero_tariff = zero_tariff or {}

    def credit_for(self, declaration: Declaration) -> EnterpriseCredit:
        return self._credit[(declaration.declaration_id, declaration.revision)]

    def risk_hits(self, declaration: Declaration) -> list[RiskHit]:
        return self._hits[(declaration.declaration_id, declaration.revision)]

    def zero_tariff_goods(self, declaration: Declaration) -> list[RegisteredGoods]:
        return self._zero_tariff.get((declaration.declaration_id, declaration.revision), [])

    def duty_free_for(self, declaration: Declaration) -> list[Standing]:
        return []  # departures are not replayed against purchases (the duty-free backtest is per purchase)


class _Run:
    """One policy's pass: its own capacity controller (one for the whole history), compact per-row codes."""

    def __init__(self, policy: Policy, n: int) -> None:
        self.policy = policy
        self.controller = CapacityController(policy.capacity, policy.ports)
        self.action = np.zeros(n, dtype=np.int8)
        self.reason = np.zeros(n, dtype=np.int8)
        self.credit_class = np.zeros(n, dtype=np.int8)
        self.rules = np.zeros(n, dtype=np.int8)  # bit i: RULES[i] fired

    def decide(self, rows: list[int], decls: list[Declaration], scorer: _Scored, references: _AsOf) -> None:
        """The worker's own decision function over the chunk, every declaration new (no stored state)."""
        states: dict[str, Stored | None] = {d.declaration_id: None for d in decls}
        steps = decide_batch([(0, d) for d in decls], states, Services(self.policy, scorer), references,
                             lambda _: self.controller, now=0.0)
        decided: dict[tuple[str, int], int] = {}
        for row, decl, step in zip(rows, decls, steps):
            key = (decl.declaration_id, decl.revision)
            if not step.instructions:  # the same id and revision again: decided once, counted as that decision
                first_row = decided.get(key)
                if first_row is not None:
                    self.action[row], self.reason[row] = self.action[first_row], self.reason[first_row]
                    self.credit_class[row] = self.credit_class[first_row]
                    self.rules[row] = self.rules[first_row]
                continue
            self.rules[row] = sum(1 << RULES.index(rule) for rule in step.rules)
            decided[key] = row
            first = step.instructions[0]
            self.action[row] = _ACTIONS.index(first.action)
            self.reason[row] = _REASONS.index(first.selection_reason)
            self.credit_class[row] = _CLASSES.index(first.credit_class)


def run(
    policies: Sequence[Policy],
    frame: pl.DataFrame,
    scorer: Scorer,
    credit_events: Sequence[CreditEvent] = (),
    risk_lists: RiskListIndex | None = None,
    progress: Progress | None = None,
    zero_tariff: Sequence[ZeroTariffImport] = (),
) -> tuple[list[pl.DataFrame], list[str], int]:
    """Decide every row of a project-format frame (in event-time order) under each policy.

    Streams in chunks of CHUNK rows (only one chunk's Declaration objects and features are alive):
    validate as ``Declaration`` (rows the schema refuses are skipped and counted), score once with
    ``scorer.score_frame``, fold credit events up to each declaration's time, match risk lists
    once, then decide under every policy with ``decision.batch.decide_batch``. Returns one frame
    per policy (port, credit_class, action, reason, risk_hit, fraud, duty), the model versions
    used and the number of skipped rows."""
    n = frame.height
    runs = [_Run(p, n) for p in policies]
    valid = np.zeros(n, dtype=bool)
    hit = np.zeros(n, dtype=bool)
    versions: set[str] = set()
    credit: dict[str, EnterpriseCredit] = {}
    index = risk_lists if risk_lists is not None else RiskListIndex()
    fields = [c for c in frame.columns if c in Declaration.model_fields]
    ev = 0
    register: dict[bytes, bytes] = {}  # the zero-tariff register folded up to each declaration's time (policy.zerotariff)
    zt = 0
    for start in range(0, n, CHUNK):
        chunk = frame.slice(start, CHUNK)
        rows: list[int] = []
        decls: list[Declaration] = []
        for i, row in enumerate(chunk.select(fields).iter_rows(named=True)):
            if row.get(IDENTIFIERS_COLUMN):  # "kind:value;..." in the frame (riskmodels.data)
                row[IDENTIFIERS_COLUMN] = identifiers_of(row[IDENTIFIERS_COLUMN])
            try:
                decls.append(Declaration.model_validate({k: v for k, v in row.items() if v is not None}, strict=False))
                rows.append(start + i)
            except ValidationError:
                pass
        if not decls:
            continue
        batch = scorer.score_frame(chunk if len(rows) == chunk.height else frame[rows])
        versions.update(batch.model_versions)
        credit_at: dict[tuple[str, int], EnterpriseCredit] = {}
        hits_at: dict[tuple[str, int], list[RiskHit]] = {}
        goods_at: dict[tuple[str, int], list[RegisteredGoods]] = {}
        for decl, pos in zip(decls, rows):
            # Rows are in event-time order (read_labelled sorts them): fold the credit events up
            # to this declaration's time, so it sees the state in force when it arrived.
            while ev < len(credit_events) and credit_events[ev].event_time <= decl.event_time:
                e = credit_events[ev]
                credit[e.enterprise_id] = apply_credit_event(credit.get(e.enterprise_id, UNKNOWN_ENTERPRISE), e)
                ev += 1
            while zt < len(zero_tariff) and zero_tariff[zt].event_time <= decl.event_time:
                record = zero_tariff[zt]
                for k, value in fold_import(record.import_id, record, register.get).writes.items():
                    if value is None:
                        register.pop(k, None)
                    else:
                        register[k] = value
                zt += 1
            key = (decl.declaration_id, decl.revision)
            if decl.goods_identifiers:
                goods_at.setdefault(key, registered_goods(register, decl))
            hits_at.setdefault(key, index.matches(decl))
            credit_at.setdefault(key, credit.get(decl.enterprise_id, UNKNOWN_ENTERPRISE))
            hit[pos] = bool(hits_at[key])
        scored = _Scored(decls, batch.scores, batch.model_versions, getattr(batch, "value_added", None))
        references = _AsOf(credit_at, hits_at, goods_at)
        for r in runs:
            r.decide(rows, decls, scored, references)
        valid[rows] = True
        done = min(start + CHUNK, n)
        if progress and (done % PROGRESS_EVERY < CHUNK or done == n):
            progress(f"decided {done:,} / {n:,} rows")
    if not valid.any():
        raise BacktestError("no row of the history is a valid declaration")
    mask = pl.Series(valid)
    base = pl.DataFrame({
        "port": frame["port"].filter(mask),
        "fraud": frame["fraud"].filter(mask).fill_null(0).cast(pl.Int64),
        "duty": (frame["duty_recoverable"].filter(mask).fill_null(0.0).cast(pl.Float64)
                 if "duty_recoverable" in frame.columns else pl.zeros(int(valid.sum()), dtype=pl.Float64, eager=True)),
        "risk_hit": hit[valid],
    })
    pattern = frame["fraud_pattern"].filter(mask) if "fraud_pattern" in frame.columns else None
    va_true = frame["value_added_ratio_true"].filter(mask) if "value_added_ratio_true" in frame.columns else None
    out = []
    for r in runs:
        rules = r.rules[valid]
        out.append(base.with_columns(
            pl.Series("action", [a.value for a in _ACTIONS])[pl.Series(r.action[valid].astype(np.int64))],
            pl.Series("reason", [x.value for x in _REASONS])[pl.Series(r.reason[valid].astype(np.int64))],
            pl.Series("credit_class", [c.value for c in _CLASSES])[pl.Series(r.credit_class[valid].astype(np.int64))],
            *(pl.Series(f"fired:{rule}", (rules >> i) & 1 == 1) for i, rule in enumerate(RULES)),
            *_rule_truth(r.policy, pattern, va_true),
        ))
    return out, sorted(versions), n - int(valid.sum())


def _rule_truth(policy: Policy, pattern: pl.Series | None, va_true: pl.Series | None) -> list[pl.Series]:
    """The hidden truth of each named rule, where the history has it (simulated history does):
    duty is really due when the true value-added ratio is under the policy's threshold; a claim is
    really inflated when the simulator planted ``value-added-inflation``."""
    truth = []
    if va_true is not None and va_true.null_count() < len(va_true):
        truth.append((va_true < policy.processing_value_added.threshold).fill_null(False).alias(f"truth:{BELOW_THRESHOLD}"))
    if pattern is not None:
        truth.append((pattern == "value-added-inflation").fill_null(False).alias(f"truth:{IMPLAUSIBLE}"))
        truth.append((pattern == ZERO_TARIFF_PATTERN).fill_null(False).alias(f"truth:{GOODS_LEAVING}"))
    return truth


def by_rule(df: pl.DataFrame) -> dict[str, dict[str, int | float | None]]:
    """Per named rule: how often it fired and, where the history holds the truth, the declarations
    it caught (fired, truly so), missed (truly so, not fired) and its false alarms (fired, not so)."""
    out: dict[str, dict[str, int | float | None]] = {}
    for rule in RULES:
        fired = df[f"fired:{rule}"]
        entry: dict[str, int | float | None] = {"fired": int(fired.sum())}
        if f"truth:{rule}" in df.columns:
            truth = df[f"truth:{rule}"]
            caught = int((fired & truth).sum())
            entry.update(caught=caught, missed=int((~fired & truth).sum()), false_alarms=int((fired & ~truth).sum()),
                         recall=_ratio(caught, int(truth.sum())))
        out[rule] = entry
    return out


def _ratio(a: float, b: float) -> float | None:
    return round(a / b, 6) if b else None


def _summary(df: pl.DataFrame) -> dict[str, Any]:
    n = df.height
    frauds = int(df["fraud"].sum())
    by_lane = {r["action"]: r for r in df.group_by("action").agg(
        pl.len().alias("count"), pl.col("fraud").sum().alias("frauds"), pl.col("duty").filter(pl.col("fraud") == 1).sum().alias("duty"),
    ).iter_rows(named=True)}
    lanes: dict[str, dict[str, Any]] = {}
    for lane in LANES:
        r = by_lane.get(lane, {"count": 0, "frauds": 0, "duty": 0.0})
        lanes[lane] = {"count": int(r["count"]), "rate": _ratio(r["count"], n), "frauds": int(r["frauds"]),
                       "precision": _ratio(r["frauds"], r["count"])}
    caught = lanes["machine-check"]["frauds"] + lanes["inspect"]["frauds"]
    duty_total = float(df.filter(pl.col("fraud") == 1)["duty"].sum())
    duty_caught = sum(float(by_lane[lane]["duty"]) for lane in ("machine-check", "inspect") if lane in by_lane)
    return {
        "declarations": n,
        "frauds_total": frauds,
        "frauds_caught": caught,
        "frauds_missed": frauds - caught,
        "recall": _ratio(caught, frauds),
        "frauds_caught_by_inspect": lanes["inspect"]["frauds"],
        "frauds_caught_by_machine_check": lanes["machine-check"]["frauds"],
        "duty_recoverable_total": round(duty_total, 2),
        "duty_recoverable_caught": round(duty_caught, 2),
        "lanes": lanes,
    }


def summarise(df: pl.DataFrame) -> dict[str, Any]:
    """Totals, lanes, and the same per port and per credit class (keys sorted)."""
    out = _summary(df)
    out["selection_reasons"] = {r: int(c) for r, c in sorted(df.group_by("reason").len().iter_rows())}
    out["risk_list_hits"] = int(df["risk_hit"].sum())
    out["by_rule"] = by_rule(df)
    for key, column in (("by_port", "port"), ("by_credit_class", "credit_class")):
        out[key] = {value: _summary(part) for (value,), part in sorted(df.group_by(column), key=lambda g: g[0][0])}
    return out


def _diff(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    """b - a for the counts and for each lane's rate and precision."""
    out: dict[str, Any] = {k: b[k] - a[k] for k in ("frauds_caught", "frauds_missed", "frauds_caught_by_inspect",
                                                    "frauds_caught_by_machine_check")}
    out["duty_recoverable_caught"] = round(b["duty_recoverable_caught"] - a["duty_recoverable_caught"], 2)
    out["lanes"] = {}
    for lane in LANES:
        la, lb = a["lanes"][lane], b["lanes"][lane]
        out["lanes"][lane] = {
            "count": lb["count"] - la["count"],
            **{m: (round(lb[m] - la[m], 6) if la[m] is not None and lb[m] is not None else None) for m in ("rate", "precision")},
        }
    return out


def compare(base: pl.DataFrame, other: pl.DataFrame, base_report: dict[str, Any], other_report: dict[str, Any]) -> dict[str, Any]:
    """``difference`` is always *compared policy minus this policy*."""
    difference = _diff(base_report, other_report)
    for key in ("by_port", "by_credit_class"):
        names = sorted(set(base_report[key]) & set(other_report[key]))
        difference[key] = {k: _diff(base_report[key][k], other_report[key][k]) for k in names}
    moved = pl.DataFrame({"a": base["action"], "b": other["action"]}).filter(pl.col("a") != pl.col("b"))
    transitions = {f"{a}->{b}": int(c) for a, b, c in sorted(moved.group_by("a", "b").len().iter_rows())}
    return {"changed_decisions": moved.height, "transitions": transitions, "difference": difference}


def backtest(
    policy: Policy,
    frame: pl.DataFrame,
    scorer: Scorer,
    credit_events: Sequence[CreditEvent] = (),
    risk_lists: RiskListIndex | None = None,
    other: Policy | None = None,
    progress: Progress | None = None,
    zero_tariff: Sequence[ZeroTariffImport] = (),
) -> dict[str, Any]:
    """The report (see policy/README.md); with ``other``, a ``compare`` object as well (both
    policies are decided in the same pass, on the same scores, credit states and list hits)."""
    policies = [policy] if other is None else [policy, other]
    frames, versions, skipped = run(policies, frame, scorer, credit_events, risk_lists, progress, zero_tariff)
    report: dict[str, Any] = {"policy_version": policy.version, **summarise(frames[0])}
    report["model_versions"] = versions
    report["skipped_rows"] = skipped
    report["assumptions"] = list(ASSUMPTIONS)
    if not credit_events:
        report["assumptions"].append("no credit events: every enterprise is general and holds no qualification, so "
                                     "zero-tariff and processing value-added declarations are inspected by rule")
    if other is not None:
        other_report = {"policy_version": other.version, **summarise(frames[1])}
        report["compare"] = {"policy_version": other.version, "report": other_report,
                             **compare(frames[0], frames[1], report, other_report)}
    return report


# ---- text output -------------------------------------------------------------------------------
def _pct(x: float | None) -> str:
    return "-" if x is None else f"{x:.2%}"


def _lane_line(name: str, s: dict[str, Any]) -> str:
    cells = []
    for lane in LANES:
        la = s["lanes"][lane]
        cells.append(f"{_pct(la['rate']):>7} {_pct(la['precision']):>7}")
    return (f"{name:<16}{s['declarations']:>10,} " + "  ".join(cells)
            + f"  {s['frauds_caught']:>7,} {s['frauds_missed']:>7,} {_pct(s['recall']):>7}")


def format_report(report: dict[str, Any]) -> str:
    head = (f"{'':<16}{'decls':>10} " + "  ".join(f"{lane[:13]:>15}" for lane in LANES)
            + f"  {'caught':>7} {'missed':>7} {'recall':>7}")
    sub = f"{'':<16}{'':>10} " + "  ".join(f"{'rate':>7} {'prec':>7}" for _ in LANES)
    lines = [f"policy {report['policy_version']}  models {', '.join(report['model_versions'])}", head, sub,
             _lane_line("all", report)]
    for key, title in (("by_port", "port"), ("by_credit_class", "credit class")):
        lines.append(f"-- by {title}")
        lines += [_lane_line(k, v) for k, v in report[key].items()]
    lines.append(f"caught by inspect {report['frauds_caught_by_inspect']:,}, by machine-check "
                 f"{report['frauds_caught_by_machine_check']:,} (assumed found by the scan); "
                 f"selection reasons: " + ", ".join(f"{k} {v:,}" for k, v in report["selection_reasons"].items()))
    for rule, r in report.get("by_rule", {}).items():
        if "caught" in r:
            lines.append(f"rule {rule}: fired {r['fired']:,}, caught {r['caught']:,}, missed {r['missed']:,}, "
                         f"false alarms {r['false_alarms']:,} (recall {_pct(r['recall'])})")
        else:
            lines.append(f"rule {rule}: fired {r['fired']:,} (the history holds no truth for it)")
    lines += [f"note: {a}" for a in report["assumptions"] if a not in ASSUMPTIONS]
    if report["skipped_rows"]:
        lines.append(f"{report['skipped_rows']:,} rows skipped: not valid declarations")
    cmp = report.get("compare")
    if cmp:
        d = cmp["difference"]
        lines += ["", f"compared with policy {cmp['policy_version']} (difference = compared - this):",
                  _lane_line("compared", cmp["report"]),
                  f"frauds caught {d['frauds_caught']:+,}, missed {d['frauds_missed']:+,}; "
                  + ", ".join(f"{lane} rate {_signed_pct(d['lanes'][lane]['rate'])}" for lane in LANES),
                  f"{cmp['changed_decisions']:,} declarations decided differently: "
                  + (", ".join(f"{k} {v:,}" for k, v in cmp["transitions"].items()) or "none")]
        for port, pd in d["by_port"].items():
            lines.append(f"  {port:<14} caught {pd['frauds_caught']:+,}  "
                         + "  ".join(f"{lane} {_signed_pct(pd['lanes'][lane]['rate'])}" for lane in LANES[1:]))
    return "\n".join(lines)


def _signed_pct(x: float | None) -> str:
    return "-" if x is None else f"{x:+.2%}"


def stderr_progress(prefix: str = "riskctl backtest") -> Progress:
    def show(text: str) -> None:
        print(f"{prefix}: {text}", file=sys.stderr, flush=True)
    return show


def read_history(path: Path | str) -> pl.DataFrame:
    """A labelled history file as a validated project-format frame, sorted by event time."""
    return read_labelled(path, "auto", need_labels=True)


__all__ = [
    "ASSUMPTIONS", "BacktestError", "Scorer", "backtest", "compare", "format_report", "load_credit_events",
    "load_risk_lists", "read_history", "run", "summarise",
]
