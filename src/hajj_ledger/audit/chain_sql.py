"""The chain's three tables beside the events (the digest of each position, the seal, the checkpoints), in
whichever store the ledger uses, and every query on them: one text per statement, its table names and parameter
style filled in for SQLite or PostgreSQL.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any

from eventsourcing.persistence import OperationalError
from eventsourcing.postgres import PostgresApplicationRecorder
from psycopg.rows import tuple_row

from hajj_ledger.audit.links import FIRST, GENESIS, Checkpoint, event_digest, next_link
from hajj_ledger.audit.pages import EventRow, Packed
from hajj_ledger.audit.verification import Checked, Linked
from hajj_ledger.ledger import JourneyLedger

PAGE = 20_000
SQLITE_CREATE_TRIES = 25  # about a minute of waiting in all, for processes starting together on a new file
READERS = 2  # pages read at once while one is linked


# The sealed digests of archived positions in (%s, %s]: what the verification links there in place of events.
ARCHIVED_DIGESTS = (
    "SELECT c.position, c.digest FROM {chain} AS c JOIN {archived} AS a ON c.position BETWEEN a.first AND a.last "
    "WHERE c.position > %s AND c.position <= %s"
)


class ChainTables:
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
                "archived": f'"{schema}"."ledger_archived"',
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
                "archived": "ledger_archived",
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
            # Runs of sealed positions whose events a closed season took to its archive (hajj_ledger.archive): the
            # chain keeps their digests, and the log is verified through them.
            "CREATE TABLE IF NOT EXISTS {archived} (first BIGINT PRIMARY KEY, last BIGINT NOT NULL, "
            "season INTEGER NOT NULL)",
        ]
        if self._made():  # a node's processes all start here: only the first to come writes
            return
        for attempt in range(SQLITE_CREATE_TRIES):
            try:
                with self.cursor(commit=True) as cursor:
                    if self.postgres:  # ledgers starting together on an empty database would collide in the catalog
                        cursor.execute("SELECT pg_advisory_xact_lock(hashtext('hajj_ledger.chain'))")
                    for statement in statements:
                        cursor.execute(self.sql(statement))
                    conflict = "ON CONFLICT DO NOTHING" if self.postgres else "ON CONFLICT (id) DO NOTHING"
                    cursor.execute(self.sql("INSERT INTO {seal} VALUES (1, 0, %s) " + conflict), (GENESIS,))
                return
            except OperationalError as error:
                # SQLite: processes starting together on a new file wait on each other's write lock past its
                # timeout on a loaded machine; the tables are made by whichever gets it, and this one tries again.
                if self.postgres or "locked" not in str(error) or attempt == SQLITE_CREATE_TRIES - 1:
                    raise
                time.sleep(0.2 * (attempt + 1))

    def _made(self) -> bool:
        """Whether the chain's tables and its seal row are there already (a read: no write lock taken)."""
        try:
            with self.cursor() as cursor:
                cursor.execute(self.sql("SELECT count(*) FROM {seal}"))
                seal_rows = cursor.fetchone()[0]
                cursor.execute(self.sql("SELECT count(*) FROM {archived} WHERE first < 0"))
        except Exception:  # not made yet (each store names a missing table its own way)
            return False
        return bool(seal_rows)

    def seal_state(self) -> tuple[int, bytes]:
        with self.cursor() as cursor:
            cursor.execute(self.sql("SELECT position, link FROM {seal}"))
            position, link = cursor.fetchone()
        return int(position), bytes(link)

    def events_after(self, position: int, limit: int) -> list[EventRow]:
        with self.cursor() as cursor:
            return self._events_between(cursor, position, 2**63 - 1, limit)

    def _events_between(
        self, cursor: Any, low: int, high: int, limit: int | None = None, season: int | None = None
    ) -> list[EventRow]:
        of_season = "" if season is None else f" AND season = {int(season)}"
        query = self.sql(
            "SELECT {position}, {id}, originator_version, topic, state FROM {events} "
            f"WHERE {{position}} > %s AND {{position}} <= %s{of_season} ORDER BY {{position}}"
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

    def checked_pages(self, start: int, end: int) -> Iterator[tuple[Linked, list[int]]]:
        """The log after `start` up to `end` against the chain, a page of positions at a time; the next pages are
        read while the caller links this one, so the database's hashing and this process's linking overlap."""
        with ThreadPoolExecutor(READERS, thread_name_prefix="verify-reader") as reader:
            ahead: deque[Future[tuple[int, Linked, list[int]]]] = deque()
            low = start
            while low < end or ahead:
                while low < end and len(ahead) < READERS:
                    ahead.append(reader.submit(self._page, low, min(low + PAGE, end)))
                    low = min(low + PAGE, end)
                high, rows, gone = ahead.popleft().result()
                if not rows and not gone:
                    low = max(low, min(high, end))  # an empty stretch: go on from just before what comes next
                yield rows, gone

    def _page(self, low: int, high: int) -> tuple[int, Linked, list[int]]:
        """(where the next page starts, each event in (low, high] checked against the chain, the sealed positions
        there with no event)."""
        with self.cursor() as cursor:
            if self.postgres:
                return self._page_compared(cursor, low, high)
            else:
                pieces = [
                    (at, at.to_bytes(8, "big", signed=True) + event_digest(topic, originator_id, version, state))
                    for at, originator_id, version, topic, state in self._events_between(cursor, low, high)
                ]
            cursor.execute(self.sql("SELECT position, digest FROM {chain} WHERE position > %s AND position <= %s"),
                           (low, high))  # fmt: skip
            sealed = dict(cursor.fetchall())
            cursor.execute(self.sql(ARCHIVED_DIGESTS), (low, high))
            pieces = sorted([*pieces, *((at, at.to_bytes(8, "big", signed=True) + d) for at, d in cursor.fetchall())])
            rows: list[Checked] = []
            for at, piece in pieces:
                expected = sealed.pop(at, None)
                differs = None if expected is None or expected == piece[8:] else bytes(expected)
                rows.append((at, piece, differs, expected is None))
            gone = sorted(sealed)
            if not rows and not gone:  # a stretch with nothing in it (say, below a forged position): skip it
                high = max(high, self._next_position(cursor, high) - 1)
        return high, rows, gone

    def _page_compared(self, cursor: Any, low: int, high: int) -> tuple[int, Linked, list[int]]:
        """`_page` on PostgreSQL, where the rows are: it hashes each event (event_digest) and compares it with the
        sealed digest, on its own core while this process links. A page where every event matches its sealed digest
        (nearly every page) comes back as one byte string of the pieces to link, with no Python object an event;
        any other is read again row by row. Sealed positions with no event are looked for only when the counts say
        there are some."""
        page = (
            "FROM (SELECT {position} AS at, {digest} AS digest FROM {events} WHERE {position} > %s "
            "AND {position} <= %s UNION ALL " + ARCHIVED_DIGESTS + ") AS s "
            # The chain bounded too: unbounded, the planner hashed the whole chain for every page (a scan of the
            # season's digests a page: 0.3 s a page at a million events, growing with the log).
            "LEFT JOIN (SELECT position, digest FROM {chain} WHERE position > %s AND position <= %s) AS c "
            "ON c.position = s.at"
        )
        cursor.execute(
            self.sql(
                "SELECT count(*), count(*) FILTER (WHERE c.position IS NULL OR c.digest <> s.digest), "
                "coalesce(string_agg(int8send(s.at) || s.digest, ''::bytea ORDER BY s.at), ''::bytea) " + page
            ),
            (low, high, low, high, low, high),
            binary=True,
        )
        events, odd, pieces = cursor.fetchone()
        rows: Linked = bytes(pieces)
        sealed_events = events
        if odd:
            cursor.execute(
                self.sql(
                    "SELECT s.at, int8send(s.at) || s.digest, CASE WHEN c.digest <> s.digest THEN c.digest END, "
                    "c.position IS NULL " + page + " ORDER BY s.at"
                ),
                (low, high, low, high, low, high),
                binary=True,
            )
            checked: list[Checked] = cursor.fetchall()
            rows, sealed_events = checked, sum(not missing for *_, missing in checked)
        cursor.execute(self.sql("SELECT count(*) FROM {chain} WHERE position > %s AND position <= %s"), (low, high))
        gone: list[int] = []
        if cursor.fetchone()[0] != sealed_events:
            cursor.execute(
                self.sql(
                    "SELECT position FROM {chain} AS c WHERE position > %s AND position <= %s AND NOT EXISTS "
                    "(SELECT FROM {events} WHERE {position} = c.position) AND NOT EXISTS "
                    "(SELECT FROM {archived} AS a WHERE c.position BETWEEN a.first AND a.last) ORDER BY position"
                ),
                (low, high),
            )
            gone = [at for (at,) in cursor.fetchall()]
        if not events and not gone:  # a stretch with nothing in it (say, below a forged position): skip it
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

    def pages_with_digests(self, after: int, until: int, size: int) -> Iterator[Packed]:
        """The events after `after` up to `until`, a page of positions at a time, each with its digest (computed by
        PostgreSQL there), packed by column; the next pages are read while the caller works on this one."""
        return self._pages(after, until, size, None, digests=True)

    def season_pages(self, season: int, after: int, until: int, size: int) -> Iterator[Packed]:
        """A season's events after `after` up to `until`, packed by column as `pages_with_digests`, without digests
        (closing a season: its archive)."""
        return self._pages(after, until, size, season, digests=False)

    def _pages(self, after: int, until: int, size: int, season: int | None, *, digests: bool) -> Iterator[Packed]:
        with ThreadPoolExecutor(READERS, thread_name_prefix="event-reader") as reader:
            ahead: deque[Future[Packed]] = deque()
            low = after
            while low < until or ahead:
                while low < until and len(ahead) < READERS:
                    ahead.append(reader.submit(self._packed, low, min(low + size, until), season, digests))
                    low = min(low + size, until)
                page = ahead.popleft().result()
                if page.size:
                    yield page

    def _packed(self, low: int, high: int, season: int | None, digests: bool) -> Packed:
        with self.cursor() as cursor:
            if not self.postgres:
                rows = self._events_between(cursor, low, high, season=season)
                return Packed.of([(*r, event_digest(r[3], r[1], r[2], r[4]) if digests else b"") for r in rows])
            # Each column aggregated into one value by the server: the page arrives as a few byte strings, with
            # no Python object an event. The rows come to the aggregates in the order of the sorted page: one sort,
            # where an ORDER BY in each aggregate sorted the page eight times (a third of the query's time). The
            # order is checked on the positions; if it were ever not kept, the page is read again sorted each time.
            page = self._aggregated(cursor, low, high, "", season, digests)
            return page if page.in_order() else self._aggregated(cursor, low, high, " ORDER BY p", season, digests)

    def _aggregated(self, cursor: Any, low: int, high: int, ordering: str, season: int | None, digests: bool) -> Packed:
        values = ("int8send(p)", "uuid_send(originator_id)", "int8send(originator_version)",
                  "int4send(octet_length(topic))", "convert_to(topic, 'UTF8')", "int4send(octet_length(state))",
                  "state", "d")  # fmt: skip
        of_season = "" if season is None else f" AND season = {int(season)}"  # a number: its partition alone
        cursor.execute(
            self.sql(
                "SELECT count(*), "
                + ", ".join(f"coalesce(string_agg({value}, ''::bytea{ordering}), ''::bytea)" for value in values)
                + " FROM (SELECT {position} AS p, originator_id, originator_version, topic, state, "
                + ("{digest}" if digests else "''::bytea")
                + f" AS d FROM {{events}} WHERE {{position}} > %s AND {{position}} <= %s{of_season} "
                "ORDER BY {position}) AS page"
            ),
            (low, high),
            binary=True,
        )
        size, *columns = cursor.fetchone()
        return Packed(int(size), *map(bytes, columns))

    def digest_pages(self, after: int, until: int, size: int) -> Iterator[tuple[bytes, bytes]]:
        """The sealed digests after `after` up to `until`, a page of positions at a time: (the positions, 8 bytes
        each, big-endian; the digests, 32 bytes each), in order, with no Python object a digest on PostgreSQL."""
        with self.cursor() as cursor:
            cursor.execute(self.sql("SELECT min(position) FROM {chain} WHERE position > %s"), (after,))
            found: int | None = cursor.fetchone()[0]
        low = until if found is None else max(after, int(found) - 1)  # `after` may be far below the first
        while low < until:
            high = min(low + size, until)
            with self.cursor() as cursor:
                if self.postgres:
                    cursor.execute(
                        self.sql(
                            "SELECT coalesce(string_agg(int8send(position), ''::bytea ORDER BY position), ''::bytea), "
                            "coalesce(string_agg(digest, ''::bytea ORDER BY position), ''::bytea) FROM {chain} "
                            "WHERE position > %s AND position <= %s"
                        ),
                        (low, high),
                        binary=True,
                    )
                    positions, digests = map(bytes, cursor.fetchone())
                else:
                    rows = [(at, bytes(d)) for at, d in self.digests(low, high)]
                    positions = b"".join(at.to_bytes(8, "big", signed=True) for at, _ in rows)
                    digests = b"".join(d for _, d in rows)
            if positions:
                yield positions, digests
            low = high

    def archived_season(self, position: int) -> int | None:
        """The closed season whose archive holds the event at `position`, if one does."""
        with self.cursor() as cursor:
            cursor.execute(self.sql("SELECT season FROM {archived} WHERE first <= %s AND last >= %s"),
                           (position, position))  # fmt: skip
            found = cursor.fetchone()
        return int(found[0]) if found else None

    def link_at(self, position: int) -> bytes:
        """The chain's link at a sealed `position`: from the checkpoint before it, through the digests."""
        before = self.checkpoint_before(position)
        link = before.head if before else GENESIS
        for at, digest in self.digests(before.position if before else FIRST, position):
            link = next_link(link, at, digest)
        return link

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
            if self.postgres:  # COPY: 0.9 µs of this process's CPU a digest, against 5.5 µs as two arrays
                with cursor.copy(self.sql("COPY {chain} (position, digest) FROM STDIN (FORMAT BINARY)")) as copy:
                    copy.set_types(["int8", "bytea"])
                    for row in digests:
                        copy.write_row(row)
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
