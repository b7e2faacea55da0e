"""Joint control, outbound: confirmed findings for the other agencies.

An inspection result that found something, and an analyst's confirmation of an early warning,
each become one ``JointFinding`` on the ``joint-findings`` topic, carrying only what another agency
acts on: the enterprise, port, HS code, what was found, duty recovered and when. Never the
officer's note, user names, scores or model internals.

The enterprise and HS code come from the declaration's state in the ``declaration-state`` table
(the full state, or the fingerprint it is compacted to, which keeps both); a source record that
arrives after the retention finds nothing and publishes the finding without them. Results and
reviews are keyed by declaration id on the declarations' partitions, so the worker that handles
one holds its declaration's state.

``finding_id`` is a hash of the source record's identity (the inspection's instruction id, the
warning id), so a redelivered result or review publishes the same finding id and the same bytes.
"""

from __future__ import annotations

import hashlib

from decision.state import DeclarationState, Fingerprint, Stored
from schemas import FindingKind, InspectionResult, JointFinding, ReviewVerdict, WarningReview


def finding_id(prefix: str, source_id: str) -> str:
    return f"{prefix}-{hashlib.blake2b(source_id.encode(), digest_size=10).hexdigest()}"


def _parties(stored: Stored | None) -> tuple[str | None, str | None]:
    """(enterprise id, HS code) of the declaration as the state holds them, None where unknown."""
    if isinstance(stored, Fingerprint):
        return stored.enterprise_id or None, stored.hs_code or None
    if isinstance(stored, DeclarationState) and stored.decl is not None:
        return stored.decl.enterprise_id or None, stored.decl.hs_code or None
    return None, None


def from_inspection(result: InspectionResult, stored: Stored | None) -> JointFinding | None:
    """The finding of an inspection that found something; None when it found nothing."""
    if not result.found:
        return None
    enterprise_id, hs_code = _parties(stored)
    return JointFinding(finding_id=finding_id("IR", result.instruction_id), kind=FindingKind.INSPECTION,
                        declaration_id=result.declaration_id, enterprise_id=enterprise_id, port=result.port, hs_code=hs_code,
                        category=result.category, duty_recovered=result.duty_recovered, found_at=result.inspected_at)


def from_review(review: WarningReview, stored: Stored | None) -> JointFinding | None:
    """The finding of a confirmed warning; None for a dismissed one."""
    if review.verdict is not ReviewVerdict.CONFIRMED:
        return None
    enterprise_id, hs_code = _parties(stored)
    if enterprise_id is None and review.subject_kind.value == "enterprise":
        enterprise_id = review.subject_id
    return JointFinding(finding_id=finding_id("EW", review.warning_id), kind=FindingKind.CONFIRMED_WARNING,
                        declaration_id=review.declaration_id, enterprise_id=enterprise_id, port=review.port, hs_code=hs_code,
                        category=review.rule, subject_kind=review.subject_kind, subject_id=review.subject_id,
                        found_at=review.reviewed_at)


def encode(finding: JointFinding) -> bytes:
    """Deterministic bytes (fields in schema order, None left out): a redelivery re-emits the same record."""
    return finding.model_dump_json(exclude_none=True).encode()
