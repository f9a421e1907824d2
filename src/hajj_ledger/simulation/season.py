"""A whole season, generated through the ledger's real commands, each recorded by the role that records it in life.

The season is planned mission by mission (100-400 pilgrims of one country, one company) and recorded chunk by
chunk: a chunk's commands are sorted by when they happened and sent in the ledger's normal batches, then
forgotten, so memory stays flat however many pilgrims there are. Countries, regions and modes of travel are
allocated to match the calibration (largest remainders), not sampled, so even a small season has the right
shares. Everything is drawn from generators seeded by (seed, season, mission number): the same seed gives the
same ledger.
"""

from __future__ import annotations

import math
import random
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any, TextIO, cast
from uuid import UUID

from hajj_ledger.domain.commands import COMMANDS, Command
from hajj_ledger.domain.errors import LedgerError, ValidationError
from hajj_ledger.domain.journey import Journey
from hajj_ledger.domain.vocabulary import REGION_OF, Actor, Mode, Port, Role, Site
from hajj_ledger.ledger import JourneyLedger, Outcome
from hajj_ledger.simulation import calibration as cal
from hajj_ledger.simulation import identities
from hajj_ledger.store.connections import patiently

BATCH = 1000  # commands per ledger transaction
CHUNK = 1500  # pilgrims planned at a time
COMPANIES = 40

MOFA = Actor("mofa", Role.MOFA)
NAQABA = Actor("naqaba", Role.NAQABA)
MOH = Actor("moh", Role.MOH)

DEFAULT_SEASON = cal.DEFAULT_SEASON


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


@dataclass(frozen=True)
class Mission:
    number: int
    country: str
    size: int
    land: int  # how many of its pilgrims travel by land, and by sea; the rest fly
    sea: int

    @property
    def agency_id(self) -> str:
        return f"mission-{self.country}-{self.number:05d}"


@dataclass
class Pilgrim:
    id: UUID
    journey_id: UUID
    male: bool  # kept by the simulator only: the ledger's events carry no personal data
    mode: Mode
    steps: list[Planned] = field(default_factory=list)


# Allocation: how many pilgrims from each country, and the missions that carry them.


def _largest_remainder(total: int, weights: dict[str, float]) -> dict[str, int]:
    whole = sum(weights.values())
    exact = {k: total * w / whole for k, w in weights.items()}
    counts = {k: math.floor(v) for k, v in exact.items()}
    short = total - sum(counts.values())
    for k in sorted(exact, key=lambda k: exact[k] - counts[k], reverse=True)[:short]:
        counts[k] += 1
    return counts


def allocate(pilgrims: int) -> dict[str, int]:
    """Pilgrims per country: regions by their GASTAT shares, countries within a region by quota."""
    by_country: dict[str, int] = {}
    for region, count in _largest_remainder(pilgrims, cal.REGION_SHARE).items():
        weights = {c: float(w) for c, w in cal.COUNTRIES[region].items()}
        by_country.update(_largest_remainder(count, weights))
    return by_country


def _mode_fractions() -> tuple[float, float]:
    """The share of land (sea) pilgrims among those who can come by land (sea) that meets the calibration."""
    region = {r: s for r, s in cal.REGION_SHARE.items()}

    def share(countries: Sequence[str]) -> float:
        total = 0.0
        for country in countries:
            r = REGION_OF[country]
            total += region[r] * cal.COUNTRIES[r][country] / sum(cal.COUNTRIES[r].values())
        return total

    land = cal.MODE_SHARE[Mode.LAND] / share(list(cal.LAND_PORT))
    sea = cal.MODE_SHARE[Mode.SEA] / share(cal.SEA_COUNTRIES)
    return min(land, 1.0), min(sea, 1.0)


def missions(pilgrims: int, seed: int, season: int) -> Iterator[Mission]:
    """The season's missions, countries interleaved (stride scheduling) so that every stretch is a mixture."""
    land_fraction, sea_fraction = _mode_fractions()
    queues: dict[str, list[int]] = {}
    for country, count in allocate(pilgrims).items():
        rng = random.Random(f"{seed}:{season}:{country}")
        sizes = []
        while count > 0:
            size = min(count, rng.randint(*cal.MISSION_SIZE))
            sizes.append(size)
            count -= size
        if sizes:
            queues[country] = sizes
    passes = {country: 0.0 for country in queues}
    strides = {country: 1.0 / len(sizes) for country, sizes in queues.items()}
    number = 0
    while queues:
        country = min(queues, key=lambda c: (passes[c], c))
        size = queues[country].pop(0)
        passes[country] += strides[country]
        if not queues[country]:
            del queues[country]
        land = round(size * land_fraction) if country in cal.LAND_PORT else 0
        sea = round(size * sea_fraction) if country in cal.SEA_COUNTRIES else 0
        number += 1
        yield Mission(number, country, size, land, sea)


# Planning one mission's pilgrims, step by step.


class MissionPlanner:
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
        self.trips: list[Planned] = []

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

    def plan(self) -> list[Planned]:
        m = self.mission
        modes = [Mode.LAND] * m.land + [Mode.SEA] * m.sea + [Mode.AIR] * (m.size - m.land - m.sea)
        pilgrims = []
        for mode in modes:
            pilgrim_id = self.uuid()
            male = self.rng.random() < cal.MALE_SHARE
            pilgrims.append(Pilgrim(pilgrim_id, Journey.create_id(self.season, pilgrim_id), male, mode))
        self.pilgrims = pilgrims
        travelling = [p for p in pilgrims if self.before_arrival(p)]
        airport = self.rng.choices(list(cal.AIRPORTS), weights=list(cal.AIRPORTS.values()))[0]
        back_from_mina = self.rng.choice([3, 4])  # leaving Mina on the 12th or the 13th
        # The last flights leave before the visas end (Arafat + 45 days): a day, 1.5 days of flights, hours.
        departure_day = self.rng.uniform(back_from_mina + 1, 2 + cal.DEPARTURE_WINDOW_DAYS)
        for mode in Mode:
            group = [p for p in travelling if p.mode is mode]
            if not group:
                continue
            port = {Mode.AIR: airport, Mode.SEA: Port.JEDDAH_SEA_PORT}.get(mode) or cal.LAND_PORT[m.country]
            first_city = Site.MADINAH if port is Port.MED_AIRPORT else Site.MAKKAH
            self.arrive(group, port, first_city)
            if first_city is Site.MADINAH:
                leave = min(group[-1].steps[-1].at + timedelta(days=8), self.day(-2, 4, 10))
                self.transfer(group, Site.MADINAH, Site.MAKKAH, leave)
            self.hajj(group, back_from_mina)
            self.depart(group, port, departure_day, madinah_first=first_city is Site.MADINAH)
        for p in travelling:
            self.exceptions(p)
        return [step for p in pilgrims for step in p.steps] + self.trips

    def before_arrival(self, p: Pilgrim) -> bool:
        """Registration to visa; False when the journey ends before travel."""
        m, rng = self.mission, self.rng
        at = self.add(
            p,
            self.day(-rng.uniform(120, 150)),
            self.actor,
            "Registered",
            pilgrim_id=p.id,
            season=self.season,
            country=m.country,
            pre_cleared=m.country in ("IDN", "PAK", "MYS", "BGD", "TUR") and rng.random() < 0.3,
            identity=identities.identity(rng, m.country, p.male, self.arafat.date()),
        )
        at = self.add(
            p,
            at + timedelta(days=rng.uniform(1, 5)),
            self.actor,
            "PackageContracted",
            journey_id=p.journey_id,
            company_id=self.company.agency_id,
            package_id=f"PKG-{m.number:05d}",
        )
        at = self.add(p, self.day(-rng.uniform(60, 90)), self.actor, "VisaRequested", journey_id=p.journey_id)
        if rng.random() < cal.VISA_REJECTED:
            at = self.add(
                p,
                at + timedelta(days=rng.uniform(2, 10)),
                MOFA,
                "VisaRejected",
                journey_id=p.journey_id,
                reason="requirements_not_met",
            )
            if rng.random() >= cal.REAPPLIED_AFTER_REJECTION:
                if rng.random() < 0.8:
                    self.add(
                        p,
                        at + timedelta(days=rng.uniform(3, 10)),
                        self.actor,
                        "Cancelled",
                        journey_id=p.journey_id,
                        reason="visa_refused",
                    )
                return False
            at = self.add(
                p, at + timedelta(days=rng.uniform(1, 5)), self.actor, "VisaRequested", journey_id=p.journey_id
            )
        at = self.add(
            p,
            at + timedelta(days=rng.uniform(2, 10)),
            MOFA,
            "VisaIssued",
            journey_id=p.journey_id,
            valid_until=self.arafat + timedelta(days=45),
        )
        if rng.random() < cal.CANCELLED_BEFORE_ARRIVAL:
            reason = rng.choice(["withdrawn", "no_show"])
            self.add(
                p,
                at + timedelta(days=rng.uniform(1, 20)),
                self.actor,
                "Cancelled",
                journey_id=p.journey_id,
                reason=reason,
            )
            return False
        return True

    def arrive(self, group: list[Pilgrim], port: Port, city: Site) -> None:
        """Flights (or convoys) of 220-310 seats over the arrival window, then clearance and a bus to the city."""
        rng = self.rng
        cut = rng.randint(*cal.FLIGHT_SEATS)
        for start in range(0, len(group), cut):
            flight_group = group[start : start + cut]
            landed = self.day(-3 - rng.uniform(0, cal.ARRIVAL_WINDOW_DAYS))
            flight = f"{self.mission.country[:2]}{rng.randint(1000, 9999)}" if port.mode is Mode.AIR else None
            by = Actor(f"gaca-{port}", Role.GACA) if flight else Actor(f"jawazat-{port}", Role.JAWAZAT)
            for p in flight_group:
                if flight:
                    self.add(
                        p,
                        p.steps[-1].at + timedelta(days=rng.uniform(1, 10)),
                        self.actor,
                        "FlightBooked",
                        journey_id=p.journey_id,
                        direction="arrival",
                        flight=flight,
                        port=port,
                        scheduled_at=landed,
                    )
                at = self.add(
                    p,
                    landed + self.minutes(0, 40),
                    by,
                    "ArrivedAtPort",
                    journey_id=p.journey_id,
                    port=port,
                    mode=port.mode,
                    flight=flight,
                )
                at = self.add(
                    p,
                    at + self.minutes(10, 60),
                    Actor(f"jawazat-{port}", Role.JAWAZAT),
                    "EntryCleared",
                    journey_id=p.journey_id,
                    port=port,
                )
                at = self.add(
                    p,
                    at + self.minutes(5, 25),
                    Actor(f"customs-{port}", Role.CUSTOMS),
                    "CustomsCleared",
                    journey_id=p.journey_id,
                    port=port,
                )
                self.add(
                    p,
                    at + self.minutes(5, 30),
                    Actor(f"wukala-{port}", Role.WUKALA),
                    "ReceivedAtPort",
                    journey_id=p.journey_id,
                    port=port,
                )
            self.bus(flight_group, port, city, after=max(p.steps[-1].at for p in flight_group))
            for p in flight_group:
                self.add(
                    p,
                    p.steps[-1].at + self.minutes(20, 60),
                    self.company,
                    "HousingCheckedIn",
                    journey_id=p.journey_id,
                    site=city,
                    building=self.building[city],
                )

    def bus(self, group: list[Pilgrim], origin: Port | Site, destination: Port | Site, after: datetime) -> None:
        """Buses of ~49 seats for a group that travels together, leaving once all are ready."""
        hours = _TRAVEL_HOURS.get((origin, destination)) or _TRAVEL_HOURS.get((destination, origin), 8.0)
        seats = self.rng.randint(*cal.BUS_SEATS)
        for start in range(0, len(group), seats):
            riders = group[start : start + seats]
            trip_id = self.uuid()
            departs = after + self.minutes(20, 40)
            self.trips.append(
                Planned(
                    departs - timedelta(hours=12),
                    next(self.seq),
                    NAQABA,
                    "TripScheduled",
                    {
                        "trip_id": trip_id,
                        "operator": "SAPTCO",
                        "bus_plate": f"KSA-{self.rng.randint(1000, 9999)}",
                        "origin": str(origin),
                        "destination": str(destination),
                        "departs_at": departs,
                        "capacity": seats,
                    },
                    self.uuid(),
                )
            )
            for p in riders:
                self.add(
                    p,
                    max(p.steps[-1].at, after) + self.minutes(1, 10),
                    NAQABA,
                    "BusAssigned",
                    journey_id=p.journey_id,
                    trip_id=trip_id,
                )
                self.add(p, departs - self.minutes(0, 10), NAQABA, "Boarded", journey_id=p.journey_id, trip_id=trip_id)
                self.add(
                    p,
                    departs + timedelta(hours=hours) + self.minutes(0, 30),
                    NAQABA,
                    "TransferCompleted",
                    journey_id=p.journey_id,
                    trip_id=trip_id,
                )

    def transfer(self, group: list[Pilgrim], origin: Site, destination: Site, leave: datetime) -> None:
        for p in group:
            self.add(
                p,
                leave - self.minutes(30, 90),
                self.company,
                "HousingCheckedOut",
                journey_id=p.journey_id,
                site=origin,
                building=self.building[origin],
            )
        self.bus(group, origin, destination, after=leave - timedelta(minutes=20))
        for p in group:
            self.add(
                p,
                p.steps[-1].at + self.minutes(20, 60),
                self.company,
                "HousingCheckedIn",
                journey_id=p.journey_id,
                site=destination,
                building=self.building[destination],
            )

    def hajj(self, group: list[Pilgrim], back: int) -> None:
        """Mina on the 8th, Arafat on the 9th, the Nafra to Muzdalifah after sunset, Mina again, then Makkah."""
        for p in group:
            for site, day, low, high in _HOLY_SITE_DAYS:
                self.add(p, self.day(day, low, high), self.company, "MovedToSite", journey_id=p.journey_id, site=site)
            self.add(
                p,
                self.day(back, 8, 14),
                self.company,
                "HousingCheckedIn",
                journey_id=p.journey_id,
                site=Site.MAKKAH,
                building=self.building[Site.MAKKAH],
            )

    def depart(self, group: list[Pilgrim], port: Port, day: float, *, madinah_first: bool) -> None:
        rng = self.rng
        madinah_after = (
            not madinah_first and port.mode is Mode.AIR and day >= 10 and rng.random() < cal.MADINAH_AFTER_HAJJ
        )
        city = Site.MAKKAH
        if madinah_after:
            self.transfer(group, Site.MAKKAH, Site.MADINAH, self.day(rng.uniform(5, 7), 4, 10))
            city, port = Site.MADINAH, Port.MED_AIRPORT
        elif port is Port.MED_AIRPORT:
            port = Port.JED_HAJJ_TERMINAL
        cut = rng.randint(*cal.FLIGHT_SEATS)
        for start in range(0, len(group), cut):
            flight_group = group[start : start + cut]
            takeoff = self.day(day + rng.uniform(0, 1.5))
            flight = f"{self.mission.country[:2]}{rng.randint(1000, 9999)}" if port.mode is Mode.AIR else None
            for p in flight_group:
                if flight:  # booked once the pilgrim is settled in the Kingdom, as the catalogue asks
                    self.add(
                        p,
                        p.steps[-1].at + self.minutes(60, 600),
                        self.actor,
                        "FlightBooked",
                        journey_id=p.journey_id,
                        direction="departure",
                        flight=flight,
                        port=port,
                        scheduled_at=takeoff,
                    )
            leave = takeoff - timedelta(hours=6 if flight else 14)
            for p in flight_group:
                self.add(
                    p,
                    leave - self.minutes(30, 60),
                    self.company,
                    "HousingCheckedOut",
                    journey_id=p.journey_id,
                    site=city,
                    building=self.building[city],
                )
            self.bus(flight_group, city, port, after=leave)
            by = Actor(f"gaca-{port}", Role.GACA) if flight else Actor(f"jawazat-{port}", Role.JAWAZAT)
            for p in flight_group:
                at = self.add(
                    p,
                    max(p.steps[-1].at, takeoff - timedelta(hours=3)) + self.minutes(0, 60),
                    Actor(f"jawazat-{port}", Role.JAWAZAT),
                    "ExitCleared",
                    journey_id=p.journey_id,
                    port=port,
                )
                self.add(
                    p,
                    max(at, takeoff) + self.minutes(0, 20),
                    by,
                    "Departed",
                    journey_id=p.journey_id,
                    port=port,
                    flight=flight,
                )

    def exceptions(self, p: Pilgrim) -> None:
        """Hospital stays, a few hours missing at Arafat, deaths and overstays, fitted between the steps."""
        rng = self.rng
        if rng.random() < cal.REPORTED_MISSING:
            arafat = next(i for i, s in enumerate(p.steps) if s.fields.get("site") == Site.ARAFAT)
            lost = p.steps[arafat].at + self.minutes(60, 240)
            found = lost + self.minutes(60, 180)
            self._insert(
                p,
                arafat + 1,
                [
                    Planned(
                        lost, next(self.seq), self.company, "ReportedMissing", {"journey_id": p.journey_id}, self.uuid()
                    ),
                    Planned(
                        found,
                        next(self.seq),
                        self.company,
                        "Found",
                        {"journey_id": p.journey_id, "site": Site.ARAFAT},
                        self.uuid(),
                    ),
                ],
            )
        if rng.random() < cal.HOSPITAL_ADMITTED:
            gap = self._quiet_gap(p, days=2)
            if gap is not None:
                index, start, end = gap
                admitted = start + (end - start) * rng.uniform(0.1, 0.4)
                discharged = admitted + (end - admitted) * rng.uniform(0.3, 0.8)
                facility = f"HOSPITAL-{rng.randint(1, 25):02d}"
                self._insert(
                    p,
                    index,
                    [
                        Planned(
                            admitted,
                            next(self.seq),
                            MOH,
                            "HospitalAdmitted",
                            {"journey_id": p.journey_id, "facility": facility},
                            self.uuid(),
                        ),
                        Planned(
                            discharged,
                            next(self.seq),
                            MOH,
                            "HospitalDischarged",
                            {"journey_id": p.journey_id, "facility": facility},
                            self.uuid(),
                        ),
                    ],
                )
        if rng.random() < cal.DIED:
            gap = self._quiet_gap(p, days=0.5)
            if gap is not None:
                index, start, end = gap
                died = start + (end - start) * rng.uniform(0.1, 0.9)
                del p.steps[index:]
                p.steps.append(
                    Planned(
                        died,
                        next(self.seq),
                        MOH,
                        "DeathRecorded",
                        {"journey_id": p.journey_id, "facility": f"HOSPITAL-{rng.randint(1, 25):02d}"},
                        self.uuid(),
                    )
                )
                return
        if rng.random() < cal.OVERSTAYED:
            # Never leaves: everything from the last check-out on is dropped; the visa runs out.
            last_out = max(i for i, s in enumerate(p.steps) if s.event == "HousingCheckedOut")
            del p.steps[last_out:]

    def _quiet_gap(self, p: Pilgrim, days: float) -> tuple[int, datetime, datetime] | None:
        """A stretch of at least `days` housed in Makkah or Madinah with nothing else happening."""
        gaps = [
            (i + 1, s.at, p.steps[i + 1].at)
            for i, s in enumerate(p.steps[:-1])
            if s.event == "HousingCheckedIn" and p.steps[i + 1].at - s.at >= timedelta(days=days)
        ]
        return self.rng.choice(gaps) if gaps else None

    @staticmethod
    def _insert(p: Pilgrim, index: int, steps: list[Planned]) -> None:
        p.steps[index:index] = steps


_HOLY_SITE_DAYS = [  # site, day from Arafat, hours (UTC) within which each pilgrim moves
    (Site.MINA, -1, 1, 9),
    (Site.ARAFAT, 0, 2, 6),
    (Site.MUZDALIFAH, 0, 16, 19),  # the Nafra: everyone within a few hours of sunset
    (Site.MINA, 1, 1, 6),
]
_TRAVEL_HOURS: dict[tuple[Port | Site, Port | Site], float] = {
    (Port.JED_HAJJ_TERMINAL, Site.MAKKAH): 1.5,
    (Port.JED_NORTH_TERMINAL, Site.MAKKAH): 1.5,
    (Port.JEDDAH_SEA_PORT, Site.MAKKAH): 1.5,
    (Port.MED_AIRPORT, Site.MADINAH): 0.5,
    (Port.TAIF_AIRPORT, Site.MAKKAH): 2.0,
    (Port.YANBU_AIRPORT, Site.MAKKAH): 4.0,
    (Site.MADINAH, Site.MAKKAH): 5.0,
    (Port.AL_HADITHA, Site.MAKKAH): 14.0,
}


# Running a season into the ledger.


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


def chunks(pilgrims: int, seed: int, season: int) -> Iterator[tuple[int, list[Planned]]]:
    """The season as chunks of whole missions, each sorted into the order things happened."""
    sequence = iter(range(sys.maxsize))
    chunk: list[Planned] = []
    count = 0
    for mission in missions(pilgrims, seed, season):
        chunk += MissionPlanner(mission, seed, season, sequence).plan()
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
) -> Summary:
    check_season(season)
    summary = Summary(pilgrims=pilgrims)
    started = time.perf_counter()
    done = 0
    for count, planned in chunks(pilgrims, seed, season):
        for start in range(0, len(planned), BATCH):
            batch = planned[start : start + BATCH]
            commands = [(step.command(), step.actor) for step in batch]
            results = patiently(partial(ledger.record_batch, commands), "simulate")
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
        done += count
        summary.seconds = time.perf_counter() - started
        if progress:
            progress(done, summary)
    summary.seconds = time.perf_counter() - started
    return summary


def _reason(error: LedgerError) -> str:
    return f"{type(error).__name__}: {error}"[:160]


def progress_bar(stream: TextIO, total: int) -> Callable[[int, Summary], None]:
    """A one-line progress bar on a terminal, nothing otherwise."""

    def show(done: int, summary: Summary) -> None:
        if not stream.isatty():
            return
        width = 30
        filled = int(width * done / max(total, 1))
        rate = summary.events / summary.seconds if summary.seconds else 0
        stream.write(
            f"\r[{'#' * filled}{'.' * (width - filled)}] {done:,}/{total:,} pilgrims  "
            f"{summary.events:,} events  {rate:,.0f}/s "
        )
        if done >= total:
            stream.write("\n")
        stream.flush()

    return show
