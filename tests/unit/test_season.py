"""The season: its calendar from the Hijri year (Umm al-Qura) or as the ministry gives it, and its stages."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest

from hajj_ledger.domain.catalogue import SEASON_STEPS
from hajj_ledger.domain.errors import IllegalStepError, PermissionDeniedError, ValidationError
from hajj_ledger.domain.season import Calendar, Season
from hajj_ledger.domain.vocabulary import Role, SeasonStage
from tests.support import stamp


def at(day: date, hour: int = 9) -> datetime:
    return datetime(day.year, day.month, day.day, hour, tzinfo=UTC)


def opened(season: int = 1446, **given: date) -> Season:
    calendar = Calendar.of(season, **given)
    return Season.open(stamp(Role.MINISTRY, at=at(calendar.registration_from)), season, calendar)


# The days of the Hajj (8-13 Dhu al-Hijjah) by the Umm al-Qura calendar, as the domain brief gives them.
@pytest.mark.parametrize(
    ("season", "first", "last"),
    [
        (1444, date(2023, 6, 26), date(2023, 7, 1)),
        (1445, date(2024, 6, 14), date(2024, 6, 19)),
        (1446, date(2025, 6, 4), date(2025, 6, 9)),
    ],
)
def test_the_days_of_the_hajj_come_from_the_hijri_year(season: int, first: date, last: date) -> None:
    calendar = Calendar.of(season)
    assert (calendar.hajj_from, calendar.hajj_until) == (first, last)
    assert opened(season).hajj_days() == f"8-13 Dhu al-Hijjah {season}"


def test_the_default_windows_of_1446() -> None:
    calendar = Calendar.of(1446)
    # Registration from 8 Dhu al-Hijjah 1445 to the last of Dhu al-Qadah 1446; arrivals from 33 days before
    # 6 Dhu al-Hijjah to the 7th; departures until 15 Muharram 1447.
    assert (calendar.registration_from, calendar.registration_until) == (date(2024, 6, 14), date(2025, 5, 27))
    assert (calendar.arrivals_from, calendar.arrivals_until) == (date(2025, 4, 30), date(2025, 6, 3))
    assert calendar.departures_until == date(2025, 7, 10)


def test_the_next_seasons_registration_opens_during_the_hajj() -> None:
    this, following = Calendar.of(1446), Calendar.of(1447)
    assert this.hajj_from <= following.registration_from <= this.departures_until


def test_days_given_replace_the_defaults_and_the_hajj_moves_the_arrivals() -> None:
    calendar = Calendar.of(1446, hajj_from=date(2025, 6, 5), registration_until=date(2025, 4, 1))
    assert calendar.hajj_until == date(2025, 6, 10)
    assert calendar.arrivals_until == date(2025, 6, 4)
    assert calendar.registration_until == date(2025, 4, 1)


@pytest.mark.parametrize(
    ("given", "field"),
    [
        ({"registration_until": date(2024, 6, 1)}, "registration_until"),
        ({"arrivals_from": date(2025, 6, 4)}, "arrivals_until"),
        ({"arrivals_until": date(2025, 6, 4)}, "hajj_from"),
        ({"departures_until": date(2025, 6, 9)}, "departures_until"),
        ({"arrivals_from": date(2024, 1, 1)}, "arrivals_from"),
    ],
)
def test_a_calendar_out_of_order_is_refused_naming_the_day(given: dict[str, date], field: str) -> None:
    with pytest.raises(ValidationError) as refused:
        Calendar.of(1446, **given)
    assert refused.value.field == field


def test_a_year_beyond_the_umm_al_qura_calendar_is_refused() -> None:
    with pytest.raises(ValidationError, match="Umm al-Qura"):
        Calendar.of(1550)


def test_the_id_follows_from_the_season() -> None:
    assert Season.create_id(1446) == opened(1446).id != Season.create_id(1447)


def test_open_turns_running_on_the_first_arrival_day() -> None:
    season = opened()
    first = season.calendar.arrivals_from
    assert season.stage_on(at(first - timedelta(days=1))) is SeasonStage.OPEN
    assert season.stage_on(at(first)) is SeasonStage.RUNNING
    assert stage(season) is SeasonStage.OPEN  # no event marks it


def test_closing_only_after_departures_and_the_grace_period() -> None:
    season = opened()
    last = season.calendar.departures_until + Season.CLOSING_GRACE
    with pytest.raises(IllegalStepError) as refused:
        season.begin_closing(stamp(Role.MINISTRY, at=at(last)))
    assert refused.value.stage == "running"
    assert f"closing begins after {last}" in str(refused.value)
    season.begin_closing(stamp(Role.MINISTRY, at=at(last + timedelta(days=1))))
    assert stage(season) is SeasonStage.CLOSING


def stage(season: Season) -> SeasonStage:
    return SeasonStage(season.stage)


def _closing() -> Season:
    season = opened()
    season.begin_closing(stamp(Role.MINISTRY, at=at(season.closes_after + timedelta(days=1))))
    return season


def test_closed_archived_restored_in_that_order() -> None:
    season = _closing()
    late = at(season.closes_after + timedelta(days=2))
    with pytest.raises(IllegalStepError, match="current stage 'closing'"):
        season.archive(stamp(Role.MINISTRY, at=late))
    season.close(stamp(Role.MINISTRY, at=late), "s3://archive/1446", "ab" * 32, 1, 100, 90)
    assert stage(season) is SeasonStage.CLOSED
    assert season.archive_written is not None and season.archive_written.event_count == 90
    with pytest.raises(IllegalStepError, match="current stage 'closed'"):
        season.restore(stamp(Role.MINISTRY, at=late))
    season.archive(stamp(Role.MINISTRY, at=late))
    assert stage(season) is SeasonStage.ARCHIVED
    with pytest.raises(IllegalStepError, match="current stage 'archived'"):
        season.close(stamp(Role.MINISTRY, at=late), "s3://archive/1446", "ab" * 32, 1, 100, 90)
    season.restore(stamp(Role.MINISTRY, at=late))
    assert stage(season) is SeasonStage.CLOSED


def test_only_the_ministry_opens_and_closes_seasons() -> None:
    assert all(step.roles == {Role.MINISTRY} for step in SEASON_STEPS.values())
    with pytest.raises(PermissionDeniedError):
        Season.open(stamp(Role.MISSION), 1446, Calendar.of(1446))
    season = opened()
    with pytest.raises(PermissionDeniedError):
        season.begin_closing(stamp(Role.AUDITOR, at=at(season.closes_after + timedelta(days=1))))
