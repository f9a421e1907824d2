"""The identity vault's retention keeps applying once a season is closed: the identities of an archived season's
journeys are erased as the hot store's are (legal holds kept), the erasure recorded on the season, on both stores."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from uuid import UUID

import pytest

from hajj_ledger.archive.reading import open_season
from hajj_ledger.archive.seasons import close, restore
from hajj_ledger.domain.errors import IdentityErasedError, IllegalStepError, ValidationError
from hajj_ledger.domain.vocabulary import Role
from hajj_ledger.identities import apply_retention, erase_identity, identity_of
from hajj_ledger.ledger import JourneyLedger
from tests.integration.test_closing import CLOSED, OPEN, _keys, seasons  # noqa: F401
from tests.support import actor, command, run_cli

LATER = datetime.now(UTC) + timedelta(days=3650)


def _vault_journeys(ledger: JourneyLedger, season: int, archive: Path) -> list[UUID]:
    """The journeys of `season` (read from its archive) that have an identity in the vault."""
    with JourneyLedger(open_season(season, str(archive), _keys().public), create_tables=False) as opened:
        in_vault = set(ledger.store.select_vault_journeys())
        return sorted(j for j in in_vault if _has(opened, j))


def _has(ledger: JourneyLedger, journey_id: UUID) -> bool:
    try:
        ledger.journey(journey_id)
    except Exception:
        return False
    return True


def _hold(ledger: JourneyLedger, journey_id: UUID, hold: str, role: Role) -> None:
    """A legal hold placed an hour after the journey's last step (before its season closes)."""
    at = ledger.journey(journey_id).last_occurred_at + timedelta(hours=1)
    ledger.record(command("LegalHoldPlaced", journey_id=journey_id, hold=hold, occurred_at=at), actor(role))


def test_retention_erases_an_archived_seasons_identities_except_those_on_hold(
    seasons: JourneyLedger,  # noqa: F811
    tmp_path: Path,
) -> None:
    held = next(j for j in seasons.store.select_vault_journeys() if seasons.journey(j).season == CLOSED)
    _hold(seasons, held, "investigation", Role.MINISTRY)
    archive = tmp_path / "archive"
    close(seasons, CLOSED, str(archive), _keys())
    archived = _vault_journeys(seasons, CLOSED, archive)
    assert held in archived and len(archived) > 1
    ended = [j for j in archived if j != held]

    report = apply_retention(seasons, LATER, actor(Role.MINISTRY))

    assert report.refused == [] and report.held.get(held) == ["investigation"]
    assert all(seasons.store.select_sealed(j) is None for j in ended)
    assert seasons.store.select_sealed(held) is not None
    erased = [e for e in seasons.events.get(seasons.season(CLOSED).id) if type(e).__name__ == "SeasonIdentitiesErased"]
    assert sorted(UUID(j) for e in erased for j in e.journey_ids) == sorted(ended)  # type: ignore[attr-defined]
    assert apply_retention(seasons, LATER, actor(Role.MINISTRY)).erased == 0  # nothing twice


def test_one_archived_journeys_identity_is_erased_on_request_and_a_held_one_is_refused(
    seasons: JourneyLedger,  # noqa: F811
    tmp_path: Path,
) -> None:
    first, second = [j for j in seasons.store.select_vault_journeys() if seasons.journey(j).season == CLOSED][:2]
    _hold(seasons, second, "death_identification", Role.MOH)
    close(seasons, CLOSED, str(tmp_path / "archive"), _keys())

    erase_identity(seasons, first, "pilgrim_request", actor(Role.MINISTRY))
    assert seasons.store.select_sealed(first) is None
    with pytest.raises(IllegalStepError, match="legal hold: death_identification"):
        erase_identity(seasons, second, "pilgrim_request", actor(Role.MINISTRY))
    assert seasons.store.select_sealed(second) is not None

    restore(seasons, CLOSED, str(tmp_path / "archive"), _keys().public)  # its journeys back: the erasure still told
    with pytest.raises(IdentityErasedError, match=r"erased at .* by ministry:.* \(pilgrim_request\)"):
        identity_of(seasons, first, actor(Role.MINISTRY))
    assert identity_of(seasons, second, actor(Role.MINISTRY)).passport_number


def test_the_command_line_erases_an_archived_pilgrims_identity_and_applies_retention(
    seasons: JourneyLedger,  # noqa: F811
    tmp_path: Path,
    store_url: str,
) -> None:
    first, *_ = [j for j in seasons.store.select_vault_journeys() if seasons.journey(j).season == CLOSED]
    pilgrim = seasons.journey(first).pilgrim_id
    close(seasons, CLOSED, str(tmp_path / "archive"), _keys())
    env = {"HAJJ_LEDGER_DATABASE_URL": store_url}

    erased = run_cli("erase", str(pilgrim), "--season", str(CLOSED), "--reason", "pilgrim_request", env=env)

    assert erased.returncode == 0, erased.stderr
    assert seasons.store.select_sealed(first) is None
    retention = run_cli("retention", "apply", "--after-days", "0", env=env)
    assert retention.returncode == 0, retention.stdout + retention.stderr
    assert not [j for j in seasons.store.select_vault_journeys() if j not in _open_season_journeys(seasons)]


def _open_season_journeys(ledger: JourneyLedger) -> set[UUID]:
    """The journeys of the season still open (in the hot store) with an identity in the vault."""
    return {j for j in ledger.store.select_vault_journeys() if _has(ledger, j) and ledger.journey(j).season == OPEN}


def test_a_journey_still_in_the_hot_store_is_not_erased_as_archived(
    seasons: JourneyLedger,  # noqa: F811
    tmp_path: Path,
) -> None:
    live = next(j for j in seasons.store.select_vault_journeys() if seasons.journey(j).season == OPEN)
    close(seasons, CLOSED, str(tmp_path / "archive"), _keys())
    erase = command("SeasonIdentitiesErased", season=CLOSED, journey_ids=[live], reason="retention")

    with pytest.raises(ValidationError, match=f"journey_ids: in the hot store, not archived: {live}"):
        seasons.record(erase, actor(Role.MINISTRY))

    assert seasons.store.select_sealed(live) is not None
    erased = [e for e in seasons.events.get(seasons.season(CLOSED).id) if type(e).__name__ == "SeasonIdentitiesErased"]
    assert erased == []
