"""The application service: records the agencies' commands and reads journeys back.

Every write goes through `record_batch`: load what the commands touch, run each command against the aggregates
(a refused command changes nothing), then save everything with the commands' receipts in one transaction. What a
batch needs that is not at hand is loaded in one query; what this process just wrote comes from its write cache.
How batches are formed (group commit), cached and re-run after meeting a concurrent writer is in `writing`.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from itertools import groupby
from typing import Any, Self, TypeVar, cast
from uuid import UUID

from eventsourcing.application import AggregateNotFoundError, Application, ProcessingEvent
from eventsourcing.domain import Aggregate
from eventsourcing.persistence import IntegrityError, Mapper, Recording

from hajj_ledger.domain.aggregates import AGGREGATES
from hajj_ledger.domain.building import Building
from hajj_ledger.domain.catalogue import past_opening
from hajj_ledger.domain.commands import Command
from hajj_ledger.domain.errors import (
    ConflictError,
    IdempotencyKeyReusedError,
    LedgerError,
    NotFoundError,
    ValidationError,
)
from hajj_ledger.domain.journey import Journey
from hajj_ledger.domain.market import Contract, ServiceOffer
from hajj_ledger.domain.season import Season, current_of
from hajj_ledger.domain.trip import Trip
from hajj_ledger.domain.vocabulary import Actor, Stamp, makkah_day
from hajj_ledger.handlers import decide, subjects
from hajj_ledger.identity.vault import MasterKeys
from hajj_ledger.store import recorders as store
from hajj_ledger.store.codec import EventCodec
from hajj_ledger.store.connections import StoreUnavailableError
from hajj_ledger.store.recorders import LedgerRecorder, Receipt
from hajj_ledger.store.seasons import SeasonShutError, season_of
from hajj_ledger.unit_of_work import UnitOfWork
from hajj_ledger.writing import GroupCommit, WriteCache, WriteStats, collector_paused, with_reruns, within_patience

A = TypeVar("A", Journey, Trip, ServiceOffer, Contract, Building, Season)


@dataclass(frozen=True)
class Outcome:
    """An accepted command: what it recorded, on which journey or trip, and where in the ledger."""

    command_id: UUID
    event: str
    aggregate_id: UUID
    position: int
    events: tuple[str, ...]  # the events it recorded, e.g. ("BusAssigned", "SeatReserved")
    repeated: bool = False  # the command id had been recorded before; nothing new was stored


Result = Outcome | LedgerError


class JourneyLedger(Application[UUID]):
    name = "JourneyLedger"
    MAX_ATTEMPTS = 8
    FUTURE_TOLERANCE = timedelta(minutes=5)
    CACHE_SIZE = 20_000  # aggregates; enough for the journeys one simulated chunk or one busy port touches
    SET_ASIDE_FROM = 100  # commands: a batch this large sets aside what it leaves alive (writing.collector_paused)
    GROUP_COMMIT_MAX = 1000  # commands from concurrent callers recorded in one transaction
    TAIL_LIMIT = 10_000  # other writers' events read to refresh the write cache; beyond that it is dropped whole

    def __init__(self, database_url: str | None = None, *, create_tables: bool = True) -> None:
        self.database_url = database_url or store.database_url()  # the store's, as configured
        self._demo_store = self.database_url == store.DEFAULT_DATABASE_URL
        self._keys: MasterKeys | None = None
        env = store.store_env(self.database_url)
        env["CREATE_TABLE"] = "y" if create_tables else "n"  # readers leave the schema to `hajj-ledger migrate`
        super().__init__(env=env)
        self.stats = WriteStats()
        self._cache = WriteCache(self.CACHE_SIZE, self.TAIL_LIMIT, self.stats)
        self._writing = threading.Lock()  # cached aggregates are changed in place: one batch at a time
        # Looked up at each batch, not bound now: whatever `record_batch` is then (a subclass's, a test's) records.
        self._group: GroupCommit[tuple[Command, Actor], Result] = GroupCommit(
            lambda commands: self.record_batch(commands), self.GROUP_COMMIT_MAX, _queued_behind, self.stats
        )
        # PostgreSQL: a batch that finds the store away tries again for a while (a promotion, a restart).
        self._postgres = self.database_url.startswith(("postgresql://", "postgres://"))

    def close(self, timeout: float | None = None) -> None:
        """Stop writing (after the batch under way, waited for `timeout` seconds at most) and close the store."""
        self._group.close(timeout)
        super().close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __del__(self) -> None:
        # A ledger nobody closed can be collected on one of its own pool's threads, which cannot join itself.
        with contextlib.suppress(AttributeError, RuntimeError):
            self.close()

    @property
    def writer_down(self) -> bool:
        """The writer thread has ended and is being started again (for /readyz)."""
        return self._group.down

    def construct_mapper(self) -> Mapper[UUID]:
        return EventCodec()

    def save(self, *items: Any, **kwargs: Any) -> list[Recording[UUID]]:
        """The library's save (aggregates or events, in order) without its per-object protocol checks, which
        profiling showed to be costly."""
        processing = ProcessingEvent[UUID]()
        for item in items:
            if isinstance(item, Aggregate):
                processing.events += item.collect_events()
            else:
                processing.events.append(item)
        processing.saved_kwargs.update(kwargs)
        return self._record(processing)

    @property
    def store(self) -> LedgerRecorder:
        return cast(LedgerRecorder, self.recorder)

    # Reading.

    def journey(self, journey_id: UUID) -> Journey:
        return self._get(journey_id, Journey)

    def trip(self, trip_id: UUID) -> Trip:
        return self._get(trip_id, Trip)

    def offer(self, offer_id: UUID) -> ServiceOffer:
        return self._get(offer_id, ServiceOffer)

    def contract(self, contract_id: UUID) -> Contract:
        return self._get(contract_id, Contract)

    def building(self, building_id: UUID) -> Building:
        return self._get(building_id, Building)

    def season(self, season: int) -> Season:
        return self._get(Season.create_id(season), Season)

    def seasons(self) -> list[Season]:
        """Every season opened, oldest first: found by the ids every season may have, in one query."""
        found = [s for s in self.load(Season.every_id()).values() if isinstance(s, Season)]
        return sorted(found, key=lambda s: s.season)

    def current_season(self, now: datetime | None = None) -> int | None:
        """The season today (in Makkah) belongs to, by the seasons' calendars (`season.current_of`); None when no
        season was ever opened. The write side's own answer, from the log: the read side's is the seasons view's."""
        windows = [(s.season, s.calendar.registration_from, s.calendar.departures_until) for s in self.seasons()]
        return current_of(windows, makkah_day(now or datetime.now(UTC)))

    def history(self, journey_id: UUID) -> list[Journey.Event]:
        """Every event of a journey, oldest first."""
        events = [cast(Journey.Event, e) for e in self.events.get(journey_id)]
        if not events or not isinstance(events[0], Journey.Registered):
            raise NotFoundError(f"journey {journey_id} not found")
        return events

    @property
    def keys(self) -> MasterKeys:
        """The vault's master keys, read from configuration when first needed."""
        if self._keys is None:
            self._keys = MasterKeys.configured(demo=self._demo_store)
        return self._keys

    def head(self) -> int:
        """The position of the newest event in the ledger (0 when empty)."""
        return self.recorder.max_notification_id() or 0

    def stored(self, aggregate_id: UUID) -> Aggregate | None:
        """One aggregate, as the store holds it (None: there is none)."""
        try:
            return cast(Aggregate, self.repository.get(aggregate_id, projector_func=_project))
        except AggregateNotFoundError:
            return None

    def _get(self, aggregate_id: UUID, kind: type[A]) -> A:
        aggregate = self.stored(aggregate_id)
        if not isinstance(aggregate, kind):
            raise NotFoundError(f"{kind.__name__.lower()} {aggregate_id} not found")
        return aggregate

    # Recording.

    def record(self, command: Command, actor: Actor) -> Outcome:
        """Record one command; raises the LedgerError that refused it.

        Concurrent callers share transactions (group commit): each waits for the batch its command went into.
        """
        result = self.submit(command, actor).result()
        if isinstance(result, LedgerError):
            raise result
        return result

    def submit(self, command: Command, actor: Actor) -> Future[Result]:
        """Queue one command for the next group commit; the future holds its outcome or its refusal."""
        return self._group.submit((command, actor))

    def record_batch(self, commands: Sequence[tuple[Command, Actor]]) -> list[Result]:
        """Record many commands in one transaction; one result each, a refusal sinking only its own."""
        with collector_paused(set_aside=len(commands) >= self.SET_ASIDE_FROM):
            with self._writing:
                self.stats.batches += 1

            refused: dict[UUID, LedgerError] = {}  # by the store, for their season's stage: re-runs answer so

            def attempt(after_away: bool) -> list[Result] | None:
                return with_reruns(
                    lambda careful: self._record_once(commands, careful=careful or after_away, refused=refused),
                    self.MAX_ATTEMPTS,
                    self.stats,
                )

            results = within_patience(attempt, self._recover) if self._postgres else attempt(False)
        if results is not None:
            return results
        conflict = ConflictError(
            f"gave up after {self.MAX_ATTEMPTS} attempts: concurrent writers kept changing "
            "the same journeys or trips; nothing was recorded, retry the command"
        )
        return [conflict for _ in commands]

    def _record_once(
        self, commands: Sequence[tuple[Command, Actor]], *, careful: bool, refused: dict[UUID, LedgerError]
    ) -> list[Result]:
        # Trusting: no receipts looked up first; a repeated command either collides with its receipt's key at
        # save (the batch runs again, carefully), or is refused, and a refusal's receipt is looked up after.
        # A batch that only creates (registrations, trips) reads no cached aggregate: the store's keys judge a
        # duplicate. It leaves the cache's mark where it was (the next batch that reads the cache brings it up to
        # date), and it is stored outside the writing lock, so that the next batch is decided while this one's
        # transaction commits: nothing it made is in the cache, or in the store, until it has committed.
        creating = not careful and not any(subjects(c, False) for c, _ in commands)
        with self._writing:
            if not creating or self._cache.current_to is None:
                self._cache.refresh(self.store, self.mapper, self.head)
            receipts = self.store.select_receipts([c.command_id for c, _ in commands]) if careful else {}
            unit = UnitOfWork(self, self._cache, careful=careful)
            try:
                unit.load(commands, subjects)
                results = self._late_repeats(commands, self._decide_all(commands, receipts, unit, refused))
                positions = None if creating else self._save(unit, refused)
            except BaseException:
                # The batch's aggregates were changed in place and their pending events are gone: forget them.
                self._cache.forget(unit.aggregates)
                raise
            if positions is not None:
                return self._recorded(unit, results, positions)
        positions = self._save(unit, refused)  # only what this batch created: nothing to forget if it fails
        with self._writing:
            return self._recorded(unit, results, positions)

    def _recover(self) -> None:
        recover = getattr(self.store, "recover", None)
        if recover is not None:
            recover()

    def _save(self, unit: UnitOfWork, refused: dict[UUID, LedgerError]) -> Sequence[int]:
        """The batch's events stored with their receipts and the vault's changes: their positions, in order.
        Straight to the recorder: the library's `save` also makes a Recording and a Notification of each event,
        which the ledger never reads (5% of ingest, profiled)."""
        if not unit.receipts:
            return []
        seasons = {aggregate_id: season_of(a) for aggregate_id, a in unit.aggregates.items()}
        stored = list(map(self.mapper.to_stored_event, unit.events))
        try:
            positions = self.recorder.insert_events(stored, receipts=unit.receipts, vault=unit.vault, seasons=seasons)
            assert positions is not None and len(positions) == len(stored)
        except SeasonShutError as shut:
            # Another writer put the season into closing after this batch was decided (this copy of it was not yet
            # current): its commands are refused, and the batch runs again carefully, every aggregate read afresh.
            stage = self.season(shut.season).stage
            for receipt in unit.receipts:
                if any(seasons.get(aggregate_id) == shut.season for aggregate_id, _, _ in receipt.events):
                    refused[receipt.command_id] = past_opening(receipt.event, shut.season, stage)
            raise IntegrityError(str(shut)) from shut
        return positions

    def _recorded(
        self, unit: UnitOfWork, results: list[Result | Receipt | _Repeat], positions: Sequence[int]
    ) -> list[Result]:
        self._cache.remember(unit.aggregates.values())
        self._cache.saved(positions)
        # Each receipt's events were stored one after the other, in the receipts' order: its position is the last.
        stored_at: dict[UUID, int] = {}
        start = 0
        for receipt in unit.receipts:
            end = start + len(receipt.events)
            stored_at[receipt.command_id] = max(positions[start:end])
            start = end
        return [self._outcome(r, stored_at) for r in results]

    def load(self, aggregate_ids: Iterable[UUID]) -> dict[UUID, Aggregate]:
        """The aggregates of these ids that exist, from their events read in one query."""
        found: dict[UUID, Aggregate] = {}
        stored = self.store.select_events_of(sorted(set(aggregate_ids)))
        for aggregate_id, events in groupby(stored, key=lambda e: e.originator_id):
            aggregate = _project(None, map(self.mapper.to_domain_event, events))
            if isinstance(aggregate, AGGREGATES):
                found[cast(UUID, aggregate_id)] = aggregate
        return found

    def _decide_all(
        self,
        commands: Sequence[tuple[Command, Actor]],
        receipts: dict[UUID, Receipt],
        unit: UnitOfWork,
        refused: dict[UUID, LedgerError],
    ) -> list[Result | Receipt | _Repeat]:
        results: list[Result | Receipt | _Repeat] = []
        new: dict[UUID, Receipt] = {}
        unit.seal_ahead(commands)
        for command, actor in commands:
            known = receipts.get(command.command_id) or new.get(command.command_id)
            if known is not None:  # recorded before, or earlier in this batch
                results.append(self._repeat(known, command))
                continue
            if command.command_id in refused:  # by the store, for its season's stage, when the batch ran before
                results.append(refused[command.command_id])
                continue
            try:
                touched = decide(command, self._stamp(command, actor), unit)
            except LedgerError as refusal:
                results.append(refusal)
                continue
            # The log keeps the commands' order, across aggregates too: a journey's Boarded never precedes
            # its bus trip's SeatReserved, so a reader of the log never sees an effect before its cause.
            events = sorted((e for a in touched for e in a.collect_events()), key=lambda e: e.timestamp)
            unit.events += events
            receipt = Receipt(
                command.command_id,
                command.fingerprint(),
                command.event,
                touched[0].id,
                tuple((e.originator_id, e.originator_version, type(e).__name__) for e in events),
            )
            new[command.command_id] = receipt
            unit.receipts.append(receipt)
            results.append(receipt)
        return results

    def _repeat(self, known: Receipt, command: Command) -> Result | _Repeat:
        if known.fingerprint != command.fingerprint():
            return IdempotencyKeyReusedError(
                f"command_id {command.command_id} was already used for a different command"
            )
        return _Repeat(known)

    def _late_repeats(
        self, commands: Sequence[tuple[Command, Actor]], results: list[Result | Receipt | _Repeat]
    ) -> list[Result | Receipt | _Repeat]:
        """A refused command may be another writer's copy of itself: its receipt was looked for before that writer
        committed, and its events were read after (a registration refused as "already has a journey" by the very
        registration it repeats). Receipts and events commit together, so asking again settles it."""
        refused = [c.command_id for (c, _), r in zip(commands, results, strict=True) if isinstance(r, LedgerError)]
        late = self.store.select_receipts(refused) if refused else {}
        if not late:
            return results
        return [
            self._repeat(late[c.command_id], c) if isinstance(r, LedgerError) and c.command_id in late else r
            for (c, _), r in zip(commands, results, strict=True)
        ]

    def _outcome(self, result: Result | Receipt | _Repeat, stored_at: dict[UUID, int]) -> Result:
        if isinstance(result, _Repeat):
            receipt, repeated = result.receipt, True
        elif isinstance(result, Receipt):
            receipt, repeated = result, False
        else:
            return result
        position = stored_at.get(receipt.command_id)  # stored by this batch (a repeat within it, too)
        if position is None:
            position = max(self.store.select_positions(receipt.events))
        names = tuple(name for _, _, name in receipt.events)
        return Outcome(receipt.command_id, receipt.event, receipt.aggregate_id, position, names, repeated)

    def _stamp(self, command: Command, actor: Actor) -> Stamp:
        occurred_at = command.occurred_at.astimezone(UTC)
        ahead = occurred_at - datetime.now(UTC)
        if ahead > self.FUTURE_TOLERANCE:
            raise ValidationError(
                "occurred_at",
                f"is {ahead} ahead of the ledger's clock; at most {self.FUTURE_TOLERANCE} in the future is accepted",
            )
        return Stamp(
            actor.agency_id, actor.role, occurred_at, command.command_id, command.correlation_id,
            command.late_correction,
        )  # fmt: skip


def _queued_behind(error: BaseException) -> BaseException | None:
    """What the commands queued behind a batch that found the store away are told at once: they were not tried."""
    if isinstance(error, StoreUnavailableError):
        return StoreUnavailableError(f"the store is away ({error}); this command was not recorded")
    return None


def _project(aggregate: Any, events: Iterable[Any]) -> Any:
    """eventsourcing's `project_aggregate` without its check of every event against a runtime Protocol, which
    profiling showed costing more than applying the event."""
    for event in events:
        aggregate = event.mutate(aggregate)
    return aggregate


@dataclass(frozen=True)
class _Repeat:
    """A command recorded before, by this batch or an earlier one: answered with its first outcome."""

    receipt: Receipt
