"""The projection runner: follows the log and keeps every read model current; rebuilds; reports status."""

from __future__ import annotations

import bisect
import logging
import threading
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from eventsourcing.persistence import InterfaceError, OperationalError
from sqlalchemy.engine import Connection, Engine

from hajj_ledger.leadership import LogWatch
from hajj_ledger.ledger import JourneyLedger
from hajj_ledger.projections import bulk
from hajj_ledger.projections import projection as named
from hajj_ledger.projections.framework import PositionMovedError, Projection, advance, apply_batch
from hajj_ledger.projections.schema import GENERATIONS, engine_for, physical, positions, replace_view
from hajj_ledger.projections.status import NotInstalledError, Status, read

BATCH = 20_000  # events per transaction when behind; catch-up measured 31k events/s at 1,000, 54k at 20,000
# A projection further behind the head than this is caught up by the bulk path (projections/bulk.py), which keeps
# rows in memory over a million events rather than loading and upserting them every batch; below it, batches
# (bench/NOTES.md: the bulk path is ahead from a few batches on, and a batch's transaction stays short).
BULK_BEHIND = 100_000
log = logging.getLogger("hajj_ledger.projections")


class _StoppedError(Exception):  # told to stop while waiting for the store to come back
    pass


def install(connection: Connection, projections: Sequence[Projection]) -> None:
    """Create generation `a` of each projection's tables, its views and its position: what a migration does."""
    now = datetime.now(UTC)
    for projection in projections:
        for model in projection.models:
            model.table("a").create(connection)
            replace_view(connection, model.name, "a", model.column_names)
        connection.execute(
            sa.insert(positions).values(
                projection=projection.name, generation="a", position=0, code_version=projection.version,
                serving=True, updated_at=now,
            )
        )  # fmt: skip


def uninstall(connection: Connection, projections: Sequence[Projection]) -> None:
    for projection in projections:
        for model in projection.models:
            connection.execute(sa.text(f'DROP VIEW IF EXISTS "{model.name}"'))
            for generation in GENERATIONS:
                connection.execute(sa.text(f'DROP TABLE IF EXISTS "{physical(model.name, generation)}"'))
        connection.execute(sa.delete(positions).where(positions.c.projection == projection.name))


def reinstall(connection: Connection, names: Sequence[str]) -> None:
    """The named projections' tables dropped and installed afresh at position 0 (the code in place defines them), for
    the runner to rebuild from the log: what a migration that changes a view's columns does, up or down."""
    projections = [named(name) for name in names]
    uninstall(connection, projections)
    install(connection, projections)


class Runner:
    """Applies the log of the ledger at `database_url` to the read models in the same store, or in `target` (a
    replay kept apart from the serving views); up to position `until`, or following the log."""

    def __init__(
        self,
        projections: Sequence[Projection],
        database_url: str | None = None,
        *,
        target: Engine | None = None,
        until: int | None = None,
    ) -> None:
        self.projections = list(projections)
        self.database_url = database_url
        self.until = until
        self._stop = threading.Event()  # set by whoever runs `run`; rebuilds and status never stop
        self._own_engine = target is None
        self.engine: Engine = target or engine_for(database_url)
        if not sa.inspect(self.engine).has_table(positions.name):
            self._close_engine()
            raise NotInstalledError("the read models are not installed: run `hajj-ledger migrate`")
        self.ledger = JourneyLedger(database_url, create_tables=False)  # reads the log and decodes events

    def close(self) -> None:
        self.ledger.close()
        self._close_engine()

    def _close_engine(self) -> None:
        if self._own_engine:  # a target is its caller's
            self.engine.dispose()

    # Positions.

    def _position(
        self, projection: Projection, generation: str | None = None, connection: Connection | None = None
    ) -> tuple[str, int, int]:
        """(generation, position, code version) of the serving generation, or of the one asked for."""
        query = sa.select(positions.c.generation, positions.c.position, positions.c.code_version).where(
            positions.c.projection == projection.name
        )
        query = query.where(positions.c.generation == generation) if generation else query.where(positions.c.serving)
        if connection is not None:
            row = connection.execute(query).first()
        else:
            with self.engine.connect() as own:
                row = own.execute(query).first()
        if row is None:
            raise _not_installed(projection)
        return row[0], row[1], row[2]

    def _serving(self, projections: Sequence[Projection]) -> dict[str, tuple[str, int, int]]:
        """`_position` of each projection's serving generation, in one query."""
        query = sa.select(
            positions.c.projection, positions.c.generation, positions.c.position, positions.c.code_version
        ).where(positions.c.serving, positions.c.projection.in_([p.name for p in projections]))
        with self.engine.connect() as connection:
            found = {row[0]: (row[1], row[2], row[3]) for row in connection.execute(query)}
        for projection in projections:
            if projection.name not in found:
                raise _not_installed(projection)
        return found

    # Applying.

    def _read(self, projection: Projection, after: int, limit: int) -> tuple[int, list[tuple[int, Any]]]:
        """The next batch of the log after `after`: its last position, and the events this projection reads."""
        log_ = _Log(
            self.ledger, self.ledger.recorder.select_notifications(start=after + 1, limit=limit, stop=self.until)
        )
        return log_.last(after), log_.events(projection, after)

    def step(
        self,
        projection: Projection,
        generation: str | None = None,
        connection: Connection | None = None,
        limit: int = BATCH,
    ) -> int:
        """Apply the next batch; returns how far the position moved (0: caught up)."""
        generation, position, _ = self._position(projection, generation, connection)
        last, events = self._read(projection, position, limit)
        if last == position:
            return 0
        if connection is not None:
            advance(connection, projection, generation, position, last)
            apply_batch(connection, projection, generation, events)
        else:
            with self.engine.begin() as own:
                advance(own, projection, generation, position, last)
                apply_batch(own, projection, generation, events)
        return last - position

    def step_together(self, projections: Sequence[Projection]) -> int:
        """One pass of the projections that follow the log: the log read once, from the furthest behind of those
        within a batch of the furthest ahead, each event decoded once for every projection that reads it, and each
        projection's part applied in a transaction of its own. A projection further behind (just added, say) steps
        alone, so that it never holds the others back from the head. Returns how far the positions moved."""
        at = self._retrying(lambda: self._serving(projections))
        ahead = max(position for _, position, _ in at.values())
        together = [p for p in projections if ahead - at[p.name][1] <= BATCH]
        moved: int = sum(self._retrying(lambda p=p: self.step(p)) for p in projections if p not in together)
        start = min(at[p.name][1] for p in together)
        log_ = _Log(self.ledger, self._retrying(
            lambda: self.ledger.recorder.select_notifications(start=start + 1, limit=BATCH, stop=self.until)
        ))  # fmt: skip
        for projection in together:
            if self._stop.is_set():
                break
            generation, position, _ = at[projection.name]
            last = log_.last(position)
            if last > position:
                moved += self._retrying(
                    lambda p=projection, g=generation, f=position, t=last: self._apply(p, g, f, t, log_)
                )
        return moved

    def _apply(self, projection: Projection, generation: str, position: int, last: int, log_: _Log) -> int:
        with self.engine.begin() as connection:
            advance(connection, projection, generation, position, last)
            apply_batch(connection, projection, generation, log_.events(projection, position))
        return last - position

    def catch_up(self, projection: Projection, generation: str | None = None) -> int:
        """Bring one generation (by default the serving one) to the head; returns how far its position moved."""
        generation, before, _ = self._retrying(lambda: self._position(projection, generation))
        self._in_bulk([(projection, generation)], before)
        moved = 0
        while step := self._retrying(lambda: self.step(projection, generation)):
            moved += step
        return moved

    def _in_bulk(self, targets: Sequence[tuple[Projection, str]], furthest_behind: int) -> None:
        """The targets (projection, generation) brought near the head by the bulk path together, if the one
        furthest behind is more than BULK_BEHIND behind it; the batches take the rest."""
        head = self._retrying(self.ledger.head) if self.until is None else self.until
        if targets and head - furthest_behind > BULK_BEHIND:
            log.info("%d projection(s) in bulk, from %d to %d", len(targets), furthest_behind, head)
            self._retrying(lambda: bulk.build(self.engine, self.ledger, targets, until=head, stop=self._stop))

    def catch_up_far_behind(self) -> None:
        """Every projection more than BULK_BEHIND behind the head, caught up in bulk, all in one pass of the log."""
        at = self._retrying(lambda: self._serving(self.projections))
        head = self._retrying(self.ledger.head) if self.until is None else self.until
        behind = [p for p in self.projections if head - at[p.name][1] > BULK_BEHIND]
        self._in_bulk([(p, at[p.name][0]) for p in behind], min((at[p.name][1] for p in behind), default=head))

    def run(self, *, once: bool = False, stop: threading.Event | None = None) -> None:
        """Catch every projection up; unless `once`, keep following the log until `stop` is set, waking when the
        log grows (see LogWatch)."""
        self._stop = stop or threading.Event()
        watch = None if once else LogWatch(self.ledger, self._stop, self.database_url)
        try:
            changed = [p for p in self.projections if self._retrying(lambda p=p: self._position(p)[2]) != p.version]
            if changed:
                log.info("code version changed, rebuilding: %s", ", ".join(p.name for p in changed))
                self.rebuild(*changed)
            self.catch_up_far_behind()
            caught_up_at: int | None = -1  # following: the head of the log when no projection had anything to apply
            while not self._stop.is_set():
                # While the log stands still, one query a wake instead of two per projection.
                head = None if watch is None else self._retrying(self.ledger.head)
                if head != caught_up_at and self.step_together(self.projections):
                    if watch is not None:
                        watch.found()
                elif watch is None:
                    return
                else:
                    caught_up_at = head
                    watch.wait()
        except _StoppedError:
            pass
        finally:
            self._stop = threading.Event()
            if watch is not None:
                watch.close()

    def _retrying(self, action: Any) -> Any:
        """Run `action`, riding out the database going away and another runner getting there first."""
        delay = 0.05
        while True:
            try:
                return action()
            except PositionMovedError:
                return 0  # another runner applied that batch: carry on from where it left the position
            except (sa.exc.OperationalError, sa.exc.InterfaceError, OperationalError, InterfaceError) as error:
                # The store went away or is locked; anything else is a bug and must not be retried forever.
                log.warning("store unavailable (%s); retrying in %.2fs", type(error).__name__, delay)
                if self._stop.wait(delay):
                    raise _StoppedError from error
                delay = min(delay * 2, 5.0)

    # Rebuilding.

    def rebuild(self, *projections: Projection) -> None:
        """Build the other generation of each from position 0 beside the serving one, all in one pass of the log
        (the bulk path), then swap each one's views atomically, its last events applied inside the swap."""
        serving = {p.name: self._retrying(lambda p=p: self._position(p))[0] for p in projections}
        fresh = {name: next(g for g in GENERATIONS if g != at) for name, at in serving.items()}
        # Every step through _retrying, like the live runner's: a locked or absent store is waited out.
        for projection in projections:
            self._retrying(lambda p=projection: self.prepare(p, fresh[p.name]))
        self._retrying(
            lambda: bulk.build(self.engine, self.ledger, [(p, fresh[p.name]) for p in projections], until=self.until)
        )
        for projection in projections:
            self.catch_up(projection, fresh[projection.name])  # what was written meanwhile, in batches
            self._retrying(lambda p=projection: self._swap(p, fresh[p.name]))
            self._retrying(lambda p=projection: self._drop(p, serving[p.name]))

    def _swap(self, projection: Projection, fresh: str) -> None:
        with self.engine.begin() as connection:
            while self.step(projection, fresh, connection):  # the last events, inside the swap
                pass
            for model in projection.models:
                replace_view(connection, model.name, fresh, model.column_names)
            connection.execute(
                sa.update(positions)
                .where(positions.c.projection == projection.name)
                .values(serving=positions.c.generation == fresh)
            )

    def _drop(self, projection: Projection, generation: str) -> None:
        with self.engine.begin() as connection:
            # The position row first: it waits for a live runner's batch on the old generation to commit, and
            # makes that runner's next compare-and-set fail, so it moves to the new one; then the tables go.
            connection.execute(
                sa.delete(positions).where(
                    positions.c.projection == projection.name, positions.c.generation == generation
                )
            )
            for model in projection.models:
                connection.execute(sa.text(f'DROP TABLE IF EXISTS "{physical(model.name, generation)}"'))

    def prepare(self, projection: Projection, generation: str) -> None:
        """Empty tables for a generation that is not serving, at position 0."""
        with self.engine.begin() as connection:
            for model in projection.models:
                connection.execute(sa.text(f'DROP TABLE IF EXISTS "{physical(model.name, generation)}"'))
                model.table(generation).create(connection)
            connection.execute(
                sa.delete(positions).where(
                    positions.c.projection == projection.name, positions.c.generation == generation
                )
            )
            connection.execute(
                sa.insert(positions).values(
                    projection=projection.name, generation=generation, position=0,
                    code_version=projection.version, serving=False, updated_at=datetime.now(UTC),
                )
            )  # fmt: skip

    # Status.

    def status(self) -> list[Status]:
        """How far each projection has applied the log, in the ledger's own store (`hajj-ledger status`)."""
        return read([p.name for p in self.projections], self.database_url)


class _Log:
    """A stretch of the log read once for several projections: each event decoded at most once, when a projection
    first asks for it (the projections only read the events they are given)."""

    def __init__(self, ledger: JourneyLedger, rows: Sequence[Any]) -> None:
        self.rows = rows
        self.ids = [row.id for row in rows]
        self.names = [row.topic.rsplit(".", 1)[-1] for row in rows]
        self.decode = ledger.mapper.to_domain_event
        self.decoded: dict[int, Any] = {}

    def last(self, after: int) -> int:
        """The position a projection at `after` reaches by this stretch."""
        return max(self.ids[-1], after) if self.ids else after

    def events(self, projection: Projection, after: int) -> list[tuple[int, Any]]:
        """(position, event) of the events after `after` that `projection` reads."""
        wanted = projection.events
        found = []
        for index in range(bisect.bisect_right(self.ids, after), len(self.ids)):
            if self.names[index] in wanted:
                event = self.decoded.get(index)
                if event is None:
                    event = self.decoded[index] = self.decode(self.rows[index])
                found.append((self.ids[index], event))
        return found


def _not_installed(projection: Projection) -> NotInstalledError:
    return NotInstalledError(f"projection {projection.name!r} is not installed: run `hajj-ledger migrate`")
