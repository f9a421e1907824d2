"""The command line's reads of a journey's past (`hajj-ledger history`, `trail`, `as-of`; the parser is
hajj_ledger.cli's), and the journey a pilgrim id names there. Each imports what it needs when it runs, as the
command line does."""

from __future__ import annotations

import dataclasses
import json
import sys
from typing import TYPE_CHECKING, Any
from uuid import UUID

from hajj_ledger.domain.errors import NotFoundError, ValidationError
from hajj_ledger.domain.vocabulary import SeasonStage

if TYPE_CHECKING:
    import argparse

    from hajj_ledger.audit.as_of import PastJourney
    from hajj_ledger.audit.reads import Entry
    from hajj_ledger.ledger import JourneyLedger


def run_history(args: argparse.Namespace) -> int:
    from hajj_ledger.audit.reads import print_history
    from hajj_ledger.ledger import JourneyLedger

    with JourneyLedger(create_tables=False) as ledger:  # a reader creates nothing
        events = ledger.history(journey_id(ledger, args.id, args.season))
        print_history(events, as_json=args.json)
        return 0


def run_trail(args: argparse.Namespace) -> int:
    from hajj_ledger.audit.reads import TrailQuery, trail
    from hajj_ledger.ledger import JourneyLedger

    with JourneyLedger(create_tables=False) as ledger:  # a reader creates nothing
        query = TrailQuery(
            aggregate_id=aggregate_id(ledger, args.id, args.season) if args.id else None, agency_id=args.agency,
            event=args.event, recorded_from=args.recorded_from, recorded_until=args.recorded_until,
            from_position=args.from_position, until_position=args.until_position,
        )  # fmt: skip
        page = trail(ledger, query, args.after, args.limit)
        for entry in page.entries:
            row = entry_json(entry)
            if args.json:
                print(json.dumps(row, ensure_ascii=False))
            else:
                details = " ".join(f"{k}={v}" for k, v in row["fields"].items())
                print(
                    f"{row['position']:>8}  {row['event']:<22} {row['aggregate']} {row['aggregate_id']} "
                    f"v{row['version']}  happened {row['occurred_at']}  recorded {row['recorded_at']}  "
                    f"by {row['role']}:{row['agency_id']}  command {row['command_id']}  "
                    f"correlation {row['correlation_id'] or '-'}  {details}"
                )
        if page.next_after is not None:
            print(f"more: --after {page.next_after}", file=sys.stderr)
        return 0


def entry_json(entry: Entry) -> dict[str, Any]:
    from hajj_ledger.audit.reads import plain

    return {k: v if k == "fields" else plain(v) for k, v in dataclasses.asdict(entry).items()}


def run_as_of(args: argparse.Namespace) -> int:
    from hajj_ledger.audit.as_of import AsOf, journey_as_of
    from hajj_ledger.ledger import JourneyLedger

    with JourneyLedger(create_tables=False) as ledger:  # a reader creates nothing
        at = AsOf(args.position, args.recorded_at, args.occurred_at)
        past = journey_as_of(ledger, journey_id(ledger, args.id, args.season), at)
        print(json.dumps(past_journey_json(past), ensure_ascii=False))
        return 0


def past_journey_json(past: PastJourney) -> dict[str, Any]:
    from hajj_ledger.audit.reads import plain

    state = {k: v if isinstance(v, list | dict) else plain(v) for k, v in past.state().items()}
    return {
        "journey": state,
        "position": past.position,
        "events": past.events,
        "refused": [{**entry_json(entry), "reason": reason} for entry, reason in past.refused],
    }


def aggregate_id(ledger: JourneyLedger, given: UUID, season: int | None) -> UUID:
    """A journey (or a pilgrim's, in the season) or a trip."""
    try:
        return journey_id(ledger, given, season)
    except NotFoundError:
        try:
            return ledger.trip(given).id
        except NotFoundError:
            season = season_or_current(ledger, season)
            raise NotFoundError(
                f"{given} is neither a journey, a pilgrim with a journey in season {season}, nor a trip"
            ) from None


def journey_id(ledger: JourneyLedger, given: UUID, season: int | None, *, archived: bool = False) -> UUID:
    """A journey's id, or the journey's of a pilgrim in `season` (None: the current season, asked only then). With
    `archived`, a pilgrim's journey in a season taken out of the hot store is named too (its id is the pilgrim's in
    that season; whether it is in the archive is for the caller to find)."""
    from hajj_ledger.domain.journey import Journey

    try:
        return ledger.journey(given).id
    except NotFoundError:
        pass
    season = season_or_current(ledger, season)
    journey_id = Journey.create_id(season, given)
    try:
        return ledger.journey(journey_id).id
    except NotFoundError:
        if archived and ledger.season(season).stage is SeasonStage.ARCHIVED:
            return journey_id if ledger.store.select_sealed(journey_id) is not None else given
        raise NotFoundError(f"{given} is neither a journey nor a pilgrim with a journey in season {season}") from None


def season_or_current(ledger: JourneyLedger, given: int | None) -> int:
    """The season given, else the current one by the calendars; refused, naming --season, when none was opened."""
    if given is not None:
        return given
    current = ledger.current_season()
    if current is None:
        raise ValidationError("--season", "no season has been opened, so there is no current one: give --season")
    return current
