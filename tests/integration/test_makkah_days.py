"""Days are Makkah's (UTC+3): an arrival late in the evening UTC is the next day there. Seasons stay apart."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date, timedelta
from typing import Any
from uuid import uuid4

import pytest
import sqlalchemy as sa

from hajj_ledger.audit.reads import print_history
from hajj_ledger.domain.journey import Journey
from hajj_ledger.domain.vocabulary import Role, Stage, hijri, makkah_day
from hajj_ledger.ledger import JourneyLedger, Outcome
from hajj_ledger.migrations import current, head, upgrade
from hajj_ledger.projections.schema import engine_for
from hajj_ledger.projections.season_funnel import funnel
from tests.support import T0, actor, command, journey_at, open_market, open_season, project, view_rows

EVENING = T0.replace(hour=22, minute=30)  # 22:30 UTC on 1 May 2025 is 01:30 on 2 May in Makkah
NEXT_DAY, SAME_DAY = date(2025, 5, 2), date(2025, 5, 1)


def _record(ledger: JourneyLedger, role: Role, event: str, **fields: Any) -> Outcome:
    [result] = ledger.record_batch([(command(event, **fields), actor(role))])
    assert isinstance(result, Outcome), result
    return result


@pytest.fixture
def engine(store_url: str) -> Iterator[sa.Engine]:
    found = engine_for(store_url)
    yield found
    found.dispose()


def test_per_day_views_count_the_day_in_makkah_and_keep_seasons_apart(store_url: str, engine: sa.Engine) -> None:
    ledger = JourneyLedger(store_url)
    try:
        pilgrim = uuid4()
        journey = Journey.create_id(1446, pilgrim)
        open_season(ledger, 1446)
        open_season(ledger, 1447, registration_from=date(2025, 4, 1))  # registering while 1446 runs
        _record(ledger, Role.MISSION, "Registered", pilgrim_id=pilgrim, season=1446, country="IDN")
        _record(ledger, Role.MISSION, "Registered", pilgrim_id=uuid4(), season=1447, country="IDN")
        contract_id = open_market(ledger, 1).contract_id
        _record(ledger, Role.MISSION, "PackageContracted", journey_id=journey, contract_id=contract_id)
        _record(ledger, Role.MISSION, "VisaRequested", journey_id=journey)
        _record(ledger, Role.MOFA, "VisaIssued", journey_id=journey, valid_until=T0 + timedelta(days=60))
        flight = {"port": "JED-HAJJ", "flight": "GA901"}
        _record(ledger, Role.MISSION, "FlightBooked", journey_id=journey, direction="arrival", scheduled_at=EVENING,
                **flight)  # fmt: skip
        _record(ledger, Role.GACA, "ArrivedAtPort", journey_id=journey, mode="air", occurred_at=EVENING, **flight)
        _record(ledger, Role.MOH, "HospitalAdmitted", journey_id=journey, facility="H-1", occurred_at=EVENING)
    finally:
        ledger.close()
    upgrade(engine)
    project(store_url)
    with engine.connect() as connection:
        [landed] = view_rows(connection, "port_arrivals", day=NEXT_DAY)
        assert (landed["booked"], landed["arrived"]) == (1, 1)
        assert view_rows(connection, "port_arrivals", day=SAME_DAY) == []
        assert funnel(connection, season=1446) == {"registered": 1, "contracted": 1, "visa_requested": 1,
                                                   "visa_issued": 1, "arrived": 1}  # fmt: skip
        assert funnel(connection, season=1447) == {"registered": 1}
        before = funnel(connection, season=1446, until=SAME_DAY)
        assert before == {"registered": 1, "contracted": 1, "visa_requested": 1, "visa_issued": 1}
        assert [(c["season"], c["admitted"]) for c in view_rows(connection, "health_cases")] == [(1446, 1)]


def test_the_migration_gives_an_old_funnel_its_season(engine: sa.Engine) -> None:
    upgrade(engine, "0002")
    with engine.begin() as connection:  # season_funnel as revision 0002 made it: no season
        connection.execute(sa.text('DROP VIEW "season_funnel"'))
        connection.execute(sa.text('DROP TABLE "season_funnel__a"'))
        connection.execute(sa.text('CREATE TABLE "season_funnel__a" (day DATE, stage VARCHAR(32), reached INTEGER)'))
        connection.execute(sa.text('CREATE VIEW "season_funnel" AS SELECT day, stage, reached FROM "season_funnel__a"'))
    upgrade(engine)
    assert current(engine) == head()
    columns = {c["name"] for c in sa.inspect(engine).get_columns("season_funnel__a")}
    assert {"season", "day", "stage", "country", "region", "port", "reached"} == columns


def test_a_day_is_shown_with_its_hijri_date() -> None:
    assert makkah_day(EVENING) == NEXT_DAY
    assert hijri(date(2025, 6, 5)) == "9 Dhu al-Hijjah 1446"
    assert hijri(date(1900, 1, 1)) == ""  # beyond the Umm al-Qura tables


def test_a_history_shows_each_day_in_makkah_with_its_hijri_date(capsys: pytest.CaptureFixture[str]) -> None:
    journey = journey_at(Stage.CONTRACTED)
    print_history([e for e in journey.collect_events() if isinstance(e, Journey.Event)], as_json=False)
    assert "(2025-05-01 in Makkah, 3 Dhu al-Qa'dah 1446)" in capsys.readouterr().out
