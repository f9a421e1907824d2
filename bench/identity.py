"""Identity (`--only identity`): registration with identity against without, passport lookups and name searches in
a vault of a million identities, and erasing one pilgrim."""

from __future__ import annotations

import random
import time
from datetime import UTC, datetime
from typing import Any
from uuid import UUID, uuid4

from bench.harness import FULL, SEASON, Sizes, ledger, repeat, summarise


def measure_identity(url: str, registrations: int, vault: int) -> dict[str, Any]:
    """Registration with identity against without; passport lookups in a vault of `vault` identities; erasure."""
    from bench.season import open_season_now
    from hajj_ledger.domain.command_base import Identity
    from hajj_ledger.domain.commands import EraseIdentity, Register
    from hajj_ledger.domain.vocabulary import Actor, Role
    from hajj_ledger.identities import find_by_name, find_by_passport
    from hajj_ledger.ledger import Outcome
    from hajj_ledger.simulation import identities

    registry = ledger(url)
    open_season_now(registry, SEASON)
    rng = random.Random(5)
    mission = Actor("mission-EGY-00001", Role.MISSION)
    arafat = datetime(2025, 6, 5).date()

    def registration(with_identity: bool) -> Register:
        identity = identities.identity(rng, "EGY", rng.random() < 0.5, arafat) if with_identity else None
        return Register(
            command_id=uuid4(),
            occurred_at=datetime.now(UTC),
            pilgrim_id=uuid4(),
            season=SEASON,
            country="EGY",
            identity=identity,
        )

    def registrations_of(with_identity: bool) -> list[tuple[Any, Any]]:
        return [(registration(with_identity), mission) for _ in range(registrations)]

    seconds = {}
    for with_identity in (False, True):
        commands = registrations_of(with_identity)
        started = time.perf_counter()
        for begin in range(0, len(commands), 1000):
            assert all(isinstance(r, Outcome) for r in registry.record_batch(commands[begin : begin + 1000]))
        seconds[with_identity] = time.perf_counter() - started
    # Fill the vault straight through the store (what a season of registrations would leave there).
    keys = registry.keys
    passports = []
    named: list[tuple[UUID, str, str]] = []  # journey, mission, name as a mission officer would type it
    for begin in range(0, vault, 10_000):
        batch = []
        for _ in range(min(10_000, vault - begin)):
            identity = identities.identity(rng, "EGY", True, arafat)
            passports.append(identity["passport_number"])
            scope = f"mission-EGY-{rng.randrange(200):05d}"  # ~5,000 pilgrims a mission
            sealed = keys.seal(uuid4(), Identity.model_validate(identity), scope)
            batch.append(sealed)
            if len(passports) % max(1, vault // 1000) == 0:  # a thousand searches
                parts = identity["name_latin"].split()
                named.append((sealed.journey_id, scope, f"{parts[0]} {parts[-1]}"))
        _insert_sealed(registry, batch)
    lookups = []
    passports_office = Actor("jawazat-JED", Role.JAWAZAT)
    for passport in rng.sample(passports, min(1000, len(passports))):
        started = time.perf_counter()
        assert find_by_passport(registry, passport, "EGY", passports_office)
        lookups.append(time.perf_counter() - started)
    searches = []
    for journey_id, scope, name in named:
        started = time.perf_counter()
        assert journey_id in find_by_name(registry, name, Actor(scope, Role.MISSION), limit=10_000)
        searches.append(time.perf_counter() - started)
    erasures = []
    registered = registrations_of(True)[:100]
    for command, actor in registered:
        outcome = registry.record(command, actor)
        erase = EraseIdentity(
            command_id=uuid4(), occurred_at=datetime.now(UTC), journey_id=outcome.aggregate_id, reason="pilgrim_request"
        )
        started = time.perf_counter()
        registry.record(erase, Actor("ledger-operator", Role.MINISTRY))
        erasures.append(time.perf_counter() - started)
    registry.close()
    lookups.sort()
    erasures.sort()
    searches.sort()
    return {
        "rate": seconds[True] / seconds[False],  # the cost of identity: ≤ 1.25 wanted
        "lookup_p99_ms": 1000 * lookups[int(len(lookups) * 0.99)],
        "name_search_p99_ms": 1000 * searches[int(len(searches) * 0.99)],
        "erase_p99_ms": 1000 * erasures[int(len(erasures) * 0.99)],
        "vault": vault + 2 * registrations,
    }


def _insert_sealed(registry: Any, sealed: list[Any]) -> None:
    """Through the recorder's own vault writes, without events (what a season of registrations leaves)."""
    recorder = registry.recorder
    if type(recorder).__name__.startswith("SQLite"):
        with recorder.datastore.transaction(commit=True) as c:
            recorder._write_sealed(c, sealed)
        return
    from hajj_ledger.store.recorders import vault_row

    with recorder.datastore.transaction(commit=True) as curs:
        curs.execute(recorder.upsert_vault, [list(column) for column in zip(*map(vault_row, sealed), strict=True)])


def identity_figure(sizes: Sizes, kind: str) -> dict[str, Any]:
    """Registration with and without identity, then the vault filled for lookups and erasures."""
    registrations = 2000 if sizes is FULL else 100
    return summarise(repeat(sizes.runs, kind, measure_identity, registrations=registrations, vault=sizes.vault))
