"""The ledger's write pipeline, apart from what a command decides: group commit, the write cache, and the rule
for re-running a batch that met a concurrent writer.

- **Group commit.** Callers from many threads queue their commands; one writer thread records whatever has queued up
  as one batch, and each caller is told its own outcome.
- **The write cache.** Aggregates just saved stay in memory, so a batch need not replay what this process just
  wrote. Other processes (other API nodes) write too: one look at the log's tail since the cache was last known
  current brings the cached copies up to date (their new events applied, or the copy forgotten).
- **Re-runs.** A save refused by the store's keys (a concurrent writer changed an aggregate, or recorded the same
  command id) runs the batch again carefully, a bounded number of times, with a growing random pause.
- **Patience.** A batch that finds the store away (a lost connection, a server that has become read-only, no
  connection to be had) runs again, its connections made afresh, for WRITE_PATIENCE seconds; then it fails,
  saying whether anything may have been recorded (OutcomeUnknownError) or not (StoreUnavailableError).
"""

from __future__ import annotations

import gc
import logging
import random
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, InvalidStateError
from contextlib import contextmanager
from dataclasses import dataclass
from queue import Empty, SimpleQueue
from typing import Generic, TypeVar, cast
from uuid import UUID

from eventsourcing.domain import Aggregate
from eventsourcing.persistence import IntegrityError, Mapper, StoredEvent

from hajj_ledger.store.connections import (
    AWAY,
    OutcomeUnknownError,
    StoreUnavailableError,
    causes,
    first_line,
    is_read_only,
)
from hajj_ledger.store.recorders import LedgerRecorder

log = logging.getLogger("hajj_ledger.writing")

C = TypeVar("C")  # a command with its actor
R = TypeVar("R")  # its result
T = TypeVar("T")


@dataclass
class WriteStats:
    """How this process's writes have met other writers' (exposed in /metrics)."""

    batches: int = 0
    conflicts: int = 0  # saves refused by the store's keys: a concurrent writer got there first
    reruns: int = 0  # batches run again after a conflict
    give_ups: int = 0  # batches refused after the last attempt
    stale: int = 0  # events other writers recorded on cached aggregates (applied to them, or the copy forgotten)
    writer_restarts: int = 0  # times the writer thread ended unexpectedly and was started again


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
    every event in the log. Changed in place by one batch at a time (the ledger's writing lock).

    A unit of work asks it `get` and `in`; the ledger brings it up to date (`refresh`), then `remember`s what a batch
    saved and where (`saved`), or `forget`s what a failed batch changed."""

    def __init__(self, size: int, tail_limit: int, stats: WriteStats) -> None:
        self.size = size
        self.tail_limit = tail_limit  # other writers' events read in one refresh; beyond that it is dropped whole
        self.stats = stats
        self._aggregates: OrderedDict[UUID, Aggregate] = OrderedDict()
        self.current_to: int | None = None  # every event up to this position is reflected

    def __contains__(self, aggregate_id: UUID) -> bool:
        return aggregate_id in self._aggregates

    def get(self, aggregate_id: UUID) -> Aggregate | None:
        return self._aggregates.get(aggregate_id)

    def forget(self, aggregate_ids: Iterable[UUID]) -> None:
        for aggregate_id in aggregate_ids:
            self._aggregates.pop(aggregate_id, None)

    def remember(self, aggregates: Iterable[Aggregate]) -> None:
        for aggregate in aggregates:
            self._aggregates[aggregate.id] = aggregate
            self._aggregates.move_to_end(aggregate.id)
        while len(self._aggregates) > self.size:
            self._aggregates.popitem(last=False)

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
        if self.current_to is None or not self._aggregates:
            self.current_to = head()
            return
        written = store.select_written_after(self.current_to, self.tail_limit)
        if len(written) == self.tail_limit:
            self.stats.stale += len(self._aggregates)
            self._aggregates.clear()
            self.current_to = head()
            return
        for position, aggregate_id, version, topic, state in written:
            cached = self._aggregates.get(aggregate_id)
            if cached is not None and cached.version < version:
                self.stats.stale += 1
                if cached.version + 1 == version:
                    event = mapper.to_domain_event(StoredEvent(aggregate_id, version, topic, state))
                    event.mutate(cached)  # type: ignore[attr-defined]
                else:
                    del self._aggregates[aggregate_id]
            self.current_to = position


WRITE_PATIENCE = 2.5  # seconds a batch keeps trying while the store is away (a promotion takes about one)


def store_away(error: BaseException) -> bool:
    """Whether the error is the store being away or read-only, by its name or its causes' (the event store's library
    wraps psycopg's errors in classes of the same names)."""
    return any(type(cause).__name__ in AWAY for cause in causes(error)) or is_read_only(error)


def _in_chain(error: BaseException, kind: type[BaseException] | str) -> bool:
    return any(
        type(cause).__name__ == kind if isinstance(kind, str) else isinstance(cause, kind) for cause in causes(error)
    )


def within_patience(
    attempt: Callable[[bool], T],
    recover: Callable[[], None],
    patience: float = WRITE_PATIENCE,
    sleep: Callable[[float], None] = time.sleep,
) -> T:
    """`attempt(careful)` again while the store is away, for `patience` seconds: first trusting, then carefully (a
    batch that may have been recorded is then answered as a repeat). A lost connection or a read-only server has
    every pooled connection made afresh first (`recover`); a pool with none to spare is simply waited for.

    Raises OutcomeUnknownError when some attempt may have been recorded and none could say, StoreUnavailableError
    when nothing was."""
    started = time.monotonic()
    unknown = False
    pause = 0.05
    careful = False
    while True:
        try:
            return attempt(careful)
        except Exception as error:
            if not store_away(error):
                raise
            unknown = unknown or _in_chain(error, OutcomeUnknownError)
            if not _in_chain(error, "PoolTimeout"):
                recover()
            if time.monotonic() - started + pause > patience:
                if unknown:
                    raise OutcomeUnknownError(
                        f"the store did not confirm the batch and could not be asked again within {patience:g} s: "
                        "each command was recorded, or not; send it again with the same command id to settle it"
                    ) from error
                raise StoreUnavailableError(
                    f"the store could not be reached within {patience:g} s; nothing was recorded"
                ) from error
            log.warning("the store is away (%s): trying again in %.2f s", first_line(error), pause)
            sleep(pause)
            pause = min(pause * 2, 0.4)
            careful = True


@dataclass(frozen=True)
class _Queued(Generic[C, R]):
    command: C
    result: Future[R]


class WriterDiedError(OutcomeUnknownError):
    """The writer thread ended while recording a batch (it is started again at once): each of that batch's commands
    was recorded, or not; sending it again with the same command id settles it."""


def _settle(future: Future[R], result: R | None = None, error: BaseException | None = None) -> None:
    """Tell a caller its outcome, unless it is told already (or gave up before its batch began)."""
    try:
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(cast(R, result))
    except InvalidStateError:
        pass


class GroupCommit(Generic[C, R]):
    """One writer thread recording, as one batch, whatever commands have queued up (up to `most` at a time).

    The writer cannot be stopped by its callers: a caller that gives up (a cancelled request) before its batch
    begins is left out of it, and after that its cancellation has no effect; the writer never sees it. The writer
    is supervised: a thread that ends for any reason other than `close` (an error escaping a batch) is started again
    within RESTART_SECONDS, its batch's callers told the outcome is unknown, and `down` says so meanwhile (the API's
    /readyz answers 503). A batch that fails because the store is away fails, with it, every command queued by then:
    they were not tried, and their callers hear at once rather than a batch's patience later."""

    RESTART_SECONDS = 0.1  # the pause before a writer that ended is started again (0.8 s at most, doubling)

    def __init__(
        self,
        record_batch: Callable[[list[C]], list[R]],
        most: int,
        fail_queued: Callable[[BaseException], BaseException | None] = lambda error: None,
        stats: WriteStats | None = None,
    ) -> None:
        self.record_batch = record_batch
        self.most = most
        self.fail_queued = fail_queued  # for a batch's error, what the commands queued behind it are told, if any
        self.stats = stats or WriteStats()
        self._queue: SimpleQueue[_Queued[C, R] | None] = SimpleQueue()
        self._writer: threading.Thread | None = None
        self._supervisor: threading.Thread | None = None
        self._started = threading.Lock()
        self._closing = threading.Event()
        self._batch: list[_Queued[C, R]] = []  # the batch being recorded, for the supervisor if the writer ends

    @property
    def restarts(self) -> int:
        return self.stats.writer_restarts

    @property
    def down(self) -> bool:
        """The writer has ended and is not running again yet."""
        return self._supervisor is not None and not self._closing.is_set() and not _alive(self._writer)

    def submit(self, command: C) -> Future[R]:
        """Queue one command for the next batch; the future holds its result. Cancelling it succeeds only while the
        command waits in the queue: then it is never recorded."""
        waiting: Future[R] = Future()
        self._start()
        self._queue.put(_Queued(command, waiting))
        return waiting

    def close(self, timeout: float | None = None) -> None:
        """Stop after the batch under way; the writer is waited for `timeout` seconds at most (it is a daemon)."""
        if self._supervisor is not None:
            self._closing.set()
            self._queue.put(None)
            self._supervisor.join(timeout)
            self._supervisor = None
            self._fail_queue(StoreUnavailableError("the ledger is shutting down: nothing was recorded"))

    def _start(self) -> None:
        if self._supervisor is not None:  # started: no lock on the hot path
            return
        with self._started:
            if self._supervisor is None:
                self._closing.clear()
                self._writer = self._new_writer()
                self._supervisor = threading.Thread(target=self._supervise, name="ledger-writer-supervisor",
                                                    daemon=True)  # fmt: skip
                self._supervisor.start()

    def _new_writer(self) -> threading.Thread:
        writer = threading.Thread(target=self._run_writer, name="ledger-writer", daemon=True)
        writer.start()
        return writer

    def _supervise(self) -> None:
        pause = self.RESTART_SECONDS
        while True:
            writer = self._writer
            assert writer is not None
            writer.join()
            if self._closing.is_set():
                return
            lost, self._batch = self._batch, []
            log.critical("the ledger's writer ended unexpectedly; starting it again (%d command(s) unknown)",
                         len(lost))  # fmt: skip
            for queued in lost:
                _settle(queued.result, error=WriterDiedError(
                    "the ledger's writer stopped while recording this command; it may or may not have been recorded"
                ))  # fmt: skip
            self.stats.writer_restarts += 1
            died_at = time.monotonic()
            if self._closing.wait(pause):
                return
            self._writer = self._new_writer()
            # Ending again soon after: a longer pause next time (a writer that ends at once must not spin).
            pause = min(pause * 2, 0.8) if time.monotonic() - died_at < 5 else self.RESTART_SECONDS

    def _run_writer(self) -> None:
        try:
            self._write_queued()
        except BaseException:  # whatever ends it, said here with its traceback; the supervisor starts another
            log.exception("the ledger's writer failed")

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
            # A caller that gave up while queued is left out; the others can no longer be cancelled.
            batch = [q for q in batch if q.result.set_running_or_notify_cancel()]
            if batch:
                self._batch = batch
                try:
                    results = self.record_batch([q.command for q in batch])
                except Exception as error:  # the store is away, say: every caller hears of it
                    for q in batch:
                        _settle(q.result, error=error)
                    self._batch = []
                    if (told := self.fail_queued(error)) is not None:
                        self._fail_queue(told)
                else:
                    for q, result in zip(batch, results, strict=True):
                        _settle(q.result, result)
                    self._batch = []
            if stop:
                return

    def _fail_queue(self, error: BaseException) -> None:
        """Every command queued now is told `error` (none of them was tried)."""
        while True:
            try:
                item = self._queue.get_nowait()
            except Empty:
                return
            if item is None:
                self._queue.put(None)
                return
            if item.result.set_running_or_notify_cancel():
                _settle(item.result, error=error)


def _alive(thread: threading.Thread | None) -> bool:
    return thread is not None and thread.is_alive()


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
