"""The ledger's write pipeline, apart from what a command decides: group commit, the write cache, and the rule
for re-running a batch that met a concurrent writer.

- **Group commit.** Callers from many threads queue their commands; one writer thread records whatever has queued up
  as one batch, and each caller is told its own outcome.
- **The write cache.** Aggregates just saved stay in memory, so a batch need not replay what this process just
  wrote. Other processes (other API nodes) write too: one look at the log's tail since the cache was last known
  current brings the cached copies up to date (their new events applied, or the copy forgotten).
- **Re-runs.** A save refused by the store's keys (a concurrent writer changed an aggregate, or recorded the same
  command id) runs the batch again carefully, a bounded number of times, with a growing random pause.
"""

from __future__ import annotations

import gc
import random
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future
from contextlib import contextmanager
from dataclasses import dataclass
from queue import Empty, SimpleQueue
from typing import Generic, TypeVar
from uuid import UUID

from eventsourcing.domain import Aggregate
from eventsourcing.persistence import IntegrityError, Mapper, StoredEvent

from hajj_ledger.store.recorders import LedgerRecorder

C = TypeVar("C")  # a command with its actor
R = TypeVar("R")  # its result


@dataclass
class WriteStats:
    """How this process's writes have met other writers' (exposed in /metrics)."""

    batches: int = 0
    conflicts: int = 0  # saves refused by the store's keys: a concurrent writer got there first
    reruns: int = 0  # batches run again after a conflict
    give_ups: int = 0  # batches refused after the last attempt
    stale: int = 0  # events other writers recorded on cached aggregates (applied to them, or the copy forgotten)


def with_reruns(attempt: Callable[[bool], list[R]], attempts: int, stats: WriteStats) -> list[R] | None:
    """`attempt(careful)` until it is not refused by the store's keys: first trusting, then carefully; None when
    the last attempt was refused too."""
    for number in range(attempts):
        try:
            return attempt(number > 0)
        except IntegrityError:
            stats.conflicts += 1
            stats.reruns += number == 0
            if number:
                time.sleep(random.uniform(0, 0.002 * 2**number))
    stats.give_ups += 1
    return None


class WriteCache:
    """Recently saved aggregates, least recently used dropped first, and the position up to which they reflect
    every event in the log. Changed in place by one batch at a time (the ledger's writing lock)."""

    def __init__(self, size: int, tail_limit: int, stats: WriteStats) -> None:
        self.size = size
        self.tail_limit = tail_limit  # other writers' events read in one refresh; beyond that it is dropped whole
        self.stats = stats
        self.aggregates: OrderedDict[UUID, Aggregate] = OrderedDict()
        self.current_to: int | None = None  # every event up to this position is reflected

    def __contains__(self, aggregate_id: UUID) -> bool:
        return aggregate_id in self.aggregates

    def get(self, aggregate_id: UUID) -> Aggregate | None:
        return self.aggregates.get(aggregate_id)

    def forget(self, aggregate_ids: Iterable[UUID]) -> None:
        for aggregate_id in aggregate_ids:
            self.aggregates.pop(aggregate_id, None)

    def remember(self, aggregates: Iterable[Aggregate]) -> None:
        for aggregate in aggregates:
            self.aggregates[aggregate.id] = aggregate
            self.aggregates.move_to_end(aggregate.id)
        while len(self.aggregates) > self.size:
            self.aggregates.popitem(last=False)

    def saved(self, positions: Iterable[int]) -> None:
        """This process's batch was stored at these positions: if nobody else wrote in between, the cache is
        current up to its last."""
        ordered = sorted(positions)
        if ordered and self.current_to is not None and ordered[0] == self.current_to + 1:
            self.current_to = ordered[-1]

    def refresh(self, store: LedgerRecorder, mapper: Mapper[UUID], head: Callable[[], int]) -> None:
        """Bring the cached copies up to date with what other writers have recorded since the cache was last known
        current: their new events, read once from the log's tail, are applied to the cached copies (no reload); a
        copy that cannot be brought forward so is forgotten.

        The store's insert lock commits positions in order, so everything up to the newest position read here has
        been seen; this process's own events are recognised by their versions and passed over."""
        if self.current_to is None or not self.aggregates:
            self.current_to = head()
            return
        written = store.select_written_after(self.current_to, self.tail_limit)
        if len(written) == self.tail_limit:
            self.stats.stale += len(self.aggregates)
            self.aggregates.clear()
            self.current_to = head()
            return
        for position, aggregate_id, version, topic, state in written:
            cached = self.aggregates.get(aggregate_id)
            if cached is not None and cached.version < version:
                self.stats.stale += 1
                if cached.version + 1 == version:
                    event = mapper.to_domain_event(StoredEvent(aggregate_id, version, topic, state))
                    event.mutate(cached)  # type: ignore[attr-defined]
                else:
                    del self.aggregates[aggregate_id]
            self.current_to = position


@dataclass(frozen=True)
class _Queued(Generic[C, R]):
    command: C
    result: Future[R]


class GroupCommit(Generic[C, R]):
    """One writer thread recording, as one batch, whatever commands have queued up (up to `most` at a time)."""

    def __init__(self, record_batch: Callable[[list[C]], list[R]], most: int) -> None:
        self.record_batch = record_batch
        self.most = most
        self._queue: SimpleQueue[_Queued[C, R] | None] = SimpleQueue()
        self._writer: threading.Thread | None = None
        self._started = threading.Lock()

    def submit(self, command: C) -> Future[R]:
        """Queue one command for the next batch; the future holds its result."""
        waiting: Future[R] = Future()
        self._start()
        self._queue.put(_Queued(command, waiting))
        return waiting

    def close(self) -> None:
        if self._writer is not None:
            self._queue.put(None)
            self._writer.join()
            self._writer = None

    def _start(self) -> None:
        if self._writer is not None:  # started: no lock on the hot path
            return
        with self._started:
            if self._writer is None:
                self._writer = threading.Thread(target=self._write_queued, name="ledger-writer", daemon=True)
                self._writer.start()

    def _write_queued(self) -> None:
        while (first := self._queue.get()) is not None:
            batch = [first]
            stop = False
            while len(batch) < self.most:
                try:
                    item = self._queue.get_nowait()
                except Empty:
                    break
                if item is None:
                    stop = True
                    break
                batch.append(item)
            try:
                results = self.record_batch([q.command for q in batch])
            except BaseException as error:  # the store is away, say: every caller hears of it
                for q in batch:
                    q.result.set_exception(error)
            else:
                for q, result in zip(batch, results, strict=True):
                    q.result.set_result(result)
            if stop:
                return


@contextmanager
def collector_paused(*, set_aside: bool = False) -> Iterator[None]:
    """Python's cycle collector would run dozens of times over the short-lived objects of a batch (a fifth of
    ingest time, measured); paused, it runs after the batch instead.

    With `set_aside` (a large batch), what the batch left alive (the aggregates it cached, which live on) is set
    aside (`gc.freeze`: freed as usual once nothing refers to it, but not scanned for cycles) rather than scanned at
    the next allocation: 6% of a batch request's CPU, and the batch endpoint went from 17 to 22 requests/s. Once a
    minute everything is put back and collected in one full pass, so that no cycle outlives that minute. Small
    group commits do not set aside: freezing every few milliseconds made four nodes sharing journeys (spread)
    slower."""
    global _collected_at
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            if set_aside:
                if time.monotonic() - _collected_at > COLLECT_SECONDS:
                    gc.unfreeze()
                    gc.collect()
                    _collected_at = time.monotonic()
                gc.freeze()
            gc.enable()


COLLECT_SECONDS = 60.0
_collected_at = time.monotonic()
