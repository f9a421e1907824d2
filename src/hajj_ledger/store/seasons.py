"""Which season each stored event belongs to: the store keeps it beside the event (a column; on PostgreSQL the key
the log is partitioned by), so that a closed season leaves the hot store as a whole partition.

A journey, a service offer and a contract name their season; a bus trip belongs to the season of its departure
day (departures run until mid-Muharram, so a day counts for the Hijri year of sixty days before it); anything else
(a licensed building) is of no season, 0, and is never closed.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Iterator
from datetime import date, datetime, timedelta
from typing import Any
from uuid import UUID

import orjson
from eventsourcing.utils import get_topic

from hajj_ledger.domain.season import Season

NO_SEASON = 0
SEASON_TOPIC = get_topic(Season) + "."  # a season's own events' topics begin so
_SEASON_REACH = timedelta(days=60)  # a trip on 15 Muharram 1447 still carries pilgrims of season 1446


def season_on(moment: datetime) -> int:
    """The season a trip departing at `moment` serves (none, outside the Hijri calendar kept: year 1, 9999)."""
    try:
        day = (moment - _SEASON_REACH).date()
    except OverflowError:  # within sixty days of year 1
        return NO_SEASON
    return _hijri_year(day)


@functools.cache
def _hijri_year(day: date) -> int:
    from hijridate import Gregorian

    try:
        return int(Gregorian(day.year, day.month, day.day).to_hijri().year)
    except OverflowError:
        return NO_SEASON


def season_of(aggregate: Any) -> int:
    """The season of an aggregate the ledger holds. A season's own aggregate (its calendar and stages) is of no
    season: it records the season's close, so it never leaves with it."""
    if isinstance(aggregate, Season):
        return NO_SEASON
    season = getattr(aggregate, "season", None)
    if isinstance(season, int):
        return season
    departs_at = getattr(aggregate, "departs_at", None)
    if isinstance(departs_at, datetime):
        return season_on(departs_at)
    return NO_SEASON


def first_seasons(first_events: Iterable[tuple[Any, str, bytes]]) -> Iterator[tuple[Any, int]]:
    """(aggregate id, season) from (aggregate id, its first event's topic and state as stored), for the aggregates of
    a season: what a store made before seasons were kept is given (migration 0009; SQLite at the ledger's start)."""
    for aggregate_id, topic, state in first_events:
        if topic.startswith(SEASON_TOPIC):
            continue
        season = season_of_first(state)
        if season != NO_SEASON:
            yield aggregate_id, season


def season_of_first(state: bytes) -> int:
    """The season of an aggregate from its first event as stored (a store made before seasons were kept)."""
    data = orjson.loads(state)
    season = data.get("season")
    if isinstance(season, int):
        return season
    departs_at = data.get("departs_at")
    if isinstance(departs_at, str):
        return season_on(datetime.fromisoformat(departs_at))
    return NO_SEASON


def season_partition(table: str, season: int) -> str:
    """The name of a season's partition of the log or of the receipts (PostgreSQL)."""
    return f"{table}_s{season}"


class SeasonShutError(Exception):
    """The store refused a batch that writes into a season another writer has put into closing or later: the
    season's own aggregate has recorded more than its opening (read under the log's lock, so no write of the season
    commits after its SeasonClosing). Nothing was written."""

    def __init__(self, season: int) -> None:
        super().__init__(f"season {season} is past its opening: it takes no more events")
        self.season = season


def seasons_written(seasons: Iterable[int]) -> dict[UUID, int]:
    """The seasons a batch writes into, by their own aggregates' ids (what the store checks their stage by)."""
    return {Season.create_id(season): season for season in set(seasons) if season != NO_SEASON}


def season_shut(written: dict[UUID, int], season_id: UUID | str) -> SeasonShutError:
    """The refusal for a season found past its opening, by its aggregate's id as stored."""
    return SeasonShutError(written[season_id if isinstance(season_id, UUID) else UUID(season_id)])
