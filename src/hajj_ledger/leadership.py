"""The leader: the background jobs (the projection runner, the sealer) run once per deployment, in the node that
holds the leader lock, however many nodes offer to run them.

On PostgreSQL the lock is a session advisory lock on a connection of its own, made straight to the server
(HAJJ_LEDGER_DIRECT_DATABASE_URL: a session's locks and LISTEN do not survive PgBouncer's transaction mode). The
server releases it when that connection ends, so when a leader dies a standby, trying twice a second, takes over. A
leader that loses its connection stops its jobs at once: the server may already have given the lock to another.
Both ends of the connection notice a vanished peer within seconds (keepalives, a TCP user timeout), the leader first.
On SQLite (one machine) the lock is an OS file lock beside the database file.

The jobs follow the log with a `LogWatch`: on PostgreSQL they wake on the NOTIFY each batch's append sends,
with a slow poll as a safety net; on SQLite they poll, backing off while the log is idle.
"""

from __future__ import annotations

import fcntl
import logging
import os
import select
import signal
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from types import FrameType
from typing import IO, Any, Protocol

import psycopg
from eventsourcing.postgres import PostgresApplicationRecorder
from psycopg.sql import SQL, Identifier

from hajj_ledger.store.connections import DIRECT_DATABASE_URL_VARIABLE, Postgres, direct_url
from hajj_ledger.store.recorders import database_url

OFFER_SECONDS = 0.5  # a standby tries for the lock this often
CHECK_SECONDS = 0.25  # a leader checks that it still holds the lock this often
HANDOVER_SECONDS = 0.6  # a new leader waits this long before starting: the last one may not have noticed it lost
PARENT_CHECK_SECONDS = 0.1  # how soon a worker started by `serve` notices that `serve` has gone
GRACE_SECONDS = 3.0  # a job still running this long after being told to stop ends with its process
SAFETY_POLL_SECONDS = 2.0  # PostgreSQL: a follower reads the log at least this often, notified or not
IDLE_POLL_SECONDS = 0.5  # SQLite: a follower's longest sleep while the log is idle
BUSY_POLL_SECONDS = 0.05  # SQLite: its first, right after finding something
STOP_CHECK_SECONDS = 0.25  # how long a follower waiting on LISTEN goes without looking at its stop event
RECONNECT_SECONDS = 1.0  # a follower whose LISTEN connection failed polls this long before making it again
log = logging.getLogger("hajj_ledger.leadership")

Job = Callable[[threading.Event], None]  # runs until its event is set


def direct_database_url(url: str | None = None) -> str:
    """The URL for connections that keep session state (the leader lock, LISTEN): PostgreSQL itself, not PgBouncer."""
    return direct_url(url or database_url())


def session_connection(url: str, purpose: str) -> psycopg.Connection[Any]:
    """A connection of its own (no pool), in autocommit, that notices a vanished peer within seconds on both ends."""
    connection = psycopg.connect(
        Postgres.from_url(url, DIRECT_DATABASE_URL_VARIABLE).conninfo, autocommit=True,
        application_name=f"hajj-ledger {purpose}", connect_timeout=3, keepalives=1, keepalives_idle=5,
        keepalives_interval=1, keepalives_count=3, tcp_user_timeout=4000,
    )  # fmt: skip
    # The server's end: without these it notices a vanished client only after the OS's two hours of idleness, and
    # the lock would stay with a dead leader that long. SET, not startup options: those are PgBouncer's to refuse.
    connection.execute("SET tcp_keepalives_idle = 5; SET tcp_keepalives_interval = 1; SET tcp_keepalives_count = 3")
    return connection


# The lock.


class Lock(Protocol):
    def acquire(self) -> bool:
        """Try once, without waiting; True if held now."""

    def held(self) -> bool:
        """Still held: False once its connection is lost."""

    def release(self) -> None: ...


class PostgresLock:
    """A session advisory lock, one per deployment (per schema): held while its connection lives."""

    def __init__(self, url: str, name: str) -> None:
        self.url = url
        self.name = name
        self.connection: psycopg.Connection[Any] | None = None

    def acquire(self) -> bool:
        try:
            if self.connection is None:
                self.connection = session_connection(self.url, "leader lock")
            row = self.connection.execute("SELECT pg_try_advisory_lock(hashtext(%s))", (self.name,)).fetchone()
        except psycopg.Error as error:
            log.warning("leader lock: the store is unavailable (%s)", error)
            self.release()
            return False
        return bool(row and row[0])

    def held(self) -> bool:
        if self.connection is None:
            return False
        try:
            row = self.connection.execute(
                "SELECT EXISTS (SELECT FROM pg_locks WHERE locktype = 'advisory' AND granted "
                "AND pid = pg_backend_pid())"
            ).fetchone()
        except psycopg.Error as error:
            log.error("leader lock: its connection is lost (%s)", error)
            self.release()
            return False
        return bool(row and row[0])

    def release(self) -> None:
        """Closing the session releases its lock (an unlock first would only add a round trip)."""
        if self.connection is not None:
            self.connection.close()
            self.connection = None


class FileLock:
    """An OS lock on a file beside the SQLite database: the kernel releases it when its process ends."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.file: IO[bytes] | None = None

    def acquire(self) -> bool:
        if self.file is None:
            file = self.path.open("ab")
            try:
                fcntl.flock(file, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                file.close()
                return False
            self.file = file
        return True

    def held(self) -> bool:
        return self.file is not None

    def release(self) -> None:
        if self.file is not None:
            self.file.close()
            self.file = None


def leader_lock(url: str | None = None, role: str = "leader") -> Lock:
    """The deployment's leader lock, for the store at `url` (default: the configured one): the background jobs'
    (`leader`), or another's that is led apart (`relay`: `hajj-ledger publish`)."""
    url = url or database_url()
    if url.startswith("sqlite:///"):
        path = Path(url.removeprefix("sqlite:///"))
        path.parent.mkdir(parents=True, exist_ok=True)
        return FileLock(path.with_name(f"{path.name}.{role}"))
    schema = Postgres.from_url(url).schema
    return PostgresLock(direct_database_url(url), f"hajj_ledger.{role}/{schema}")


# Leading.


def lead(
    jobs: Mapping[str, Job], stop: threading.Event, lock: Lock, on_change: Callable[[bool], None] | None = None
) -> None:
    """Offer to lead until `stop` is set. Each time the lock is won, run every job in a thread of its own until
    the lock is lost, a job ends (it failed: it is started again after the next win), or `stop`."""
    try:
        while not stop.is_set():
            if lock.acquire():
                # The server releases a lock once it finds its connection gone; the leader that held it finds out
                # at its next check (CHECK_SECONDS): a new leader gives it that long to stop its jobs.
                if not stop.wait(HANDOVER_SECONDS) and lock.held():
                    _term(jobs, stop, lock, on_change or (lambda leading: None))
                lock.release()
            stop.wait(OFFER_SECONDS)
    finally:
        lock.release()


def _term(jobs: Mapping[str, Job], stop: threading.Event, lock: Lock, on_change: Callable[[bool], None]) -> None:
    log.info("leading: running %s", ", ".join(jobs))
    on_change(True)
    ended = threading.Event()  # the end of this term, for every job
    threads = [threading.Thread(target=_job, args=(n, j, ended), name=n, daemon=True) for n, j in jobs.items()]
    for thread in threads:
        thread.start()
    while not (stop.wait(CHECK_SECONDS) or ended.is_set()):
        if not lock.held():
            log.error("the leader lock is lost: stopping the jobs at once")
            break
    ended.set()
    deadline = time.monotonic() + GRACE_SECONDS
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()))
    if any(thread.is_alive() for thread in threads):
        # A job stuck in the store's retries must not run on beside the next leader: its process ends with it.
        log.critical("a job did not stop within %.0f s: exiting", GRACE_SECONDS)
        os._exit(1)
    on_change(False)
    log.info("no longer leading")


def _job(name: str, job: Job, ended: threading.Event) -> None:
    try:
        job(ended)
        if not ended.is_set():
            log.error("%s ended by itself", name)
    except Exception:
        log.exception("%s failed", name)
    finally:
        ended.set()


def stop_on_signals(stop: threading.Event) -> None:
    """SIGTERM and SIGINT set `stop`; a process still running GRACE_SECONDS later ends anyway, so that a loop caught
    in the store's retries cannot hold a shutdown up (an orphaned sealer once ignored SIGTERM for 6 minutes)."""

    def handle(signum: int, frame: FrameType | None) -> None:
        _stop_then_exit(stop, 128 + signum)

    signal.signal(signal.SIGTERM, handle)
    signal.signal(signal.SIGINT, handle)


def stop_with_parent(stop: threading.Event, parent: int) -> None:
    """`stop` is set when `parent`, the process that started this one, has gone, however it went (SIGTERM, kill -9,
    a crash): a thread watches for this process being handed to another parent, which needs no signal to arrive.
    `parent` is the starter's own word for its pid, so that a starter gone before the watch began is noticed too."""

    def watch() -> None:
        while not stop.wait(PARENT_CHECK_SECONDS):
            if os.getppid() != parent:
                log.info("the process that started this one has gone: stopping")
                _stop_then_exit(stop, 1)
                return

    threading.Thread(target=watch, name="parent watch", daemon=True).start()


def _stop_then_exit(stop: threading.Event, code: int) -> None:
    if stop.is_set():
        return
    stop.set()
    timer = threading.Timer(GRACE_SECONDS + 1.0, os._exit, (code,))
    timer.daemon = True
    timer.start()


# Following the log.


class LogWatch:
    """Waits, for a job that follows the log, until the log may have grown or the job is to stop.

    On PostgreSQL: LISTEN on the events' channel (each batch's append sends NOTIFY) on a direct
    connection of its own, made again whenever it drops (the library's own subscription ends instead), and a read at
    least every SAFETY_POLL_SECONDS anyway. On SQLite: a poll that backs off to IDLE_POLL_SECONDS while idle."""

    def __init__(self, ledger: Any, stop: threading.Event, url: str | None = None) -> None:
        self.stop = stop
        recorder = ledger.recorder
        self.channel = recorder.channel_name if isinstance(recorder, PostgresApplicationRecorder) else None
        self.url = direct_database_url(url or ledger.database_url)  # the ledger's own database, reached directly
        self.connection: psycopg.Connection[Any] | None = None
        self.delay = BUSY_POLL_SECONDS

    def found(self) -> None:
        """The job found something: on SQLite, the next wait is short again."""
        self.delay = BUSY_POLL_SECONDS

    def wait(self, within: float | None = None) -> None:
        """After finding nothing new; at most `within` seconds when the job has something due by then."""
        longest = SAFETY_POLL_SECONDS if within is None else max(0.0, min(within, SAFETY_POLL_SECONDS))
        if self.channel is None:
            self.stop.wait(min(self.delay, longest))
            self.delay = min(self.delay * 2, IDLE_POLL_SECONDS)
            return
        deadline = time.monotonic() + longest
        try:
            if self.connection is None:
                self.connection = session_connection(self.url, "listener")
                self.connection.execute(SQL("LISTEN {}").format(Identifier(self.channel)))
                return  # not listening until now: anything written meanwhile is to be read
            while not self.stop.is_set() and (left := deadline - time.monotonic()) > 0:
                # select() on the socket, then psycopg to read what came: psycopg's own timed wait costs ~0.5 ms
                # a call, which at four calls a second was a quarter of the idle budget.
                readable = select.select([self.connection.fileno()], [], [], min(left, STOP_CHECK_SECONDS))[0]
                if readable and any(True for _ in self.connection.notifies(timeout=0)):  # all that came: one read
                    return
        except psycopg.Error as error:
            log.warning("listener: the store is unavailable (%s); polling until it is back", error)
            self.close()
            self.stop.wait(max(0.0, min(deadline - time.monotonic(), RECONNECT_SECONDS)))

    def close(self) -> None:
        if self.connection is not None:
            self.connection.close()
            self.connection = None
