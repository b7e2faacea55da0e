"""An enterprise's current credit state, folded from credit and lifecycle events."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import orjson

from schemas import CreditClass, CreditEvent, CreditEventType, Qualification

ACTIVE = "active"


@dataclass(frozen=True, slots=True)
class EnterpriseCredit:
    credit_class: CreditClass = CreditClass.GENERAL
    joint_penalty: bool = False
    # qualification -> "active" | "suspended" | "revoked"
    qualifications: dict[str, str] = field(default_factory=dict)
    last_event_id: str | None = None

    @property
    def effective_class(self) -> CreditClass:
        """The class the policy applies: a joint penalty overrides any certification."""
        return CreditClass.JOINT_PENALTY if self.joint_penalty else self.credit_class

    def qualified_for(self, qualification: Qualification) -> bool:
        return self.qualifications.get(qualification.value) == ACTIVE

    def to_bytes(self) -> bytes:
        return orjson.dumps(
            {
                "credit_class": self.credit_class.value,
                "joint_penalty": self.joint_penalty,
                "qualifications": self.qualifications,
                "last_event_id": self.last_event_id,
            }
        )

    @classmethod
    def from_bytes(cls, raw: bytes) -> EnterpriseCredit:
        data = orjson.loads(raw)
        return cls(
            credit_class=CreditClass(data["credit_class"]),
            joint_penalty=bool(data["joint_penalty"]),
            qualifications=dict(data["qualifications"]),
            last_event_id=data.get("last_event_id"),
        )


UNKNOWN_ENTERPRISE = EnterpriseCredit()

_QUALIFICATION_STATUS = {
    CreditEventType.QUALIFICATION_REGISTERED: "active",
    CreditEventType.QUALIFICATION_SUSPENDED: "suspended",
    CreditEventType.QUALIFICATION_REVOKED: "revoked",
}


def apply_credit_event(state: EnterpriseCredit, event: CreditEvent) -> EnterpriseCredit:
    """Fold one event into the state. Applying the same event twice changes nothing."""
    if state.last_event_id == event.event_id:
        return state
    kind = event.event_type
    if kind is CreditEventType.CREDIT_CLASS_CHANGED:
        assert event.credit_class is not None  # enforced by the schema
        state = replace(state, credit_class=event.credit_class)
    elif kind in _QUALIFICATION_STATUS:
        assert event.qualification is not None
        quals = dict(state.qualifications)
        quals[event.qualification.value] = _QUALIFICATION_STATUS[kind]
        state = replace(state, qualifications=quals)
    elif kind is CreditEventType.JOINT_PENALTY_IMPOSED:
        state = replace(state, joint_penalty=True)
    elif kind is CreditEventType.JOINT_PENALTY_LIFTED:
        state = replace(state, joint_penalty=False)
    return replace(state, last_event_id=event.event_id)
