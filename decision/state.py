"""What the worker keeps per declaration, and the instruction it emits: typed, with versioned bytes.

``DeclarationState`` is the value of the ``declaration-state`` table (key: declaration id; a
finalised one is replaced by a ``Fingerprint`` after a while, ``decision.retention``) and
``ScanDeadline`` the value of the ``scan-deadlines`` table. Both are stored as one format byte
followed by msgpack (``msgspec``, positional fields); a reader refuses a format byte it does not
know instead of guessing. Records written as JSON objects by earlier releases (first byte ``{``)
are still read, so a worker can be upgraded over an existing changelog.

``Instruction`` is the engine's typed ``schemas.ControlInstruction``: the same fields in the same
order (a unit test pins that), encoded to the JSON the stations read. The instructions a state
has emitted are kept as their exact bytes, so a redelivered event re-emits the same bytes.
"""

from __future__ import annotations

import enum
import hashlib
import struct
from dataclasses import dataclass
from typing import Any, Final

import msgspec
import orjson

from schemas import Action, CreditClass, ScanVerdict, Scenario, SelectionReason, Stage

SCHEMA_VERSION: Final = 1  # of the instruction record (schemas.ControlInstruction)
FORMAT_V1: Final = b"\x01"  # state and deadline values: this byte, then msgpack


class Phase(enum.Enum):
    AWAITING_SCAN = "awaiting-scan"  # machine-check issued, waiting for the scan or the deadline
    FINAL = "final"  # the final instruction of the stored revision was emitted
    SCAN_FIRST = "scan-first"  # a scan arrived before its declaration


class Outcome(enum.Enum):
    """What one transition did (a metric label for everything but DECIDED and TIMEOUT)."""

    DECIDED = "decided"
    DUPLICATE = "duplicate"  # redelivered: the stored instruction bytes are emitted again
    STALE = "stale"  # an older revision than the stored one
    LATE_REVISION = "late-revision"  # a new revision after the final outcome: not reopened
    EARLY_SCAN = "early-scan"  # kept until its declaration arrives
    IGNORED_SCAN = "ignored-scan"  # another scan after the final outcome
    IGNORED_TIMEOUT = "ignored-timeout"  # the deadline of a revision no longer awaiting its scan
    TIMEOUT = "timeout"  # no scan before the deadline: inspect
    REFUSED = "refused"  # dead-lettered with a reason (decision.guards): the state is unchanged


class RevisionKind(enum.Enum):
    """A declaration revision against the stored state, before any scoring."""

    NEW = "new"
    DUPLICATE = "duplicate"
    STALE = "stale"
    LATE_REVISION = "late-revision"
    ENTERPRISE_CHANGED = "enterprise-changed"  # an amendment of a pending control naming another enterprise: refused
    PORT_CHANGED = "port-changed"  # an amendment of a pending control naming another port: refused


class Instruction(msgspec.Struct, omit_defaults=True):
    """A control instruction (``schemas.ControlInstruction``), as the engine builds it.

    ``omit_defaults``: only ``centralised_id`` and ``risk_types`` have defaults, so only they are
    left out when unset (an ordinary declaration's instruction has no such keys)."""

    schema_version: int
    instruction_id: str
    declaration_id: str
    revision: int
    port: str
    enterprise_id: str
    scenario: Scenario
    stage: Stage
    action: Action
    final: bool
    selection_reason: SelectionReason
    credit_class: CreditClass
    score: float | None
    model_version: str | None
    policy_version: str
    reasons: list[str]
    risk_hits: list[str]
    thresholds: tuple[float, float] | None
    suspected_categories: list[str]
    scan_id: str | None
    event_time: str  # ISO 8601, UTC, "Z"
    decided_at: str  # ISO 8601, UTC, "Z"
    centralised_id: str | None = None
    # The risk types that selected the declaration (routed models); omitted when empty.
    risk_types: list[str] = msgspec.field(default_factory=list)


class DeclarationSummary(msgspec.Struct, array_like=True):
    """What later stages need to know about the decided revision."""

    declaration_id: str
    revision: int
    port: str
    enterprise_id: str
    scenario: Scenario
    event_time: str  # ISO 8601, UTC, "Z", as the instructions carry it
    centralised_id: str | None = None
    # Appended with a default so that states stored without it still decode ("": not known).
    hs_code: str = ""


class ScanSummary(msgspec.Struct, array_like=True):
    """What a scan instruction needs of the scan result (kept when the scan comes first)."""

    scan_id: str
    revision: int
    device_type: str
    anomaly_score: float
    verdict: ScanVerdict
    suspected_categories: list[str]
    # Appended with defaults so that states stored without them still decode (an early scan kept
    # by an earlier release binds to no declaration: port "" matches none).
    port: str = ""
    device_id: str = ""
    event_time: float | None = None  # epoch seconds


class DeclarationState(msgspec.Struct, array_like=True):
    phase: Phase
    decl: DeclarationSummary | None = None  # None only in SCAN_FIRST
    credit_class: CreditClass = CreditClass.GENERAL
    score: float | None = None
    policy_version: str = ""
    model_version: str | None = None
    risk_hits: list[str] = msgspec.field(default_factory=list)
    emitted: list[bytes] = msgspec.field(default_factory=list)  # the exact bytes of every instruction emitted
    early_scan: ScanSummary | None = None  # a scan for a revision not decided yet
    final_scan_id: str | None = None  # the scan that gave the final outcome
    changed_at: float = 0.0  # epoch seconds of the last write (0: written before the lifecycle): starts its expiry clock
    warnings: list[bytes] = msgspec.field(default_factory=list)  # the exact bytes of every early warning raised
    # Appended with a default so that states stored without it still decode.
    risk_types: list[str] = msgspec.field(default_factory=list)  # carried to the scan and timeout instructions


class ScanDeadline(msgspec.Struct, array_like=True):
    """A machine-check awaiting its scan (``scan-deadlines`` table)."""

    deadline: float  # epoch seconds
    revision: int
    port: str
    partition: int


_encoder = msgspec.msgpack.Encoder()
_state_decoder = msgspec.msgpack.Decoder(DeclarationState)
_deadline_decoder = msgspec.msgpack.Decoder(ScanDeadline)
_instruction_encoder = msgspec.json.Encoder()


class UnknownFormat(ValueError):
    """A stored value in a format this release does not know (written by a newer one?)."""


def encode_instruction(instruction: Instruction) -> bytes:
    return _instruction_encoder.encode(instruction)


def encode_state(state: DeclarationState) -> bytes:
    return FORMAT_V1 + _encoder.encode(state)


def decode_state(raw: bytes) -> DeclarationState:
    if raw[:1] == FORMAT_V1:
        return _state_decoder.decode(memoryview(raw)[1:])
    if raw[:1] == b"{":
        return _state_from_json(orjson.loads(raw))
    raise UnknownFormat(f"declaration state in unknown format {raw[:1]!r}")


def encode_deadline(deadline: ScanDeadline) -> bytes:
    return FORMAT_V1 + _encoder.encode(deadline)


def decode_deadline(raw: bytes) -> ScanDeadline:
    if raw[:1] == FORMAT_V1:
        return _deadline_decoder.decode(memoryview(raw)[1:])
    if raw[:1] == b"{":
        d = orjson.loads(raw)
        return ScanDeadline(d["deadline"], d["revision"], d["port"], d["partition"])
    raise UnknownFormat(f"scan deadline in unknown format {raw[:1]!r}")


def _state_from_json(d: dict[str, Any]) -> DeclarationState:
    """A state record of the JSON format (releases before the typed state)."""
    decl = d.get("decl")
    early = d.get("early_scan")
    versions = d.get("versions") or ["", None]
    return DeclarationState(
        phase=Phase(d["phase"]),
        decl=None if decl is None else DeclarationSummary(
            decl["declaration_id"], decl["revision"], decl["port"], decl["enterprise_id"], Scenario(decl["scenario"]),
            decl["event_time"], decl.get("centralised_id"),
        ),
        credit_class=CreditClass(d.get("credit_class", CreditClass.GENERAL.value)),
        score=d.get("score"),
        policy_version=versions[0],
        model_version=versions[1],
        risk_hits=list(d.get("risk_hits", ())),
        emitted=[orjson.dumps(i) for i in d.get("emitted", ())],
        early_scan=None if early is None else ScanSummary(
            early["scan_id"], early["revision"], early["device_type"], early["anomaly_score"], ScanVerdict(early["verdict"]),
            list(early.get("suspected_categories") or ()),
        ),
        final_scan_id=d.get("final_scan_id"),
    )


# ---- the compact fingerprint of a finalised declaration (decision.retention) ---------------------
FORMAT_FINGERPRINT: Final = b"\x02"
# After the format byte, fixed-width and big-endian: finalised at (epoch seconds, uint32), revision
# (uint32), the final instructions' stages (uint8 bitmask, STAGE_BITS) and the first 8 bytes of the
# BLAKE2b of the emitted instruction bytes. Fixed width: the index rebuild reads the time without
# decoding, and a retained declaration costs 18 bytes of value.
_FINGERPRINT = struct.Struct(">IIB8s")
# The same, followed by the declaration's HS code and enterprise id (each a length byte and ASCII):
# what a finding that arrives after compaction needs (``streams.joint``), some 20 bytes more.
FORMAT_FINGERPRINT_PARTIES: Final = b"\x03"
STAGE_BITS: Final = {Stage.DECLARATION: 1, Stage.SCAN: 2, Stage.TIMEOUT: 4}
MAX_KEPT_TEXT = 64  # bytes of HS code or enterprise id a fingerprint keeps (the schemas' bounds)


@dataclass(frozen=True, slots=True)
class Fingerprint:
    """What is kept of a declaration once its final outcome is long delivered: enough to recognise
    a redelivered, stale or late record, never enough to re-emit (the instruction went out long
    before); and whose goods they were, for a finding that follows."""

    finalised_at: int  # epoch seconds
    revision: int
    stages: int  # STAGE_BITS of the instructions emitted
    digest: bytes  # emitted_digest() of their bytes
    hs_code: str = ""  # "": not known (compacted before it was kept)
    enterprise_id: str = ""

    def stage_names(self) -> list[str]:
        return [stage._value_ for stage, bit in STAGE_BITS.items() if self.stages & bit]


def emitted_digest(emitted: list[bytes]) -> bytes:
    """A short hash of the exact instruction bytes a declaration emitted (for audit: which bytes went out)."""
    h = hashlib.blake2b(digest_size=8)
    for raw in emitted:
        h.update(len(raw).to_bytes(4, "big"))
        h.update(raw)
    return h.digest()


def _short_text(text: str) -> bytes:
    raw = text.encode("ascii", errors="replace")[:MAX_KEPT_TEXT]
    return len(raw).to_bytes(1, "big") + raw


def encode_fingerprint(fp: Fingerprint) -> bytes:
    head = _FINGERPRINT.pack(fp.finalised_at, fp.revision, fp.stages, fp.digest)
    if not (fp.hs_code or fp.enterprise_id):
        return FORMAT_FINGERPRINT + head
    return FORMAT_FINGERPRINT_PARTIES + head + _short_text(fp.hs_code) + _short_text(fp.enterprise_id)


def fingerprint_time(raw: bytes) -> int | None:
    """The finalised-at time of a stored fingerprint, read without decoding it; None for any other value."""
    if (raw[:1] == FORMAT_FINGERPRINT and len(raw) == 1 + _FINGERPRINT.size) or \
            (raw[:1] == FORMAT_FINGERPRINT_PARTIES and len(raw) >= 3 + _FINGERPRINT.size):
        return int.from_bytes(raw[1:5], "big")
    return None


Stored = DeclarationState | Fingerprint  # a value of the declaration-state table


def _decode_parties(raw: bytes) -> tuple[str, str]:
    at = 1 + _FINGERPRINT.size
    texts: list[str] = []
    for _ in range(2):
        if at >= len(raw) or at + 1 + raw[at] > len(raw):
            raise UnknownFormat(f"declaration fingerprint of {len(raw)} bytes")
        texts.append(raw[at + 1:at + 1 + raw[at]].decode("ascii", errors="replace"))
        at += 1 + raw[at]
    if at != len(raw):
        raise UnknownFormat(f"declaration fingerprint of {len(raw)} bytes")
    return texts[0], texts[1]


def decode_stored(raw: bytes) -> Stored:
    """A value of the declaration-state table: a full state (``decode_state``) or a fingerprint."""
    if raw[:1] == FORMAT_FINGERPRINT:
        if len(raw) != 1 + _FINGERPRINT.size:
            raise UnknownFormat(f"declaration fingerprint of {len(raw)} bytes")
        at, revision, stages, digest = _FINGERPRINT.unpack_from(raw, 1)
        return Fingerprint(at, revision, stages, digest)
    if raw[:1] == FORMAT_FINGERPRINT_PARTIES:
        if len(raw) < 3 + _FINGERPRINT.size:
            raise UnknownFormat(f"declaration fingerprint of {len(raw)} bytes")
        at, revision, stages, digest = _FINGERPRINT.unpack_from(raw, 1)
        hs_code, enterprise_id = _decode_parties(raw)
        return Fingerprint(at, revision, stages, digest, hs_code, enterprise_id)
    return decode_state(raw)
