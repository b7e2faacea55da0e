"""Shared simulator fixtures: offices are built once per session (population draws take ~0.4 s)."""

from __future__ import annotations

import pytest

from portsim.traffic import PortOffice


@pytest.fixture(scope="session")
def office() -> PortOffice:
    """The default office (seed 7, 70,000 enterprises)."""
    return PortOffice()


@pytest.fixture(scope="session")
def small_office() -> PortOffice:
    return PortOffice(seed=11, enterprises=3_000)


@pytest.fixture(scope="session")
def sample(office: PortOffice) -> list:
    """120,000 declarations (dict, truth) of the default office: enough for rates of rare patterns."""
    return list(office.declaration_dicts(120_000))
