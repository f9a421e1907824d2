"""The season the bench's own commands belong to: opened by the ministry before anything registers (a season never
opened takes no registration), with a calendar around today, since those commands happen now (registrations and
arrivals dated today), not on the simulated season's days."""

from __future__ import annotations

from contextlib import suppress
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import uuid4

SEASON = 1446


def open_season_now(ledger: Any, season: int = SEASON) -> None:
    """`season` opened in the ledger's store, its registration and arrivals windows holding today (in Makkah, a day
    either side); a season opened already is left as it is."""
    from hajj_ledger.domain.errors import ConflictError
    from hajj_ledger.domain.season_commands import OpenSeason
    from hajj_ledger.domain.vocabulary import Actor, Role

    today = datetime.now(UTC).date()
    opening = OpenSeason(
        command_id=uuid4(),
        occurred_at=datetime.now(UTC) - timedelta(minutes=1),
        season=season,
        registration_from=today - timedelta(days=30),
        registration_until=today + timedelta(days=30),
        arrivals_from=today - timedelta(days=30),
        arrivals_until=today + timedelta(days=30),
        hajj_from=today + timedelta(days=31),
        departures_until=today + timedelta(days=60),
    )
    with suppress(ConflictError):
        ledger.record(opening, Actor("ministry-bench", Role.MINISTRY))


def open_season_now_in(url: str, season: int = SEASON) -> None:
    """The same, in the store at `url`, by a ledger of its own."""
    from hajj_ledger.ledger import JourneyLedger

    with JourneyLedger(url) as ledger:
        open_season_now(ledger, season)
