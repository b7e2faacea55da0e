"""The engine's shadow record is the published ShadowScore, field for field."""

from __future__ import annotations

from decision.shadow import Shadow
from schemas import ShadowScore


def test_shadow_struct_has_the_fields_of_the_schema_in_order() -> None:
    assert Shadow.__struct_fields__ == tuple(ShadowScore.model_fields)
