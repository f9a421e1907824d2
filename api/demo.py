"""`hajj-ledger demo` (what `make run` runs): a simulated season into an empty store, the read models brought up to
it, the hash chain sealed, and one pilgrim's whole journey shown, with where to look next.

The tour of the whole house is the one command that needs every room: the simulator, the migrations and the read
models. It lives with the HTTP face, the one side that may import all of them (what `make run` runs next is
`serve`), and is an entry point of its own (`hajj_ledger.commands` in pyproject.toml), which no module imports.
"""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING, Any

from hajj_ledger.domain.vocabulary import DEFAULT_SEASON
from hajj_ledger.preflight import WRITE, invocation, master_key

if TYPE_CHECKING:
    from hajj_ledger.domain.journey import Journey
    from hajj_ledger.ledger import JourneyLedger


def register(commands: Any) -> None:
    demo = commands.add_parser(
        "demo", help="simulate a demo season into an empty store, then show what it holds and where to look"
    )
    demo.add_argument("--pilgrims", type=int, default=3000)
    demo.add_argument("--season", type=int, default=DEFAULT_SEASON)
    demo.add_argument("--seed", type=int, default=1)
    demo.set_defaults(run=_demo, store=WRITE, needs=(master_key,), batch=True)


def _demo(args: argparse.Namespace) -> int:
    from hajj_ledger.audit.reads import print_history
    from hajj_ledger.ledger import JourneyLedger
    from hajj_ledger.migrations.cli import migrate
    from hajj_ledger.simulation.season import progress_bar, simulate

    cli = invocation()
    ledger = JourneyLedger()
    if ledger.head() == 0:
        print(
            f"The store is empty: simulating season {args.season} with {args.pilgrims:,} pilgrims (seed {args.seed})."
        )
        summary = simulate(
            ledger, args.pilgrims, args.season, args.seed, progress=progress_bar(sys.stderr, args.pilgrims)
        )
        print("\n".join(summary.lines()))
    else:
        print(f"The store already holds {ledger.head():,} events; nothing simulated.")
    migrate(args)
    _show_read_models()
    _seal(ledger)
    journey = _a_whole_journey(ledger)
    if journey is not None:
        print(f"\nOne pilgrim's journey: pilgrim {journey.pilgrim_id}, journey {journey.id}\n")
        print_history(ledger.history(journey.id), as_json=False)
        print(f"\nTry: {cli} history {journey.pilgrim_id} --season {journey.season} --json")
    print(f"     {cli} rules      (who records what)")
    print(f"     {cli} status     (the read models; `project` follows the log live)")
    print(f"     {cli} verify     (the auditors' view; also `trail --limit 5`, `proof 1`)")
    return 0


def _seal(ledger: JourneyLedger) -> None:
    """Chain the log up to the head and sign a checkpoint there, so that `verify` and proofs work at once."""
    from hajj_ledger.audit.chain import Chain, signing_keys

    chain = Chain(ledger, signing_keys(required=False))
    sealed = chain.seal_all()
    latest = chain.checkpoint() if chain.keys is not None else None
    signed = f"checkpoint at position {latest.position:,}, key {latest.key_id}" if latest else "no signing key"
    print(f"\nThe hash chain: {sealed:,} events sealed now; {signed}.")


def _show_read_models() -> None:
    """Bring the read models up to the head, then show the season funnel from them."""
    from hajj_ledger.domain.vocabulary import Stage, hijri
    from hajj_ledger.projections import FOLLOWED
    from hajj_ledger.projections.runner import Runner
    from hajj_ledger.projections.season_funnel import funnel, last_days

    runner = Runner(FOLLOWED)
    try:
        runner.run(once=True)
        with runner.engine.connect() as connection:
            seasons = {
                season: (day, funnel(connection, season=season)) for season, day in last_days(connection).items()
            }
    finally:
        runner.close()
    for season, (day, reached) in seasons.items():
        print(
            f"\nThe season funnel of {season} (read model season_funnel), by {day} in Makkah ({hijri(day)}): "
            "journeys that reached each stage"
        )
        for stage in Stage:
            if reached.get(stage):
                print(f"  {stage:<16}{reached[stage]:>10,}")


def _a_whole_journey(ledger: JourneyLedger) -> Journey | None:
    """The first journey in the log that ran from registration to departure."""
    from hajj_ledger.domain.vocabulary import Stage

    for row in ledger.recorder.select_notifications(start=1, limit=2000):
        if row.topic.endswith("Journey.Registered"):
            journey = ledger.journey(row.originator_id)  # type: ignore[arg-type]
            if journey.stage == Stage.DEPARTED:
                return journey
    return None
