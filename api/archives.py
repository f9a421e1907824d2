"""Closed seasons read over HTTP: a season taken out of the hot store (`season close`) answers the audit routes and
its views from its archive, opened as a SQLite store of its own with the same read code (hajj_ledger.archive).

The node finds a closed season's archive in the `seasons` view: the SeasonClosed event carries the archive's URL and
its manifest's SHA-256, and the season is read from there once its stage is `archived` (taken out; a restored
season is `closed` again and read from the hot store). The first read of a season in a process checks the manifest
at the URL against that digest, then opens the archive: loaded and verified against the chain once into the local
cache (HAJJ_LEDGER_SEASON_CACHE), with its views' rows. An archive that cannot be read there, or that is not the one
the season was closed to, is a 503 naming the season, the URL and the reason."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from uuid import UUID

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from starlette.concurrency import run_in_threadpool

from hajj_ledger.api.agencies import Agency
from hajj_ledger.api.problems import ProblemError
from hajj_ledger.archive.reading import open_season
from hajj_ledger.archive.target import MANIFEST, ArchiveError, Target
from hajj_ledger.audit.as_of import AsOf
from hajj_ledger.audit.chain import Chain
from hajj_ledger.audit.signing import SigningKeys
from hajj_ledger.domain.errors import LedgerError
from hajj_ledger.domain.vocabulary import SeasonStage
from hajj_ledger.ledger import JourneyLedger
from hajj_ledger.projections.closing import SeasonViews
from hajj_ledger.projections.framework import Model
from hajj_ledger.projections.queries import Page, journey_query, page_parameters, plain_row, read_page
from hajj_ledger.projections.replay import PastViews
from hajj_ledger.projections.schema import engine_for
from hajj_ledger.projections.seasons import seasons

# The views whose rows of a season leave the hot store with it (the others keep theirs): read from the archive.
ARCHIVED_VIEWS = frozenset(table.name for table in SeasonViews().tables())


@dataclass(frozen=True)
class Archive:
    """Where a closed season's archive is, as its SeasonClosed event says."""

    url: str
    manifest_digest: str


class Archived:
    """A closed season's archive opened for reading: its log (history, as-of, trail), its chain (proofs), its views'
    rows and its views as of past positions."""

    def __init__(self, season: int, url: str, store_url: str) -> None:
        self.season = season
        self.url = url
        self.ledger = JourneyLedger(store_url, create_tables=False)
        self.engine = engine_for(store_url, pool_size=2)
        self.past = PastViews(self.ledger, store_url)
        self.chain = Chain(self.ledger)
        self.last_position = self.ledger.head()  # the season's last event: nothing of it comes after

    def within(self, position: int) -> int:
        """A position of the whole log, as far as this season goes: the season is the same at any later one."""
        return min(position, self.last_position)

    def as_of(self, at: AsOf) -> AsOf:
        return at if at.position is None else AsOf(position=self.within(at.position))

    def holds(self, aggregate_id: UUID) -> bool:
        return bool(self.ledger.store.select_aggregate_notifications(aggregate_id))

    def page(self, model: Model, agency: Agency, filters: dict[str, Any], after: list[Any] | None, limit: int) -> Page:
        """A page of one of the season's views, as `Reads.page` reads it, with nothing to wait for: the archive
        holds the season to its end (the position its views reached)."""
        query, parameters = page_parameters(model, agency.actor, filters, after, limit)
        with self.engine.connect() as connection:
            return read_page(connection, model.name, query, parameters)

    def journey(self, journey_id: UUID) -> dict[str, Any] | None:
        """A journey's `journey_status` row."""
        with self.engine.connect() as connection:
            found = connection.execute(journey_query(), {"journey_id": journey_id}).mappings().first()
        return plain_row(found) if found else None

    def close(self) -> None:
        self.past.close()
        self.ledger.close()
        self.engine.dispose()


def archive_unavailable(season: int, url: str, reason: str) -> ProblemError:
    problem = ProblemError(
        503, "season-archive-unavailable", "Season archive unavailable",
        f"season {season} is closed and its archive at {url} cannot be read: {reason}",
        season=season, archive_url=url, reason=reason,
    )  # fmt: skip
    problem.headers["Retry-After"] = "60"
    return problem


class ClosedSeasons:
    """The seasons of this node's store that are archived (the `seasons` view, looked up at most once a second), and
    their archives, each opened once in the process's life."""

    FRESH_FOR = 1.0  # seconds

    def __init__(self, engine: Engine, keys: SigningKeys | None) -> None:
        self.engine = engine  # the read models
        self.keys = keys  # whose public keys verify the archives
        self._archives: dict[int, Archive] = {}
        self._until = 0.0  # monotonic time until which `_archives` is fresh
        self._opened: dict[int, Archived] = {}
        self._opening = threading.Lock()  # one season opened at a time: a second asker finds it open

    @property
    def fresh(self) -> bool:
        return time.monotonic() < self._until

    def archives(self) -> dict[int, Archive]:
        """The archived seasons and their archives; may ask the database (in a thread from async routes)."""
        if not self.fresh:
            view = seasons.view()
            query = sa.select(view.c.season, view.c.archive_url, view.c.manifest_digest).where(
                view.c.stage == str(SeasonStage.ARCHIVED)
            )
            with self.engine.connect() as connection:
                found = {season: Archive(url, digest) for season, url, digest in connection.execute(query)}
            self._archives, self._until = found, time.monotonic() + self.FRESH_FOR
        return self._archives

    def of(self, season: int | None) -> Archived | None:
        """The season's archive opened, if it is archived; None if its events are in the hot store."""
        archive = None if season is None else self.archives().get(season)
        if season is None or archive is None:
            return None
        with self._opening:
            if season not in self._opened:
                self._opened[season] = self._open(season, archive)
            return self._opened[season]

    async def of_season(self, season: int | None) -> Archived | None:
        """`of`, on a thread of the pool unless the season is known not to be archived."""
        if season is None or (self.fresh and season not in self._archives):
            return None
        return await run_in_threadpool(self.of, season)

    def holding(self, aggregate_id: UUID) -> Archived | None:
        """The archive of the closed season a journey or trip is of, if it is in one."""
        return next((found for found in self._all() if found.holds(aggregate_id)), None)

    def _all(self) -> Sequence[Archived]:
        return [found for season in sorted(self.archives()) if (found := self.of(season)) is not None]

    def _open(self, season: int, archive: Archive) -> Archived:
        if self.keys is None:
            reason = "this node has no signing key whose public keys verify archives"
            raise archive_unavailable(season, archive.url, reason)
        try:
            digest = Target(archive.url).sha256(MANIFEST)
        except (OSError, LedgerError) as error:  # a place gone, a filesystem that cannot be reached
            raise archive_unavailable(season, archive.url, f"its {MANIFEST} cannot be read ({error})") from None
        if digest != archive.manifest_digest:
            raise archive_unavailable(
                season, archive.url, f"its {MANIFEST} is not the one the season was closed with (SHA-256 {digest}, "
                f"closed with {archive.manifest_digest})",
            )  # fmt: skip
        try:
            store_url = open_season(season, archive.url, self.keys.public, SeasonViews())
        except (ArchiveError, OSError, LedgerError) as error:  # one that does not verify is refused, not read
            raise archive_unavailable(season, archive.url, str(error)) from None
        return Archived(season, archive.url, store_url)

    def close(self) -> None:
        with self._opening:
            for found in self._opened.values():
                found.close()
            self._opened.clear()
