"""The read side's commands for `hajj-ledger`: project, status, rebuild, replay, view and export.

Registered through the `hajj_ledger.commands` entry point, so the write side's CLI never imports the read side.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hajj_ledger.domain.errors import ValidationError
from hajj_ledger.logs import configure_logging
from hajj_ledger.preflight import READ, WRITE, invocation
from hajj_ledger.projections import EXPORT_FORMATS, PAST_VIEWS, VIEWS

if TYPE_CHECKING:
    import sqlalchemy as sa

    from hajj_ledger.projections.framework import Model, Projection


def register(commands: Any) -> None:
    project = commands.add_parser("project", help="keep the read models current from the log")
    project.add_argument("--once", action="store_true", help="catch up to the head, then stop")
    project.add_argument("--only", action="append", metavar="NAME", help="this projection only (repeatable)")
    project.set_defaults(run=_project, store=WRITE)

    status = commands.add_parser("status", help="per projection: position, head of the log, lag")
    status.add_argument("--json", action="store_true")
    status.set_defaults(run=_status, store=READ)

    rebuild = commands.add_parser(
        "rebuild", help="rebuild read models from position 0 beside the serving ones, together, then swap each"
    )
    rebuild.add_argument("names", nargs="*", metavar="NAME", help="default: every read model")
    rebuild.set_defaults(run=_rebuild, store=WRITE, batch=True)

    replaying = commands.add_parser(
        "replay", help="rebuild every read model as of a past position, apart from the serving ones, to compare"
    )
    replaying.add_argument("--until", type=int, required=True, metavar="POSITION", help="at most the ledger's head")
    replaying.add_argument(
        "--into", required=True, metavar="DIR|SCHEMA",
        help="a directory (a path with a slash, or one that exists) for a new SQLite file; or the name of a new "
        "schema of the ledger's PostgreSQL database",
    )  # fmt: skip
    replaying.set_defaults(run=_replay, store=READ, batch=True)

    view = commands.add_parser("view", help="a read model's rows, one JSON object each; now, or as of a past position")
    view.add_argument("name", choices=VIEWS)
    view.add_argument(
        "--as-of", type=int, metavar="POSITION",
        help=f"at most the ledger's head; for {' and '.join(PAST_VIEWS)} only (default: the serving view, now)",
    )  # fmt: skip
    view.add_argument("--limit", type=int, default=100)
    view.add_argument("--season", type=int, help="a view by season: this season's rows (default: the current season)")
    view.add_argument("--archived", action="store_true", help="the closed season --season's rows, from its archive")
    view.set_defaults(run=_view, store=READ)

    exporting = commands.add_parser(
        "export", help="the events and every read model as of one position, pseudonymised, for analysts"
    )
    exporting.add_argument("--out", type=Path, required=True, metavar="DIR", help="a new directory, or with --since "
                           "the directory of the export to append to")  # fmt: skip
    exporting.add_argument("--at", type=int, metavar="POSITION", help="default: the head of the log")
    exporting.add_argument("--since", type=int, metavar="POSITION", help="only what came after the export in --out")
    exporting.add_argument("--format", choices=EXPORT_FORMATS, default=EXPORT_FORMATS[0])
    exporting.add_argument(
        "--season", type=int,
        help="the read models' rows of this season (default: the current one; with --since, the previous export's)",
    )  # fmt: skip
    exporting.set_defaults(run=_export, store=READ, batch=True)

    _register_season(commands)


def _export(args: argparse.Namespace) -> int:
    from hajj_ledger.progress import progress_bar
    from hajj_ledger.projections.export import export

    manifest = export(
        args.out, at=args.at, since=args.since, fmt=args.format, season=args.season,
        progress=progress_bar(sys.stderr, "positions exported"),
    )  # fmt: skip
    tables = manifest["tables"]
    season = f"season {manifest['season']}" if manifest["season"] is not None else "no season yet"
    print(f"Exported to {args.out} as of position {manifest['position']:,}, {season} ({manifest['format']}):")
    for name, table in tables.items():
        print(f"  {name:<24}{table['rows']:>12,} rows in {len(table['files'])} file(s)")
    print(
        f"Check it with: {invocation()} verify --export {args.out} (from any directory here; on another machine with "
        "--keys PUBLIC.json, from `signing-key public`)"
    )
    return 0


def _projections(names: Sequence[str] | None = None) -> list[Projection]:
    from hajj_ledger.projections import FOLLOWED, projection

    try:
        return [projection(n) for n in names] if names else list(FOLLOWED)
    except KeyError as error:
        raise ValidationError("name", str(error.args[0])) from None


def _project(args: argparse.Namespace) -> int:
    from hajj_ledger.leadership import stop_on_signals
    from hajj_ledger.projections.runner import Runner

    configure_logging()
    runner = Runner(_projections(args.only))
    stop = threading.Event()
    stop_on_signals(stop)
    try:
        runner.run(once=args.once, stop=stop)
    finally:
        runner.close()
    return 0


def _status(args: argparse.Namespace) -> int:
    from hajj_ledger.projections import FOLLOWED_NAMES
    from hajj_ledger.projections.status import read

    found = read(FOLLOWED_NAMES)
    if args.json:
        print(json.dumps([dataclasses.asdict(s) for s in found]))
        return 0
    print(f"{'projection':<20}{'gen':>4}{'position':>12}{'head':>12}{'lag':>10}{'lag (s)':>10}")
    for s in found:
        print(
            f"{s.projection:<20}{s.generation:>4}{s.position:>12,}{s.head:>12,}{s.lag_events:>10,}{s.lag_seconds:>10.1f}"
        )
    return 0


def _rebuild(args: argparse.Namespace) -> int:
    from hajj_ledger.projections.runner import Runner

    projections = _projections(args.names)
    runner = Runner(projections)
    try:
        runner.rebuild(*projections)
    finally:
        runner.close()
    print(f"{', '.join(p.name for p in projections)} rebuilt and swapped in.")
    return 0


def _replay(args: argparse.Namespace) -> int:
    from hajj_ledger.audit.reads import within_head
    from hajj_ledger.ledger import JourneyLedger
    from hajj_ledger.projections.replay import replay, row_counts, target
    from hajj_ledger.store.recorders import database_url

    ledger = JourneyLedger(create_tables=False)
    try:
        within_head(ledger, args.until, "until")
        head = ledger.head()
    finally:
        ledger.close()
    url = database_url()
    into = target(args.into, url, args.until)
    try:
        replay(url, args.until, into.engine)
        counts = row_counts(into.engine)
    finally:
        into.engine.dispose()
    print(f"Every read model as of position {args.until:,} (the head is {head:,}), in {into.where}:")
    for name, rows in counts.items():
        print(f"  {name:<24}{rows:>10,} rows")
    return 0


def _view(args: argparse.Namespace) -> int:
    from datetime import UTC, datetime

    import orjson

    from hajj_ledger.audit.reads import plain
    from hajj_ledger.projections import projection

    if args.archived:  # the season's store is opened (hajj_ledger.cli); its views' rows are loaded once, here
        from hajj_ledger.archive.reading import open_season

        if args.season is None:
            raise ValidationError("season", "--archived reads one closed season: name it with --season")
        from hajj_ledger.projections.closing import SeasonViews

        open_season(args.season, args.archive_url, public_keys(None), SeasonViews())
    model = projection(args.name).models[0]
    view = model.view()
    query = model.readable().order_by(*(view.c[k] for k in model.key)).limit(args.limit)
    parameters = {"now": datetime.now(UTC)} if model.at_read is not None else {}
    rows: Sequence[Mapping[Any, Any]]
    if args.as_of is not None and args.name not in PAST_VIEWS:
        raise ValidationError("as-of", f"{args.name} is read now only; as of a past position: {', '.join(PAST_VIEWS)}")
    season = _season(args.season)
    query = _only(model, season, query)
    if args.as_of is None:
        rows = _serving_rows(query, parameters)
    else:
        rows = _past_rows(args.name, args.as_of, season, args.limit, query, parameters)
    # As the API writes them: times in UTC with `Z` (SQLite's come back without their zone); keys are plain text.
    as_the_api = orjson.OPT_UTC_Z | orjson.OPT_NAIVE_UTC
    for row in rows:
        print(orjson.dumps({str(k): v for k, v in row.items()}, default=plain, option=as_the_api).decode())
    return 0


def _only(model: Model, season: int | None, query: sa.Select[Any]) -> sa.Select[Any]:
    """A view by season read for one season (None: the views hold no season yet, nothing to keep apart)."""
    from hajj_ledger.projections.read_season import SEASON, by_season

    return query.where(model.view().c[SEASON] == season) if season is not None and by_season(model) else query


def _season(season: int | None) -> int | None:
    """The season asked for, else the current one, as the serving views say."""
    import sqlalchemy as sa

    from hajj_ledger.projections.read_season import chosen_season
    from hajj_ledger.projections.schema import engine_for, positions

    if season is not None:
        return season
    engine = engine_for()
    try:
        with engine.connect() as connection:
            if not sa.inspect(connection).has_table(positions.name):  # no read models yet: no season to keep apart
                return None
            return chosen_season(connection, None)
    finally:
        engine.dispose()


def _serving_rows(query: sa.Select[Any], parameters: dict[str, Any]) -> list[sa.RowMapping]:
    from hajj_ledger.projections.schema import engine_for

    engine = engine_for()
    try:
        with engine.connect() as connection:
            return list(connection.execute(query, parameters).mappings().all())
    finally:
        engine.dispose()


def _past_rows(
    name: str, position: int, season: int | None, limit: int, query: sa.Select[Any], parameters: dict[str, Any]
) -> Sequence[Mapping[Any, Any]]:
    from hajj_ledger.ledger import JourneyLedger
    from hajj_ledger.projections.read_season import SEASON
    from hajj_ledger.projections.replay import PastViews

    ledger = JourneyLedger(create_tables=False)
    past = PastViews(ledger)
    try:
        if name == "journey_status":
            return past.journey_status(position, None, limit, {SEASON: season})
        with past.at(position) as connection:
            return list(connection.execute(query, parameters).mappings().all())
    finally:
        past.close()
        ledger.close()


# The commands: `hajj-ledger season close|verify|restore|open|list`.


def _register_season(commands: Any) -> None:
    from hajj_ledger.audit.signing import KEY_FILE_VARIABLE

    season = commands.add_parser("season", help="close a season (archive it with its proofs), verify, restore, open")
    actions = season.add_subparsers(dest="action", required=True, metavar="ACTION")
    closing = actions.add_parser(
        "close", help="archive a season to URL, verify the archive there, then take the season out of the store"
    )
    closing.add_argument("season", type=int)
    closing.add_argument("--to", required=True, metavar="URL", help="a pyarrow filesystem URL: a path, file://, s3://")
    closing.set_defaults(run=_season_close, store=WRITE)
    keys_help = f"the public keys to trust (`signing-key public` prints them); default: {KEY_FILE_VARIABLE}'s"
    verifying = actions.add_parser(
        "verify", help="check a season's archive alone against its signed manifest and chain"
    )
    verifying.add_argument("url", metavar="URL")
    verifying.add_argument("--keys", metavar="FILE", help=keys_help)
    verifying.add_argument("--json", action="store_true")
    verifying.set_defaults(run=_season_verify)
    restoring = actions.add_parser(
        "restore", help="bring a closed season back into the store, its archive verified first"
    )
    restoring.add_argument("season", type=int)
    restoring.add_argument("--from", dest="url", required=True, metavar="URL")
    restoring.add_argument("--keys", metavar="FILE", help=keys_help)
    restoring.set_defaults(run=_season_restore, store=WRITE)
    opening = actions.add_parser("open", help="load a closed season's archive for reading (`--season` of the reads)")
    opening.add_argument("season", type=int)
    opening.add_argument("--keys", metavar="FILE", help=keys_help)
    opening.set_defaults(run=_season_open, store=READ)
    listing = actions.add_parser("list", help="the closed seasons and their archives")
    listing.set_defaults(run=_season_list, store=READ)


def public_keys(path: str | None) -> Any:
    from hajj_ledger.audit.chain import signing_keys
    from hajj_ledger.audit.signing import PublicKeys

    if path:
        return PublicKeys.read(path)
    keys = signing_keys(required=True, create=False)
    assert keys is not None
    return keys.public


def _season_close(args: Any) -> int:
    from hajj_ledger.archive.seasons import close
    from hajj_ledger.audit.chain import signing_keys
    from hajj_ledger.ledger import JourneyLedger
    from hajj_ledger.projections.closing import SeasonViews

    keys = signing_keys(required=True)
    assert keys is not None
    with JourneyLedger() as ledger:
        manifest = close(ledger, args.season, args.to, keys, SeasonViews())
    events = manifest["events"]
    print(f"Season {args.season} closed: {events['count']:,} events (positions {events['first']} to {events['last']}) "
          f"archived to {args.to}, verified there, and taken out of the store.")  # fmt: skip
    return 0


def _season_verify(args: Any) -> int:

    from hajj_ledger.archive.verification import verify_archive

    verdict = verify_archive(args.url, public_keys(args.keys))
    print(verdict.told(args.url, as_json=args.json))
    return 0 if verdict.ok else 1


def _season_restore(args: Any) -> int:
    from hajj_ledger.archive.seasons import restore
    from hajj_ledger.ledger import JourneyLedger
    from hajj_ledger.projections.closing import SeasonViews

    with JourneyLedger() as ledger:
        verdict = restore(ledger, args.season, args.url, public_keys(args.keys), SeasonViews())
    print(f"Season {args.season} restored from {args.url}: {verdict.events:,} events, verified first.")
    return 0


def _season_open(args: Any) -> int:
    from hajj_ledger.archive.reading import open_season, opened
    from hajj_ledger.projections.closing import SeasonViews

    public = public_keys(args.keys)
    url, _ = opened(args.season, public)
    print(open_season(args.season, url, public, SeasonViews()))
    return 0


def _season_list(args: Any) -> int:
    from hajj_ledger.archive.seasons import closed_seasons
    from hajj_ledger.ledger import JourneyLedger

    with JourneyLedger() as ledger:
        for closed in closed_seasons(ledger):
            print(f"{closed.season}  {closed.events:>12,} events  positions {closed.first_position}-"
                  f"{closed.last_position}  closed {closed.closed_at}  {closed.url}")  # fmt: skip
    return 0
