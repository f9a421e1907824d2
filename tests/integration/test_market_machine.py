"""Random market and housing commands by random agencies against a real ledger: an offer never sells more places
than it has, a contract never gives more than it holds, a building never houses more than its beds, and every stored
event replays to the state the ledger holds."""

from __future__ import annotations

import shutil
import tempfile
from datetime import timedelta
from typing import Any, cast
from uuid import UUID

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import Bundle, RuleBasedStateMachine, initialize, invariant, rule

from hajj_ledger.domain.building import Building
from hajj_ledger.domain.catalogue import STEPS
from hajj_ledger.domain.errors import LedgerError
from hajj_ledger.domain.journey import Journey
from hajj_ledger.domain.market import Contract, ServiceOffer
from hajj_ledger.domain.vocabulary import Actor, BuildingStage, ContractStage, Role, Stage
from hajj_ledger.ledger import JourneyLedger, Outcome
from tests.support import (
    COMPANY_ID,
    T0,
    arrive_and_clear,
    building_fields,
    command,
    offer_fields,
    open_market,
    registered,
    ride,
    schedule_trip,
)

MISSIONS = ["mission-IDN-1"] * 4 + ["mission-IDN-2"]
COMPANIES = [COMPANY_ID] * 4 + ["company-2"]
AGENCIES = {Role.MISSION: MISSIONS, Role.COMPANY: COMPANIES}
WEEK = timedelta(days=7)


def _by(data: st.DataObject, event: str) -> Actor:
    """Mostly a role that records the event (now and then another agency of it, or another role)."""
    role = data.draw(st.sampled_from(sorted(STEPS[event].roles) * 8 + list(Role)))
    return Actor(data.draw(st.sampled_from(AGENCIES.get(role, [f"{role}-1"]))), role)


class _Machine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.directory = tempfile.mkdtemp(prefix="hajj-ledger-market-")
        self.ledger = JourneyLedger(f"sqlite:///{self.directory}/ledger.sqlite3")

    def teardown(self) -> None:
        self.ledger.close()
        shutil.rmtree(self.directory, ignore_errors=True)

    def _record(self, event: str, by: Actor, **fields: Any) -> Outcome | None:
        try:
            return self.ledger.record(command(event, **fields), by)
        except LedgerError:
            return None

    def _replays(self, aggregate_id: UUID) -> Any:
        """The aggregate replayed from its stored events: the same as the ledger's."""
        replayed = None
        for event in self.ledger.events.get(aggregate_id):
            replayed = cast(Any, event).mutate(replayed)
        assert replayed is not None and vars(replayed) == vars(self.ledger.repository.get(aggregate_id))
        return replayed


class MarketMachine(_Machine):
    contracts = Bundle("contracts")

    @initialize(places=st.integers(1, 6))
    def publish(self, places: int) -> None:
        building = self.ledger.record(command("BuildingLicensed", **building_fields(5)), Actor("amanah-1", Role.AMANAH))
        fields = offer_fields(places, [building.aggregate_id])
        self.offer_id = self.ledger.record(
            command("OfferPublished", **fields), Actor(COMPANY_ID, Role.COMPANY)
        ).aggregate_id
        self.journeys: list[UUID] = []
        self.proposed: list[UUID] = []

    @rule(target=contracts, places=st.integers(1, 4), data=st.data())
    def propose(self, places: int, data: st.DataObject) -> UUID:
        outcome = self._record("ContractProposed", _by(data, "ContractProposed"), offer_id=self.offer_id, places=places)
        if outcome is None:
            return self.offer_id  # a refused proposal: an id that names no contract
        self.proposed.append(outcome.aggregate_id)
        return outcome.aggregate_id

    @rule(contract=contracts, data=st.data())
    def sign(self, contract: UUID, data: st.DataObject) -> None:
        self._record("ContractSigned", _by(data, "ContractSigned"), contract_id=contract)

    @rule(contract=contracts, places=st.integers(1, 5), data=st.data())
    def amend_contract(self, contract: UUID, places: int, data: st.DataObject) -> None:
        self._record("ContractAmended", _by(data, "ContractAmended"), contract_id=contract, places=places)

    @rule(contract=contracts, data=st.data())
    def terminate(self, contract: UUID, data: st.DataObject) -> None:
        self._record("ContractTerminated", _by(data, "ContractTerminated"), contract_id=contract, reason="withdrawn")

    @rule(places=st.none() | st.integers(1, 8), data=st.data())
    def amend_offer(self, places: int | None, data: st.DataObject) -> None:
        self._record("OfferAmended", _by(data, "OfferAmended"), offer_id=self.offer_id, places=places, price_sar=100)

    @rule(data=st.data())
    def withdraw(self, data: st.DataObject) -> None:
        self._record("OfferWithdrawn", _by(data, "OfferWithdrawn"), offer_id=self.offer_id, reason="no_demand")

    @rule(contract=contracts, data=st.data())
    def contract_a_journey(self, contract: UUID, data: st.DataObject) -> None:
        if len(self.journeys) < 8:
            self.journeys += registered(self.ledger, 1)
        journey = data.draw(st.sampled_from(self.journeys))
        self._record("PackageContracted", _by(data, "PackageContracted"), journey_id=journey, contract_id=contract)

    @rule(data=st.data())
    def cancel_a_journey(self, data: st.DataObject) -> None:
        if self.journeys:
            journey = data.draw(st.sampled_from(self.journeys))
            self._record("Cancelled", _by(data, "Cancelled"), journey_id=journey, reason="withdrawn")

    @invariant()
    def places_are_never_oversold_and_the_offer_agrees_with_its_contracts(self) -> None:
        if not hasattr(self, "offer_id"):
            return
        offer: ServiceOffer = self._replays(self.offer_id)
        assert offer.contracted <= offer.places
        for contract in map(self._replays, self.proposed):
            assert isinstance(contract, Contract) and len(contract.used) <= contract.places
            active = contract.stage != ContractStage.TERMINATED
            assert (contract.id in offer.active_contracts) == active
            assert offer.reserved.get(contract.id, 0) == (
                contract.places if contract.stage == ContractStage.SIGNED else 0
            )
            held = {j for j in self.journeys if self._journey_holds(j, contract.id)}
            assert contract.used == held

    def _journey_holds(self, journey_id: UUID, contract_id: UUID) -> bool:
        journey = self.ledger.journey(journey_id)
        return journey.contract_id == contract_id and journey.stage != Stage.CANCELLED


class BuildingMachine(_Machine):
    @initialize(beds=st.integers(1, 3))
    def house(self, beds: int) -> None:
        self.market = open_market(self.ledger, 5, beds)
        journeys = arrive_and_clear(self.ledger, 5, self.market)
        ride(self.ledger, journeys, schedule_trip(self.ledger, 5))
        self.journeys = journeys
        self.beds = beds

    @rule(event=st.sampled_from(["LicenceSuspended", "LicenceRenewed", "InspectionPassed", "InspectionFailed"]),
          data=st.data())  # fmt: skip
    def municipality_or_civil_defence(self, event: str, data: st.DataObject) -> None:
        renewal = data.draw(st.sampled_from([T0 - WEEK, T0 + WEEK]))  # a licence renewed into the past is refused
        given: dict[str, dict[str, Any]] = {
            "LicenceSuspended": {"reason": "fire_risk"},
            "LicenceRenewed": {"licence_valid_until": renewal},
            "InspectionPassed": {"findings": "compliant"},
            "InspectionFailed": {"findings": "alarms_faulty"},
        }
        self._record(event, _by(data, event), building_id=self.market.building_id, **given[event])

    @rule(event=st.sampled_from(["HousingCheckedIn", "HousingCheckedOut", "MovedToSite", "DeathRecorded"]),
          data=st.data())  # fmt: skip
    def pilgrim(self, event: str, data: st.DataObject) -> None:
        journey = data.draw(st.sampled_from(self.journeys))
        given: dict[str, dict[str, Any]] = {
            "HousingCheckedIn": {"site": "makkah", "building": "B-1", "building_id": self.market.building_id},
            "HousingCheckedOut": data.draw(
                st.sampled_from(
                    [{"site": "makkah", "building": "B-1"}] * 3
                    + [
                        {"site": "makkah", "building": "B-2"},
                        {"site": "madinah", "building": "B-1"},
                    ]
                )
            ),  # now and then where the pilgrim is not (refused)
            "MovedToSite": {"site": "mina"},
            "DeathRecorded": {"facility": "H-1"},
        }
        self._record(event, _by(data, event), journey_id=journey, **given[event])

    @invariant()
    def never_more_pilgrims_than_beds_and_every_bed_taken_when_it_was_allowed(self) -> None:
        if not hasattr(self, "market"):
            return
        building: Building | None = None
        for event in self.ledger.events.get(self.market.building_id):
            if isinstance(event, Building.BedTaken):
                assert building is not None and building.stage == BuildingStage.LICENSED and building.inspected
                assert len(building.occupants) < building.beds
            building = cast(Any, event).mutate(building)
        house = self._replays(self.market.building_id)
        assert len(house.occupants) <= self.beds
        self._every_check_in_open_and_every_check_out_where_the_pilgrim_was()
        journeys: list[Journey] = [self.ledger.journey(j) for j in self.journeys]
        assert house.occupants == {j.id for j in journeys if j.building_id == house.id}
        assert all(j.stage in (Stage.HOUSED, Stage.AT_SITE) for j in journeys if j.building_id)

    def _every_check_in_open_and_every_check_out_where_the_pilgrim_was(self) -> None:
        """The log in order: each check-in, a bed taken or one kept, met the building's licence and inspection as
        they stood; each check-out named the site and building of its journey's check-in."""
        building: Any = None
        housed_in: dict[UUID, tuple[str, str]] = {}
        for row in self.ledger.recorder.select_notifications(start=1, limit=100_000):
            event: Any = self.ledger.mapper.to_domain_event(row)
            if event.originator_id == self.market.building_id:
                building = event.mutate(building)
            elif isinstance(event, Journey.HousingCheckedIn):
                assert building.stage == BuildingStage.LICENSED and building.inspected
                assert event.stamp.occurred_at <= building.licence_valid_until
                housed_in[event.originator_id] = (event.site, event.building)
            elif isinstance(event, Journey.HousingCheckedOut):
                assert housed_in.pop(event.originator_id) == (event.site, event.building)


SETTINGS = settings(
    max_examples=20,
    stateful_step_count=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
MarketMachine.TestCase.settings = SETTINGS
BuildingMachine.TestCase.settings = SETTINGS
test_market_machine = MarketMachine.TestCase
test_building_machine = BuildingMachine.TestCase
