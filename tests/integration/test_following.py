"""The log as the feed and the relay read it, on SQLite and PostgreSQL: each event's body rendered from its stored JSON
is the trail's rendering of the decoded event, byte for byte, and each knows its aggregate's owners and season."""

from __future__ import annotations

import sqlite3
from contextlib import closing

import orjson
import psycopg

from hajj_ledger.audit.reads import Entry
from hajj_ledger.domain.vocabulary import Role
from hajj_ledger.following import Following
from hajj_ledger.ledger import JourneyLedger
from tests.support import COMPANY_ID, MISSION_ID, actor, arrive_and_clear, command, schedule_trip


def test_each_event_is_rendered_as_the_trail_renders_it(ledger: JourneyLedger) -> None:
    journeys = arrive_and_clear(ledger, 2)
    trip = schedule_trip(ledger)
    ledger.record(command("TripDeparted", trip_id=trip), actor(Role.NAQABA))
    ledger.record(command("CheckpointPassed", trip_id=trip, checkpoint="Hijrah road km 60"), actor(Role.ROAD_SECURITY))
    late = command("HospitalAdmitted", journey_id=journeys[0], facility="JED-KFH", late_correction="device_offline")
    ledger.record(late, actor(Role.MOH))
    rows = ledger.recorder.select_notifications(start=1, limit=10_000)
    _, told = Following(ledger).read(0, 10_000)
    assert [t.position for t in told] == [row.id for row in rows]
    for row, event in zip(rows, told, strict=True):
        entry = Entry.of(row.id, ledger.mapper.to_domain_event(row))  # type: ignore[arg-type]
        assert event.body == orjson.dumps(entry, option=orjson.OPT_UTC_Z), entry.event
        assert (event.event, event.role, event.agency_id, event.occurred_at) == (
            entry.event, entry.role, entry.agency_id, entry.occurred_at
        )  # fmt: skip
    by_event = {t.event: t for t in told}
    assert orjson.loads(by_event["HospitalAdmitted"].body)["late_correction"] == "device_offline"
    assert orjson.loads(by_event["OfferPublished"].body)["fields"]["building_ids"] == [
        orjson.loads(by_event["BuildingLicensed"].body)["aggregate_id"]
    ]
    assert by_event["OfferPublished"].owners == {"company_id": COMPANY_ID}
    assert by_event["ContractSigned"].owners == {"mission_id": MISSION_ID, "company_id": COMPANY_ID}
    assert by_event["BuildingLicensed"].owners == {"company_id": COMPANY_ID}
    assert by_event["Registered"].owners == {"mission_id": MISSION_ID, "company_id": None}
    assert by_event["HospitalAdmitted"].owners == {"mission_id": MISSION_ID, "company_id": COMPANY_ID}
    assert (by_event["OfferPublished"].season, by_event["Registered"].season) == (1446, 1446)
    assert (by_event["BuildingLicensed"].season, by_event["CheckpointPassed"].owners) == (None, None)


def test_owners_first_met_past_an_aggregate_s_first_event_are_read_from_the_store(ledger: JourneyLedger) -> None:
    journeys = arrive_and_clear(ledger, 1)
    head = ledger.head()
    ledger.record(command("HospitalAdmitted", journey_id=journeys[0], facility="JED-KFH"), actor(Role.MOH))
    following = Following(ledger)
    _, told = following.read(head, 10)  # a reader starting here has seen none of the market nor the journey
    assert [(t.event, t.owners, t.season) for t in told] == [
        ("HospitalAdmitted", {"mission_id": MISSION_ID, "company_id": COMPANY_ID}, 1446)
    ]
    _, earlier = following.read(0, head)  # the same reader, back to the start: the journey as it was then
    of_journey = [t for t in earlier if orjson.loads(t.body)["aggregate_id"] == str(journeys[0])]
    assert [(t.event, t.owners) for t in of_journey[:2]] == [
        ("Registered", {"mission_id": MISSION_ID, "company_id": None}),
        ("PackageContracted", {"mission_id": MISSION_ID, "company_id": COMPANY_ID}),
    ]


def test_a_stretch_read_up_to_a_position_the_log_lacks_reaches_it(ledger: JourneyLedger, store_url: str) -> None:
    """PostgreSQL's positions can skip (a rolled-back insert keeps its sequence's numbers): read up to a missing
    position, the stretch reaches it, so that the relay asked to stop there does (it waited for it forever)."""
    arrive_and_clear(ledger, 2)
    missing = ledger.head() - 3
    if store_url.startswith("postgresql"):
        with psycopg.connect(store_url, autocommit=True) as connection:
            connection.execute("DELETE FROM journeyledger_events WHERE notification_id = %s", (missing,))
    else:
        with closing(sqlite3.connect(store_url.removeprefix("sqlite:///"), isolation_level=None)) as connection:
            connection.execute("DELETE FROM stored_events WHERE rowid = ?", (missing,))
    reached, told = Following(ledger).read(0, 10_000, until=missing)
    assert (reached, told[-1].position) == (missing - 1, missing - 1)
    assert Following(ledger).read(missing - 1, 10_000, until=missing) == (missing, [])
    assert Following(ledger).read(missing, 10_000, until=missing) == (missing, [])


def test_meeting_a_creation_event_again_keeps_the_owners_learned_since(ledger: JourneyLedger) -> None:
    """A stretch read anew from before a journey's registration, ending before its contract (a client that left
    halfway through the past), meets its `Registered` again: what the reader learned since stays (the company, from
    the `PackageContracted`), and so does what it tells of the journey's later steps."""
    journeys = arrive_and_clear(ledger, 1)  # registered first, at position 2 (after the season's opening)
    following = Following(ledger)
    following.read(0, 10_000)
    _, again = following.read(1, 1)
    head = ledger.head()
    ledger.record(command("HospitalAdmitted", journey_id=journeys[0], facility="JED-KFH"), actor(Role.MOH))
    _, later = following.read(head, 10)
    assert [(t.event, t.owners) for t in again] == [("Registered", {"mission_id": MISSION_ID, "company_id": None})]
    assert [(t.event, t.owners) for t in later] == [
        ("HospitalAdmitted", {"mission_id": MISSION_ID, "company_id": COMPANY_ID})
    ]
