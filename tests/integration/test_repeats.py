"""A repeat is a repeat everywhere: the same command reaching two ledgers at once (two servers on one database),
or twice in one batch, is answered once as new and otherwise with its first outcome; never an error, never stored
twice."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from threading import Barrier
from typing import Any
from uuid import uuid4

import psycopg
import pytest

from hajj_ledger.domain.commands import Command
from hajj_ledger.domain.errors import LedgerError
from hajj_ledger.domain.vocabulary import Role
from hajj_ledger.ledger import JourneyLedger, Outcome
from hajj_ledger.store.connections import WRITE_POOL_OVERFLOW_VARIABLE, WRITE_POOL_SIZE_VARIABLE
from tests.support import actor, command, open_season

PAIRS = 150
ROUNDS = 4


def _registration() -> Command:
    return command("Registered", pilgrim_id=uuid4(), season=1446, country="IDN")


def _answers(outcomes: list[Outcome | LedgerError | BaseException]) -> list[str]:
    return sorted("repeat" if isinstance(o, Outcome) and o.repeated else type(o).__name__ for o in outcomes)


def test_the_same_commands_sent_to_two_ledgers_at_once_are_one_new_and_one_repeat_each(
    two_ledgers: tuple[JourneyLedger, JourneyLedger],
) -> None:
    """Each pair of calls races: the loser's batch meets the winner's receipt (a version conflict, a failed
    transaction) and is run again; that path must answer with the first outcome, every time."""
    ledgers = two_ledgers
    mission = actor(Role.MISSION)
    commands = [_registration() for _ in range(PAIRS)]
    start = Barrier(2)

    def send(side: int) -> list[Outcome | LedgerError | BaseException]:
        answers: list[Outcome | LedgerError | BaseException] = []
        for each in commands:
            start.wait()
            try:
                answers.append(ledgers[side].record(each, mission))
            except Exception as error:  # a 409 or a 500 alike: the test names it
                answers.append(error)
        return answers

    with ThreadPoolExecutor(2) as pool:
        first, second = pool.map(send, (0, 1))

    unexpected = [(a, b) for a, b in zip(first, second, strict=True) if _answers([a, b]) != ["Outcome", "repeat"]]
    assert not unexpected, unexpected[:5]
    for a, b in zip(first, second, strict=True):
        assert isinstance(a, Outcome) and isinstance(b, Outcome)
        assert (a.aggregate_id, a.position, a.events) == (b.aggregate_id, b.position, b.events)
    stored = ledgers[0].recorder.select_notifications(start=2, limit=10 * PAIRS)  # after the season's opening
    assert len(stored) == PAIRS  # one Registered each, nothing twice


def test_the_same_command_twice_in_one_batch_is_new_once_then_a_repeat(
    two_ledgers: tuple[JourneyLedger, JourneyLedger],
) -> None:
    ledger = two_ledgers[0]
    once = _registration()
    results = ledger.record_batch([(once, actor(Role.MISSION)), (once, actor(Role.MISSION))])
    assert [type(r) for r in results] == [Outcome, Outcome]
    new, repeat = results
    assert isinstance(new, Outcome) and isinstance(repeat, Outcome)
    assert (new.repeated, repeat.repeated) == (False, True)
    assert (new.aggregate_id, new.position) == (repeat.aggregate_id, repeat.position)
    assert ledger.head() == 2  # the season's opening, then the one registration


@pytest.mark.postgres
def test_a_batch_meeting_another_servers_receipt_is_answered_and_leaves_its_connection_clean(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A large batch whose first command another server has just recorded: its insert fails on the receipt. When the
    insert was pipelined, that failure came back as "pipeline aborted" (retried ten times, then answered 503) in
    most rounds, and could leave the connection believing in a prepared statement the server never made ("prepared
    statement _pg3_N does not exist" on its next insert). One connection makes every round meet whatever the
    previous one left; the pause lets the other server's commit land first every time."""
    other = JourneyLedger(postgres_url)
    open_season(other)
    monkeypatch.setenv(WRITE_POOL_SIZE_VARIABLE, "1")
    monkeypatch.setenv(WRITE_POOL_OVERFLOW_VARIABLE, "0")
    ledger = JourneyLedger(postgres_url)
    insert_events = ledger.recorder.insert_events

    def after_a_pause(*args: Any, **kwargs: Any) -> Any:
        time.sleep(0.05)  # a busy process: the other server has committed by the time the batch is sent
        return insert_events(*args, **kwargs)

    monkeypatch.setattr(ledger.recorder, "insert_events", after_a_pause)
    mission = actor(Role.MISSION)
    try:
        for _ in range(ROUNDS):
            batch = [_registration() for _ in range(1000)]
            first = other.record(batch[0], mission)
            results = ledger.record_batch([(c, mission) for c in batch])
            assert all(isinstance(r, Outcome) for r in results), {type(r).__name__ for r in results}
            outcomes = [r for r in results if isinstance(r, Outcome)]
            assert [o.repeated for o in outcomes] == [True] + [False] * 999
            assert outcomes[0].position == first.position
        with psycopg.connect(postgres_url) as connection:
            count = connection.execute("SELECT count(*) FROM journeyledger_events").fetchone()
        assert count == (ROUNDS * 1000 + 1,)  # and the season's opening
    finally:
        other.close()
        ledger.close()
