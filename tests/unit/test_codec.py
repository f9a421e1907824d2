"""Stored topics outlive the modules: events are stored under the aggregates' first modules, and read back from them."""

from __future__ import annotations

from typing import Any, cast

import orjson
import pytest
from eventsourcing.persistence import StoredEvent

from hajj_ledger.domain.journey import Journey
from hajj_ledger.domain.trip import Trip
from hajj_ledger.domain.vocabulary import Role
from hajj_ledger.store.codec import EventCodec
from tests.support import register, stamp, trip


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
