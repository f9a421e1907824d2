"""The identity vault on SQLite and PostgreSQL: kept apart, encrypted per pilgrim, erasable without rewriting."""

from __future__ import annotations

import sqlite3
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

import psycopg
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hajj_ledger.domain.command_base import Identity
from hajj_ledger.domain.errors import IdentityErasedError, IllegalStepError, PermissionDeniedError, ValidationError
from hajj_ledger.domain.journey import Journey
from hajj_ledger.domain.vocabulary import Role
from hajj_ledger.identities import apply_retention, find_by_name, find_by_passport, identity_of, rotate_master_key
from hajj_ledger.identity.vault import MasterKeys, VaultKeyError, generate_key
from hajj_ledger.ledger import JourneyLedger
from hajj_ledger.store import postgres as postgres_store
from hajj_ledger.store import recorders as store
from tests.integration.test_api import Api, api, is_problem  # noqa: F401 (the fixture)
from tests.support import NAMES, actor, command, registration

CORRECTED = {**NAMES, "name_latin": "ABDELRAHMAN BEN MUHAMMAD ELANSARY"}


def register(ledger: JourneyLedger, identity: dict[str, Any] | None = NAMES) -> UUID:
    pilgrim = uuid4()
    outcome = ledger.record(
        command("Registered", pilgrim_id=pilgrim, season=1446, country="IDN", identity=identity),
        actor(Role.MISSION),
    )
    return outcome.aggregate_id


def stored_text(ledger: JourneyLedger, url: str) -> bytes:
    """Every byte the store holds: the SQLite file and its WAL, or every PostgreSQL table's rows as text."""
    if url.startswith("sqlite"):
        path = url.removeprefix("sqlite:///")
        with sqlite3.connect(path) as db:
            db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        return b"".join(Path(p).read_bytes() for p in (path, path + "-wal") if Path(p).exists())
    with psycopg.connect(url) as db:
        tables = [r[0] for r in db.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")]
        return b"".join(str(row).encode() for table in tables for row in db.execute(f'SELECT t::text FROM "{table}" t'))


def personal_strings() -> list[bytes]:
    return [NAMES[k].encode() for k in ("name_arabic", "name_latin", "passport_number")] + [
        CORRECTED["name_latin"].encode()
    ]


def test_registration_with_identity_is_one_operation(ledger: JourneyLedger) -> None:
    journey_id = register(ledger)
    assert identity_of(ledger, journey_id, actor(Role.MISSION)) == Identity.model_validate(NAMES)
    (registered,) = ledger.history(journey_id)  # one event says the pilgrim was registered with an identity
    assert isinstance(registered, Journey.Registered) and registered.identity_digest
    assert ledger.journey(journey_id).identity == "recorded"
    for row in ledger.recorder.select_notifications(start=1, limit=100):
        assert not any(s in row.state for s in personal_strings()), "identity in an event"


def test_a_failure_between_events_and_vault_stores_neither(
    ledger: JourneyLedger, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*_: Any) -> Any:
        raise RuntimeError("the disk is full")

    monkeypatch.setattr(postgres_store, "vault_row", broken)
    monkeypatch.setattr(store, "_sqlite_row", broken)
    with pytest.raises(RuntimeError):
        register(ledger)
    assert ledger.head() == 1  # the season's opening alone
    assert ledger.store.select_all_sealed() == []


def test_a_batch_whose_events_are_refused_writes_none_of_its_vault_rows(ledger: JourneyLedger) -> None:
    # PostgreSQL sends the vault's rows and the append in one round trip (issue 29): still one transaction.
    first = register(ledger)
    (stored,) = ledger.recorder.select_events(first)
    other = uuid4()
    sealed = ledger.keys.seal(other, Identity.model_validate(CORRECTED), "mission-IDN-00001")
    for _ in range(7):  # past psycopg's threshold for preparing a statement it runs often
        with pytest.raises(Exception, match=r"(?i)unique|duplicate"):
            ledger.recorder.insert_events([stored], vault=[(other, sealed)], seasons={first: 1446})  # stored already
    assert ledger.store.select_sealed(other) is None
    register(ledger, None)  # the connections are fine after: an append alone, then one with its vault row
    register(ledger)
    assert first in {s.journey_id for s in ledger.store.select_all_sealed()}
    assert ledger.recorder.insert_events([], vault=[(other, sealed)]) == []
    assert ledger.store.select_sealed(other) == sealed


def test_lookup_by_passport_uses_the_blind_index(ledger: JourneyLedger) -> None:
    journey_id = register(ledger)
    register(ledger, {**NAMES, "passport_number": "Q1111111"})
    assert find_by_passport(ledger, "p 9876543", "egy", actor(Role.JAWAZAT)) == [journey_id]
    assert find_by_passport(ledger, "P9876543", "SDN", actor(Role.JAWAZAT)) == []


def test_a_correction_keeps_history_and_replaces_the_identity(ledger: JourneyLedger, store_url: str) -> None:
    journey_id = register(ledger)
    ledger.record(command("IdentityCorrected", journey_id=journey_id, identity=CORRECTED), actor(Role.MISSION))
    assert identity_of(ledger, journey_id, actor(Role.MISSION)).name_latin == CORRECTED["name_latin"]
    registered, corrected = ledger.history(journey_id)
    assert isinstance(registered, Journey.Registered) and isinstance(corrected, Journey.IdentityCorrected)
    assert registered.identity_digest != corrected.ciphertext_digest
    assert len(ledger.store.select_all_sealed()) == 1  # the old ciphertext and its key are gone
    assert find_by_name(ledger, "ELANSARY", actor(Role.MISSION)) == [journey_id]
    assert find_by_name(ledger, "ABDULRAHMAN ALANSARI", actor(Role.MISSION)) == [journey_id]  # same keys


def test_an_identity_given_after_registration(ledger: JourneyLedger) -> None:
    journey_id = register(ledger, identity=None)
    assert ledger.journey(journey_id).identity == "none"
    ledger.record(command("IdentityRecorded", journey_id=journey_id, identity=NAMES), actor(Role.MISSION))
    assert identity_of(ledger, journey_id, actor(Role.MISSION)).passport_number == "P9876543"
    assert [type(e).__name__ for e in ledger.history(journey_id)] == ["Registered", "IdentityRecorded"]
    with pytest.raises(IllegalStepError, match="IdentityRecorded"):
        ledger.record(command("IdentityRecorded", journey_id=journey_id, identity=CORRECTED), actor(Role.MISSION))


def test_erasure_destroys_the_identity_and_nothing_else(ledger: JourneyLedger, store_url: str) -> None:
    journey_id = register(ledger)
    other = register(ledger, {**NAMES, "passport_number": "Q2222222"})
    text = stored_text(ledger, store_url)
    assert not any(s in text for s in personal_strings()), "identity stored in clear"
    ledger.record(command("IdentityErased", journey_id=journey_id, reason="pilgrim_request"), actor(Role.MINISTRY))
    with pytest.raises(IdentityErasedError, match=r"erased at .* by ministry:ministry-1 \(pilgrim_request\)"):
        identity_of(ledger, journey_id, actor(Role.MISSION))
    assert find_by_passport(ledger, "P9876543", "EGY", actor(Role.JAWAZAT)) == []
    assert ledger.store.select_sealed(journey_id) is None
    assert identity_of(ledger, other, actor(Role.MISSION)).passport_number == "Q2222222"
    journey = ledger.journey(journey_id)  # the events still replay
    assert journey.identity == "erased" and journey.version == 2
    assert find_by_name(ledger, "ALANSARI", actor(Role.MISSION)) == [other]
    assert not any(s in stored_text(ledger, store_url) for s in personal_strings())


def test_only_a_mission_records_identity_and_a_company_cannot_erase(ledger: JourneyLedger) -> None:
    journey_id = register(ledger)
    with pytest.raises(PermissionDeniedError, match="may not record IdentityErased"):
        ledger.record(command("IdentityErased", journey_id=journey_id, reason="x"), actor(Role.COMPANY))
    assert ledger.store.select_sealed(journey_id) is not None


def test_rotating_the_master_key(ledger: JourneyLedger, monkeypatch: pytest.MonkeyPatch) -> None:
    journeys = [register(ledger) for _ in range(3)]
    old = ledger.keys
    new_key = f"test-2:{generate_key()}"
    rotated = MasterKeys.parse(f"{new_key},test-1:{'A' * 43}")
    monkeypatch.setattr(ledger, "_keys", rotated)
    assert rotate_master_key(ledger) == 3
    assert all(identity_of(ledger, j, actor(Role.MISSION)).nationality == "EGY" for j in journeys)
    assert {s.key_id for s in ledger.store.select_all_sealed()} == {"test-2"}
    assert sorted(find_by_passport(ledger, "P9876543", "EGY", actor(Role.JAWAZAT))) == sorted(journeys)
    assert sorted(find_by_name(ledger, "Muhammad", actor(Role.MISSION))) == sorted(journeys)
    for sealed in ledger.store.select_all_sealed():
        with pytest.raises(VaultKeyError, match="unknown key 'test-2'"):
            old.open(sealed)
    only_new = MasterKeys.parse(new_key)
    assert only_new.open(ledger.store.select_sealed(journeys[0])).passport_number == "P9876543"  # type: ignore[arg-type]


def test_a_wrong_or_missing_master_key(ledger: JourneyLedger, monkeypatch: pytest.MonkeyPatch) -> None:
    journey_id = register(ledger)
    monkeypatch.setattr(ledger, "_keys", MasterKeys.parse(f"test-1:{generate_key()}"))
    with pytest.raises(VaultKeyError, match="does not open the identity"):
        identity_of(ledger, journey_id, actor(Role.MISSION))
    monkeypatch.setattr(ledger, "_keys", None)
    monkeypatch.delenv("HAJJ_LEDGER_MASTER_KEYS")
    head = ledger.head()
    with pytest.raises(VaultKeyError, match="no master key: set HAJJ_LEDGER_MASTER_KEYS"):
        register(ledger)
    assert ledger.head() == head
    with pytest.raises(ValidationError):
        register(ledger, {**NAMES, "gender": "unknown"})


@pytest.fixture(scope="module")
def keys() -> MasterKeys:
    return MasterKeys.parse(f"k:{generate_key()}")


names = st.text(
    alphabet=st.characters(
        categories=("Lu", "Ll", "Lo", "Mn", "Zs"), include_characters="ءآأؤإئابةتثجحخدذرزسشصضطظعغفقكلمنهوي"
    ),
    min_size=1,
    max_size=200,
)


@settings(max_examples=60, deadline=None)
@given(arabic=names, latin=names)
def test_any_name_round_trips_exactly(keys: MasterKeys, arabic: str, latin: str) -> None:
    identity = Identity.model_validate({**NAMES, "name_arabic": arabic, "name_latin": latin})
    journey_id = uuid4()
    assert keys.open(keys.seal(journey_id, identity, "mission-EGY-1")) == identity


def test_who_reads_an_identity(ledger: JourneyLedger) -> None:
    journey_id = register(ledger)
    assert identity_of(ledger, journey_id, actor(Role.JAWAZAT)).passport_number == "P9876543"
    for role in (Role.ANALYST, Role.AUDITOR, Role.NAQABA):
        with pytest.raises(PermissionDeniedError, match="never reads identities"):
            identity_of(ledger, journey_id, actor(role))
    with pytest.raises(PermissionDeniedError, match="registered by another mission"):
        identity_of(ledger, journey_id, actor(Role.MISSION, "mission-PAK-9"))
    with pytest.raises(PermissionDeniedError, match="not contracted to this company"):
        identity_of(ledger, journey_id, actor(Role.COMPANY))


def test_erasure_is_refused_under_a_legal_hold(ledger: JourneyLedger) -> None:
    journey_id = register(ledger)
    ledger.record(command("LegalHoldPlaced", journey_id=journey_id, hold="death_identification"), actor(Role.MOH))
    with pytest.raises(IllegalStepError, match="legal hold: death_identification"):
        ledger.record(command("IdentityErased", journey_id=journey_id, reason="x"), actor(Role.MINISTRY))
    assert ledger.store.select_sealed(journey_id) is not None
    ledger.record(command("LegalHoldLifted", journey_id=journey_id, hold="death_identification"), actor(Role.MOH))
    ledger.record(command("IdentityErased", journey_id=journey_id, reason="x"), actor(Role.MINISTRY))
    assert ledger.store.select_sealed(journey_id) is None


def test_retention_erases_ended_journeys_except_those_on_hold(ledger: JourneyLedger) -> None:
    from datetime import UTC, datetime, timedelta

    ended, held, current = (register(ledger) for _ in range(3))
    for journey_id in (ended, held):
        ledger.record(command("Cancelled", journey_id=journey_id, reason="withdrawn"), actor(Role.MISSION))
    ledger.record(command("LegalHoldPlaced", journey_id=held, hold="investigation"), actor(Role.MINISTRY))
    report = apply_retention(ledger, datetime.now(UTC) + timedelta(days=1), actor(Role.MINISTRY))
    assert (report.erased, report.kept, report.held, report.refused) == (1, 1, {held: ["investigation"]}, [])
    assert ledger.store.select_sealed(ended) is None
    assert ledger.store.select_sealed(held) is not None and ledger.store.select_sealed(current) is not None
    assert apply_retention(ledger, datetime.now(UTC) - timedelta(days=30), actor(Role.MINISTRY)).erased == 0


def test_without_a_master_key_a_batch_records_nothing_of_the_refused_registration(
    ledger: JourneyLedger, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("HAJJ_LEDGER_MASTER_KEYS")
    pilgrim = uuid4()
    journey_id = Journey.create_id(1446, pilgrim)
    results = ledger.record_batch(
        [
            (
                command("Registered", pilgrim_id=pilgrim, season=1446, country="IDN", identity=NAMES),
                actor(Role.MISSION),
            ),
            (
                command("PackageContracted", journey_id=journey_id, contract_id=uuid4(), package_id="P-1"),
                actor(Role.MISSION),
            ),
        ]
    )
    assert [type(r).__name__ for r in results] == ["VaultKeyError", "NotFoundError"]
    assert ledger.head() == 1  # the season's opening alone


def test_a_batch_seals_each_registration_its_own_identity(ledger: JourneyLedger) -> None:
    # The batch's identities are sealed ahead of deciding it (issue 29): each journey still gets exactly its own,
    # a second registration of a pilgrim is refused without its identity taking the first's place, and the
    # vault's rows of the batch are all written with its events.
    mission = actor(Role.MISSION)
    pilgrims = [uuid4() for _ in range(30)]
    identities = [{**NAMES, "passport_number": f"A{1000000 + i}"} for i in range(len(pilgrims))]
    twice = command("Registered", pilgrim_id=pilgrims[0], season=1446, country="IDN", identity=CORRECTED)
    results = ledger.record_batch(
        [
            (command("Registered", pilgrim_id=p, season=1446, country="IDN", identity=i), mission)
            for p, i in zip(pilgrims, identities, strict=True)
        ]
        + [(twice, mission)]
    )
    assert type(results[-1]).__name__ == "DuplicateRegistrationError"
    assert len(ledger.store.select_all_sealed()) == len(pilgrims)
    for pilgrim, identity in zip(pilgrims, identities, strict=True):
        journey_id = Journey.create_id(1446, pilgrim)
        assert identity_of(ledger, journey_id, mission) == Identity.model_validate(identity)
        assert find_by_passport(ledger, identity["passport_number"], identity["passport_country"], mission) == [
            journey_id
        ]
    found = find_by_name(ledger, NAMES["name_latin"], mission, limit=100)
    assert set(found) == {Journey.create_id(1446, p) for p in pilgrims}


def test_name_search_finds_every_spelling_within_the_mission_only(ledger: JourneyLedger) -> None:
    ours = register(ledger)
    fatima = register(ledger, {**NAMES, "name_arabic": "فاطمة الزهراء", "name_latin": "FATIMAH EZ-ZAHRAA"})
    other_mission = actor(Role.MISSION, "mission-EGY-2")
    theirs = ledger.record(
        command("Registered", pilgrim_id=uuid4(), season=1446, country="EGY", identity=NAMES), other_mission
    ).aggregate_id
    mission = actor(Role.MISSION)
    for query in ("Muhammad", "MOHAMED", "محمد", "abd al-rahman al-ansari", "Abdurrahman", "EL ANSARY", "مُحَمَّد"):
        assert find_by_name(ledger, query, mission) == [ours], query
    assert find_by_name(ledger, "Fatma", mission) == [fatima]
    assert find_by_name(ledger, "Mohammed Fatima", mission) == []  # every part must match
    assert find_by_name(ledger, "Mohamed", other_mission) == [theirs]
    for role in (Role.JAWAZAT, Role.COMPANY, Role.ANALYST, Role.AUDITOR):
        with pytest.raises(PermissionDeniedError, match="only a mission searches names"):
            find_by_name(ledger, "Mohamed", actor(role))
    with pytest.raises(ValidationError, match="name: no letters"):
        find_by_name(ledger, " - ", mission)


TODAY = datetime.now(UTC).date()
IMPLAUSIBLE = [
    ("passport_number", "string", "not a passport number"),  # letters only: no passport's number
    ("passport_number", "A12345678901", "not a passport number"),  # longer than ICAO 9303's 9 characters
    ("passport_number", "A1234-567", "not a passport number"),
    ("date_of_birth", TODAY.isoformat(), "not in the past"),
    ("date_of_birth", (TODAY + timedelta(days=400)).isoformat(), "not in the past"),
    ("date_of_birth", date(TODAY.year - 131, 1, 1).isoformat(), "older than 130 years"),
    ("passport_country", "YXD", "not a country's ISO 3166-1 alpha-3 code"),
    ("nationality", "XXX", "not a country's ISO 3166-1 alpha-3 code"),
]


@pytest.mark.parametrize(("field", "value", "reason"), IMPLAUSIBLE, ids=[f"{f}={v}" for f, v, _ in IMPLAUSIBLE])
def test_an_implausible_identity_is_refused_naming_the_field_and_nothing_is_stored(
    ledger: JourneyLedger, field: str, value: str, reason: str
) -> None:
    with pytest.raises(ValidationError) as refused:
        register(ledger, {**NAMES, field: value})
    assert [(f, reason in why) for f, why in refused.value.problems] == [(f"identity.{field}", True)]
    assert ledger.head() == 1 and ledger.store.select_all_sealed() == []  # the season's opening alone


def test_a_passport_number_is_kept_as_the_machine_readable_zone_prints_it(ledger: JourneyLedger) -> None:
    journey_id = register(ledger, {**NAMES, "passport_number": "p 987 6543"})
    assert identity_of(ledger, journey_id, actor(Role.MISSION)).passport_number == "P9876543"
    assert find_by_passport(ledger, "P9876543", "EGY", actor(Role.JAWAZAT)) == [journey_id]
    assert Identity.model_validate({**NAMES, "date_of_birth": (TODAY - timedelta(days=1)).isoformat()})


def test_an_implausible_identity_over_http_is_a_422_naming_each_field_and_why(api: Api) -> None:  # noqa: F811
    identity = {**NAMES, "passport_number": "string", "date_of_birth": TODAY.isoformat(), "passport_country": "YXD"}
    answer = is_problem(api.post("mission", "/v1/journeys", registration(country="YXD", identity=identity)), 422)
    reasons = {e["path"].removeprefix("body."): e["reason"] for e in answer["errors"]}
    assert set(reasons) == {
        "country", "identity.passport_number", "identity.date_of_birth", "identity.passport_country"
    }, reasons  # fmt: skip
    assert "'YXD' is not a country's ISO 3166-1 alpha-3 code" in reasons["country"]
    assert "'string' is not a passport number" in reasons["identity.passport_number"]
    assert "is not in the past" in reasons["identity.date_of_birth"]
