"""The write pipeline (hajj_ledger/writing.py): the pause of the cycle collector; the writer that cannot die; the
patience of a write while the store is away."""

from __future__ import annotations

import asyncio
import gc
import random
import threading
import time
import weakref
from collections.abc import Callable, Iterator

import pytest
from eventsourcing.persistence import OperationalError
from psycopg_pool import PoolTimeout

from hajj_ledger import writing
from hajj_ledger.store.connections import OutcomeUnknownError, StoreUnavailableError
from hajj_ledger.writing import GroupCommit, WriterDiedError, collector_paused, within_patience
from tests.support import eventually


class Node:
    me: Node


@pytest.fixture(autouse=True)
def collector_as_it_was() -> Iterator[None]:
    assert gc.isenabled()
    yield
    gc.unfreeze()
    assert gc.isenabled()


def cycle_made_in_a_batch() -> weakref.ref[Node]:
    with collector_paused(set_aside=True):
        assert not gc.isenabled()
        node = Node()
        node.me = node  # garbage only the cycle collector can free
        return weakref.ref(node)


def test_a_batch_sets_aside_what_it_left_and_the_minutes_pass_collects_its_cycles(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(writing, "_collected_at", time.monotonic())
    left = cycle_made_in_a_batch()
    gc.collect(1)  # a young pass, as allocations trigger: what the batch left is not in it
    assert left() is not None
    monkeypatch.setattr(writing, "_collected_at", time.monotonic() - writing.COLLECT_SECONDS - 1)
    with collector_paused(set_aside=True):
        pass
    assert left() is None


def test_a_small_batch_leaves_its_cycles_to_the_collector_as_usual() -> None:
    with collector_paused():
        node = Node()
        node.me = node
        left = weakref.ref(node)
    del node
    gc.collect(0)
    assert left() is None


def test_what_a_batch_leaves_unreferenced_is_freed_at_once() -> None:
    with collector_paused(set_aside=True):
        node = Node()
        freed = weakref.ref(node)
    del node
    assert freed() is None  # reference counting frees it: only cycles wait for the pass


# The writer that cannot die: its callers' cancellations never reach it, and a writer that ends is started again.


class Die(BaseException):
    """What no batch catches: it ends the writer thread."""


class Batches:
    """A record_batch for the tests: records each command (a number) once, and can be held at its start or its end."""

    def __init__(self) -> None:
        self.recorded: list[int] = []
        self.entered = threading.Event()
        self.release = threading.Event()
        self.release.set()
        self.before_return: Callable[[], None] = lambda: None
        self.die_on: int | None = None

    def __call__(self, commands: list[int]) -> list[str]:
        self.entered.set()
        assert self.release.wait(10)
        if self.die_on in commands:
            self.die_on = None
            raise Die
        self.recorded += commands
        self.before_return()
        return [f"recorded {c}" for c in commands]


@pytest.fixture
def group() -> Iterator[tuple[GroupCommit[int, str], Batches]]:
    batches = Batches()
    commit: GroupCommit[int, str] = GroupCommit(batches, 10)
    yield commit, batches
    batches.release.set()
    commit.close(timeout=5)


async def submitted(commit: GroupCommit[int, str], command: int) -> str:
    return await asyncio.wrap_future(commit.submit(command))


def test_a_caller_cancelled_at_every_point_of_a_batchs_life_never_reaches_the_writer(
    group: tuple[GroupCommit[int, str], Batches],
) -> None:
    commit, batches = group

    async def scenario() -> None:
        # Queued behind a batch under way, then cancelled: left out of the next batch, never recorded.
        batches.release.clear()
        first = asyncio.ensure_future(submitted(commit, 1))
        assert await asyncio.to_thread(batches.entered.wait, 5)
        queued = asyncio.ensure_future(submitted(commit, 2))
        await asyncio.sleep(0.05)
        queued.cancel()
        # In its batch (the batch under way, held): cancelled, it is recorded all the same; its caller has gone.
        first.cancel()
        await asyncio.sleep(0.05)
        batches.release.set()
        with pytest.raises(asyncio.CancelledError):
            await first
        with pytest.raises(asyncio.CancelledError):
            await queued
        assert await submitted(commit, 3) == "recorded 3"
        assert batches.recorded == [1, 3]

        # Cancelled while its batch hands out the results (after the commit, before its future is settled).
        loop = asyncio.get_running_loop()
        handing_out = asyncio.ensure_future(submitted(commit, 4))
        done = threading.Event()

        def cancel_on_the_loop() -> None:
            handing_out.cancel()
            done.set()

        def cancel_now() -> None:
            loop.call_soon_threadsafe(cancel_on_the_loop)
            assert done.wait(5)
            time.sleep(0.02)  # the cancellation has run on the loop

        batches.before_return = cancel_now
        with pytest.raises(asyncio.CancelledError):
            await handing_out
        batches.before_return = lambda: None
        # Cancelled after it was told: nothing happens. And every command after is recorded by the same writer.
        told = asyncio.ensure_future(submitted(commit, 5))
        assert await told == "recorded 5"
        told.cancel()
        answers = await asyncio.gather(*(submitted(commit, n) for n in range(6, 50)))
        assert answers == [f"recorded {n}" for n in range(6, 50)]

    writer = _writer_of(commit) if commit._writer is not None else None
    asyncio.run(scenario())
    assert batches.recorded == [1, 3, 4, 5, *range(6, 50)]
    assert commit.restarts == 0 and not commit.down
    assert writer is None or writer is _writer_of(commit)


def test_cancelling_at_random_moments_loses_no_answer_and_kills_no_writer(
    group: tuple[GroupCommit[int, str], Batches],
) -> None:
    commit, batches = group
    rng = random.Random(33)

    async def scenario() -> tuple[int, int]:
        tasks = [asyncio.ensure_future(submitted(commit, n)) for n in range(400)]
        for task in tasks:
            if rng.random() < 0.5:
                await asyncio.sleep(rng.choice((0, 0, 0.0005)))
                task.cancel()
        results = await asyncio.gather(*tasks, return_exceptions=True)
        answered = [r for r in results if isinstance(r, str)]
        return len(answered), len(results)

    answered, total = asyncio.run(scenario())
    assert total == 400 and answered >= 1
    assert len(batches.recorded) == len(set(batches.recorded)) >= answered  # each at most once
    assert commit.submit(1000).result(timeout=5) == "recorded 1000"
    assert commit.restarts == 0


def test_a_writer_that_ends_is_started_again_within_a_second_and_its_batch_is_told_the_outcome_is_unknown(
    group: tuple[GroupCommit[int, str], Batches], monkeypatch: pytest.MonkeyPatch
) -> None:
    commit, batches = group
    monkeypatch.setattr(GroupCommit, "RESTART_SECONDS", 0.3)
    assert commit.submit(1).result(timeout=5) == "recorded 1"
    assert not commit.down
    batches.die_on = 2
    lost = commit.submit(2)
    with pytest.raises(WriterDiedError, match="may or may not have been recorded"):
        lost.result(timeout=5)
    assert isinstance(lost.exception(), OutcomeUnknownError)
    assert commit.down  # /readyz answers 503 meanwhile
    took = time.monotonic()
    eventually(lambda: not commit.down, within=1.0, what="the writer started again")
    assert time.monotonic() - took < 1.0 and commit.restarts == 1
    assert commit.submit(3).result(timeout=5) == "recorded 3"


def test_a_batch_that_finds_the_store_away_fails_the_commands_queued_behind_it_at_once() -> None:
    batches = Batches()
    told = StoreUnavailableError("not tried")

    def away(commands: list[int]) -> list[str]:
        batches(commands)
        raise StoreUnavailableError("away")

    commit: GroupCommit[int, str] = GroupCommit(away, 1, lambda error: told)
    try:
        batches.release.clear()
        first = commit.submit(1)
        assert batches.entered.wait(5)
        behind = [commit.submit(n) for n in (2, 3)]
        batches.release.set()
        with pytest.raises(StoreUnavailableError, match="away"):
            first.result(timeout=5)
        for future in behind:
            assert future.exception(timeout=5) is told
        assert batches.recorded == [1]
    finally:
        commit.close(timeout=5)


def test_a_write_tries_again_while_the_store_is_away_then_says_what_is_known() -> None:
    pauses: list[float] = []
    recovered: list[int] = []
    lost = OperationalError("server closed the connection unexpectedly")
    tries = iter([lost, OutcomeUnknownError("sent, unanswered"), lost])

    def attempt(careful: bool) -> str:
        error = next(tries, None)
        if error is not None:
            raise error
        return f"done (careful: {careful})"

    assert within_patience(attempt, lambda: recovered.append(1), sleep=pauses.append) == "done (careful: True)"
    assert len(recovered) == 3 and pauses == [0.05, 0.1, 0.2]

    def never(careful: bool) -> str:
        raise OutcomeUnknownError("sent, unanswered") if not careful else OperationalError("refused")

    started = time.monotonic()
    with pytest.raises(OutcomeUnknownError, match="send it again with the same command id"):
        within_patience(never, lambda: None, patience=0.3)
    assert time.monotonic() - started < 0.6

    def away(careful: bool) -> str:
        raise OperationalError("couldn't get a connection") from PoolTimeout("couldn't get a connection")

    with pytest.raises(StoreUnavailableError, match="nothing was recorded") as refused:
        within_patience(away, lambda: recovered.append(2), patience=0.2)
    assert not isinstance(refused.value, OutcomeUnknownError) and 2 not in recovered  # a busy pool is not remade

    def refused_for_good(careful: bool) -> str:
        raise ValueError("not the store's")

    with pytest.raises(ValueError, match="not the store's"):
        within_patience(refused_for_good, lambda: None)


def _writer_of(commit: GroupCommit[int, str]) -> threading.Thread:
    assert commit._writer is not None
    return commit._writer
