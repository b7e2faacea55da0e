"""Checks that keep a gateway or a scanner from steering a decision. Pure functions, no I/O.

* A scan counts only if it comes from a device registered at the declaration's port and is timed
  when the goods could have been presented: not before the declaration's event time minus the
  policy's ``scan.clock_skew_s``, not after the worker's clock plus it. What can be checked on
  arrival (port and device register, a time in the future) is; what needs the declaration (same
  port, not too early) is checked when both are there, also for a scan kept because it came first.
* An amendment never lowers a pending control (inspect > machine-check > release), and one that
  names another enterprise or another port than the stored revision is refused: the pending
  control binds to the enterprise it was given for, and its scan to the port that must present
  the goods (a moved port would let that port's scanners release them).

A refusal's reason code is a metric label: the codes are the constants below, never record values.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime

import msgspec
import orjson

from common.timefmt import utc_iso
from decision.state import DeclarationState, DeclarationSummary, Phase, ScanSummary
from policy.config import Policy
from policy.decide import SEVERITY, Decision
from schemas import Action, Declaration, ScanResult, SelectionReason
from schemas.validation import Refused, check_port

SCAN_UNKNOWN_DEVICE = "scan-unknown-device"
SCAN_PORT_MISMATCH = "scan-port-mismatch"
SCAN_IMPLAUSIBLE_TIME = "scan-implausible-time"
ENTERPRISE_CHANGED = "enterprise-changed"
PORT_CHANGED = "port-changed"
REASON_CODES = frozenset({SCAN_UNKNOWN_DEVICE, SCAN_PORT_MISMATCH, SCAN_IMPLAUSIBLE_TIME, ENTERPRISE_CHANGED, PORT_CHANGED})


@dataclass(frozen=True, slots=True)
class Refusal:
    """An input the state machine refused: the topology dead-letters it with this reason."""

    reason: str  # one of REASON_CODES
    detail: str
    # A scan the state kept because it came before its declaration: its record bytes are gone by
    # the time it is refused, so the dead letter carries what the state kept.
    scan: ScanSummary | None = None

    def error(self) -> Refused:
        return Refused(self.reason, self.detail)


def check_scan_arrival(policy: Policy, scan: ScanResult, now: float) -> None:
    """Raise (reason ``unknown-port``, ``scan-unknown-device`` or ``scan-implausible-time``) unless
    the scan comes from a device registered at a registered port and is not timed in the future."""
    check_port(scan.port, policy.knows_port)
    if not policy.knows_device(scan.port, scan.device_id):
        raise Refused(SCAN_UNKNOWN_DEVICE, f"device {scan.device_id!r} is not registered at port {scan.port}")
    skew = policy.scan.clock_skew_s
    if scan.event_time.timestamp() > now + skew:
        raise Refused(SCAN_IMPLAUSIBLE_TIME, f"scan timed {scan.event_time.isoformat()}, more than {skew:g} s after the worker's clock")


def scan_refusal(decl: DeclarationSummary, scan: ScanSummary, clock_skew_s: float) -> Refusal | None:
    """None if the scan binds to the decided declaration revision (same port, plausible time)."""
    if scan.port != decl.port:
        where = scan.port or "an unrecorded port (kept by an earlier release)"
        return Refusal(SCAN_PORT_MISMATCH, f"scan {scan.scan_id} from {where}, declaration {decl.declaration_id} at {decl.port}", scan)
    lodged = datetime.fromisoformat(decl.event_time).timestamp()
    if scan.event_time is None or scan.event_time < lodged - clock_skew_s:
        when = "an unrecorded time" if scan.event_time is None else utc_iso(scan.event_time)
        return Refusal(SCAN_IMPLAUSIBLE_TIME, f"scan {scan.scan_id} timed {when}, before declaration {decl.declaration_id} "
                                              f"was lodged ({decl.event_time}) minus {clock_skew_s:g} s", scan)
    return None


# What an amendment of a pending control may not change (field -> the refusal's reason): the control
# was given to this enterprise's goods at this port, and another port's scanner must not clear it.
FIXED_BY_A_PENDING_CONTROL = {"enterprise_id": ENTERPRISE_CHANGED, "port": PORT_CHANGED}


def amendment_moves(state: DeclarationState | None, field: str, value: str) -> bool:
    """A new revision of a declaration whose control is pending, naming another ``field``."""
    return (state is not None and state.phase is Phase.AWAITING_SCAN and state.decl is not None
            and getattr(state.decl, field) != value)


def amendment_refusal(state: DeclarationState, decl: Declaration, field: str) -> Refusal:
    stored = state.decl
    assert stored is not None
    noun = field.removesuffix("_id")
    return Refusal(FIXED_BY_A_PENDING_CONTROL[field],
                   f"revision {decl.revision} of {decl.declaration_id} names {noun} {getattr(decl, field)}, "
                   f"revision {stored.revision} named {getattr(stored, field)}: refused, the pending control stands")


class _Selected(msgspec.Struct):
    selection_reason: SelectionReason


def hold_pending_control(state: DeclarationState | None, decision: Decision) -> Decision:
    """The stricter of the pending control and a new revision's decision: an amendment of a
    declaration awaiting its machine-check is never released by it (inspect still raises it)."""
    if state is None or state.phase is not Phase.AWAITING_SCAN or state.decl is None:
        return decision
    if SEVERITY[decision.action] >= SEVERITY[Action.MACHINE_CHECK]:
        return decision
    reason = decision.selection_reason
    if state.emitted:  # the declaration-time instruction of the pending revision
        reason = msgspec.json.decode(state.emitted[0], type=_Selected).selection_reason
    note = (f"machine-check of revision {state.decl.revision} kept ({reason._value_}): "
            f"an amendment does not lower a control (this revision alone: {decision.action._value_})")
    return replace(decision, action=Action.MACHINE_CHECK, selection_reason=reason, reasons=(*decision.reasons, note))


def kept_scan_record(declaration_id: str, scan: ScanSummary) -> bytes:
    """The dead-letter value of a refused early scan: what the state kept of it, as JSON."""
    return orjson.dumps({
        "scan_id": scan.scan_id, "declaration_id": declaration_id, "revision": scan.revision, "port": scan.port,
        "device_id": scan.device_id, "device_type": scan.device_type, "anomaly_score": scan.anomaly_score,
        "verdict": scan.verdict._value_, "suspected_categories": scan.suspected_categories,
        "event_time": None if scan.event_time is None else utc_iso(scan.event_time), "kept_by_worker": True,
    })
