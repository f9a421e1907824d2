"""The `hajj-ledger` command line.

It starts fast: this module and the parsers import little, and each command imports what it needs when it runs.
Every failure is one line on stderr (a traceback only with HAJJ_LEDGER_DEBUG=1); exit statuses: 0 done, 1 refused
or failed (a refusal is one JSON line), 2 the store or a key cannot be used as configured, 70 an unexpected error,
141 stdout was closed early (`| head`); `verify` has its own (docs/auditing.md).
"""

from __future__ import annotations

import argparse
import difflib
import json
import os
import sys
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any
from uuid import UUID

from hajj_ledger import preflight
from hajj_ledger.audit import cli as audit_cli
from hajj_ledger.audit import reads_cli
from hajj_ledger.domain.errors import LedgerError, ValidationError
from hajj_ledger.domain.vocabulary import SIMULATED_SEASON, Role
from hajj_ledger.preflight import READ, WRITE, master_key
from hajj_ledger.settings import SettingsError, settings, variable_for
from hajj_ledger.store.connections import DATABASE_URL_VARIABLE, DEFAULT_DATABASE_URL

if TYPE_CHECKING:
    from hajj_ledger.ledger import Outcome

TRAIL_LIMIT = 1000  # the most `trail` shows at once (the ledger's own limit: hajj_ledger.audit.reads.MAX_LIMIT)
CLOSED_PIPE = 141  # what a shell reports for a process ended by SIGPIPE
ARCHIVED = "read the closed season --season from its archive (`season close`), opened as a store of its own"
CURRENT_SEASON = (
    "the season (Hijri year) a pilgrim id is looked up in; default: the current season by the seasons' calendars "
    "(the one whose registration-to-last-departures window holds today in Makkah)"
)


def main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = _parser(argv).parse_args(argv)
    try:
        settings()  # a HAJJ_LEDGER_* variable the ledger cannot use is refused before anything starts
        if getattr(args, "batch", False):
            _wait_for_connections()
        if getattr(args, "archived", False):
            _archived(args)
        preflight.check(getattr(args, "store", None), getattr(args, "needs", ()))
        code = int(args.run(args))
        sys.stdout.flush()  # a closed pipe shows here, not as a traceback at exit
        return code
    except BrokenPipeError:
        return _closed_pipe()
    except KeyboardInterrupt:
        return 130
    except LedgerError as error:
        print(json.dumps(_error_json(error), ensure_ascii=False), file=sys.stderr)
        return 1
    except Exception as error:
        if not isinstance(error, SettingsError) and settings().debug:
            raise
        line, code = preflight.describe(error)
        print(f"hajj-ledger: {line}", file=sys.stderr)
        return code


def _archived(args: argparse.Namespace) -> None:
    """A read of a closed season (`--archived`): the same command, on the season's archive opened (once, verified)
    as a store of its own; `verify` checks the archive itself."""
    from hajj_ledger.archive.reading import opened
    from hajj_ledger.audit.chain import signing_keys

    if args.season is None:
        raise ValidationError("season", "--archived reads one closed season: name it with --season")
    keys = signing_keys(required=True, create=False)
    assert keys is not None
    args.archive_url, os.environ[DATABASE_URL_VARIABLE] = opened(args.season, keys.public)
    if getattr(args, "verifies", False):
        args.run = _verify_archived


def _verify_archived(args: argparse.Namespace) -> int:
    from hajj_ledger.archive.verification import verify_archive
    from hajj_ledger.audit.chain import signing_keys

    keys = signing_keys(required=True, create=False)
    assert keys is not None
    verdict = verify_archive(args.archive_url, keys.public)
    print(verdict.told(args.archive_url, as_json=args.json))
    return 0 if verdict.ok else 1


def _wait_for_connections() -> None:
    """A batch job (simulate, export, rebuild, replay) waits for the database's connections: every store it opens
    in this process reads the URL from the environment."""
    from hajj_ledger.store.connections import for_batch_jobs

    url = preflight.configured_url()
    if for_batch_jobs(url) != url:
        os.environ[DATABASE_URL_VARIABLE] = for_batch_jobs(url)


def _closed_pipe() -> int:
    """The reader went away (`hajj-ledger rules | head`): end quietly. What is still buffered goes nowhere, so that
    Python's own flush at exit finds nothing to complain about."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)
    return CLOSED_PIPE


class _Parser(argparse.ArgumentParser):
    """argparse's, saying "did you mean" for a mistyped command, action or choice (nested parsers are of this class
    too: argparse makes them of their parent's)."""

    def _check_value(self, action: argparse.Action, value: Any) -> None:
        if action.choices is not None and isinstance(value, str) and value not in action.choices:
            close = difflib.get_close_matches(value, [str(c) for c in action.choices], n=3, cutoff=0.6)
            if close:
                guess = " or ".join(repr(c) for c in close)
                raise argparse.ArgumentError(action, f"invalid choice: {value!r}; did you mean {guess}?")
        super()._check_value(action, value)


class _Version(argparse.Action):
    """`--version`: the installed package's, as pyproject.toml sets it; looked up only when asked (a fast start)."""

    def __init__(self, option_strings: Sequence[str], dest: str, **kwargs: Any) -> None:
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, help="print the version and exit")

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: str | Sequence[Any] | None,
        option_string: str | None = None,
    ) -> None:
        from importlib.metadata import version

        print(parser.prog, version("hajj-ledger"))
        parser.exit()


def _parser(argv: Sequence[str] = ()) -> argparse.ArgumentParser:
    parser = _Parser(
        prog="hajj-ledger",
        description="An event-sourced ledger of Hajj pilgrims' journeys. "
        f"The store is {DATABASE_URL_VARIABLE} (default {DEFAULT_DATABASE_URL}).",
    )
    parser.add_argument("--version", action=_Version)
    commands = parser.add_subparsers(required=True, metavar="COMMAND")

    record = commands.add_parser(
        "record",
        help="record one command, given as JSON (argument or stdin); prints the outcome and position",
    )
    record.add_argument("json", nargs="?", help="the command; read from stdin when omitted")
    record.add_argument("--role", required=True, choices=[r.value for r in Role])
    record.add_argument("--agency", required=True, help="the recording agency's id")
    record.set_defaults(run=_record, store=WRITE)

    history = commands.add_parser("history", help="every event of a journey, with both clocks and who recorded it")
    history.add_argument("id", type=UUID, help="a pilgrim id (with --season) or a journey id")
    history.add_argument("--season", type=int, help=CURRENT_SEASON)
    history.add_argument("--archived", action="store_true", help=ARCHIVED)
    history.add_argument("--json", action="store_true", help="one JSON object per event")
    history.set_defaults(run=reads_cli.run_history, store=READ)

    trail = commands.add_parser(
        "trail", help="the audit trail: events with both clocks, who recorded them and their positions, filtered"
    )
    trail.add_argument("id", type=UUID, nargs="?", help="a journey, a pilgrim (with --season) or a trip; else all")
    trail.add_argument("--season", type=int, help=CURRENT_SEASON)
    trail.add_argument("--archived", action="store_true", help=ARCHIVED)
    trail.add_argument("--agency", help="recorded by this agency")
    trail.add_argument("--event", help="of this type, e.g. VisaIssued")
    trail.add_argument("--recorded-from", type=moment, metavar="TIME", help="recorded at or after (ISO 8601, zoned)")
    trail.add_argument("--recorded-until", type=moment, metavar="TIME", help="recorded at or before")
    trail.add_argument("--from-position", type=int, metavar="N")
    trail.add_argument("--until-position", type=int, metavar="N")
    trail.add_argument("--after", type=int, default=0, metavar="N", help="go on after this position (a page's cursor)")
    trail.add_argument("--limit", type=int, default=100, help=f"at most this many (1 to {TRAIL_LIMIT})")
    trail.add_argument("--json", action="store_true", help="one JSON object per event")
    trail.set_defaults(run=reads_cli.run_trail, store=READ)

    as_of = commands.add_parser(
        "as-of", help="a journey as the ledger knew it at a position or recorded time, or as it had happened by a time"
    )
    as_of.add_argument("id", type=UUID, help="a pilgrim id (with --season) or a journey id")
    as_of.add_argument("--season", type=int, help=CURRENT_SEASON)
    as_of.add_argument("--archived", action="store_true", help=ARCHIVED)
    when = as_of.add_mutually_exclusive_group(required=True)
    when.add_argument("--position", type=int, metavar="N", help="what the ledger held up to this position")
    when.add_argument("--recorded-at", type=moment, metavar="TIME", help="what the ledger had recorded by then")
    when.add_argument("--occurred-at", type=moment, metavar="TIME", help="what had happened by then (agencies' clocks)")
    as_of.set_defaults(run=reads_cli.run_as_of, store=READ)

    rules = commands.add_parser("rules", help="the event catalogue: who records what, from where")
    rules.set_defaults(run=_rules)

    documented = commands.add_parser("settings", help="the HAJJ_LEDGER_* variables: each one's default and meaning")
    documented.set_defaults(run=_settings)

    erase = commands.add_parser(
        "erase", help="destroy a pilgrim's identity (its key, record and index entries); the events stay"
    )
    erase.add_argument("id", type=UUID, help="a pilgrim id (with --season) or a journey id")
    erase.add_argument("--season", type=int, help=CURRENT_SEASON)
    erase.add_argument("--reason", required=True, help="a snake_case code, e.g. pilgrim_request")
    erase.add_argument("--agency", default="ledger-operator", help="the ministry office recording the erasure")
    erase.set_defaults(run=_erase, store=WRITE)

    identity = commands.add_parser("identity", help="read, find and re-key identities in the vault")
    actions = identity.add_subparsers(required=True, metavar="ACTION")
    show = actions.add_parser("show", help="who the pilgrim is, for a role allowed to know")
    show.add_argument("id", type=UUID, help="a pilgrim id (with --season) or a journey id")
    show.add_argument("--season", type=int, help=CURRENT_SEASON)
    show.set_defaults(run=_identity_show, store=READ, needs=(master_key,))
    find = actions.add_parser("find", help="journeys by passport (blind index) or, for a mission, by name")
    how = find.add_mutually_exclusive_group(required=True)
    how.add_argument("--passport", metavar="NUMBER")
    how.add_argument("--name", help="any spelling, Arabic script or Latin; every part must match")
    find.add_argument("--country", help="the passport's issuing country (with --passport)")
    find.set_defaults(run=_identity_find, store=READ, needs=(master_key,))
    rotate = actions.add_parser("rotate-key", help="re-wrap every data key with the current master key")
    rotate.set_defaults(run=_identity_rotate, store=WRITE, needs=(master_key,))
    for reader in (show, find):
        reader.add_argument("--role", required=True, choices=[r.value for r in Role])
        reader.add_argument("--agency", required=True, help="the reading agency's id")

    retention = commands.add_parser(
        "retention", help="erase the identities of journeys ended long enough ago, except those on hold"
    )
    retention.add_argument("action", choices=["apply"])
    retention.add_argument(
        "--after-days", type=int,
        help=f"how long after a journey ends its identity is kept (default: {variable_for('retention_days')}'s)",
    )  # fmt: skip
    retention.add_argument("--agency", default="ledger-operator")
    retention.set_defaults(run=_retention, store=WRITE)

    simulate = commands.add_parser(
        "simulate", help="record a whole simulated season through the ledger's real commands"
    )
    simulate.add_argument("--pilgrims", type=int, required=True)
    simulate.add_argument("--season", type=int, default=SIMULATED_SEASON, help="to simulate (default: %(default)s)")
    simulate.add_argument("--seed", type=int, default=1)
    simulate.add_argument(
        "--next-season-pilgrims",
        type=int,
        default=0,
        help="also simulate the next season with this many pilgrims, registering while this one is in the Hajj",
    )
    simulate.set_defaults(run=_simulate, store=WRITE, needs=(master_key,), batch=True)

    publish = commands.add_parser(
        "publish", help="relay the log to NATS JetStream, while this node leads the relay (run it on one node or more)"
    )
    publish.set_defaults(run=_publish, store=READ)

    nats_users = commands.add_parser(
        "nats-users",
        help="write the NATS server's users for the relay's stream: the relay publishes, each agency reads its own",
    )
    nats_users.add_argument(
        "--agency", action="append", default=[], metavar="ROLE:ID", help="an agency, e.g. mission:mission-IDN-00007"
    )
    nats_users.add_argument(
        "--registry", action="store_true", help="every agency of the registry whose key is not revoked (`agency add`)"
    )
    nats_users.add_argument("--config", type=Path, required=True, help="the server's authorization block, written")
    nats_users.add_argument(
        "--credentials", type=Path, required=True,
        help="the users' passwords (JSON, owner-only): kept for the users in it, made for the others",
    )  # fmt: skip
    nats_users.add_argument("--relay-user", default="relay", help="the relay's user name (default relay)")
    nats_users.set_defaults(run=_nats_users)

    audit_cli.register(commands)
    # The read side, the migrations, the HTTP face and the demo add their own commands (entry points), so this module
    # imports none of them. Only when the command line may name one of theirs: finding entry points takes longer than
    # the rest of the parser.
    if not (argv and argv[0] in commands.choices):
        from importlib.metadata import entry_points

        for plugin in entry_points(group="hajj_ledger.commands"):
            plugin.load()(commands)
    return parser


def _publish(args: argparse.Namespace) -> int:
    import threading

    from hajj_ledger.leadership import lead, leader_lock, stop_on_signals
    from hajj_ledger.logs import configure_logging
    from hajj_ledger.relay import publish

    configure_logging()
    stop = threading.Event()
    stop_on_signals(stop)
    lead({"relay": publish}, stop, leader_lock(role="relay"))
    return 0


def _nats_users(args: argparse.Namespace) -> int:
    from hajj_ledger.nats_users import parse_agency, registered, write_users
    from hajj_ledger.relay import Target

    agencies = [parse_agency(text) for text in args.agency]
    if args.registry:
        from hajj_ledger.ledger import JourneyLedger

        ledger = JourneyLedger(create_tables=False)
        try:
            agencies += registered(ledger)
        finally:
            ledger.close()
    if not agencies:
        raise ValidationError("agency", "give agencies (--agency ROLE:ID, repeated) or --registry")
    target = Target.configured()
    written, left = write_users(agencies, target, args.config, args.credentials, args.relay_user)
    print(f"{len(written) + 1} users for stream {target.stream} ({target.root}.>) written to {args.config}; "
          f"their passwords are in {args.credentials} (never printed)")  # fmt: skip
    for agency in left:
        print(f"  no user for {agency.role} {agency.agency_id}: its role is told of no event")
    return 0


def _record(args: argparse.Namespace) -> int:
    from hajj_ledger.domain.parsing import parse_command_json
    from hajj_ledger.domain.vocabulary import Actor
    from hajj_ledger.ledger import JourneyLedger

    text = args.json if args.json is not None else sys.stdin.read()
    command = parse_command_json(text)
    with JourneyLedger() as ledger:
        outcome = ledger.record(command, Actor(args.agency, Role(args.role)))
    print(json.dumps(outcome_json(outcome)))
    return 0


def moment(text: str) -> datetime:
    """A command-line time: ISO 8601 with its zone (a time without one is ambiguous by hours)."""
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an ISO 8601 time, e.g. 2025-06-05T08:30:00Z") from None
    if value.utcoffset() is None:
        raise argparse.ArgumentTypeError(f"{text!r} has no time zone; add Z for UTC")
    return value.astimezone(UTC)


def _erase(args: argparse.Namespace) -> int:
    from hajj_ledger.domain.vocabulary import Actor
    from hajj_ledger.identities import erase_identity
    from hajj_ledger.ledger import JourneyLedger

    with JourneyLedger() as ledger:
        journey_id = reads_cli.journey_id(ledger, args.id, args.season, archived=True)
        outcome = erase_identity(ledger, journey_id, args.reason, Actor(args.agency, Role.MINISTRY))
        print(json.dumps(outcome_json(outcome)))
        return 0


def _identity_show(args: argparse.Namespace) -> int:
    from hajj_ledger.domain.vocabulary import Actor
    from hajj_ledger.identities import identity_of
    from hajj_ledger.ledger import JourneyLedger

    with JourneyLedger(create_tables=False) as ledger:  # a reader creates nothing
        journey_id = reads_cli.journey_id(ledger, args.id, args.season)
        identity = identity_of(ledger, journey_id, Actor(args.agency, Role(args.role)))
        print(json.dumps({"journey_id": str(journey_id), **identity.model_dump(mode="json")}, ensure_ascii=False))
        return 0


def _identity_find(args: argparse.Namespace) -> int:
    from hajj_ledger.domain.vocabulary import Actor
    from hajj_ledger.identities import find_by_name, find_by_passport
    from hajj_ledger.ledger import JourneyLedger

    with JourneyLedger(create_tables=False) as ledger:  # a reader creates nothing
        reader = Actor(args.agency, Role(args.role))
        if args.passport is not None:
            if not args.country:
                raise ValidationError("country", "is required with --passport (the passport's issuing country)")
            found = find_by_passport(ledger, args.passport, args.country, reader)
        else:
            found = find_by_name(ledger, args.name, reader)
        for journey_id in found:
            print(journey_id)
        return 0 if found else 1


def _identity_rotate(args: argparse.Namespace) -> int:
    from hajj_ledger.identities import rotate_master_key
    from hajj_ledger.ledger import JourneyLedger

    with JourneyLedger() as ledger:
        rewrapped = rotate_master_key(ledger)
    print(f"{rewrapped:,} data keys re-wrapped with the current master key.")
    return 0


def _retention(args: argparse.Namespace) -> int:
    from hajj_ledger.domain.vocabulary import Actor
    from hajj_ledger.identities import apply_retention
    from hajj_ledger.ledger import JourneyLedger

    days = args.after_days if args.after_days is not None else settings().retention_days
    if days < 0:
        raise ValidationError("after_days", "must not be negative")
    with JourneyLedger() as ledger:
        cutoff = datetime.now(UTC) - timedelta(days=days)
        report = apply_retention(ledger, cutoff, Actor(args.agency, Role.MINISTRY))
        print(f"Identities of journeys ended before {cutoff:%Y-%m-%d}: {report.erased:,} erased.")
        print(f"Kept: {report.kept:,} not ended or ended since; {len(report.held):,} under a legal hold.")
        for journey_id, holds in list(report.held.items())[:20]:
            print(f"  held: journey {journey_id}: {', '.join(holds)}")
        for refusal in report.refused[:20]:
            print(f"  refused: {refusal}")
        return 0 if not report.refused else 1


def _rules(args: argparse.Namespace) -> int:
    from hajj_ledger.domain.catalogue import TABLES
    from hajj_ledger.domain.catalogue_doc import render_markdown

    for title, steps in TABLES.items():
        print(f"{title}\n\n" + render_markdown(steps))
    return 0


def _settings(args: argparse.Namespace) -> int:
    from hajj_ledger.settings import render_markdown

    print(render_markdown(), end="")
    return 0


def _simulate(args: argparse.Namespace) -> int:
    from hajj_ledger.ledger import JourneyLedger
    from hajj_ledger.simulation.season import progress_bar, simulate

    if args.pilgrims < 1:
        raise ValidationError("pilgrims", "must be at least 1")
    if args.next_season_pilgrims < 0:
        raise ValidationError("next_season_pilgrims", "must not be negative")
    with JourneyLedger() as ledger:
        bar = progress_bar(sys.stderr, args.pilgrims + args.next_season_pilgrims)
        summary = simulate(ledger, args.pilgrims, args.season, args.seed, bar, args.next_season_pilgrims)
        print("\n".join(summary.lines()))
        return 0 if not summary.refused else 1


def outcome_json(outcome: Outcome) -> dict[str, Any]:
    return {
        "command_id": str(outcome.command_id),
        "event": outcome.event,
        "aggregate_id": str(outcome.aggregate_id),
        "position": outcome.position,
        "events": list(outcome.events),
        "repeated": outcome.repeated,
    }


def _error_json(error: LedgerError) -> dict[str, Any]:
    body: dict[str, Any] = {"error": error.kind, "detail": error.message}
    if isinstance(error, ValidationError):
        body["fields"] = [{"field": f, "reason": r} for f, r in error.problems]
    return body


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
