"""Stored topics outlive the modules: events are stored under the aggregates' first modules, and read back from them."""

from __future__ import annotations

from typing import Any, cast
from uuid import UUID

import orjson
import pytest
from eventsourcing.persistence import StoredEvent

from hajj_ledger.domain.journey import Journey
from hajj_ledger.domain.trip import Trip
from hajj_ledger.domain.vocabulary import Role
from hajj_ledger.store.codec import EventCodec
from tests.support import BUILDING_ID, offer, record, register, stamp, trip


@pytest.mark.parametrize(
    ("aggregate", "topic", "created"),
    [
        (register(), "hajj_ledger.journey:Journey.Registered", "hajj_ledger.journey:Journey"),
        (trip(), "hajj_ledger.trip:Trip.TripScheduled", "hajj_ledger.trip:Trip"),
    ],
    ids=["journey", "trip"],
)
def test_events_are_stored_under_the_first_modules(aggregate: Journey | Trip, topic: str, created: str) -> None:
    codec = EventCodec()
    [event] = aggregate.collect_events()
    stored = codec.to_stored_event(event)
    assert stored.topic == topic
    assert orjson.loads(stored.state)["originator_topic"] == created
    again = codec.to_domain_event(stored)
    assert type(again) is type(event)
    rebuilt = cast(Any, again).mutate(None)  # the created event finds its aggregate's class by the stored topic
    assert type(rebuilt) is type(aggregate)


def test_a_later_event_reads_back_from_its_stored_topic() -> None:
    codec, bus = EventCodec(), trip()
    bus.depart(stamp(Role.NAQABA))
    stored = codec.to_stored_event(bus.collect_events()[-1])
    assert stored.topic == "hajj_ledger.trip:Trip.TripDeparted"
    moved = StoredEvent(stored.originator_id, stored.originator_version, "hajj_ledger.domain.trip:Trip.TripDeparted",
                        stored.state)  # fmt: skip
    assert type(codec.to_domain_event(moved)) is type(codec.to_domain_event(stored)) is Trip.TripDeparted


def test_events_stored_before_contracts_buildings_and_routes_read_back_with_none() -> None:
    """A package, a check-in and a trip stored before these fields existed: read back, and replayed, with None."""
    codec, journey, bus = EventCodec(), register(), trip()
    record(journey, "PackageContracted")
    stored = [codec.to_stored_event(e) for e in journey.collect_events()]
    old = []
    for event in stored:
        state = orjson.loads(event.state)
        state.pop("contract_id", None)
        old.append(StoredEvent(event.originator_id, event.originator_version, event.topic, orjson.dumps(state)))
    replayed: Any = None
    for decoded in map(codec.to_domain_event, old):
        replayed = cast(Any, decoded).mutate(replayed)
    assert replayed.contract_id is None and replayed.company_id == "company-1"
    assert cast(Any, codec.to_domain_event(old[-1])).contract_id is None
    [scheduled] = bus.collect_events()
    state = orjson.loads(codec.to_stored_event(scheduled).state)
    del state["expected_arrival"]
    again = codec.to_stored_event(scheduled)
    before = StoredEvent(again.originator_id, again.originator_version, again.topic, orjson.dumps(state))
    assert cast(Any, codec.to_domain_event(before)).mutate(None).expected_arrival is None


def test_an_offers_buildings_read_back_as_a_tuple_of_ids() -> None:
    codec, sold = EventCodec(), offer()
    [published] = sold.collect_events()
    again = cast(Any, codec.to_domain_event(codec.to_stored_event(published)))
    assert again.building_ids == (BUILDING_ID,) and isinstance(again.building_ids[0], UUID)
    assert again.mutate(None).building_ids == frozenset({BUILDING_ID})
