"""The aggregates one batch of commands works on, each loaded once, and what the batch will store with its events:
the commands' receipts and the identity vault's changes.

A unit takes aggregates from the ledger's write cache (refreshed just before the batch) unless it is careful, and,
unless careful, believes that one a command would create, absent from the cache, is absent from the store: the
store's keys catch it when that was wrong (the batch then runs again, carefully).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any, Protocol, TypeVar
from uuid import UUID

from eventsourcing.domain import Aggregate

from hajj_ledger.domain.building import Building
from hajj_ledger.domain.commands import Command, Register
from hajj_ledger.domain.errors import NotFoundError
from hajj_ledger.domain.journey import Journey
from hajj_ledger.domain.market import Contract, ServiceOffer
from hajj_ledger.domain.season import Season
from hajj_ledger.domain.trip import Trip
from hajj_ledger.domain.vocabulary import Actor
from hajj_ledger.identity.vault import MasterKeys, Sealed, VaultKeyError
from hajj_ledger.store.recorders import Receipt
from hajj_ledger.writing import WriteCache

A = TypeVar("A", Journey, Trip, ServiceOffer, Contract, Building, Season)


class AggregateSource(Protocol):
    """Where a unit reads what is not at hand (the ledger)."""

    def load(self, aggregate_ids: Iterable[UUID]) -> dict[UUID, Aggregate]:
        """The aggregates of these ids that exist, from their events read in one query."""
        ...

    def stored(self, aggregate_id: UUID) -> Aggregate | None:
        """One aggregate, as the store holds it (None: there is none)."""
        ...

    @property
    def keys(self) -> MasterKeys: ...


class UnitOfWork:
    def __init__(self, source: AggregateSource, cache: WriteCache, *, careful: bool) -> None:
        self.source = source
        self.cache = cache
        self.careful = careful
        self.aggregates: dict[UUID, Aggregate] = {}
        self.absent: set[UUID] = set()  # looked for in the store and not there
        self.events: list[Any] = []  # taken from the aggregates command by command, in the order recorded
        self.receipts: list[Receipt] = []  # of the commands this batch records
        self.vault: list[tuple[UUID, Sealed | None]] = []  # identities to keep or destroy, with the events
        self.sealed: dict[UUID, Sealed] = {}  # by command id: the registrations' identities, sealed ahead

    def load(
        self, commands: Sequence[tuple[Command, Actor]], subjects: Callable[[Command, bool], Iterable[UUID]]
    ) -> None:
        """Load in one query what the commands will use (`subjects(command, creations)`) and is not at hand:
        everything, when careful."""
        wanted = {i for c, _ in commands for i in subjects(c, self.careful) if self.careful or i not in self.cache}
        if wanted:
            self.aggregates.update(self.source.load(wanted))
            self.absent = wanted - self.aggregates.keys()

    def get(self, aggregate_id: UUID, kind: type[A]) -> A:
        aggregate = self.aggregates.get(aggregate_id)
        if aggregate is None and aggregate_id not in self.absent:
            cached = None if self.careful else self.cache.get(aggregate_id)
            aggregate = cached or self.source.stored(aggregate_id)
            if aggregate is not None:
                self.aggregates[aggregate_id] = aggregate
        if not isinstance(aggregate, kind):
            raise NotFoundError(f"{kind.__name__.lower()} {aggregate_id} not found")
        return aggregate

    def find(self, aggregate_id: UUID, kind: type[A]) -> A | None:
        """`get`, or None when there is none (remembered, for the rest of the batch)."""
        try:
            return self.get(aggregate_id, kind)
        except NotFoundError:
            self.absent.add(aggregate_id)
            return None

    def exists(self, aggregate_id: UUID) -> bool:
        if aggregate_id in self.aggregates or aggregate_id in self.cache:
            return True
        if not self.careful or aggregate_id in self.absent:
            return False
        return self.source.stored(aggregate_id) is not None

    def in_store(self, aggregate_ids: Iterable[UUID]) -> dict[UUID, Aggregate]:
        """Those of these aggregates the store holds, read from it (not kept in the unit)."""
        return self.source.load(aggregate_ids)

    def add(self, aggregate: A) -> A:
        self.aggregates[aggregate.id] = aggregate
        return aggregate

    def seal_ahead(self, commands: Sequence[tuple[Command, Actor]]) -> None:
        """The identities the batch's registrations give, sealed one after the other before any is decided: in one
        tight loop the sealing costs a third less than command by command between the deciding (bench/NOTES.md,
        issue 29). Without a master key nothing is sealed here, and each registration is refused on its own."""
        given = [(c, a) for c, a in commands if isinstance(c, Register) and c.identity is not None]
        if not given:
            return
        try:
            keys = self.source.keys
        except VaultKeyError:
            return
        for command, actor in given:
            assert command.identity is not None
            journey_id = Journey.create_id(command.season, command.pilgrim_id)
            self.sealed[command.command_id] = keys.seal(journey_id, command.identity, scope=actor.agency_id)

    def seal(self, command: Register, journey_id: UUID, agency_id: str) -> Sealed:
        """A registration's identity, sealed ahead or now (refused here without a master key)."""
        assert command.identity is not None
        ahead = self.sealed.pop(command.command_id, None)
        return ahead or self.source.keys.seal(journey_id, command.identity, scope=agency_id)
