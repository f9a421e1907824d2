"""Reading a closed season: its archive loaded once, verified, into a SQLite store of its own in a local cache
directory, with its events at their positions, its receipts, its stretch of the chain and its views' rows; the
ledger's own reads (history, as-of, trail, proof, views) then run on it unchanged."""

from __future__ import annotations

import sqlite3
from contextlib import closing
from pathlib import Path

from hajj_ledger.archive.seasons import HotStore, Views, closed_seasons, into_sqlite
from hajj_ledger.archive.target import MANIFEST, ArchiveError, Target
from hajj_ledger.archive.verification import CHAIN, CHECKPOINTS, verify_archive
from hajj_ledger.audit.signing import PublicKeys
from hajj_ledger.domain.errors import ValidationError
from hajj_ledger.ledger import JourneyLedger
from hajj_ledger.settings import settings, variable_for

CACHE_VARIABLE = variable_for("season_cache")  # where closed seasons are opened for reading


def cache_directory() -> Path:
    return settings().season_cache


def season_url(season: int) -> str:
    return f"sqlite:///{(cache_directory() / f'season-{season}.sqlite').absolute()}"


def opened(season: int, public: PublicKeys) -> tuple[str, str]:
    """A closed season of the configured store opened for reading: (its archive's URL, its store's URL)."""
    with JourneyLedger(create_tables=False) as ledger:
        found = {closed.season: closed for closed in closed_seasons(ledger)}
    if season not in found:
        closed = ", ".join(map(str, sorted(found))) or "none"
        raise ValidationError("season", f"season {season} is not closed in this store (closed: {closed})")
    return found[season].url, open_season(season, found[season].url, public)


def open_season(season: int, url: str, public: PublicKeys, views: Views | None = None) -> str:
    """The store URL of a closed season's archive opened for reading, loaded and verified on first use (and its
    views' rows, once asked with `views`)."""
    path = cache_directory() / f"season-{season}.sqlite"
    if not path.exists():
        _load(season, url, public, path)
    store_url = season_url(season)
    if views is not None and not _has_part(path, "views"):
        target = Target(url)
        for table in views.tables():
            views.write(table, target.batches(f"views/{table.name}.parquet"), store_url)
        views.settle(store_url, Target(url).read_json(MANIFEST)["events"]["last"])
        with closing(sqlite3.connect(path)) as connection, connection:
            connection.execute("INSERT INTO season_cache VALUES ('views')")
    return store_url


def _has_part(path: Path, part: str) -> bool:
    with closing(sqlite3.connect(path)) as connection:
        return bool(connection.execute("SELECT count(*) FROM season_cache WHERE part = ?", (part,)).fetchone()[0])


def _load(season: int, url: str, public: PublicKeys, path: Path) -> None:
    verdict = verify_archive(url, public)
    if not verdict.ok:
        raise ArchiveError(f"the archive at {url} does not verify, so it is not opened: {'; '.join(verdict.problems)}")
    if verdict.season != season:
        raise ValidationError("season", f"the archive at {url} is of season {verdict.season}, not {season}")
    target = Target(url)
    manifest = target.read_json(MANIFEST)
    path.parent.mkdir(parents=True, exist_ok=True)
    building = path.with_suffix(".loading")
    building.unlink(missing_ok=True)
    ledger = JourneyLedger(f"sqlite:///{building.absolute()}")
    try:
        store = HotStore(ledger)
    finally:
        ledger.close()
    with closing(sqlite3.connect(building)) as connection, connection:
        connection.execute("CREATE TABLE season_cache (part TEXT PRIMARY KEY)")
        into_sqlite(connection, store.events_name, target, season)
        for batch in target.batches(CHAIN):
            connection.executemany(
                "INSERT INTO ledger_chain VALUES (?, ?)", zip(*(c.to_pylist() for c in batch.columns), strict=True)
            )
        for batch in target.batches(CHECKPOINTS):
            connection.executemany(
                "INSERT INTO ledger_checkpoints VALUES (?, ?, ?, ?, ?)",
                zip(*(c.to_pylist() for c in batch.columns), strict=True),
            )
        checkpoint = manifest["chain"]["checkpoint"]
        connection.execute(
            "UPDATE ledger_seal SET position = ?, link = ?", (checkpoint["position"], bytes.fromhex(checkpoint["head"]))
        )
        connection.execute("INSERT INTO season_cache VALUES ('events')")
    building.replace(path)
