"""The hash chain over the log, its signed checkpoints, and the check that the store still matches them.

Each event's stored bytes (topic, originator id, version, state) hash to a digest; each position's link hashes
the previous link, the position and that digest, in commit order. A sealer follows the log after the writers (it
never slows them), keeping a digest per position and, every so often and on demand, a checkpoint: the position,
the link there (the head), the time and the key id, signed with Ed25519. An auditor holding only the public keys
can then check the whole store (`verify`) or one event (`proof` plus the script in the README).

The events hold no identity (that lives in the vault), so erasing one never touches what the chain covers.
"""

from __future__ import annotations

import base64
import bisect
import hashlib
import logging
import sqlite3
import threading
import time
from collections import deque
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import psycopg
from eventsourcing.persistence import InterfaceError, OperationalError
from eventsourcing.postgres import PostgresApplicationRecorder
from psycopg.rows import tuple_row

from hajj_ledger.audit.signing import PublicKeys, SigningKeyError, SigningKeys
from hajj_ledger.domain.errors import NotFoundError
from hajj_ledger.leadership import LogWatch
from hajj_ledger.ledger import JourneyLedger
from hajj_ledger.store.recorders import DEFAULT_DATABASE_URL, database_url

GENESIS = bytes(32)  # the link before the first event
CHECKPOINT_EVERY = 1_000  # positions between checkpoints: bounds a one-event proof to this many digests
SEAL_BATCH = 20_000
PAGE = 20_000
READERS = 2  # pages read at once while one is linked
RETRY_SECONDS = 0.1  # the first wait for a store that is away; doubled up to 5 s
_FIRST = -(2**63)  # below any position, forged ones included
log = logging.getLogger("hajj_ledger.chain")


def event_digest(topic: str, originator_id: bytes, version: int, state: bytes) -> bytes:
    """SHA-256 of an event's stored bytes: the topic (length-prefixed), the originator id's 16 bytes, the version
    (8 bytes, big-endian) and the state as stored."""
    name = topic.encode()
    return hashlib.sha256(
        b"".join((len(name).to_bytes(2, "big"), name, originator_id, version.to_bytes(8, "big"), state))
    ).digest()


def next_link(previous: bytes, position: int, digest: bytes) -> bytes:
    return hashlib.sha256(previous + position.to_bytes(8, "big", signed=True) + digest).digest()


def signing_keys(url: str | None = None, *, required: bool) -> SigningKeys | None:
    """The configured signing keys (the demo store makes its own); None if there are none and none are required."""
    try:
        return SigningKeys.configured(demo=(url or database_url()) == DEFAULT_DATABASE_URL)
    except SigningKeyError:
        if required:
            raise
        return None


@dataclass(frozen=True)
class Checkpoint:
    position: int
    head: bytes  # the link at `position`
    signed_at: str  # ISO 8601, UTC; kept as text so the signed bytes are exactly these
    key_id: str
    signature: bytes

    def message(self) -> bytes:
        return checkpoint_message(self.position, self.head, self.signed_at, self.key_id)

    def to_json(self) -> dict[str, Any]:
        return {
            "position": self.position,
            "head": self.head.hex(),
            "signed_at": self.signed_at,
            "key_id": self.key_id,
            "signature": base64.b64encode(self.signature).decode(),
        }


def checkpoint_message(position: int, head: bytes, signed_at: str, key_id: str) -> bytes:
    """The bytes a checkpoint's signature covers."""
    return f"hajj-ledger checkpoint v1\n{position}\n{head.hex()}\n{signed_at}\n{key_id}\n".encode()


@dataclass(frozen=True)
class Finding:
    position: int
    kind: str  # changed, deleted, inserted, reordered, truncated, signature, unknown-key, rewritten
    detail: str


@dataclass
class Report:
    sealed_head: int = 0
    events: int = 0  # events checked against the chain
    unsealed: int = 0  # events after the sealed head: not covered yet
    checkpoints: int = 0
    unchecked_checkpoints: int = 0  # checkpoints whose signature was not checked: no public key was given
    findings: list[Finding] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.findings

    @property
    def first(self) -> Finding | None:
        return min(self.findings, key=lambda f: f.position) if self.findings else None


class Chain:
    """The sealer, the checkpoints and the verifier, over one ledger's store."""

    def __init__(
        self, ledger: JourneyLedger, keys: SigningKeys | None = None, *, every: int = CHECKPOINT_EVERY
    ) -> None:
        self.keys = keys
        self.every = every
        self.tables = _Tables(ledger)
        self.tables.create()

    # Sealing.

    def seal(self, limit: int = SEAL_BATCH) -> int:
        """Seal the next events of the log; returns how many (0: caught up). Checkpoints every `every`
        positions when there is a key. Two sealers at once: the second finds the seal moved and seals nothing."""
        position, link = self.tables.seal_state()
        rows = self.tables.events_after(position, limit)
        if not rows:
            return 0
        last = self.tables.last_checkpoint_position()
        digests = []
        checkpoints = []
        for at, originator_id, version, topic, state in rows:
            digest = event_digest(topic, originator_id, version, state)
            link = next_link(link, at, digest)
            digests.append((at, digest))
            if self.keys is not None and at - last >= self.every:
                checkpoints.append(self._sign(at, link))
                last = at
        moved = self.tables.write_seal(position, rows[-1][0], link, digests, checkpoints)
        return len(rows) if moved else 0

    def seal_all(self) -> int:
        sealed = 0
        while step := self.seal():
            sealed += step
        return sealed

    def checkpoint(self) -> Checkpoint | None:
        """Seal up to the head and sign a checkpoint there (on demand); None while the log is empty."""
        if self.keys is None:
            raise SigningKeyError("no signing key: checkpoints cannot be made")
        self.seal_all()
        position, link = self.tables.seal_state()
        if position == 0:
            return None
        latest = self.tables.checkpoint_at_or_after(position)
        if latest is not None:
            return latest
        self.tables.add_checkpoint(self._sign(position, link))
        return self.tables.checkpoint_at_or_after(position)

    def follow(self, stop: threading.Event, seconds: float = 60.0) -> None:
        """Keep sealing as the log grows, waking when it does (see LogWatch); a checkpoint at least every `seconds`
        while new events arrive."""
        watch = LogWatch(self.tables.ledger, stop)
        signed = time.monotonic()
        delay = RETRY_SECONDS
        try:
            while not stop.is_set():
                try:
                    if self.seal():
                        delay = RETRY_SECONDS
                        watch.found()
                        continue
                    if self.keys is not None and time.monotonic() - signed >= seconds:
                        position, _ = self.tables.seal_state()
                        if position > self.tables.last_checkpoint_position():
                            self.checkpoint()
                        signed = time.monotonic()
                except (OperationalError, InterfaceError, sqlite3.OperationalError, psycopg.OperationalError) as error:
                    # The store is away or locked (SQLite, under a busy writer): wait it out, as the runner does.
                    log.warning("sealer: store unavailable (%s); retrying in %.2fs", type(error).__name__, delay)
                    stop.wait(delay)
                    delay = min(delay * 2, 5.0)
                    continue
                # Woken by new events, or when the next timed checkpoint is due.
                watch.wait(None if self.keys is None else signed + seconds - time.monotonic())
        finally:
            watch.close()

    def _sign(self, position: int, link: bytes) -> Checkpoint:
        assert self.keys is not None
        signed_at = datetime.now(UTC).isoformat(timespec="microseconds")
        key_id, signature = self.keys.sign(checkpoint_message(position, link, signed_at, self.keys.current))
        return Checkpoint(position, link, signed_at, key_id, signature)

    # Reading.

    def checkpoints(self, after: int = _FIRST, limit: int | None = None) -> list[Checkpoint]:
        return self.tables.checkpoints(after, limit)

    def proof(self, position: int) -> dict[str, Any]:
        """What an auditor needs to check the event at `position` offline against a signed checkpoint: the event
        as stored, the link before it, the digests after it up to the first checkpoint covering it, and that
        checkpoint. A position not yet covered gets a checkpoint made on demand."""
        event = self.tables.event_at(position)
        if event is None:
            raise NotFoundError(f"no event at position {position}")
        covering = self.tables.checkpoint_at_or_after(position)
        if covering is None:
            self.checkpoint()
            covering = self.tables.checkpoint_at_or_after(position)
        if covering is None:
            raise NotFoundError(f"position {position} is not sealed yet")
        before = self.tables.checkpoint_before(position)
        link = before.head if before else GENESIS
        following = []
        for at, digest in self.tables.digests(before.position if before else _FIRST, covering.position):
            if at < position:
                link = next_link(link, at, digest)
            elif at > position:
                following.append([at, digest.hex()])
        _, originator_id, version, topic, state = event
        return {
            "position": position,
            "event": {
                "topic": topic,
                "originator_id": originator_id.hex(),
                "originator_version": version,
                "state": base64.b64encode(state).decode(),
            },
            "previous_link": link.hex(),
            "following": following,
            "checkpoint": covering.to_json(),
        }

    # Verifying.

    def verify(self, public: PublicKeys | None) -> Report:
        """Re-read the store and check every event against the chain and every checkpoint against its signature
        (without public keys, the chain alone: no checkpoint is trusted, and the report says how many went unchecked).

        The log is checked in runs between checkpoints, each starting from a checkpoint's head, trusted once its
        signature checks: a run's findings stand on their own."""
        head, _ = self.tables.seal_state()
        checkpoints = self.tables.checkpoints(_FIRST, None)
        report = Report(sealed_head=head, checkpoints=len(checkpoints))
        trusted = []
        if public is None:
            report.unchecked_checkpoints, checkpoints = len(checkpoints), []
        for checkpoint in checkpoints:
            assert public is not None
            why = public.check(checkpoint.key_id, checkpoint.message(), checkpoint.signature)
            if why is None:
                trusted.append(checkpoint)
            else:
                kind = "unknown-key" if why.startswith("signed by unknown") else "signature"
                report.findings.append(Finding(checkpoint.position, kind, f"checkpoint {checkpoint.position}: {why}"))
        low, high = self.tables.bounds()
        found = [self.tables.check_run(run, head) for run in _runs(low, max(high, head), trusted)]
        _conclude(found, trusted, report)
        return report


# A run of the log to check: positions after `start` up to `end`, the link at `start`, and the trusted
# checkpoints inside it (position and head).
Run = tuple[int, int, bytes, list[tuple[int, bytes]]]
RUN_POSITIONS = 100_000


def _runs(low: int, high: int, trusted: Sequence[Checkpoint]) -> list[Run]:
    runs: list[Run] = []
    start, link, inside = low, GENESIS, []
    for checkpoint in trusted:
        inside.append((checkpoint.position, checkpoint.head))
        if checkpoint.position - start >= RUN_POSITIONS:
            runs.append((start, checkpoint.position, link, inside))
            start, link, inside = checkpoint.position, checkpoint.head, []
    runs.append((start, max(high, start), link, inside))
    return runs


@dataclass
class RunResult:
    events: int = 0
    unsealed: int = 0
    last_event: int = _FIRST
    changed: dict[int, tuple[bytes, bytes]] = field(default_factory=dict)  # position: (found, sealed) digests
    gone: list[int] = field(default_factory=list)  # sealed positions with no event
    inserted: list[int] = field(default_factory=list)  # events at positions never sealed
    mismatched: list[int] = field(default_factory=list)  # checkpoints whose head the events do not hash to


def _conclude(found: Sequence[RunResult], trusted: Sequence[Checkpoint], report: Report) -> None:
    """Name what happened at each disagreeing position. A swap shows as two positions each holding the other's
    sealed event; sealed positions missing after the last event are a truncated tail; a checkpoint whose head
    the log no longer hashes to, with every event matching its stored digest, means both were rewritten."""
    changed = {at: pair for result in found for at, pair in result.changed.items()}
    gone = [at for result in found for at in result.gone]
    last_event = max(result.last_event for result in found)
    report.events = sum(result.events for result in found)
    report.unsealed = sum(result.unsealed for result in found)
    sealed_at = {sealed: at for at, (_, sealed) in changed.items()}
    for at, (digest, _) in changed.items():
        other = sealed_at.get(digest)
        if other is not None and other != at:
            report.findings.append(Finding(at, "reordered", f"holds the event sealed at position {other}"))
        else:
            report.findings.append(Finding(at, "changed", "the event's stored bytes differ from those sealed"))
    report.findings += [Finding(at, "inserted", "an event the chain never sealed") for r in found for at in r.inserted]
    tail = [at for at in gone if at > last_event]
    if tail:
        report.findings.append(Finding(tail[0], "truncated", f"{len(tail)} sealed events missing from the end"))
    report.findings += [Finding(at, "deleted", "a sealed event is missing") for at in gone if at <= last_event]
    in_events = sorted(f.position for f in report.findings if f.kind not in ("signature", "unknown-key"))
    starts = [_FIRST, *(c.position for c in trusted)]
    previous = {c.position: starts[i] for i, c in enumerate(trusted)}  # where the run to each checkpoint began
    for position in (at for result in found for at in result.mismatched):
        if bisect.bisect_right(in_events, position) > bisect.bisect_right(in_events, previous[position]):
            continue  # a finding in the events since the previous checkpoint explains it
        if position > last_event:
            if tail:
                continue  # the truncated tail explains it
            report.findings.append(
                Finding(last_event + 1, "truncated", f"the log ends at {last_event}; a checkpoint at {position}")
            )
        else:
            report.findings.append(
                Finding(position, "rewritten", f"the log up to {position} does not hash to the head signed there")
            )
    report.findings.sort(key=lambda f: f.position)


EventRow = tuple[int, bytes, int, str, bytes]  # position, originator id (16 bytes), version, topic, state
# An event checked against the chain: its position, its position and digest as the link takes them, the sealed
# digest where it differs (None where it matches), and whether the chain lacks the position.
Checked = tuple[int, bytes, bytes | None, bool]
DigestedRow = tuple[int, bytes, int, str, bytes, bytes]  # an EventRow and its digest


class _Tables:
    """The chain's three tables beside the events, in whichever store the ledger uses, and the queries on them."""

    def __init__(self, ledger: JourneyLedger) -> None:
        self.ledger = ledger  # kept: the library closes a ledger's connections when it is collected
        recorder: Any = ledger.recorder
        self.datastore = recorder.datastore
        self.postgres = isinstance(recorder, PostgresApplicationRecorder)
        if self.postgres:
            schema = self.datastore.schema
            self.names = {
                "events": f'"{schema}"."{recorder.events_table_name}"',
                "chain": f'"{schema}"."ledger_chain"',
                "seal": f'"{schema}"."ledger_seal"',
                "checkpoints": f'"{schema}"."ledger_checkpoints"',
                "position": "notification_id",
                "id": "uuid_send(originator_id)",
                # event_digest in SQL, for reading at the pace of the store (verify, exports)
                "digest": "sha256(int2send(octet_length(topic)::int2) || convert_to(topic, 'UTF8') "
                "|| uuid_send(originator_id) || int8send(originator_version) || state)",
                "bytes": "bytea",
            }
        else:
            self.names = {
                "events": recorder.events_table_name,
                "chain": "ledger_chain",
                "seal": "ledger_seal",
                "checkpoints": "ledger_checkpoints",
                "position": "rowid",
                "id": "originator_id",
                "bytes": "BLOB",
            }

    def sql(self, text: str) -> str:
        text = text.format(**self.names)
        return text if self.postgres else text.replace("%s", "?")

    @contextmanager
    def cursor(self, *, commit: bool = False) -> Iterator[Any]:
        if self.postgres:
            with self.datastore.get_connection() as connection, connection.transaction(force_rollback=not commit):
                yield connection.cursor(row_factory=tuple_row)
        else:
            with self.datastore.transaction(commit=commit) as cursor:
                yield cursor.sqlite_cursor

    def create(self) -> None:
        statements = [
            "CREATE TABLE IF NOT EXISTS {chain} (position BIGINT PRIMARY KEY, digest {bytes} NOT NULL)",
            "CREATE TABLE IF NOT EXISTS {seal} (id INTEGER PRIMARY KEY CHECK (id = 1), "
            "position BIGINT NOT NULL, link {bytes} NOT NULL)",
            "CREATE TABLE IF NOT EXISTS {checkpoints} (position BIGINT PRIMARY KEY, head {bytes} NOT NULL, "
            "signed_at TEXT NOT NULL, key_id TEXT NOT NULL, signature {bytes} NOT NULL)",
        ]
        with self.cursor(commit=True) as cursor:
            if self.postgres:  # ledgers starting together on an empty database would collide in the catalog
                cursor.execute("SELECT pg_advisory_xact_lock(hashtext('hajj_ledger.chain'))")
            for statement in statements:
                cursor.execute(self.sql(statement))
            conflict = "ON CONFLICT DO NOTHING" if self.postgres else "ON CONFLICT (id) DO NOTHING"
            cursor.execute(self.sql("INSERT INTO {seal} VALUES (1, 0, %s) " + conflict), (GENESIS,))

    def seal_state(self) -> tuple[int, bytes]:
        with self.cursor() as cursor:
            cursor.execute(self.sql("SELECT position, link FROM {seal}"))
            position, link = cursor.fetchone()
        return int(position), bytes(link)

    def events_after(self, position: int, limit: int) -> list[EventRow]:
        with self.cursor() as cursor:
            return self._events_between(cursor, position, 2**63 - 1, limit)

    def _events_between(self, cursor: Any, low: int, high: int, limit: int | None = None) -> list[EventRow]:
        query = self.sql(
            "SELECT {position}, {id}, originator_version, topic, state FROM {events} "
            "WHERE {position} > %s AND {position} <= %s ORDER BY {position}"
        )
        parameters: tuple[int, ...] = (low, high)
        if limit is not None:
            query, parameters = query + self.sql(" LIMIT %s"), (low, high, limit)
        if self.postgres:
            cursor.execute(query, parameters, binary=True)
            return cursor.fetchall()  # type: ignore[no-any-return]
        cursor.execute(query, parameters)
        return [(at, bytes.fromhex(i), v, t, state) for at, i, v, t, state in cursor.fetchall()]

    def bounds(self) -> tuple[int, int]:
        """Just below the lowest position and the highest, over the events and the chain (0, 0 when empty)."""
        with self.cursor() as cursor:
            cursor.execute(
                self.sql(
                    "SELECT min(low), max(high) FROM (SELECT min({position}) AS low, max({position}) AS high "
                    "FROM {events} UNION ALL SELECT min(position), max(position) FROM {chain}) AS b"
                )
            )
            low, high = cursor.fetchone()
        return (int(low) - 1, int(high)) if low is not None else (0, 0)

    def check_run(self, run: Run, head: int) -> RunResult:
        start, end, link, inside = run
        result = RunResult()
        checkpoints = iter(inside)
        due = next(checkpoints, None)
        sha256 = hashlib.sha256
        for rows, gone in self._pages(start, end):
            for at, piece, differs, missing in rows:
                while due is not None and due[0] < at:
                    if link != due[1]:
                        result.mismatched.append(due[0])
                    due = next(checkpoints, None)
                result.last_event = at
                if missing and at > head:
                    result.unsealed += 1
                    continue
                link = sha256(link + piece).digest()  # next_link, inlined: the piece is position and digest
                result.events += 1
                if missing:
                    result.inserted.append(at)
                elif differs is not None and len(result.changed) < 100_000:
                    result.changed[at] = (piece[8:], bytes(differs))
            result.gone += gone
        while due is not None:
            if link != due[1]:
                result.mismatched.append(due[0])
            due = next(checkpoints, None)
        return result

    def _pages(self, start: int, end: int) -> Iterator[tuple[list[Checked], list[int]]]:
        """The log after `start` up to `end` against the chain, a page of positions at a time; the next pages are
        read while the caller links this one, so the database's hashing and this process's linking overlap."""
        with ThreadPoolExecutor(READERS, thread_name_prefix="verify-reader") as reader:
            ahead: deque[Future[tuple[int, list[Checked], list[int]]]] = deque()
            low = start
            while low < end or ahead:
                while low < end and len(ahead) < READERS:
                    ahead.append(reader.submit(self._page, low, min(low + PAGE, end)))
                    low = min(low + PAGE, end)
                high, rows, gone = ahead.popleft().result()
                if not rows and not gone:
                    low = max(low, min(high, end))  # an empty stretch: go on from just before what comes next
                yield rows, gone

    def _page(self, low: int, high: int) -> tuple[int, list[Checked], list[int]]:
        """(where the next page starts, each event in (low, high] checked against the chain, the sealed positions
        there with no event)."""
        with self.cursor() as cursor:
            if self.postgres:
                # event_digest, computed where the rows are: PostgreSQL hashes on its own core while this process
                # links, which is what lets a 2-core machine verify at the rate it does.
                cursor.execute(
                    self.sql(
                        "SELECT {position}, int8send({position}) || {digest} FROM {events} "
                        "WHERE {position} > %s AND {position} <= %s ORDER BY {position}"
                    ),
                    (low, high),
                    binary=True,
                )
                pieces = cursor.fetchall()
            else:
                pieces = [
                    (at, at.to_bytes(8, "big", signed=True) + event_digest(topic, originator_id, version, state))
                    for at, originator_id, version, topic, state in self._events_between(cursor, low, high)
                ]
            cursor.execute(self.sql("SELECT position, digest FROM {chain} WHERE position > %s AND position <= %s"),
                           (low, high))  # fmt: skip
            sealed = dict(cursor.fetchall())
            rows: list[Checked] = []
            for at, piece in pieces:
                expected = sealed.pop(at, None)
                differs = None if expected is None or expected == piece[8:] else bytes(expected)
                rows.append((at, piece, differs, expected is None))
            gone = sorted(sealed)
            if not rows and not gone:  # a stretch with nothing in it (say, below a forged position): skip it
                high = max(high, self._next_position(cursor, high) - 1)
        return high, rows, gone

    def _next_position(self, cursor: Any, after: int) -> int:
        cursor.execute(
            self.sql(
                "SELECT min(p) FROM (SELECT min({position}) AS p FROM {events} WHERE {position} > %s "
                "UNION ALL SELECT min(position) FROM {chain} WHERE position > %s) AS n"
            ),
            (after, after),
        )
        found = cursor.fetchone()[0]
        return int(found) if found is not None else 2**63 - 1

    def pages_with_digests(self, after: int, until: int, size: int) -> Iterator[list[DigestedRow]]:
        """The events after `after` up to `until`, a page of positions at a time, each with its digest (computed by
        PostgreSQL there); the next pages are read while the caller works on this one."""
        with ThreadPoolExecutor(READERS, thread_name_prefix="event-reader") as reader:
            ahead: deque[Future[list[DigestedRow]]] = deque()
            low = after
            while low < until or ahead:
                while low < until and len(ahead) < READERS:
                    ahead.append(reader.submit(self._digested, low, min(low + size, until)))
                    low = min(low + size, until)
                rows = ahead.popleft().result()
                if rows:
                    yield rows

    def _digested(self, low: int, high: int) -> list[DigestedRow]:
        with self.cursor() as cursor:
            if not self.postgres:
                rows = self._events_between(cursor, low, high)
                return [(*row, event_digest(row[3], row[1], row[2], row[4])) for row in rows]
            cursor.execute(
                self.sql(
                    "SELECT {position}, {id}, originator_version, topic, state, {digest} FROM {events} "
                    "WHERE {position} > %s AND {position} <= %s ORDER BY {position}"
                ),
                (low, high),
                binary=True,
            )
            return cursor.fetchall()  # type: ignore[no-any-return]

    def event_at(self, position: int) -> EventRow | None:
        rows = self.events_after(position - 1, 1)
        return rows[0] if rows and rows[0][0] == position else None

    def digests(self, after: int, until: int | None) -> Iterator[tuple[int, bytes]]:
        """Sealed (position, digest) pairs after `after`, up to and including `until`."""
        last = until if until is not None else 2**63 - 1
        while True:
            with self.cursor() as cursor:
                cursor.execute(
                    self.sql(
                        "SELECT position, digest FROM {chain} WHERE position > %s AND position <= %s "
                        "ORDER BY position LIMIT %s"
                    ),
                    (after, last, PAGE),
                )
                rows = cursor.fetchall()
            if not rows:
                return
            yield from ((at, bytes(digest)) for at, digest in rows)
            after = rows[-1][0]

    def write_seal(
        self,
        old: int,
        new: int,
        link: bytes,
        digests: Sequence[tuple[int, bytes]],
        checkpoints: Sequence[Checkpoint],
    ) -> bool:
        """Advance the seal from `old` to `new` with its digests and checkpoints, or nothing if it moved."""
        with self.cursor(commit=True) as cursor:
            cursor.execute(self.sql("UPDATE {seal} SET position = %s, link = %s WHERE position = %s"), (new, link, old))
            if cursor.rowcount != 1:
                return False
            if self.postgres:
                cursor.execute(
                    self.sql("INSERT INTO {chain} SELECT * FROM unnest(%s::int8[], %s::bytea[])"),
                    ([at for at, _ in digests], [d for _, d in digests]),
                    binary=True,
                )
            else:
                cursor.executemany(self.sql("INSERT INTO {chain} VALUES (%s, %s)"), digests)
            self._insert_checkpoints(cursor, checkpoints)
        return True

    def add_checkpoint(self, checkpoint: Checkpoint) -> None:
        with self.cursor(commit=True) as cursor:
            self._insert_checkpoints(cursor, [checkpoint])

    def _insert_checkpoints(self, cursor: Any, checkpoints: Sequence[Checkpoint]) -> None:
        cursor.executemany(
            self.sql("INSERT INTO {checkpoints} VALUES (%s, %s, %s, %s, %s) ON CONFLICT (position) DO NOTHING"),
            [(c.position, c.head, c.signed_at, c.key_id, c.signature) for c in checkpoints],
        )

    def checkpoints(self, after: int, limit: int | None) -> list[Checkpoint]:
        query = "SELECT * FROM {checkpoints} WHERE position > %s ORDER BY position"
        return self._checkpoints(query + (" LIMIT %s" if limit else ""), (after, limit) if limit else (after,))

    def last_checkpoint_position(self) -> int:
        found = self._checkpoints("SELECT * FROM {checkpoints} ORDER BY position DESC LIMIT 1", ())
        return found[0].position if found else 0

    def checkpoint_at_or_after(self, position: int) -> Checkpoint | None:
        found = self._checkpoints(
            "SELECT * FROM {checkpoints} WHERE position >= %s ORDER BY position LIMIT 1", (position,)
        )
        return found[0] if found else None

    def checkpoint_before(self, position: int) -> Checkpoint | None:
        found = self._checkpoints(
            "SELECT * FROM {checkpoints} WHERE position < %s ORDER BY position DESC LIMIT 1", (position,)
        )
        return found[0] if found else None

    def _checkpoints(self, query: str, parameters: tuple[Any, ...]) -> list[Checkpoint]:
        with self.cursor() as cursor:
            cursor.execute(self.sql(query), parameters)
            rows = cursor.fetchall()
        return [Checkpoint(int(p), bytes(h), s, k, bytes(sig)) for p, h, s, k, sig in rows]
