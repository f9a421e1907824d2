"""The identity use cases: who a pilgrim is (for a reader the identity table allows), finding journeys by passport
or by name through the blind indexes, re-wrapping the data keys, and erasing identities when their time is up.

The identities themselves are kept in the vault (identity/vault.py), apart from the events; recording or correcting
one is a command like any other (the ledger seals it in the same transaction as its event)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from uuid import UUID, uuid4

from hajj_ledger.domain.catalogue import SCOPE, check_identity_reader, check_name_searcher
from hajj_ledger.domain.commands import Command, EraseIdentity, Identity
from hajj_ledger.domain.errors import IdentityErasedError, NotFoundError, ValidationError
from hajj_ledger.domain.journey import Journey
from hajj_ledger.domain.vocabulary import Actor
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
    check_identity_reader(reader.role, reader.agency_id, ledger.journey(journey_id))
    sealed = ledger.store.select_sealed(journey_id)
    if sealed is not None:
        return ledger.keys.open(sealed)
    erased = [e for e in ledger.history(journey_id) if isinstance(e, Journey.IdentityErased)]
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
    """Erase the identities of journeys that ended before `ended_before`, except those under a legal hold."""
    report = RetentionReport()
    due: list[tuple[Command, Actor]] = []
    for journey_id in ledger.store.select_vault_journeys():
        journey = ledger.journey(journey_id)
        if journey.ended_at is None or journey.ended_at >= ended_before:
            report.kept += 1
        elif journey.holds:
            report.held[journey_id] = list(journey.holds)
        else:
            erase = EraseIdentity(
                command_id=uuid4(), occurred_at=datetime.now(UTC), journey_id=journey_id, reason="retention"
            )
            due.append((erase, by))
    for start in range(0, len(due), 500):
        for result in ledger.record_batch(due[start : start + 500]):
            if isinstance(result, Outcome):
                report.erased += 1
            else:
                report.refused.append(str(result))
    return report
