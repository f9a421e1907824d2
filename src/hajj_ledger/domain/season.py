"""The Season aggregate: a Hajj season (named by its Hijri year) as the ministry opens it, with its calendar, and
closes, archives and restores it once its journeys are over.

Its calendar is days in Makkah, each window from and until a day, both included. Where the ministry gives none, a
day is worked out from the Hijri year by the Umm al-Qura calendar (the Kingdom's; `hijridate`):

- registration: from 8 Dhu al-Hijjah of the year before (the next season's registration opens as the current one
  enters the days of the Hajj) until the last day of Dhu al-Qadah (the Hajj visas' last days);
- arrivals: from 33 days before 6 Dhu al-Hijjah until 7 Dhu al-Hijjah (the eve of the days of the Hajj);
- the days of the Hajj: 8 to 13 Dhu al-Hijjah (a ministry announcing another first day moves all six);
- the last day of departures: 15 Muharram of the next year (mid-Muharram).

Open until its first arrival day, then running: derived from the calendar and the business clock (`stage_on`), as
no act of anyone marks it. Closing may begin only once the last day of departures and CLOSING_GRACE have passed.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, fields, replace
from datetime import date, datetime, timedelta
from functools import lru_cache
from typing import Any, ClassVar
from uuid import NAMESPACE_URL, UUID, uuid5

from eventsourcing.domain import Aggregate, event

from hajj_ledger.domain.catalogue import SEASON_STEPS, check_step
from hajj_ledger.domain.errors import ValidationError
from hajj_ledger.domain.events import RecordedEvent
from hajj_ledger.domain.vocabulary import SEASONS, SeasonStage, Stamp, hijri, makkah_day

SEASON_NAMESPACE = uuid5(NAMESPACE_URL, "https://hajj-ledger.example/season")
DHU_AL_QADAH, DHU_AL_HIJJAH, MUHARRAM = 11, 12, 1
HAJJ_DAYS = 6  # 8 to 13 Dhu al-Hijjah
ARRIVALS_AHEAD = timedelta(days=33)  # arrivals open this long before 6 Dhu al-Hijjah


def umm_al_qura(year: int, month: int, day: int) -> date:
    """A Hijri day's Gregorian date by the Umm al-Qura calendar; ValidationError outside its range (1343-1500)."""
    from hijridate import Hijri  # only where a calendar is worked out

    try:
        found = Hijri(year, month, day).to_gregorian()
    except (OverflowError, ValueError):
        raise ValidationError("season", f"{year} is outside the Umm al-Qura calendar (1343-1500)") from None
    return date(found.year, found.month, found.day)  # a plain date: hijridate's own is a subclass


@dataclass(frozen=True)
class Calendar:
    """A season's days (in Makkah): each window's first and last day."""

    registration_from: date
    registration_until: date
    arrivals_from: date
    arrivals_until: date
    hajj_from: date  # 8 Dhu al-Hijjah; the days of the Hajj run HAJJ_DAYS from it
    departures_until: date

    @property
    def hajj_until(self) -> date:
        return self.hajj_from + timedelta(days=HAJJ_DAYS - 1)

    @classmethod
    def of(cls, season: int, **given: date | None) -> Calendar:
        """The season's calendar: the days given, and the defaults (module docstring) for the others. The days of the
        Hajj given move the arrivals' defaults with them. ValidationError names a day out of order."""
        hajj_from = given.get("hajj_from") or umm_al_qura(season, DHU_AL_HIJJAH, 8)
        defaults = cls(
            registration_from=umm_al_qura(season - 1, DHU_AL_HIJJAH, 8),
            registration_until=umm_al_qura(season, DHU_AL_HIJJAH, 1) - timedelta(days=1),
            arrivals_from=hajj_from - timedelta(days=2) - ARRIVALS_AHEAD,
            arrivals_until=hajj_from - timedelta(days=1),
            hajj_from=hajj_from,
            departures_until=umm_al_qura(season + 1, MUHARRAM, 15),
        )
        calendar = replace(defaults, **{name: day for name, day in given.items() if day is not None})
        calendar.check()
        return calendar

    def check(self) -> None:
        """Each window ends on or after its first day; registration opens no later than arrivals, arrivals end
        before the Hajj, departures end after it."""
        order = (
            ("registration_until", self.registration_from <= self.registration_until, "registration_from"),
            ("arrivals_from", self.registration_from <= self.arrivals_from, "registration_from"),
            ("arrivals_until", self.arrivals_from <= self.arrivals_until, "arrivals_from"),
            ("hajj_from", self.arrivals_until < self.hajj_from, "arrivals_until"),
            ("departures_until", self.hajj_until < self.departures_until, "the last day of the Hajj"),
        )
        for name, in_order, after in order:
            if not in_order:
                raise ValidationError(name, f"{getattr(self, name)} is before {after} ({self._day(after)})")

    def _day(self, name: str) -> date:
        return self.hajj_until if name.startswith("the last") else getattr(self, name)

    def as_fields(self) -> dict[str, date]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


CALENDAR_FIELDS = tuple(f.name for f in fields(Calendar))


def current_of(windows: Iterable[tuple[int, date, date]], today: date) -> int | None:
    """The current season, of those opened, each as (season, first day of registration, last day of departures):
    the one whose window holds `today`, the earlier when two do (the next season's registration opens while the
    current one is in the Hajj); if none does, the latest that has begun; if none has begun, the first to begin;
    None when there is none."""
    ordered = sorted(windows)
    holding = [season for season, opens, ends in ordered if opens <= today <= ends]
    begun = [season for season, opens, _ in ordered if opens <= today]
    chosen = holding[:1] or begun[-1:] or [season for season, _, _ in ordered][:1]
    return chosen[0] if chosen else None


@dataclass(frozen=True)
class Archive:
    """Where closing wrote the season's events, and what proves them: the manifest's digest, their positions."""

    url: str
    manifest_digest: str
    first_position: int
    last_position: int
    event_count: int


class Season(Aggregate):
    """One season, by its Hijri year; `trigger_event` refuses what the catalogue does not allow."""

    CLOSING_GRACE: ClassVar[timedelta] = timedelta(days=30)  # after the last day of departures, before closing

    class Event(RecordedEvent):
        steps = SEASON_STEPS

    class SeasonOpened(Event, Aggregate.Created):
        season: int
        registration_from: date
        registration_until: date
        arrivals_from: date
        arrivals_until: date
        hajj_from: date  # 8 Dhu al-Hijjah
        hajj_until: date  # 13 Dhu al-Hijjah
        departures_until: date

    class SeasonClosing(Event):
        pass

    class SeasonClosed(Event):
        archive_url: str
        manifest_digest: str  # hex SHA-256 of the archive's manifest
        first_position: int  # of the season's events in the log
        last_position: int
        event_count: int

    class SeasonArchived(Event):
        pass

    class SeasonRestored(Event):
        pass

    class SeasonIdentitiesErased(Event):
        journey_ids: list[str]  # of the season's archived journeys (their identities left the vault), as text
        reason: str

    @classmethod
    def open(cls, stamp: Stamp, season: int, calendar: Calendar) -> Season:
        check_step(SEASON_STEPS, "SeasonOpened", None, {"stamp": stamp})
        return cls(stamp, season, **calendar.as_fields(), hajj_until=calendar.hajj_until)

    @staticmethod
    def create_id(season: int) -> UUID:
        """One aggregate a season: its id is the season's number's."""
        return _season_id(season)

    @staticmethod
    def every_id() -> list[UUID]:
        """The ids of every season there may be (SEASONS): the seasons opened are found by them."""
        return [Season.create_id(season) for season in SEASONS]

    @event(SeasonOpened)
    def __init__(
        self,
        stamp: Stamp,
        season: int,
        registration_from: date,
        registration_until: date,
        arrivals_from: date,
        arrivals_until: date,
        hajj_from: date,
        hajj_until: date,
        departures_until: date,
    ) -> None:
        self.season = season
        self.calendar = Calendar(
            registration_from, registration_until, arrivals_from, arrivals_until, hajj_from, departures_until
        )
        self.stage = SeasonStage.OPEN
        self.archive_written: Archive | None = None  # by closing

    @property
    def departures_until(self) -> date:
        return self.calendar.departures_until

    @property
    def closes_after(self) -> date:
        """The last day before closing may begin."""
        return self.calendar.departures_until + self.CLOSING_GRACE

    def window(self, name: str) -> tuple[date, date]:
        """A window's first and last day: `registration` or `arrivals`."""
        return getattr(self.calendar, f"{name}_from"), getattr(self.calendar, f"{name}_until")

    def within(self, name: str, moment: datetime) -> bool:
        first, last = self.window(name)
        return first <= makkah_day(moment) <= last

    def stage_on(self, moment: datetime) -> SeasonStage:
        """The stage as of `moment` on the business clock: open turns running on the first arrival day."""
        if self.stage is SeasonStage.OPEN and makkah_day(moment) >= self.calendar.arrivals_from:
            return SeasonStage.RUNNING
        return SeasonStage(self.stage)

    def hajj_days(self) -> str:
        return self.hajj_days_of(self.calendar.hajj_from, self.calendar.hajj_until)

    @staticmethod
    def hajj_days_of(first: date, last: date) -> str:
        """Days as people say them, by the Umm al-Qura calendar: `8-13 Dhu al-Hijjah 1446`."""
        said_first, said_last = hijri(first), hijri(last)
        day, _, month = said_first.partition(" ")
        return f"{day}-{said_last}" if said_last.endswith(month) else f"{said_first} - {said_last}"

    def trigger_event(self, event_class: type[Any], **kwargs: Any) -> None:
        check_step(SEASON_STEPS, event_class.__name__, self, kwargs)
        super().trigger_event(event_class, **kwargs)

    @event(SeasonClosing)
    def begin_closing(self, stamp: Stamp) -> None:
        pass

    @event(SeasonClosed)
    def close(
        self,
        stamp: Stamp,
        archive_url: str,
        manifest_digest: str,
        first_position: int,
        last_position: int,
        event_count: int,
    ) -> None:
        self.archive_written = Archive(archive_url, manifest_digest, first_position, last_position, event_count)

    @event(SeasonArchived)
    def archive(self, stamp: Stamp) -> None:
        pass

    @event(SeasonRestored)
    def restore(self, stamp: Stamp) -> None:
        pass

    @event(SeasonIdentitiesErased)
    def erase_identities(self, stamp: Stamp, journey_ids: list[str], reason: str) -> None:
        # Recorded on the season: its journeys' own histories are in the archive, out of the hot store.
        pass


@lru_cache(maxsize=64)
def _season_id(season: int) -> UUID:
    # Every step of a journey looks its season up (the season's refusal): a uuid5 each time was 4% of ingest.
    return uuid5(SEASON_NAMESPACE, str(season))
