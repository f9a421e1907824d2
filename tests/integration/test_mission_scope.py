"""A mission's key is made for one country: its scope names it, as its journeys carry it."""

from __future__ import annotations

import pytest

from hajj_ledger.api import agencies
from hajj_ledger.domain.errors import ValidationError
from hajj_ledger.domain.vocabulary import Role
from hajj_ledger.migrations import upgrade
from hajj_ledger.projections.schema import engine_for


def test_a_mission_scope_must_name_its_country(store_url: str) -> None:
    engine = engine_for(store_url)
    try:
        upgrade(engine)
        with engine.begin() as connection:
            for scope in ("mission-demo", "mission-idn-1", None):
                with pytest.raises(ValidationError, match="names its country"):
                    agencies.add(connection, Role.MISSION, "a mission", scope)
            agency, _ = agencies.add(connection, Role.MISSION, "Indonesia's mission 7", "mission-IDN-00007")
            assert agency.agency_id == "mission-IDN-00007"
    finally:
        engine.dispose()
