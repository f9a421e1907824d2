"""A mission's plan as it is drawn up: each pilgrim's steps, the bus trips, and the draft that adds a step in order,
draws times and ids from the mission's own seeded generator, and knows who records what for this mission.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, cast
from uuid import UUID

from hajj_ledger.domain.commands import COMMANDS, Command
from hajj_ledger.domain.vocabulary import Actor, Mode, Role, Site
from hajj_ledger.simulation import calibration as cal
from hajj_ledger.simulation.missions import Mission

COMPANIES = 40


@dataclass(order=True, slots=True)
class Planned:
    """One command, as it will be sent: when it happened first, so that a chunk sorts into time order."""

    at: datetime
    seq: int
    actor: Actor = field(compare=False)
    event: str = field(compare=False)
    fields: dict[str, Any] = field(compare=False)
    command_id: UUID = field(compare=False)

    def command(self) -> Command:
        model = COMMANDS[self.event](command_id=self.command_id, occurred_at=self.at, **self.fields)
        return cast(Command, model)


@dataclass
class Pilgrim:
    id: UUID
    journey_id: UUID
    male: bool  # kept by the simulator only: the ledger's events carry no personal data
    mode: Mode
    steps: list[Planned] = field(default_factory=list)


class Draft:
    """One mission's plan being drawn up: seeded by (seed, season, mission number), so the same seed plans the same."""

    def __init__(self, mission: Mission, seed: int, season: int, sequence: Iterator[int]) -> None:
        self.mission = mission
        self.season = season
        self.rng = random.Random(f"{seed}:{season}:mission:{mission.number}")
        self.seq = sequence
        self.arafat = cal.arafat_day(season)
        self.actor = Actor(mission.agency_id, Role.MISSION)
        company = self.rng.randrange(COMPANIES)
        self.company = Actor(f"company-{company:03d}", Role.COMPANY)
        self.building = {
            Site.MAKKAH: f"MK-{company:03d}-{mission.number:05d}",
            Site.MADINAH: f"MD-{company:03d}-{mission.number:05d}",
        }
        self.building_ids = {Site.MAKKAH: self.uuid(), Site.MADINAH: self.uuid()}
        self.offer_id = self.uuid()
        self.contract_id = self.uuid()
        self.trips: list[Planned] = []
        self.market: list[Planned] = []  # the buildings, the offer and the contract, before the pilgrims register
        # When its pilgrims register, if not as planned: a next season's registering during the current one's Hajj.
        self.registering: tuple[datetime, datetime] | None = None

    def registered_at(self, planned: datetime) -> datetime:
        """When a pilgrim registers: as planned, or early, within `registering`."""
        if self.registering is None:
            return planned
        first, last = self.registering
        return first + (last - first) * self.rng.random()

    def uuid(self) -> UUID:
        return UUID(int=self.rng.getrandbits(128), version=4)

    def add(self, pilgrim: Pilgrim, at: datetime, actor: Actor, event: str, **fields: Any) -> datetime:
        last = pilgrim.steps[-1].at if pilgrim.steps else at
        at = max(at, last + timedelta(seconds=1))  # each journey's steps strictly in order
        pilgrim.steps.append(Planned(at, next(self.seq), actor, event, fields, self.uuid()))
        return at

    def minutes(self, low: float, high: float) -> timedelta:
        return timedelta(minutes=self.rng.uniform(low, high))

    def day(self, offset: float, low_hour: float = 0, high_hour: float = 24) -> datetime:
        """A moment on the day `offset` days from Arafat, between the given hours (UTC)."""
        return self.arafat + timedelta(days=offset, hours=self.rng.uniform(low_hour, high_hour))
