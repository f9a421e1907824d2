"""A whole season, generated through the ledger's real commands, each recorded by the role that records it in life.

The season is planned mission by mission (100-400 pilgrims of one country, one company) and recorded chunk by
chunk: a chunk's commands are sorted by when they happened and sent in the ledger's normal batches, then
forgotten, so memory stays flat however many pilgrims there are. Countries, regions and modes of travel are
allocated to match the calibration (largest remainders), not sampled, so even a small season has the right
shares. Everything is drawn from generators seeded by (seed, season, mission number): the same seed gives the
same ledger.
"""

from __future__ import annotations

import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import TextIO
from uuid import NAMESPACE_URL, uuid5

from hajj_ledger.domain.errors import ConflictError, LedgerError, ValidationError
from hajj_ledger.domain.season_commands import OpenSeason
from hajj_ledger.domain.vocabulary import MAKKAH_TIME, Actor, Role
from hajj_ledger.ledger import JourneyLedger, Outcome, Result
from hajj_ledger.progress import progress_bar as shared_progress_bar
from hajj_ledger.simulation import calibration as cal
from hajj_ledger.simulation.drafting import Planned
from hajj_ledger.simulation.missions import missions
from hajj_ledger.simulation.planner import MissionPlanner
from hajj_ledger.store.connections import patiently

SIMULATION = uuid5(NAMESPACE_URL, "https://hajj-ledger.example/simulation")
MINISTRY = Actor("ministry", Role.MINISTRY)
BATCH = 1000  # commands per ledger transaction
CHUNK = 1500  # pilgrims planned at a time


@dataclass
class Summary:
    pilgrims: int = 0
    commands: int = 0
    events: int = 0
    refused: int = 0
    repeated: int = 0  # commands recorded by an earlier run (a rerun resumes): nothing new stored
    seconds: float = 0.0
    events_by_type: Counter[str] = field(default_factory=Counter)
    refusals: Counter[str] = field(default_factory=Counter)

    def lines(self) -> list[str]:
        rate = self.events / self.seconds if self.seconds else 0.0
        lines = [
            f"pilgrims  {self.pilgrims:,}",
            f"commands  {self.commands:,} ({self.commands - self.repeated - self.refused:,} new, "
            f"{self.repeated:,} already recorded, {self.refused:,} refused)",
            f"events    {self.events:,} in {self.seconds:,.1f} s ({rate:,.0f} events/s)",
            "events per type:",
        ]
        lines += [f"  {name:<24}{count:>12,}" for name, count in self.events_by_type.most_common()]
        lines += [f"  refused: {reason}  x{count}" for reason, count in self.refusals.most_common(5)]
        return lines


def chunks(
    pilgrims: int, seed: int, season: int, registering: tuple[datetime, datetime] | None = None
) -> Iterator[tuple[int, list[Planned]]]:
    """The season as chunks of whole missions, each sorted into the order things happened (`registering`: when its
    pilgrims register, if not as planned)."""
    sequence = iter(range(sys.maxsize))
    chunk: list[Planned] = []
    count = 0
    for mission in missions(pilgrims, seed, season):
        planner = MissionPlanner(mission, seed, season, sequence)
        planner.registering = registering
        chunk += planner.plan()
        count += mission.size
        if count >= CHUNK:
            yield count, sorted(chunk, key=_when)
            chunk, count = [], 0
    if chunk:
        yield count, sorted(chunk, key=_when)


def _when(step: Planned) -> tuple[datetime, int]:
    return step.at, step.seq


def check_season(season: int) -> None:
    last_day = cal.arafat_day(season) + timedelta(days=5 + cal.DEPARTURE_WINDOW_DAYS)
    if last_day > datetime.now(UTC):
        raise ValidationError("season", f"{season} has not ended yet (its departures run until {last_day:%Y-%m-%d})")


def simulate(
    ledger: JourneyLedger,
    pilgrims: int,
    season: int,
    seed: int,
    progress: Callable[[int, Summary], None] | None = None,
    next_season_pilgrims: int = 0,
) -> Summary:
    """The season, opened first; and with `next_season_pilgrims`, the next season's too, whose pilgrims register
    while this one is in the Hajj or leaving (the two seasons overlap), then travel a year later."""
    check_season(season)
    if next_season_pilgrims:
        check_season(season + 1)
    summary = Summary(pilgrims=pilgrims + next_season_pilgrims)
    started = time.perf_counter()
    done = 0
    for number, count_of in ((season, pilgrims), (season + 1, next_season_pilgrims)):
        if not count_of:
            continue
        opened = open_season(ledger, number)
        registering = _overlap(ledger, season) if number != season else None
        for count, planned in chunks(count_of, seed, number, registering):
            for start in range(0, len(planned), BATCH):
                batch = planned[start : start + BATCH]
                commands = [(step.command(), step.actor) for step in batch]
                _count(summary, opened + patiently(partial(ledger.record_batch, commands), "simulate"))
                opened = []
            done += count
            summary.seconds = time.perf_counter() - started
            if progress:
                progress(done, summary)
    summary.seconds = time.perf_counter() - started
    return summary


def _overlap(ledger: JourneyLedger, season: int) -> tuple[datetime, datetime]:
    """From the first day of the season's Hajj to its last day of departures, in Makkah: when the next season's
    pilgrims register."""
    calendar = ledger.season(season).calendar
    first = datetime.combine(calendar.hajj_from, datetime.min.time(), MAKKAH_TIME)
    last = datetime.combine(calendar.departures_until + timedelta(days=1), datetime.min.time(), MAKKAH_TIME)
    return first.astimezone(UTC), (last - timedelta(minutes=1)).astimezone(UTC)


def _count(summary: Summary, results: list[Result]) -> None:
    for result in results:
        summary.commands += 1
        if isinstance(result, Outcome) and result.repeated:
            summary.repeated += 1
        elif isinstance(result, Outcome):
            summary.events_by_type.update(result.events)
            summary.events += len(result.events)
        else:
            summary.refused += 1
            summary.refusals[_reason(result)] += 1


def open_season(ledger: JourneyLedger, season: int) -> list[Result]:
    """The season opened by the ministry with its default calendar, well before its registrations; a season opened
    already (by the ministry with its own calendar) is left as it is, and an earlier run's opening is repeated."""
    opening = OpenSeason(
        command_id=uuid5(SIMULATION, f"season:{season}"),
        occurred_at=cal.arafat_day(season) - timedelta(days=400),
        season=season,
    )
    result = patiently(partial(ledger.record_batch, [(opening, MINISTRY)]), "simulate")[0]
    if isinstance(result, ConflictError):  # opened before, not by the simulator
        return []
    if isinstance(result, LedgerError):
        raise result
    return [result]


def _reason(error: LedgerError) -> str:
    return f"{type(error).__name__}: {error}"[:160]


def progress_bar(stream: TextIO, total: int) -> Callable[[int, Summary], None]:
    """The pilgrims simulated so far, with the events recorded and their rate."""
    show = shared_progress_bar(stream, "pilgrims")

    def simulated(done: int, summary: Summary) -> None:
        rate = summary.events / summary.seconds if summary.seconds else 0
        show(done, total, f"{summary.events:,} events  {rate:,.0f}/s")

    return simulated
