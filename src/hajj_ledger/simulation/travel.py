"""A group's travel: arrival by flight or convoy with its clearances, buses between ports, cities and holy sites,
the days of Hajj, and departure, each step recorded by the agency that sees it.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from uuid import UUID

from hajj_ledger.domain.vocabulary import Actor, Mode, Port, Role, Site
from hajj_ledger.simulation import calibration as cal
from hajj_ledger.simulation.drafting import Draft, Pilgrim, Planned

NAQABA = Actor("naqaba", Role.NAQABA)
ROAD_SECURITY = Actor("road-security", Role.ROAD_SECURITY)


def arrive(draft: Draft, group: list[Pilgrim], port: Port, city: Site) -> None:
    """Flights (or convoys) of 220-310 seats over the arrival window, then clearance and a bus to the city."""
    rng = draft.rng
    cut = rng.randint(*cal.FLIGHT_SEATS)
    for start in range(0, len(group), cut):
        flight_group = group[start : start + cut]
        landed = draft.day(-3 - rng.uniform(0, cal.ARRIVAL_WINDOW_DAYS))
        flight = f"{draft.mission.country[:2]}{rng.randint(1000, 9999)}" if port.mode is Mode.AIR else None
        by = Actor(f"gaca-{port}", Role.GACA) if flight else Actor(f"jawazat-{port}", Role.JAWAZAT)
        for p in flight_group:
            if flight:
                draft.add(
                    p,
                    p.steps[-1].at + timedelta(days=rng.uniform(1, 10)),
                    draft.actor,
                    "FlightBooked",
                    journey_id=p.journey_id,
                    direction="arrival",
                    flight=flight,
                    port=port,
                    scheduled_at=landed,
                )
            at = draft.add(
                p,
                landed + draft.minutes(0, 40),
                by,
                "ArrivedAtPort",
                journey_id=p.journey_id,
                port=port,
                mode=port.mode,
                flight=flight,
            )
            at = draft.add(
                p,
                at + draft.minutes(10, 60),
                Actor(f"jawazat-{port}", Role.JAWAZAT),
                "EntryCleared",
                journey_id=p.journey_id,
                port=port,
            )
            at = draft.add(
                p,
                at + draft.minutes(5, 25),
                Actor(f"customs-{port}", Role.CUSTOMS),
                "CustomsCleared",
                journey_id=p.journey_id,
                port=port,
            )
            draft.add(
                p,
                at + draft.minutes(5, 30),
                Actor(f"wukala-{port}", Role.WUKALA),
                "ReceivedAtPort",
                journey_id=p.journey_id,
                port=port,
            )
        bus(draft, flight_group, port, city, after=max(p.steps[-1].at for p in flight_group))
        for p in flight_group:
            draft.add(
                p,
                p.steps[-1].at + draft.minutes(20, 60),
                draft.company,
                "HousingCheckedIn",
                journey_id=p.journey_id,
                site=city,
                building=draft.building[city],
                building_id=draft.building_ids[city],
            )


def bus(draft: Draft, group: list[Pilgrim], origin: Port | Site, destination: Port | Site, after: datetime) -> None:
    """Buses of ~49 seats for a group that travels together, each leaving once all its riders are ready (a late
    arrival keeps the bus waiting): every rider boards before it leaves, and is handed over at the destination once
    it has arrived, both clocks agreeing."""
    hours = timedelta(hours=_TRAVEL_HOURS.get((origin, destination)) or _TRAVEL_HOURS.get((destination, origin), 8.0))
    seats = draft.rng.randint(*cal.BUS_SEATS)
    for start in range(0, len(group), seats):
        riders = group[start : start + seats]
        trip_id = draft.uuid()
        ready = max(after, *(p.steps[-1].at for p in riders))
        departs = ready + draft.minutes(20, 40)
        draft.trips.append(
            Planned(
                after - timedelta(hours=12),  # half a day before the group was due to leave
                next(draft.seq),
                NAQABA,
                "TripScheduled",
                {
                    "trip_id": trip_id,
                    "operator": "SAPTCO",
                    "bus_plate": f"KSA-{draft.rng.randint(1000, 9999)}",
                    "origin": str(origin),
                    "destination": str(destination),
                    "departs_at": departs,
                    "capacity": seats,
                    "expected_arrival": departs + hours,
                },
                draft.uuid(),
            )
        )
        for p in riders:
            draft.add(
                p,
                max(p.steps[-1].at, after) + draft.minutes(1, 10),
                NAQABA,
                "BusAssigned",
                journey_id=p.journey_id,
                trip_id=trip_id,
            )
            draft.add(p, departs - draft.minutes(1, 10), NAQABA, "Boarded", journey_id=p.journey_id, trip_id=trip_id)
            draft.add(
                p,
                departs + hours + draft.minutes(1, 30),
                NAQABA,
                "TransferCompleted",
                journey_id=p.journey_id,
                trip_id=trip_id,
            )
        on_road(draft, trip_id, departs, hours)


def on_road(draft: Draft, trip_id: UUID, departed: datetime, hours: timedelta) -> None:
    """The bus leaves, passes road security's checkpoints, and arrives."""
    rng = draft.rng
    draft.trips.append(Planned(departed, next(draft.seq), NAQABA, "TripDeparted", {"trip_id": trip_id}, draft.uuid()))
    count = rng.randint(*cal.CHECKPOINTS)
    for n in range(count):
        at = departed + hours * (n + rng.uniform(0.2, 0.8)) / count
        fields = {"trip_id": trip_id, "checkpoint": f"CP-{rng.randint(1, 60):02d}"}
        draft.trips.append(Planned(at, next(draft.seq), ROAD_SECURITY, "CheckpointPassed", fields, draft.uuid()))
    arrived = departed + hours
    draft.trips.append(Planned(arrived, next(draft.seq), NAQABA, "TripArrived", {"trip_id": trip_id}, draft.uuid()))


def transfer(draft: Draft, group: list[Pilgrim], origin: Site, destination: Site, leave: datetime) -> None:
    for p in group:
        draft.add(
            p,
            leave - draft.minutes(30, 90),
            draft.company,
            "HousingCheckedOut",
            journey_id=p.journey_id,
            site=origin,
            building=draft.building[origin],
        )
    bus(draft, group, origin, destination, after=leave - timedelta(minutes=20))
    for p in group:
        draft.add(
            p,
            p.steps[-1].at + draft.minutes(20, 60),
            draft.company,
            "HousingCheckedIn",
            journey_id=p.journey_id,
            site=destination,
            building=draft.building[destination],
            building_id=draft.building_ids[destination],
        )


def hajj(draft: Draft, group: list[Pilgrim], back: int) -> None:
    """Mina on the 8th, Arafat on the 9th, the Nafra to Muzdalifah after sunset, Mina again, then Makkah."""
    for p in group:
        for site, day, low, high in _HOLY_SITE_DAYS:
            draft.add(p, draft.day(day, low, high), draft.company, "MovedToSite", journey_id=p.journey_id, site=site)
        draft.add(
            p,
            draft.day(back, 8, 14),
            draft.company,
            "HousingCheckedIn",
            journey_id=p.journey_id,
            site=Site.MAKKAH,
            building=draft.building[Site.MAKKAH],
            building_id=draft.building_ids[Site.MAKKAH],
        )


def depart(draft: Draft, group: list[Pilgrim], port: Port, day: float, *, madinah_first: bool) -> None:
    rng = draft.rng
    madinah_after = not madinah_first and port.mode is Mode.AIR and day >= 10 and rng.random() < cal.MADINAH_AFTER_HAJJ
    city = Site.MAKKAH
    if madinah_after:
        transfer(draft, group, Site.MAKKAH, Site.MADINAH, draft.day(rng.uniform(5, 7), 4, 10))
        city, port = Site.MADINAH, Port.MED_AIRPORT
    elif port is Port.MED_AIRPORT:
        port = Port.JED_HAJJ_TERMINAL
    cut = rng.randint(*cal.FLIGHT_SEATS)
    for start in range(0, len(group), cut):
        flight_group = group[start : start + cut]
        takeoff = draft.day(day + rng.uniform(0, 1.5))
        flight = f"{draft.mission.country[:2]}{rng.randint(1000, 9999)}" if port.mode is Mode.AIR else None
        for p in flight_group:
            if flight:  # booked once the pilgrim is settled in the Kingdom, as the catalogue asks
                draft.add(
                    p,
                    p.steps[-1].at + draft.minutes(60, 600),
                    draft.actor,
                    "FlightBooked",
                    journey_id=p.journey_id,
                    direction="departure",
                    flight=flight,
                    port=port,
                    scheduled_at=takeoff,
                )
        leave = takeoff - timedelta(hours=6 if flight else 14)
        for p in flight_group:
            draft.add(
                p,
                leave - draft.minutes(30, 60),
                draft.company,
                "HousingCheckedOut",
                journey_id=p.journey_id,
                site=city,
                building=draft.building[city],
            )
        bus(draft, flight_group, city, port, after=leave)
        by = Actor(f"gaca-{port}", Role.GACA) if flight else Actor(f"jawazat-{port}", Role.JAWAZAT)
        for p in flight_group:
            at = draft.add(
                p,
                max(p.steps[-1].at, takeoff - timedelta(hours=3)) + draft.minutes(0, 60),
                Actor(f"jawazat-{port}", Role.JAWAZAT),
                "ExitCleared",
                journey_id=p.journey_id,
                port=port,
            )
            draft.add(
                p,
                max(at, takeoff) + draft.minutes(0, 20),
                by,
                "Departed",
                journey_id=p.journey_id,
                port=port,
                flight=flight,
            )


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
