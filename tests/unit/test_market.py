"""An offer's places, a contract's places and a building's beds: never over, and each refusal names the numbers."""

from __future__ import annotations

from datetime import timedelta
from uuid import uuid4

import pytest

from hajj_ledger.domain.errors import BuildingFullError, ContractFullError, IllegalStepError, OfferFullError
from hajj_ledger.domain.market import Contract
from hajj_ledger.domain.vocabulary import Role
from tests.support import T0, building, contract, offer, record, stamp

C, M = Role.COMPANY, Role.MISSION


def test_an_offer_reserves_no_more_than_its_free_places_and_keeps_at_least_those_contracted() -> None:
    sold, first, second = offer(places=5), uuid4(), uuid4()
    sold.note_contract(stamp(M), first)
    sold.note_contract(stamp(M), second)
    sold.reserve_places(stamp(C), first, 4)
    with pytest.raises(OfferFullError, match="1 free places of 5 \\(4 contracted\\): 2 asked"):
        sold.reserve_places(stamp(C), second, 2)
    with pytest.raises(IllegalStepError, match="3 places is below the 4 places contracted; current stage 'published'"):
        sold.amend(stamp(C), 3, None, None, None)
    sold.amend(stamp(C), 6, None, None, None)
    sold.reserve_places(stamp(C), second, 2)
    assert (sold.contracted, sold.free) == (6, 0)


def test_an_offer_is_withdrawn_only_while_no_contract_is_active() -> None:
    sold, signed = offer(), uuid4()
    sold.note_contract(stamp(M), signed)
    with pytest.raises(IllegalStepError, match="1 contracts are proposed or signed on it"):
        sold.withdraw(stamp(C), "no_demand")
    sold.release_places(stamp(M), signed, 0)  # its termination before signing: forgotten
    sold.withdraw(stamp(C), "no_demand")
    assert sold.stage == "withdrawn"


def test_a_proposal_asks_no_more_than_the_offer_has_free() -> None:
    with pytest.raises(OfferFullError, match="has 10 free places of 10: 11 asked"):
        Contract.propose(stamp(M), uuid4(), offer(places=10), 11)


def test_a_contract_gives_no_more_places_than_it_has_and_keeps_those_used() -> None:
    deal = contract(places=2)
    record(deal, "ContractSigned")
    deal.take_place(stamp(M), uuid4())
    deal.take_place(stamp(M), uuid4())
    with pytest.raises(ContractFullError, match="2 of 2 places used"):
        deal.take_place(stamp(M), uuid4())
    with pytest.raises(IllegalStepError, match="1 places is below the 2 places used"):
        deal.amend(stamp(M), 1)
    with pytest.raises(IllegalStepError, match="2 places are used by journeys; current stage 'signed'"):
        deal.terminate(stamp(C), "withdrawn")
    assert len(deal.used) == 2


def test_a_building_takes_pilgrims_only_licensed_inspected_and_with_a_free_bed() -> None:
    house = building(beds=1)
    with pytest.raises(IllegalStepError, match="needs its latest inspection passed"):
        house.take_bed(stamp(C), uuid4())
    house.fail_inspection(stamp(Role.CIVIL_DEFENCE), "alarms_faulty")
    with pytest.raises(IllegalStepError, match="needs its latest inspection passed"):
        house.take_bed(stamp(C), uuid4())
    house.pass_inspection(stamp(Role.CIVIL_DEFENCE), "compliant")
    late = stamp(C, at=T0 + timedelta(days=366))
    with pytest.raises(IllegalStepError, match="needs a licence valid when it happened"):
        house.take_bed(late, uuid4())
    house.take_bed(stamp(C), uuid4())
    with pytest.raises(BuildingFullError, match="1 of 1 beds taken"):
        house.take_bed(stamp(C), uuid4())
    house.suspend_licence(stamp(Role.AMANAH), "fire_risk")
    with pytest.raises(IllegalStepError, match="current stage 'suspended'"):
        house.take_bed(stamp(C), uuid4())
    house.renew_licence(stamp(Role.AMANAH), T0 + timedelta(days=400))
    assert house.stage == "licensed" and not house.suspended
