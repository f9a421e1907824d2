"""The identity use cases: who a pilgrim is (for a reader the identity table allows), finding journeys by passport
or by name through the blind indexes, re-wrapping the data keys, and erasing identities when their time is up.

The identities themselves are kept in the vault (identity/vault.py), apart from the events; recording or correcting
one is a command like any other (the ledger seals it in the same transaction as its event)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from uuid import UUID, uuid4

from hajj_ledger.domain.access import check_identity_reader, check_name_searcher
from hajj_ledger.domain.catalogue import SCOPE
from hajj_ledger.domain.command_base import Identity
from hajj_ledger.domain.commands import Command, EraseIdentity
from hajj_ledger.domain.errors import IdentityErasedError, IllegalStepError, NotFoundError, ValidationError
from hajj_ledger.domain.journey import Journey
from hajj_ledger.domain.season import Season
from hajj_ledger.domain.season_commands import EraseSeasonIdentities
from hajj_ledger.domain.vocabulary import Actor, SeasonStage
from hajj_ledger.identity.spelling import name_keys
from hajj_ledger.ledger import JourneyLedger, Outcome


@dataclass
class RetentionReport:
    erased: int = 0
    kept: int = 0  # not ended, or ended too recently
    held: dict[UUID, list[str]] = field(default_factory=dict)  # ended long enough, but under a legal hold
    refused: list[str] = field(default_factory=list)


def identity_of(ledger: JourneyLedger, journey_id: UUID, reader: Actor) -> Identity:
    """Who the pilgrim is, for a reader the identity table allows; says when and by whom it was erased."""
    journey = ledger.journey(journey_id)
    check_identity_reader(reader.role, reader.agency_id, journey)
    sealed = ledger.store.select_sealed(journey_id)
    if sealed is not None:
        return ledger.keys.open(sealed)
    erased: list[Journey.IdentityErased | Season.SeasonIdentitiesErased] = [
        e for e in ledger.history(journey_id) if isinstance(e, Journey.IdentityErased)
    ]
    erased += [  # erased while its season was archived (and since restored)
        e
        for e in ledger.events.get(Season.create_id(journey.season))
        if isinstance(e, Season.SeasonIdentitiesErased) and str(journey_id) in e.journey_ids
    ]
    if erased:
        last = erased[-1]
        raise IdentityErasedError(
            f"the identity of journey {journey_id} was erased at {last.recorded_at.isoformat()} by "
            f"{last.stamp.role}:{last.stamp.agency_id} ({last.reason})"
        )
    raise NotFoundError(f"journey {journey_id} has no identity in the vault")


def find_by_passport(ledger: JourneyLedger, number: str, country: str, reader: Actor) -> list[UUID]:
    """Journeys of a passport, through the blind index (nothing is decrypted), that the reader may know of."""
    check_identity_reader(reader.role, reader.agency_id, None)
    found = ledger.store.select_by_passport(ledger.keys.passport_index(number, country))
    if reader.role not in SCOPE:
        return found
    owner = SCOPE[reader.role][0]
    return [j for j in found if getattr(ledger.journey(j), owner) == reader.agency_id]


def find_by_name(ledger: JourneyLedger, name: str, reader: Actor, limit: int = 100) -> list[UUID]:
    """The reader's own pilgrims whose names match every part of `name`, in any script or spelling.

    The search runs on the blind name index keyed by the reader's scope: another mission's pilgrims cannot
    match, and nothing is decrypted."""
    check_name_searcher(reader.role)
    keys = name_keys(name)
    if not keys:
        raise ValidationError("name", "no letters to search for")
    return ledger.store.select_by_names(ledger.keys.name_index(reader.agency_id, keys), limit)


def rotate_master_key(ledger: JourneyLedger) -> int:
    """Re-wrap every data key with the current master key; the encrypted identities are not touched."""
    stale = [s for s in ledger.store.select_all_sealed() if s.key_id != ledger.keys.current]
    ledger.store.replace_sealed([ledger.keys.rewrap(s) for s in stale])
    return len(stale)


def apply_retention(ledger: JourneyLedger, ended_before: datetime, by: Actor) -> RetentionReport:
    """Erase the identities of journeys that ended before `ended_before`, except those under a legal hold: in the hot
    store by each journey's `IdentityErased`; of an archived season, read from its archive and recorded on the
    season (`SeasonIdentitiesErased`), its journeys' histories being out of the hot store."""
    report = RetentionReport()
    due: list[tuple[Command, Actor]] = []
    archived: list[UUID] = []
    for journey_id in ledger.store.select_vault_journeys():
        try:
            journey = ledger.journey(journey_id)
        except NotFoundError:
            archived.append(journey_id)
            continue
        if _due(journey, ended_before, report):
            due.append((_erase_command(journey_id, "retention"), by))
    for season, journeys in _in_archives(ledger, archived, report).items():
        ids = [journey.id for journey in journeys if _due(journey, ended_before, report)]
        due.extend(
            (_erase_archived_command(season, ids[at : at + 500], "retention"), by) for at in range(0, len(ids), 500)
        )
    for start in range(0, len(due), 500):
        for (command, _), result in zip(
            due[start : start + 500], ledger.record_batch(due[start : start + 500]), strict=True
        ):
            erased = len(command.journey_ids) if isinstance(command, EraseSeasonIdentities) else 1
            if isinstance(result, Outcome):
                report.erased += erased
            else:
                report.refused.append(str(result))
    return report


def erase_identity(ledger: JourneyLedger, journey_id: UUID, reason: str, by: Actor) -> Outcome:
    """Erase one journey's identity (a pilgrim's right): by the journey's own event, or, for a journey of an archived
    season, on the season after its legal holds are read from the archive."""
    if ledger.store.select_aggregate_notifications(journey_id):
        return ledger.record(_erase_command(journey_id, reason), by)
    report = RetentionReport()
    for season, (journey, *_) in _in_archives(ledger, [journey_id], report).items():
        if journey.holds:
            holds = ", ".join(journey.holds)
            why = f"refused while under legal hold: {holds} (its season is archived: restore it to lift a hold)"
            raise IllegalStepError("IdentityErased", journey.stage, [], reason=why)
        return ledger.record(_erase_archived_command(season, [journey_id], reason), by)
    raise NotFoundError(" ".join(report.refused) or f"journey {journey_id} not found")


def _due(journey: Journey, ended_before: datetime, report: RetentionReport) -> bool:
    """Whether the journey's identity is due for erasure; counted in `report` if not."""
    if journey.ended_at is None or journey.ended_at >= ended_before:
        report.kept += 1
        return False
    if journey.holds:
        report.held[journey.id] = list(journey.holds)
        return False
    return True


def _erase_command(journey_id: UUID, reason: str) -> EraseIdentity:
    return EraseIdentity(command_id=uuid4(), occurred_at=datetime.now(UTC), journey_id=journey_id, reason=reason)


def _erase_archived_command(season: int, journey_ids: list[UUID], reason: str) -> EraseSeasonIdentities:
    return EraseSeasonIdentities(
        command_id=uuid4(), occurred_at=datetime.now(UTC), season=season, journey_ids=journey_ids, reason=reason
    )


def _in_archives(ledger: JourneyLedger, journey_ids: list[UUID], report: RetentionReport) -> dict[int, list[Journey]]:
    """The journeys of `journey_ids` found in the archives of the seasons taken out of the hot store, by season;
    each not found, or in an archive that cannot be opened, is named in `report.refused`."""
    from hajj_ledger.archive.reading import open_season
    from hajj_ledger.archive.seasons import closed_seasons
    from hajj_ledger.audit.chain import signing_keys

    found: dict[int, list[Journey]] = {}
    left = set(journey_ids)
    closed = [c for c in closed_seasons(ledger) if left and ledger.season(c.season).stage is SeasonStage.ARCHIVED]
    keys = signing_keys(ledger.database_url, required=False, create=False) if closed else None
    for season in closed:
        if keys is None:
            report.refused.append(f"season {season.season}'s archive cannot be verified without the signing key")
            continue
        with JourneyLedger(open_season(season.season, season.url, keys.public), create_tables=False) as archive:
            for journey_id in sorted(left):
                try:
                    found.setdefault(season.season, []).append(archive.journey(journey_id))
                except NotFoundError:
                    continue
        left -= {journey.id for journey in found.get(season.season, [])}
    report.refused.extend(f"journey {j} is neither in the store nor in a closed season's archive" for j in sorted(left))
    return found
