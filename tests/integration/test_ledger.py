"""The ledger on a real store (SQLite and PostgreSQL): recording, refusing, retrying, reading back."""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import uuid4

import psycopg
import pytest
from eventsourcing.persistence import StoredEvent

from hajj_ledger.domain.commands import Command
from hajj_ledger.domain.errors import (
    ConflictError,
    DuplicateRegistrationError,
    IdempotencyKeyReusedError,
    IllegalStepError,
    LedgerError,
    NotFoundError,
    PermissionDeniedError,
    TripFullError,
    ValidationError,
)
from hajj_ledger.domain.journey import Journey
from hajj_ledger.domain.vocabulary import Mode, Role, Stage
from hajj_ledger.ledger import JourneyLedger, Outcome
from tests.example_journeys import run_demo
from tests.support import T0, actor, arrive_and_clear, command, open_market, open_season, schedule_trip


def test_whole_journeys_are_recorded_and_read_back(ledger: JourneyLedger) -> None:
    journey_id = run_demo(ledger)
    journey = ledger.journey(journey_id)
    assert journey.stage == Stage.DEPARTED
    history = ledger.history(journey_id)
    assert [type(e).__name__ for e in history][:3] == [
        "Registered",
        "PackageContracted",
        "VisaRequested",
    ]
    assert len(history) == journey.version == 25
    for event in history:
        assert event.stamp.occurred_at.tzinfo is not None
        assert event.recorded_at.utcoffset() == timedelta(0)
        assert event.stamp.occurred_at <= event.recorded_at
    # Running the demonstration again records nothing: every command repeats its first outcome.
    head = ledger.head()
    run_demo(ledger)
    assert ledger.head() == head


def test_replaying_a_journey_reproduces_its_state(ledger: JourneyLedger) -> None:
    journey_id = run_demo(ledger)
    loaded = ledger.journey(journey_id)
    replayed = None
    for event in ledger.history(journey_id):
        replayed = event.mutate(replayed)
    assert replayed is not None and vars(replayed) == vars(loaded)


def _refusal(ledger: JourneyLedger, role: Role, event: str, **fields: Any) -> LedgerError:
    head = ledger.head()
    with pytest.raises(LedgerError) as refused:
        ledger.record(command(event, **fields), actor(role))
    assert ledger.head() == head, "a refused command stored something"
    return refused.value


def test_refusals_name_the_problem_and_store_nothing(ledger: JourneyLedger) -> None:
    [journey] = arrive_and_clear(ledger, 1)
    trip = schedule_trip(ledger, capacity=1)

    unknown = _refusal(ledger, Role.JAWAZAT, "EntryCleared", journey_id=uuid4(), port="JED-HAJJ")
    assert isinstance(unknown, NotFoundError) and "not found" in str(unknown)

    wrong_role = _refusal(ledger, Role.WUKALA, "BusAssigned", journey_id=journey, trip_id=trip)
    assert isinstance(wrong_role, PermissionDeniedError)
    assert "role 'wukala' may not record BusAssigned" in str(wrong_role)

    illegal = _refusal(ledger, Role.GACA, "Departed", journey_id=journey, port="JED-HAJJ")
    assert isinstance(illegal, IllegalStepError) and illegal.stage == "received"
    assert "BusAssigned" in illegal.allowed

    future = datetime.now(UTC) + timedelta(hours=2)
    early = _refusal(ledger, Role.NAQABA, "BusAssigned", journey_id=journey, trip_id=trip, occurred_at=future)
    assert isinstance(early, ValidationError) and early.field == "occurred_at"

    missing_trip = _refusal(ledger, Role.NAQABA, "BusAssigned", journey_id=journey, trip_id=uuid4())
    assert isinstance(missing_trip, NotFoundError) and "trip" in str(missing_trip)
    assert ledger.journey(journey).stage == Stage.RECEIVED


def test_a_mission_registers_its_own_country_only_alone_or_in_a_batch(ledger: JourneyLedger) -> None:
    def registration(country: str) -> Command:
        return command("Registered", pilgrim_id=uuid4(), season=1446, country=country)

    head = ledger.head()
    foreign = _refusal(ledger, Role.MISSION, "Registered", pilgrim_id=uuid4(), season=1446, country="PAK")
    assert isinstance(foreign, PermissionDeniedError) and "registers pilgrims of IDN only, not PAK" in str(foreign)
    results = ledger.record_batch(
        [(registration("PAK"), actor(Role.MISSION)), (registration("IDN"), actor(Role.MISSION))]
    )
    assert isinstance(results[0], PermissionDeniedError) and isinstance(results[1], Outcome)
    assert ledger.head() == head + 1


def test_a_late_report_is_refused_unless_recorded_as_a_late_correction(store_url: str) -> None:
    ledger = JourneyLedger(store_url)
    try:
        [journey] = arrive_and_clear(ledger, 1)
        admitted = T0 + timedelta(days=2)
        ledger.record(
            command("HospitalAdmitted", journey_id=journey, facility="H-1", occurred_at=admitted), actor(Role.MOH)
        )
        discharge = {"journey_id": journey, "facility": "H-1", "occurred_at": T0 + timedelta(days=1)}
        late = _refusal(ledger, Role.MOH, "HospitalDischarged", **discharge)
        assert isinstance(late, ValidationError) and late.field == "occurred_at" and admitted.isoformat() in str(late)
        outcome = ledger.record(
            command("HospitalDischarged", late_correction="paper_record", **discharge), actor(Role.MOH)
        )
    finally:
        ledger.close()
    again = JourneyLedger(store_url)  # read back from the store
    try:
        last = again.history(journey)[-1]
        assert (type(last).__name__, last.stamp.late_reason) == ("HospitalDischarged", "paper_record")
        assert again.history(journey)[-2].stamp.late_reason is None
        assert again.journey(journey).hospital is None and outcome.position == again.head()
    finally:
        again.close()


def test_assigning_a_bus_changes_journey_and_trip_together(ledger: JourneyLedger) -> None:
    first, second = arrive_and_clear(ledger, 2)
    trip_id = schedule_trip(ledger, capacity=1)
    head = ledger.head()
    outcome = ledger.record(command("BusAssigned", journey_id=first, trip_id=trip_id), actor(Role.NAQABA))
    assert outcome.position == head + 2 == ledger.head()
    assert ledger.trip(trip_id).seats == {first}
    assert ledger.journey(first).trip_id == trip_id

    full = _refusal(ledger, Role.NAQABA, "BusAssigned", journey_id=second, trip_id=trip_id)
    assert isinstance(full, TripFullError)
    assert ledger.journey(second).stage == Stage.RECEIVED

    # A pilgrim holds a seat on at most one open trip.
    other = schedule_trip(ledger)
    again = _refusal(ledger, Role.NAQABA, "BusAssigned", journey_id=first, trip_id=other)
    assert isinstance(again, IllegalStepError) and again.stage == "bus_assigned"

    ledger.record(
        command("BusAssignmentCancelled", journey_id=first, trip_id=trip_id, reason="missed_bus"),
        actor(Role.NAQABA),
    )
    assert ledger.trip(trip_id).seats == set()
    assert ledger.journey(first).stage == Stage.RECEIVED
    ledger.record(command("BusAssigned", journey_id=second, trip_id=trip_id), actor(Role.NAQABA))
    assert ledger.trip(trip_id).seats == {second}


def test_a_repeated_command_returns_its_first_outcome_even_after_a_restart(store_url: str) -> None:
    [journey] = arrive_and_clear(first := JourneyLedger(store_url), 1)
    step = command("EntryCleared", journey_id=journey, port="JED-HAJJ")
    try:
        trip = schedule_trip(first)
        assign = command("BusAssigned", journey_id=journey, trip_id=trip)
        outcome = first.record(assign, actor(Role.NAQABA))
        assert not outcome.repeated
        assert outcome.events == ("SeatReserved", "BusAssigned")
        assert first.record(assign, actor(Role.NAQABA)) == dataclasses.replace(outcome, repeated=True)
    finally:
        first.close()

    restarted = JourneyLedger(store_url)
    try:
        head = restarted.head()
        again = restarted.record(assign, actor(Role.NAQABA))
        assert (again.position, again.repeated) == (outcome.position, True)
        assert restarted.head() == head
        reused = assign.model_copy(update={"trip_id": uuid4()})
        with pytest.raises(IdempotencyKeyReusedError, match="already used for a different command"):
            restarted.record(reused, actor(Role.NAQABA))
        # A refused command was never recorded, so its id stays free.
        with pytest.raises(IllegalStepError):
            restarted.record(step, actor(Role.JAWAZAT))
        assert restarted.head() == head
    finally:
        restarted.close()


def test_a_batch_gives_one_outcome_per_command_and_a_refusal_sinks_only_itself(
    ledger: JourneyLedger,
) -> None:
    pilgrim = uuid4()
    register = command("Registered", pilgrim_id=pilgrim, season=1446, country="IDN")
    journey = Journey.create_id(1446, pilgrim)
    market = open_market(ledger, 1)
    batch = [
        (register, actor(Role.MISSION)),
        (command("VisaRequested", journey_id=journey), actor(Role.MISSION)),  # not contracted yet
        (
            command("PackageContracted", journey_id=journey, contract_id=market.contract_id, package_id="P-9"),
            actor(Role.MISSION),
        ),
        (command("VisaRequested", journey_id=journey), actor(Role.MISSION)),
        (register, actor(Role.MISSION)),  # the same command twice in one batch
        (
            command("Registered", pilgrim_id=pilgrim, season=1446, country="IDN"),
            actor(Role.MISSION),
        ),
        (
            command("VisaIssued", journey_id=uuid4(), valid_until=datetime.now(UTC)),
            actor(Role.MOFA),
        ),
    ]
    head = ledger.head()
    results = ledger.record_batch(batch)
    kinds = [type(r).__name__ for r in results]
    assert kinds == [
        "Outcome",
        "IllegalStepError",
        "Outcome",
        "Outcome",
        "Outcome",
        "DuplicateRegistrationError",
        "NotFoundError",
    ]
    positions = [r.position for r in results if isinstance(r, Outcome)]
    # The contracting command records two events: the contract's PlaceTaken and the journey's PackageContracted.
    assert positions == [head + 1, head + 3, head + 4, head + 1]
    assert ledger.head() == head + 4
    assert ledger.journey(journey).stage == Stage.VISA_REQUESTED
    assert isinstance(results[5], DuplicateRegistrationError)


def test_a_concurrent_write_is_retried_on_fresh_state(
    ledger: JourneyLedger, store_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    [journey] = arrive_and_clear(ledger, 1)
    other = JourneyLedger(store_url)
    original_save = ledger._save
    interruptions: list[Outcome] = []

    def save_after_someone_else(*args: Any, **kwargs: Any) -> Any:
        if len(interruptions) < 1:
            interruptions.append(
                other.record(
                    command("HospitalAdmitted", journey_id=journey, facility="JED-CLINIC"),
                    actor(Role.MOH),
                )
            )
        return original_save(*args, **kwargs)

    monkeypatch.setattr(ledger, "_save", save_after_someone_else)
    try:
        trip = schedule_trip(ledger)
        outcome = ledger.record(command("BusAssigned", journey_id=journey, trip_id=trip), actor(Role.NAQABA))
        assert outcome.position > interruptions[0].position
        names = [type(e).__name__ for e in ledger.history(journey)]
        assert names[-2:] == ["HospitalAdmitted", "BusAssigned"]
    finally:
        other.close()


def test_a_write_that_always_conflicts_ends_in_a_clear_conflict_error(
    ledger: JourneyLedger, store_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    [journey] = arrive_and_clear(ledger, 1)
    other = JourneyLedger(store_url)
    original_save = ledger._save
    facilities = iter(["A-1", "A-2"] * 10)

    def save_after_someone_else(*args: Any, **kwargs: Any) -> Any:
        event = "HospitalAdmitted" if other.journey(journey).hospital is None else "HospitalDischarged"
        other.record(command(event, journey_id=journey, facility=next(facilities)), actor(Role.MOH))
        return original_save(*args, **kwargs)

    monkeypatch.setattr(ledger, "_save", save_after_someone_else)
    try:
        with pytest.raises(ConflictError, match="concurrent writers"):
            ledger.record(command("ReportedMissing", journey_id=journey), actor(Role.COMPANY))
        names = {type(e).__name__ for e in ledger.history(journey)}
        assert "ReportedMissing" not in names and not ledger.journey(journey).missing
    finally:
        other.close()


def test_a_version_1_event_is_read_back_through_its_upcaster(ledger: JourneyLedger) -> None:
    pilgrim = uuid4()
    ledger.record(command("Registered", pilgrim_id=pilgrim, season=1446, country="IDN"), actor(Role.MISSION))
    journey = ledger.journey(Journey.create_id(1446, pilgrim))
    fields: dict[str, Any] = {
        "originator_id": journey.id,
        "originator_version": journey.version + 1,
        "timestamp": datetime.now(UTC),
        "stamp": ledger.history(journey.id)[0].stamp,
        "port": "HADITHA",
        "mode": Mode.LAND,
        "flight": None,
    }
    arrived = Journey.ArrivedAtPort(**fields)  # built only to be stored in its old shape
    stored = ledger.mapper.to_stored_event(arrived)
    state = json.loads(stored.state)
    assert state.pop("class_version") == 2
    del state["mode"]  # what version 1 wrote
    ledger.recorder.insert_events(
        [
            StoredEvent(
                stored.originator_id,
                stored.originator_version,
                stored.topic,
                json.dumps(state).encode(),
            )
        ]
    )
    read = ledger.history(journey.id)[-1]
    assert isinstance(read, Journey.ArrivedAtPort)
    assert (read.port, read.mode, read.flight) == ("HADITHA", "land", None)


def test_a_version_1_registration_reads_back_without_an_identity(ledger: JourneyLedger) -> None:
    outcome = ledger.record(command("Registered", pilgrim_id=uuid4(), season=1446, country="IDN"), actor(Role.MISSION))
    stored = ledger.mapper.to_stored_event(ledger.history(outcome.aggregate_id)[0])
    state = json.loads(stored.state)
    assert state.pop("class_version") == 2
    del state["identity_digest"]  # version 1 had none: IdentityRecorded followed
    old_journey = uuid4()
    ledger.recorder.insert_events([StoredEvent(old_journey, 1, stored.topic, json.dumps(state).encode())])
    read = ledger.history(old_journey)[0]
    assert isinstance(read, Journey.Registered) and read.identity_digest is None
    assert ledger.journey(old_journey).identity == "none"


def test_the_log_keeps_the_order_of_commands_across_aggregates(ledger: JourneyLedger) -> None:
    """A batch touching a journey first and its trip later still logs each cause before its effect."""
    [journey] = arrive_and_clear(ledger, 1)
    trip_id = uuid4()
    head = ledger.head()
    results = ledger.record_batch(
        [
            (command("HospitalAdmitted", journey_id=journey, facility="JED-CLINIC"), actor(Role.MOH)),
            (
                command(
                    "TripScheduled",
                    trip_id=trip_id,
                    operator="SAPTCO",
                    bus_plate="K-9",
                    origin="JED-HAJJ",
                    destination="makkah",
                    departs_at=datetime.now(UTC),
                    capacity=10,
                ),
                actor(Role.NAQABA),
            ),
            (command("BusAssigned", journey_id=journey, trip_id=trip_id), actor(Role.NAQABA)),
        ]
    )
    assert all(isinstance(r, Outcome) for r in results), results
    logged = [row.topic.rsplit(".", 1)[-1] for row in ledger.recorder.select_notifications(start=head + 1, limit=10)]
    assert logged == ["HospitalAdmitted", "TripScheduled", "SeatReserved", "BusAssigned"]


@pytest.mark.postgres
def test_a_store_made_before_the_append_function_gets_it_and_keeps_recording(postgres_url: str) -> None:
    first = JourneyLedger(postgres_url)
    try:
        open_season(first)
        before = first.record(
            command("Registered", pilgrim_id=uuid4(), season=1446, country="IDN"), actor(Role.MISSION)
        )
    finally:
        first.close()
    with psycopg.connect(postgres_url, autocommit=True) as connection:
        connection.execute("DROP FUNCTION journeyledger_events_append")
    later = JourneyLedger(postgres_url)
    try:
        after = later.record(command("Registered", pilgrim_id=uuid4(), season=1446, country="IDN"), actor(Role.MISSION))
        assert after.position == before.position + 1
    finally:
        later.close()


@pytest.mark.postgres
def test_a_store_whose_append_function_checks_no_season_gets_the_one_that_does(postgres_url: str) -> None:
    """A store made before the append function checked the seasons written into: its function (one argument fewer)
    is replaced when a ledger starts: one function is left, and the ledger records through it."""
    first = JourneyLedger(postgres_url)
    open_season(first)
    first.close()
    with psycopg.connect(postgres_url, autocommit=True) as connection:
        connection.execute("DROP FUNCTION journeyledger_events_append")
        connection.execute(
            "CREATE FUNCTION journeyledger_events_append(uuid[], int8[], text[], bytea[], int4[], uuid[], text[], "
            "text[], int4[]) RETURNS SETOF bigint LANGUAGE sql AS 'SELECT 0::bigint'"
        )
    later = JourneyLedger(postgres_url)
    try:
        later.record(command("Registered", pilgrim_id=uuid4(), season=1446, country="IDN"), actor(Role.MISSION))
        with psycopg.connect(postgres_url) as connection:
            found = connection.execute(
                "SELECT count(*) FROM pg_proc WHERE proname = 'journeyledger_events_append'"
            ).fetchone()
        assert found == (1,)
    finally:
        later.close()
