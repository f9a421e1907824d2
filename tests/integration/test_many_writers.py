"""Writes spread over many processes (API nodes) on one store: each node's write cache learns of the others'
writes from the log's tail, so spreading costs neither conflicts nor re-runs, and nothing is decided on a stale
journey."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import timedelta
from typing import Any
from uuid import UUID, uuid4

import pytest

from hajj_ledger.domain.errors import IllegalStepError
from hajj_ledger.domain.vocabulary import Role, Stage
from hajj_ledger.ledger import JourneyLedger, Outcome
from tests.support import T0, actor, command, contract_journeys, open_market, registered, schedule_trip

JOURNEYS = 40


def _register(ledger: JourneyLedger, count: int) -> list[UUID]:
    """Journeys registered and contracted, on this node."""
    journeys = registered(ledger, count)
    contract_journeys(ledger, journeys, open_market(ledger, count).contract_id)
    return journeys


STEPS: list[tuple[Role, str, dict[str, object]]] = [
    (Role.MISSION, "VisaRequested", {}),
    (Role.MOFA, "VisaIssued", {"valid_until": T0 + timedelta(days=90)}),
    (Role.GACA, "ArrivedAtPort", {"port": "JED-HAJJ", "mode": "air", "flight": "GA901"}),
    (Role.JAWAZAT, "EntryCleared", {"port": "JED-HAJJ"}),
    (Role.CUSTOMS, "CustomsCleared", {"port": "JED-HAJJ"}),
    (Role.WUKALA, "ReceivedAtPort", {"port": "JED-HAJJ"}),
]


def _counting(load: Callable[[Iterable[UUID]], Any], loaded: list[UUID]) -> Callable[[Iterable[UUID]], Any]:
    def counted(aggregate_ids: Iterable[UUID]) -> Any:
        asked = list(aggregate_ids)
        loaded.extend(asked)
        return load(asked)

    return counted


def test_steps_spread_round_robin_over_two_nodes_meet_no_conflict(
    two_ledgers: tuple[JourneyLedger, JourneyLedger], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each step of a journey goes to the other node than the step before: every node's cached copy of the
    journey is one step behind when the next step reaches it, and is brought forward by the other node's event
    (read from the log's tail), not loaded again."""
    journeys = _register(two_ledgers[0], JOURNEYS)
    loaded: list[UUID] = []
    for ledger in two_ledgers:
        monkeypatch.setattr(ledger, "load", _counting(ledger.load, loaded))
    for n, (role, event, fields) in enumerate(STEPS):
        node = two_ledgers[(n + 1) % 2]
        results = node.record_batch([(command(event, journey_id=j, **fields), actor(role)) for j in journeys])
        assert all(isinstance(r, Outcome) and not r.repeated for r in results), results
        if n == 0:  # the second node had never seen these journeys
            assert sorted(loaded) == sorted(journeys)
    assert len(loaded) == JOURNEYS  # after that, no journey was loaded again
    for ledger in two_ledgers:
        assert ledger.stats.conflicts == 0 and ledger.stats.reruns == 0
    assert two_ledgers[0].stats.stale + two_ledgers[1].stats.stale >= JOURNEYS * (len(STEPS) - 2)
    assert {two_ledgers[0].journey(j).stage for j in journeys} == {Stage.RECEIVED}


def test_a_step_refused_on_another_nodes_write_is_refused_with_the_current_stage(
    two_ledgers: tuple[JourneyLedger, JourneyLedger],
) -> None:
    first, second = two_ledgers
    (journey,) = registered(first, 1)
    contract_id = open_market(first, 1).contract_id
    second.record(command("PackageContracted", journey_id=journey, contract_id=contract_id), actor(Role.MISSION))
    first.record(command("VisaRequested", journey_id=journey), actor(Role.MISSION))
    # The second node cached the journey at `contracted`; the first has moved it on.
    with pytest.raises(IllegalStepError, match="visa_requested"):
        second.record(command("VisaRequested", journey_id=journey), actor(Role.MISSION))
    assert second.stats.reruns == 0 and second.journey(journey).version == 3


def test_seats_on_one_trip_taken_from_two_nodes_are_never_more_than_its_capacity(
    two_ledgers: tuple[JourneyLedger, JourneyLedger],
) -> None:
    """A busy trip written by both nodes in turn: the tail tells each node of the other's seats."""
    first, second = two_ledgers
    journeys = _register(first, 12)
    for role, event, fields in STEPS:
        first.record_batch([(command(event, journey_id=j, **fields), actor(role)) for j in journeys])
    trip_id = schedule_trip(first, capacity=10)
    results = [
        (first, second)[n % 2].record_batch(
            [(command("BusAssigned", journey_id=journey, trip_id=trip_id), actor(Role.NAQABA))]
        )[0]
        for n, journey in enumerate(journeys)
    ]
    seated = [r for r in results if isinstance(r, Outcome)]
    assert len(seated) == 10
    assert first.trip(trip_id).seats == {r.aggregate_id for r in seated}
    assert first.stats.conflicts + second.stats.conflicts == 0
