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

from hajj_ledger.domain.vocabulary import SIMULATED_SEASON
from hajj_ledger.preflight import WRITE, invocation, master_key

if TYPE_CHECKING:
    from sqlalchemy import Connection

    from hajj_ledger.domain.journey import Journey
    from hajj_ledger.ledger import JourneyLedger


def register(commands: Any) -> None:
    demo = commands.add_parser(
        "demo", help="simulate a demo season into an empty store, then show what it holds and where to look"
    )
    demo.add_argument("--pilgrims", type=int, default=3000)
    demo.add_argument("--season", type=int, default=SIMULATED_SEASON)
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
            market = _market(connection)
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
    print("\n".join(market))


def _market(connection: Connection) -> list[str]:
    """The market from its views: offers by season, kind and site, the contracts on them, the buildings' beds and
    the buses on the road (overdue as of now)."""
    from datetime import UTC, datetime

    import sqlalchemy as sa

    from hajj_ledger.projections.building_occupancy import building_occupancy
    from hajj_ledger.projections.contracts import contracts
    from hajj_ledger.projections.service_offers import service_offers
    from hajj_ledger.projections.trips_on_road import trips_on_road

    offers, signed = service_offers.view(), contracts.view()
    by_offer = sa.select(
        offers.c.season, offers.c.kind, offers.c.site, sa.func.count(), sa.func.sum(offers.c.places),
        sa.func.sum(offers.c.contracted), sa.func.sum(offers.c.free),
    ).where(offers.c.status == "published").group_by(offers.c.season, offers.c.kind, offers.c.site)  # fmt: skip
    by_contract = sa.select(
        signed.c.season, sa.func.count(), sa.func.sum(signed.c.places), sa.func.sum(signed.c.used),
        sa.func.sum(signed.c.free),
    ).where(signed.c.status == "signed").group_by(signed.c.season)  # fmt: skip
    lines = []
    offered = connection.execute(by_offer.order_by(offers.c.season, offers.c.kind, offers.c.site)).all()
    held = {season: row for season, *row in connection.execute(by_contract)}
    for season in sorted({row.season for row in offered}):
        lines.append(
            f"\nThe market of {season} (read models service_offers and contracts): places offered, contracted and free"
        )
        lines.append(f"  {'kind':<18}{'site':<12}{'offers':>8}{'places':>10}{'contracted':>12}{'free':>10}")
        for _, kind, site, count, places, contracted, free in (r for r in offered if r.season == season):
            lines.append(f"  {kind:<18}{site:<12}{count:>8,}{places:>10,}{contracted:>12,}{free:>10,}")
        count, places, used, free = held.get(season, (0, 0, 0, 0))
        lines.append(f"  contracts signed {count:,}: places {places:,}, used by journeys {used:,}, free {free:,}")
    beds = building_occupancy.view()
    by_building = sa.select(
        beds.c.city, sa.func.count(), sa.func.sum(beds.c.beds), sa.func.sum(beds.c.occupied), sa.func.sum(beds.c.free),
        sa.func.sum(sa.case((beds.c.licence == "suspended", 1), else_=0)),
        sa.func.sum(sa.case((beds.c.inspection == "passed", 1), else_=0)),
    ).group_by(beds.c.city).order_by(beds.c.city)  # fmt: skip
    housed = connection.execute(by_building).all()
    if housed:
        lines.append("\nPilgrim housing (read model building_occupancy): beds occupied now and free")
        lines.append(f"  {'city':<12}{'buildings':>10}{'beds':>10}{'occupied':>10}{'free':>10}{'suspended':>11}"
                     f"{'inspected':>11}")  # fmt: skip
        for city, count, total, occupied, free, suspended, passed in housed:
            lines.append(f"  {city:<12}{count:>10,}{total:>10,}{occupied:>10,}{free:>10,}{suspended:>11,}{passed:>11,}")
    road = trips_on_road.readable().subquery()
    by_status = sa.select(
        sa.func.count(), sa.func.sum(sa.case((road.c.status == "on_road", 1), else_=0)),
        sa.func.sum(sa.case((road.c.overdue, 1), else_=0)),
    )  # fmt: skip
    left, on_road, overdue = connection.execute(by_status, {"now": datetime.now(UTC)}).one()
    if left:
        lines.append(
            f"\nBuses (read model trips_on_road): {left:,} left, {left - on_road:,} arrived, {on_road:,} on the road, "
            f"{overdue:,} of them overdue"
        )
    return lines


def _a_whole_journey(ledger: JourneyLedger) -> Journey | None:
    """The first journey in the log that ran from registration to departure."""
    from hajj_ledger.domain.vocabulary import Stage

    for row in ledger.recorder.select_notifications(start=1, limit=2000):
        if row.topic.endswith("Journey.Registered"):
            journey = ledger.journey(row.originator_id)  # type: ignore[arg-type]
            if journey.stage == Stage.DEPARTED:
                return journey
    return None
