"""The hash chain on SQLite and PostgreSQL: every kind of tampering done directly in the database is found at its
exact position; an untouched ledger verifies, also after erasures; checkpoints survive key rotation; one event's
proof checks offline with the script in docs/auditing.md and the public keys alone."""

from __future__ import annotations

import base64
import json
import os
import random
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from uuid import uuid4

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hajj_ledger.audit.chain import Chain
from hajj_ledger.audit.links import event_digest
from hajj_ledger.audit.signing import PublicKeys, SigningKeys
from hajj_ledger.audit.verification import Report
from hajj_ledger.domain.commands import EraseIdentity
from hajj_ledger.domain.vocabulary import Actor, Role
from hajj_ledger.ledger import JourneyLedger, Outcome
from hajj_ledger.simulation.season import simulate

DOC = Path(__file__).parents[2] / "docs" / "auditing.md"
PROOF_SCRIPT = DOC.parent / "examples" / "check_proof.py"
TAMPERING = settings(
    max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture], database=None
)


class Raw:
    """The store as an intruder sees it: rows changed behind the ledger's back, one statement at a time."""

    def __init__(self, url: str) -> None:
        self.postgres = url.startswith("postgresql")
        if self.postgres:
            self.connection: Any = psycopg.connect(url, autocommit=True)
            self.position, self.events = "notification_id", "journeyledger_events"
        else:
            self.connection = sqlite3.connect(url.removeprefix("sqlite:///"), isolation_level=None)
            self.position, self.events = "rowid", "stored_events"

    def run(self, sql: str, parameters: tuple[Any, ...] = ()) -> list[Any]:
        sql = sql.replace("stored_events", self.events).format(position=self.position)
        cursor = self.connection.execute(sql if self.postgres else sql.replace("%s", "?"), parameters)
        return list(cursor.fetchall()) if cursor.description else []

    def positions(self) -> list[int]:
        return [r[0] for r in self.run("SELECT {position} FROM stored_events ORDER BY {position}")]

    def row(self, position: int) -> tuple[Any, ...]:
        [found] = self.run(
            "SELECT originator_id, originator_version, topic, state FROM stored_events WHERE {position} = %s",
            (position,),
        )
        return tuple(found)

    def put(self, position: int, row: tuple[Any, ...]) -> None:
        self.run(
            "INSERT INTO stored_events ({position}, originator_id, originator_version, topic, state) "
            "VALUES (%s, %s, %s, %s, %s)",
            (position, *row),
        )

    def replace(self, position: int, row: tuple[Any, ...]) -> None:
        self.run(
            "UPDATE stored_events SET originator_id = %s, originator_version = %s, topic = %s, state = %s "
            "WHERE {position} = %s",
            (*row, position),
        )

    def delete_from(self, position: int, until: int | None = None) -> None:
        self.run(
            "DELETE FROM stored_events WHERE {position} >= %s AND {position} <= %s",
            (position, position if until is None else until),
        )

    def close(self) -> None:
        self.connection.close()


@dataclass
class Sealed:
    ledger: JourneyLedger
    chain: Chain
    keys: SigningKeys
    raw: Raw
    url: str

    def verify(self) -> Report:
        return self.chain.verify(self.keys.public)

    def found(self, position: int, kind: str, undo: Callable[[], object]) -> Report:
        """The tampering found first at `position`, as `kind`; and, once `undo` has put things back, nothing."""
        try:
            report = self.verify()
        finally:
            undo()
        self.untouched()
        assert not report.ok
        first = report.first
        assert first is not None and (first.position, first.kind) == (position, kind), report.findings[:5]
        return report

    def untouched(self) -> None:
        report = self.verify()
        assert report.ok, report.findings[:5]


def build(url: str, seed: int, keys: SigningKeys) -> tuple[JourneyLedger, Chain]:
    """A random ledger: two seasons of a few pilgrims, with gaps in the positions where the store makes them
    (PostgreSQL: inserts rolled back), sealed with a checkpoint every few dozen positions and one at the head."""
    rng = random.Random(seed)
    ledger = JourneyLedger(url)
    simulate(ledger, rng.randint(3, 8), 1445, seed)
    if url.startswith("postgresql"):
        with psycopg.connect(url, autocommit=True) as connection:
            connection.execute(
                "SELECT nextval(pg_get_serial_sequence('journeyledger_events', 'notification_id')) "
                "FROM generate_series(1, %s)",
                (rng.randint(1, 5),),
            )
    simulate(ledger, rng.randint(3, 8), 1446, seed)
    chain = Chain(ledger, keys, every=rng.randint(20, 90))
    chain.seal_all()
    chain.checkpoint()
    return ledger, chain


@pytest.fixture
def sealed(store_url: str, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Sealed]:
    keys = SigningKeys.create(tmp_path / "signing.json")
    seed = int.from_bytes(request.node.name.encode()[-4:], "big") % 1000  # a different ledger for each test
    ledger, chain = build(store_url, seed, keys)
    raw = Raw(store_url)
    yield Sealed(ledger, chain, keys, raw, store_url)
    raw.close()
    ledger.close()


def test_an_untouched_ledger_verifies(sealed: Sealed) -> None:
    report = sealed.verify()
    assert report.ok, report.findings[:5]
    positions = sealed.raw.positions()
    assert report.events == len(positions) > 100
    assert report.sealed_head == positions[-1] == sealed.ledger.head()
    assert report.checkpoints >= 3 and report.unsealed == 0
    if sealed.raw.postgres:  # the gaps were made, and sealing skipped them
        assert positions[-1] > len(positions)


def test_events_written_after_sealing_are_reported_unsealed_not_tampered(sealed: Sealed) -> None:
    simulate(sealed.ledger, 2, 1444, 7)
    report = sealed.verify()
    assert report.ok and report.unsealed == sealed.ledger.head() - report.sealed_head > 0
    sealed.chain.seal_all()
    assert sealed.verify().unsealed == 0


@given(data=st.data())
@TAMPERING
def test_one_changed_byte_is_found_at_its_position(sealed: Sealed, data: st.DataObject) -> None:
    position = data.draw(st.sampled_from(sealed.raw.positions()))
    row = sealed.raw.row(position)
    state = bytearray(row[3])
    at = data.draw(st.integers(0, len(state) - 1))
    state[at] ^= data.draw(st.integers(1, 255))
    sealed.raw.replace(position, (*row[:3], bytes(state)))
    sealed.found(position, "changed", lambda: sealed.raw.replace(position, row))


@given(data=st.data())
@TAMPERING
def test_a_deleted_event_is_found_at_its_position(sealed: Sealed, data: st.DataObject) -> None:
    positions = sealed.raw.positions()
    position = data.draw(st.sampled_from(positions[:-1]))  # the last one deleted is a truncation (below)
    row = sealed.raw.row(position)
    sealed.raw.delete_from(position)
    sealed.found(position, "deleted", lambda: sealed.raw.put(position, row))


@given(data=st.data())
@TAMPERING
def test_a_forged_event_is_found_where_it_was_inserted(sealed: Sealed, data: st.DataObject) -> None:
    positions = sealed.raw.positions()
    free = sorted(set(range(-3, positions[-1])) - set(positions))  # the store's own gaps, and before the start
    position = data.draw(st.sampled_from(free))
    _, _, topic, state = sealed.raw.row(data.draw(st.sampled_from(positions)))
    forged_id = uuid4() if sealed.raw.postgres else uuid4().hex
    sealed.raw.put(position, (forged_id, 1, topic, state))
    sealed.found(position, "inserted", lambda: sealed.raw.delete_from(position))


@given(data=st.data())
@TAMPERING
def test_two_swapped_events_are_found_as_reordered(sealed: Sealed, data: st.DataObject) -> None:
    positions = sealed.raw.positions()
    first, second = sorted(data.draw(st.lists(st.sampled_from(positions), min_size=2, max_size=2, unique=True)))
    one, other = sealed.raw.row(first), sealed.raw.row(second)

    def swap(a: tuple[Any, ...], b: tuple[Any, ...]) -> None:
        sealed.raw.replace(first, (a[0], -1, *a[2:]))  # out of the way of the (originator, version) key
        sealed.raw.replace(second, a)
        sealed.raw.replace(first, b)

    swap(one, other)
    report = sealed.found(first, "reordered", lambda: swap(other, one))
    assert any(f.position == second and f.kind == "reordered" for f in report.findings)


@given(data=st.data())
@TAMPERING
def test_a_truncated_tail_is_found_where_it_begins(sealed: Sealed, data: st.DataObject) -> None:
    positions = sealed.raw.positions()
    start = data.draw(st.sampled_from(positions))
    rows = [(p, sealed.raw.row(p)) for p in positions if p >= start]
    sealed.raw.delete_from(start, positions[-1])

    def put_back() -> None:
        for position, row in rows:
            sealed.raw.put(position, row)

    sealed.found(start, "truncated", put_back)


@given(data=st.data())
@TAMPERING
def test_a_replaced_checkpoint_signature_is_found_at_its_checkpoint(sealed: Sealed, data: st.DataObject) -> None:
    checkpoint = data.draw(st.sampled_from(sealed.chain.checkpoints()))
    forged = data.draw(st.binary(min_size=64, max_size=64).filter(lambda b: b != checkpoint.signature))
    sql = "UPDATE ledger_checkpoints SET signature = %s WHERE position = %s"
    sealed.raw.run(sql, (forged, checkpoint.position))
    sealed.found(
        checkpoint.position, "signature", lambda: sealed.raw.run(sql, (checkpoint.signature, checkpoint.position))
    )


def test_an_event_rewritten_with_its_digest_is_caught_by_the_signed_head(sealed: Sealed) -> None:
    """An intruder who also rewrites the chain's digest to match: only the signature is out of their reach."""
    checkpoints = sealed.chain.checkpoints()
    position = sealed.raw.positions()[len(sealed.raw.positions()) // 2]
    covering = next(c for c in checkpoints if c.position >= position)
    row = sealed.raw.row(position)
    sealed.raw.replace(position, (*row[:3], row[3].replace(b'"', b"'", 1)))
    [(old_digest,)] = sealed.raw.run("SELECT digest FROM ledger_chain WHERE position = %s", (position,))
    [new] = sealed.chain.tables.events_after(position - 1, 1)
    set_digest = "UPDATE ledger_chain SET digest = %s WHERE position = %s"
    sealed.raw.run(set_digest, (event_digest(new[3], new[1], new[2], new[4]), position))

    def put_back() -> None:
        sealed.raw.replace(position, row)
        sealed.raw.run(set_digest, (old_digest, position))

    sealed.found(covering.position, "rewritten", put_back)


def test_erasing_identities_leaves_the_chain_whole(sealed: Sealed) -> None:
    erased = sealed.ledger.store.select_vault_journeys()[:5]
    assert erased
    now = datetime.now(UTC)
    commands = [
        (
            EraseIdentity(command_id=uuid4(), occurred_at=now, journey_id=j, reason="request"),
            Actor("moh", Role.MINISTRY),
        )
        for j in erased
    ]
    assert all(isinstance(r, Outcome) for r in sealed.ledger.record_batch(commands))
    assert sealed.ledger.store.select_sealed(erased[0]) is None
    sealed.chain.checkpoint()
    sealed.untouched()


def test_checkpoints_of_a_rotated_out_key_still_verify_and_an_unknown_key_does_not(sealed: Sealed) -> None:
    old = sealed.keys.current
    first = sealed.chain.checkpoints()[0]
    sealed.keys.rotate()
    assert "private" in json.loads(sealed.keys.path.read_text()) and sealed.keys.current != old
    simulate(sealed.ledger, 2, 1444, 3)
    made = sealed.chain.checkpoint()
    assert made is not None and made.key_id == sealed.keys.current
    reread = SigningKeys.read(sealed.keys.path)  # the file alone keeps the old public key
    assert sealed.chain.verify(reread.public).ok
    without_old = PublicKeys({k: v for k, v in reread.public.keys.items() if k != old})
    report = sealed.chain.verify(without_old)
    assert report.first is not None and (report.first.position, report.first.kind) == (first.position, "unknown-key")
    # A checkpoint signed by a key nobody published:
    stranger = SigningKeys.create(sealed.keys.path.with_name("stranger.json"))
    forged = Chain(sealed.ledger, stranger)._sign(made.position - 1, made.head)
    sealed.chain.tables.add_checkpoint(forged)
    report = sealed.chain.verify(reread.public)
    assert report.first is not None and (report.first.position, report.first.kind) == (forged.position, "unknown-key")


def test_two_sealers_at_once_seal_every_event_exactly_once(store_url: str, tmp_path: Path) -> None:
    keys = SigningKeys.create(tmp_path / "signing.json")
    ledger = JourneyLedger(store_url)
    simulate(ledger, 12, 1446, 5)
    chains = [Chain(JourneyLedger(store_url), keys, every=50) for _ in range(2)]
    threads = [threading.Thread(target=c.seal_all) for c in chains]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    chains[0].checkpoint()
    raw = Raw(store_url)
    [(count, distinct)] = raw.run("SELECT count(*), count(DISTINCT position) FROM ledger_chain")
    events = len(raw.positions())
    raw.close()
    assert count == distinct == events
    assert chains[1].verify(keys.public).ok


def test_the_sealer_follows_the_log_while_agencies_write(store_url: str, tmp_path: Path) -> None:
    keys = SigningKeys.create(tmp_path / "signing.json")
    ledger = JourneyLedger(store_url)
    chain = Chain(JourneyLedger(store_url), keys, every=100)
    stop = threading.Event()
    follower = threading.Thread(target=chain.follow, args=(stop, 0.05))
    follower.start()
    simulate(ledger, 10, 1446, 11)
    deadline = datetime.now(UTC).timestamp() + 30
    while chain.tables.seal_state()[0] < ledger.head() and datetime.now(UTC).timestamp() < deadline:
        stop.wait(0.05)
    stop.wait(0.3)  # one timed checkpoint at the head
    stop.set()
    follower.join()
    assert chain.tables.seal_state()[0] == ledger.head()
    assert chain.checkpoints()[-1].position == ledger.head()
    assert chain.verify(keys.public).ok


# One event's proof, checked offline by the script docs/auditing.md shows (docs/examples/check_proof.py, included in
# the page) with nothing but the public keys.


def proof_script() -> str:
    assert '--8<-- "docs/examples/check_proof.py"' in DOC.read_text(), "docs/auditing.md shows no check_proof.py"
    return PROOF_SCRIPT.read_text()


def check_offline(tmp_path: Path, proof: dict[str, Any], public: dict[str, Any]) -> subprocess.CompletedProcess[str]:
    script, proof_file, keys_file = tmp_path / "check_proof.py", tmp_path / "proof.json", tmp_path / "keys.json"
    script.write_text(proof_script())
    proof_file.write_text(json.dumps(proof))
    keys_file.write_text(json.dumps(public))
    environment = {"PATH": os.environ["PATH"]}  # nothing of the ledger's configuration
    return subprocess.run(
        [sys.executable, "-I", str(script), str(proof_file), str(keys_file)],
        capture_output=True,
        text=True,
        env=environment,
        cwd=tmp_path,
        check=False,
    )


def test_a_proof_checks_offline_and_a_doctored_one_does_not(sealed: Sealed, tmp_path: Path) -> None:
    positions = sealed.raw.positions()
    public = sealed.keys.public.to_json()
    for position in (positions[0], random.Random(1).choice(positions), positions[-1]):
        proof = sealed.chain.proof(position)
        checked = check_offline(tmp_path, proof, public)
        assert checked.returncode == 0 and f"OK: position {position}" in checked.stdout, checked.stderr
    proof = sealed.chain.proof(positions[len(positions) // 2])
    state = json.loads(base64.b64decode(proof["event"]["state"]))
    doctored_states = [
        {**proof, "event": {**proof["event"], "originator_version": proof["event"]["originator_version"] + 1}},
        {
            **proof,
            "event": {
                **proof["event"],
                "state": base64.b64encode(json.dumps({**state, "stamp": None}).encode()).decode(),
            },
        },
        {**proof, "checkpoint": {**proof["checkpoint"], "signed_at": "2020-01-01T00:00:00.000000+00:00"}},
    ]
    for doctored in doctored_states:
        assert check_offline(tmp_path, doctored, public).returncode != 0
    stranger = SigningKeys.create(tmp_path / "stranger.json")
    unknown = {"keys": {proof["checkpoint"]["key_id"]: stranger.public.to_json()["keys"][stranger.current]}}
    assert check_offline(tmp_path, proof, unknown).returncode != 0


def test_a_proof_for_an_event_after_the_last_checkpoint_makes_one(sealed: Sealed) -> None:
    simulate(sealed.ledger, 1, 1444, 9)
    head = sealed.ledger.head()
    proof = sealed.chain.proof(head)
    assert proof["checkpoint"]["position"] == head and proof["following"] == []


def test_a_forged_event_far_below_the_log_is_found_without_walking_the_gap(sealed: Sealed) -> None:
    positions = sealed.raw.positions()
    _, _, topic, state = sealed.raw.row(positions[0])
    far = -(10**15)
    sealed.raw.put(far, (uuid4() if sealed.raw.postgres else uuid4().hex, 1, topic, state))
    sealed.found(far, "inserted", lambda: sealed.raw.delete_from(far))


def test_the_sealer_rides_out_the_store_being_away(store_url: str, tmp_path: Path) -> None:
    from eventsourcing.persistence import OperationalError

    keys = SigningKeys.create(tmp_path / "signing.json")
    ledger = JourneyLedger(store_url)
    simulate(ledger, 3, 1446, 2)
    chain = Chain(JourneyLedger(store_url), keys)
    real, failures = chain.seal, iter([OperationalError("database is locked")] * 3)

    def flaky(limit: int = 20_000) -> int:
        failure = next(failures, None)
        if failure is not None:
            raise failure
        return real(limit)

    chain.seal = flaky  # type: ignore[method-assign]
    stop = threading.Event()
    follower = threading.Thread(target=chain.follow, args=(stop, 60.0))
    follower.start()
    deadline = datetime.now(UTC).timestamp() + 30
    while chain.tables.seal_state()[0] < ledger.head() and datetime.now(UTC).timestamp() < deadline:
        stop.wait(0.05)
    stop.set()
    follower.join()
    assert chain.tables.seal_state()[0] == ledger.head()
