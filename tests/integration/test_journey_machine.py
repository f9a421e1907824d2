"""Random commands by random agencies against a real ledger; the stored history must always make sense."""

from __future__ import annotations

import shutil
import tempfile
from datetime import timedelta
from typing import Any
from uuid import UUID, uuid4

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    MultipleResults,
    RuleBasedStateMachine,
    initialize,
    invariant,
    multiple,
    precondition,
    rule,
)

from hajj_ledger.domain.catalogue import IDENTITY_STEPS, JOURNEY_STEPS, SCOPE, STEPS, allowed_from
from hajj_ledger.domain.errors import LedgerError
from hajj_ledger.domain.journey import Journey
from hajj_ledger.domain.vocabulary import ENDED, Actor, Role, Stage
from hajj_ledger.ledger import JourneyLedger, Outcome
from tests.support import T0, command, open_market, open_season

# The first agency of each kind acts most of the time, the second now and then (and is refused).
MISSIONS = ["mission-IDN-A"] * 9 + ["mission-IDN-B"]
COMPANIES = ["company-A"] * 9 + ["company-B"]
AGENCIES = {Role.MISSION: MISSIONS, Role.COMPANY: COMPANIES}

FIELDS_IDENTITY = {
    "name_arabic": "محمد بن عبد الله",
    "name_latin": "MUHAMMAD BIN ABDULLAH",
    "passport_number": "A1234567",
    "passport_country": "IDN",
    "nationality": "IDN",
    "date_of_birth": "1960-01-31",
    "gender": "male",
}
# Valid-looking values for each step's own fields; whether the step is allowed is for the ledger to say.
FIELDS: dict[str, st.SearchStrategy[dict[str, Any]]] = {
    "VisaRequested": st.just({}),
    "VisaIssued": st.sampled_from([{"valid_until": T0 + timedelta(days=d)} for d in [-1] + [90] * 5]),
    "VisaRejected": st.just({"reason": "documents_incomplete"}),
    "VisaRevoked": st.just({"reason": "security"}),
    "FlightBooked": st.fixed_dictionaries(
        {
            "direction": st.sampled_from(["arrival", "departure"]),
            "flight": st.just("SV101"),
            "port": st.sampled_from(["JED-HAJJ", "MED"]),
            "scheduled_at": st.just(T0),
        }
    ),
    "ArrivedAtPort": st.sampled_from(
        [
            {"port": "JED-HAJJ", "mode": "air", "flight": "SV101"},
            {"port": "HADITHA", "mode": "land"},
        ]
    ),
    "EntryCleared": st.just({"port": "JED-HAJJ"}),
    "CustomsCleared": st.just({"port": "JED-HAJJ"}),
    "ReceivedAtPort": st.just({"port": "JED-HAJJ"}),
    "HousingCheckedOut": st.just({"site": "makkah", "building": "B-1"}),
    "MovedToSite": st.sampled_from([{"site": s} for s in ("mina", "arafat", "muzdalifah")]),
    "HospitalAdmitted": st.just({"facility": "H-1"}),
    "HospitalDischarged": st.just({"facility": "H-1"}),
    "ReportedMissing": st.just({}),
    "Found": st.just({"site": "mina"}),
    "DeathRecorded": st.just({"facility": "H-1"}),
    "Cancelled": st.just({"reason": "withdrawn"}),
    "ExitCleared": st.just({"port": "JED-HAJJ"}),
    "Departed": st.just({"port": "JED-HAJJ", "flight": "SV102"}),
    "IdentityCorrected": st.just({"identity": {**FIELDS_IDENTITY, "name_latin": "MOHAMMED BIN ABDULLAH"}}),
    "IdentityErased": st.just({"reason": "retention"}),
    "LegalHoldPlaced": st.just({"hold": "overstay_investigation"}),
    "LegalHoldLifted": st.just({"hold": "overstay_investigation"}),
}
# The way through a whole journey; the machine favours it so that journeys get to the end.
ROAD = [
    "PackageContracted", "VisaRequested", "VisaIssued", "ArrivedAtPort", "EntryCleared",
    "CustomsCleared", "ReceivedAtPort", "BusAssigned", "Boarded", "TransferCompleted",
    "HousingCheckedIn", "HousingCheckedOut", "MovedToSite", "ExitCleared", "Departed",
]  # fmt: skip
_often = st.integers(0, 9).map(lambda n: n < 8)


def _mostly(*roles: Role) -> st.SearchStrategy[Role]:
    """The given roles most of the time, so journeys get far; now and then any role."""
    return st.sampled_from([*roles] * (48 // len(roles)) + list(Role))


def _actor(role: Role, data: st.DataObject) -> Actor:
    choices = AGENCIES.get(role, [f"{role}-1"])
    return Actor(data.draw(st.sampled_from(choices)), role)


class JourneyMachine(RuleBasedStateMachine):
    journeys = Bundle("journeys")

    def __init__(self) -> None:
        super().__init__()
        self.directory = tempfile.mkdtemp(prefix="hajj-ledger-machine-")
        self.ledger = JourneyLedger(f"sqlite:///{self.directory}/ledger.sqlite3")
        self.capacity: dict[UUID, int] = {}
        self.departed: set[UUID] = set()  # trips on the road: their riders' transfers complete, no one boards
        self.known_journeys: list[UUID] = []
        open_season(self.ledger)  # registrations for a season the ministry never opened are refused
        # Company A's building and offer, with a contract of each mission on it (mission B's refused to A's journeys).
        self.markets = [open_market(self.ledger, 4, 3, mission=m, company=COMPANIES[0]) for m in sorted(set(MISSIONS))]
        self.fields = {
            **FIELDS,
            "PackageContracted": st.sampled_from([{"contract_id": m.contract_id} for m in self.markets]),
            "HousingCheckedIn": st.sampled_from(
                [{"site": "makkah", "building": "B-1", "building_id": m.building_id} for m in self.markets]
            ),
        }

    def teardown(self) -> None:
        self.ledger.close()
        shutil.rmtree(self.directory, ignore_errors=True)

    def _record(self, event: str, role: Role, data: st.DataObject, **fields: Any) -> Outcome | None:
        try:
            return self.ledger.record(command(event, **fields), _actor(role, data))
        except LedgerError:
            return None

    @initialize(target=journeys, data=st.data())
    def start(self, data: st.DataObject) -> MultipleResults[UUID]:
        """Two journeys and a trip to begin with, so that the steps have something to work on."""
        self._schedule(2, data)
        first, second = self._register(data, Role.MISSION), self._register(data, Role.MISSION)
        for journey_id in (first, second):  # else every later step is refused and the invariants check nothing
            assert self.ledger.journey(journey_id).stage == Stage.REGISTERED
        return multiple(first, second)

    @precondition(lambda self: len(self.known_journeys) < 5)
    @rule(target=journeys, data=st.data())
    def register(self, data: st.DataObject) -> UUID:
        return self._register(data, data.draw(_mostly(Role.MISSION)))

    @precondition(lambda self: len(self.capacity.keys() - self.departed) < 3)
    @rule(capacity=st.integers(1, 3), data=st.data())
    def schedule_trip(self, capacity: int, data: st.DataObject) -> None:
        self._schedule(capacity, data)

    def _register(self, data: st.DataObject, role: Role) -> UUID:
        pilgrim = uuid4()
        identity = data.draw(st.sampled_from([None, FIELDS_IDENTITY]))
        self._record("Registered", role, data, pilgrim_id=pilgrim, season=1446, country="IDN", identity=identity)
        journey_id = Journey.create_id(1446, pilgrim)
        self.known_journeys.append(journey_id)
        return journey_id

    def _schedule(self, capacity: int, data: st.DataObject) -> None:
        trip_id = uuid4()
        outcome = self._record(
            "TripScheduled", Role.NAQABA, data, trip_id=trip_id, operator="SAPTCO", bus_plate="K-1",
            origin="JED-HAJJ", destination="makkah", departs_at=T0, capacity=capacity,
        )  # fmt: skip
        assert outcome is not None
        self.capacity[trip_id] = capacity

    @rule(journey=journeys, data=st.data())
    def step(self, journey: UUID, data: st.DataObject) -> None:
        """Usually a step the catalogue allows from where the journey stands, else any step at all."""
        try:
            current = self.ledger.journey(journey)
        except LedgerError:
            current = None
        allowed = allowed_from(JOURNEY_STEPS, current.stage) if current else []
        forward = [e for e in allowed if e in ROAD]
        anything = sorted(set(JOURNEY_STEPS) - {"Registered", "IdentityRecorded"})  # those come with registration
        event = data.draw(st.sampled_from(forward * 30 + allowed * 3 + anything))
        role = data.draw(_mostly(*JOURNEY_STEPS[event].roles))
        if event in self.fields:
            fields = data.draw(self.fields[event])
        elif not self.capacity:
            return
        else:
            held = current.trip_id if current and current.trip_id else None
            trips = st.sampled_from(list(self.capacity))
            trip = held if held and data.draw(_often) else data.draw(trips)
            fields = {"trip_id": trip}
            if event == "BusAssignmentCancelled":
                fields["reason"] = "missed_bus"
        self._record(event, role, data, journey_id=journey, **fields)

    @rule(journey=journeys, steps=st.integers(1, 8), data=st.data())
    def advance(self, journey: UUID, steps: int, data: st.DataObject) -> None:
        """A few steps down the road, each by the agency that records it in life."""
        for _ in range(steps):
            try:
                current = self.ledger.journey(journey)
            except LedgerError:
                return
            forward = [e for e in allowed_from(JOURNEY_STEPS, current.stage) if e in ROAD]
            if not forward:
                return
            event = data.draw(st.sampled_from(forward))
            if event in self.fields:
                fields = data.draw(self.fields[event])
            else:
                trips = list(self.capacity)
                fields = {"trip_id": current.trip_id or data.draw(st.sampled_from(trips))}
            role = sorted(JOURNEY_STEPS[event].roles)[0]
            agency = {Role.MISSION: current.mission_id, Role.COMPANY: current.company_id}
            if event == "TransferCompleted":  # the bus leaves first, as a transfer needs
                self.ledger.record_batch([(command("TripDeparted", **fields), Actor("naqaba-1", Role.NAQABA))])
                self.departed.add(fields["trip_id"])
            self.ledger.record_batch(
                [
                    (
                        command(event, journey_id=journey, **fields),
                        Actor(agency.get(role) or f"{role}-1", role),
                    )
                ]
            )

    @invariant()
    def trips_never_exceed_capacity(self) -> None:
        for trip_id, capacity in self.capacity.items():
            assert len(self.ledger.trip(trip_id).seats) <= capacity

    @invariant()
    def contracts_and_buildings_hold_exactly_their_journeys(self) -> None:
        journeys = [self.ledger.journey(j) for j in self.known_journeys if j in self.ledger.repository]
        for market in self.markets:
            contract, building = self.ledger.contract(market.contract_id), self.ledger.building(market.building_id)
            assert len(contract.used) <= contract.places and len(building.occupants) <= building.beds
            assert contract.used == {j.id for j in journeys if j.contract_id == contract.id and j.stage != "cancelled"}
            assert building.occupants == {j.id for j in journeys if j.building_id == building.id}

    @invariant()
    def every_stored_event_was_allowed_and_replays_to_the_same_state(self) -> None:
        for journey_id in self.known_journeys:
            try:
                history = self.ledger.history(journey_id)
            except LedgerError:
                continue  # the registration was refused
            stage: Stage | None = None
            before_bus: Stage | None = None
            mission = company = None
            replayed = None
            for event in history:
                name, stamp = type(event).__name__, event.stamp
                step = STEPS[name]
                assert stage not in ENDED or name in IDENTITY_STEPS, f"{name} recorded after the journey ended"
                assert stamp.role in step.roles, f"{stamp.role} recorded {name}"
                owner = {SCOPE[Role.MISSION][0]: mission, SCOPE[Role.COMPANY][0]: company}
                if stamp.role in SCOPE and name != "Registered":
                    assert owner[SCOPE[stamp.role][0]] == stamp.agency_id
                assert (stage in step.from_) if name != "Registered" else stage is None
                if name == "Registered":
                    mission = stamp.agency_id
                if isinstance(event, Journey.PackageContracted):
                    company = event.company_id
                if name == "BusAssigned":
                    before_bus = stage
                stage = before_bus if name == "BusAssignmentCancelled" else (step.to or stage)
                replayed = event.mutate(replayed)
            assert replayed is not None
            loaded = self.ledger.journey(journey_id)
            assert vars(replayed) == vars(loaded)
            assert loaded.stage == stage


JourneyMachine.TestCase.settings = settings(
    max_examples=25,
    stateful_step_count=100,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
test_journey_machine = JourneyMachine.TestCase
