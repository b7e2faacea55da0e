"""The challenger's view of a decision: its score beside the champion's, and what the policy would
have decided with it.

A shadow (challenger) model is scored on every micro-batch the champion scores while one is loaded
(``riskmodels.serving``); it never changes an instruction. :func:`shadow_of` turns one decided
declaration revision into a :class:`Shadow` record, the engine's typed ``schemas.ShadowScore``
(same fields, same order; a unit test pins that), which the worker publishes with the batch's
instructions so that the archive can compare both models on the inspections that follow.

The challenger's action is the policy's decision with only the score replaced: the same credit,
risk-list hits, rules, random draw and capacity-adapted thresholds, and the same rule that an
amendment does not lower a pending control. Where the two actions differ, the challenger would
have sent the declaration down another lane.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Final

import msgspec

from decision.guards import hold_pending_control
from decision.state import SCHEMA_VERSION, DeclarationState, Instruction
from policy.decide import Decision
from schemas import Action, CreditClass, Scenario

_encoder: Final = msgspec.json.Encoder()


class Shadow(msgspec.Struct):
    """A challenger's score of one declaration revision (``schemas.ShadowScore``)."""

    schema_version: int
    instruction_id: str  # the declaration-stage instruction the champion's score decided
    declaration_id: str
    revision: int
    port: str
    scenario: Scenario
    credit_class: CreditClass
    champion_version: str
    champion_score: float
    champion_action: Action
    challenger_version: str
    challenger_score: float
    challenger_action: Action
    thresholds: tuple[float, float] | None
    decided_at: str  # ISO 8601, UTC, "Z" (the instruction's)


def challenger_action(state: DeclarationState | None, challenger: Decision) -> Action:
    """What the instruction would have said with the challenger's decision (``challenger``:
    ``policy.decide.decide`` with the challenger's score and everything else as for the champion)."""
    return hold_pending_control(state, replace(challenger, reasons=())).action


def shadow_of(first: Instruction, challenger_version: str, challenger_score: float, action: Action) -> Shadow | None:
    """The shadow record of the declaration-stage instruction ``first``; None when the champion gave
    no score or version (nothing to compare)."""
    if first.score is None or first.model_version is None:
        return None
    return Shadow(SCHEMA_VERSION, first.instruction_id, first.declaration_id, first.revision, first.port, first.scenario,
                  first.credit_class, first.model_version, first.score, first.action, challenger_version, challenger_score,
                  action, first.thresholds, first.decided_at)


def encode_shadow(shadow: Shadow) -> bytes:
    return _encoder.encode(shadow)
