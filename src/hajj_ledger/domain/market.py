"""The market: a hospitality company's `ServiceOffer` of places for a season, and the missions' `Contract`s on it.

A contract's proposal is noted on its offer, its signing and amendments reserve or release the offer's places, and
the journeys under it take and free its places: each in the same transaction as the contract's own event (the
ledger's), as a bus seat is reserved with its journey's assignment.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any
from uuid import UUID

from eventsourcing.domain import Aggregate, event

from hajj_ledger.domain.catalogue import CONTRACT_STEPS, OFFER_STEPS, check_step
from hajj_ledger.domain.events import RecordedEvent
from hajj_ledger.domain.vocabulary import ContractStage, OfferKind, OfferSite, OfferStage, Stamp


class ServiceOffer(Aggregate):
    """Places offered to missions; `trigger_event` refuses what the catalogue does not allow."""

    class Event(RecordedEvent):
        steps = OFFER_STEPS

    class OfferPublished(Event, Aggregate.Created):
        offer_id: UUID  # the originator id too: chosen by the caller, or derived from the command id
        company_id: str
        season: int
        kind: OfferKind
        site: OfferSite
        places: int
        price_sar: int  # whole riyals per pilgrim
        valid_from: datetime
        valid_until: datetime
        building_ids: tuple[UUID, ...]  # the housing kinds' buildings; none for the others

    class OfferAmended(Event):
        places: int | None
        price_sar: int | None
        valid_until: datetime | None
        building_ids: tuple[UUID, ...] | None

    class OfferWithdrawn(Event):
        reason: str

    class ContractNoted(Event):
        contract_id: UUID

    class PlacesReserved(Event):
        contract_id: UUID
        places: int

    class PlacesReleased(Event):
        contract_id: UUID
        places: int

    @classmethod
    def publish(
        cls,
        stamp: Stamp,
        offer_id: UUID,
        season: int,
        kind: OfferKind,
        site: OfferSite,
        places: int,
        price_sar: int,
        valid_from: datetime,
        valid_until: datetime,
        building_ids: tuple[UUID, ...],
        buildings: Iterable[Any] = (),
    ) -> ServiceOffer:
        """`buildings`: those `building_ids` name, as the ledger loaded them, to check who operates them."""
        check_step(OFFER_STEPS, "OfferPublished", None, {"stamp": stamp, "buildings": list(buildings)})
        return cls(
            stamp, offer_id, stamp.agency_id, season, kind, site, places, price_sar, valid_from, valid_until,
            building_ids,
        )  # fmt: skip

    @staticmethod
    def create_id(offer_id: UUID) -> UUID:
        return offer_id

    @event(OfferPublished)
    def __init__(
        self,
        stamp: Stamp,
        offer_id: UUID,
        company_id: str,
        season: int,
        kind: OfferKind,
        site: OfferSite,
        places: int,
        price_sar: int,
        valid_from: datetime,
        valid_until: datetime,
        building_ids: tuple[UUID, ...],
    ) -> None:
        self.company_id = company_id
        self.season = season
        self.kind = kind
        self.site = site
        self.places = places
        self.price_sar = price_sar
        self.valid_from = valid_from
        self.valid_until = valid_until
        self.building_ids = frozenset(building_ids)
        self.stage = OfferStage.PUBLISHED
        # Each active contract (proposed or signed) and the places it holds (none until signed).
        self.reserved: dict[UUID, int] = {}

    @property
    def contracted(self) -> int:
        return sum(self.reserved.values())

    @property
    def free(self) -> int:
        return self.places - self.contracted

    @property
    def active_contracts(self) -> frozenset[UUID]:
        return frozenset(self.reserved)

    def trigger_event(self, event_class: type[Any], **kwargs: Any) -> None:
        check_step(OFFER_STEPS, event_class.__name__, self, kwargs)
        super().trigger_event(event_class, **kwargs)

    @event(OfferAmended)
    def amend(
        self,
        stamp: Stamp,
        places: int | None,
        price_sar: int | None,
        valid_until: datetime | None,
        building_ids: tuple[UUID, ...] | None,
    ) -> None:
        self.places = self.places if places is None else places
        self.price_sar = self.price_sar if price_sar is None else price_sar
        self.valid_until = self.valid_until if valid_until is None else valid_until
        self.building_ids = self.building_ids if building_ids is None else frozenset(building_ids)

    @event(OfferWithdrawn)
    def withdraw(self, stamp: Stamp, reason: str) -> None:
        pass

    @event(ContractNoted)
    def note_contract(self, stamp: Stamp, contract_id: UUID) -> None:
        self.reserved[contract_id] = 0

    @event(PlacesReserved)
    def reserve_places(self, stamp: Stamp, contract_id: UUID, places: int) -> None:
        self.reserved[contract_id] += places

    @event(PlacesReleased)
    def release_places(self, stamp: Stamp, contract_id: UUID, places: int) -> None:
        # An amendment keeps at least one place; only a termination releases them all, and ends the contract here.
        left = self.reserved[contract_id] - places
        if left:
            self.reserved[contract_id] = left
        else:
            del self.reserved[contract_id]


class Contract(Aggregate):
    """A mission's places on an offer, and the journeys using them."""

    class Event(RecordedEvent):
        steps = CONTRACT_STEPS

    class ContractProposed(Event, Aggregate.Created):
        contract_id: UUID
        offer_id: UUID
        mission_id: str
        company_id: str  # the offer's, as are the season, kind and site
        season: int
        kind: OfferKind
        site: OfferSite
        places: int

    class ContractSigned(Event):
        pass

    class ContractAmended(Event):
        places: int

    class ContractTerminated(Event):
        reason: str

    class PlaceTaken(Event):
        journey_id: UUID

    class PlaceFreed(Event):
        journey_id: UUID

    @classmethod
    def propose(cls, stamp: Stamp, contract_id: UUID, offer: ServiceOffer, places: int) -> Contract:
        check_step(CONTRACT_STEPS, "ContractProposed", None, {"stamp": stamp, "places": places, "offer": offer})
        return cls(
            stamp, contract_id, offer.id, stamp.agency_id, offer.company_id, offer.season, offer.kind, offer.site,
            places,
        )  # fmt: skip

    @staticmethod
    def create_id(contract_id: UUID) -> UUID:
        return contract_id

    @event(ContractProposed)
    def __init__(
        self,
        stamp: Stamp,
        contract_id: UUID,
        offer_id: UUID,
        mission_id: str,
        company_id: str,
        season: int,
        kind: OfferKind,
        site: OfferSite,
        places: int,
    ) -> None:
        self.offer_id = offer_id
        self.mission_id = mission_id
        self.company_id = company_id
        self.season = season
        self.kind = kind
        self.site = site
        self.places = places
        self.stage = ContractStage.PROPOSED
        self.used: set[UUID] = set()  # the journeys holding its places

    def trigger_event(self, event_class: type[Any], **kwargs: Any) -> None:
        check_step(CONTRACT_STEPS, event_class.__name__, self, kwargs)
        super().trigger_event(event_class, **kwargs)

    @event(ContractSigned)
    def sign(self, stamp: Stamp) -> None:
        pass

    @event(ContractAmended)
    def amend(self, stamp: Stamp, places: int) -> None:
        self.places = places

    @event(ContractTerminated)
    def terminate(self, stamp: Stamp, reason: str) -> None:
        pass

    @event(PlaceTaken)
    def take_place(self, stamp: Stamp, journey_id: UUID) -> None:
        self.used.add(journey_id)

    @event(PlaceFreed)
    def free_place(self, stamp: Stamp, journey_id: UUID) -> None:
        self.used.discard(journey_id)
