"""The leader lock, the leader loop and the log watch: one leader at a time, a takeover when it dies or loses its
connection, and followers that wake on writes (PostgreSQL: LISTEN/NOTIFY) and come back when their connection does."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path
from typing import Any

import psycopg
import pytest

from hajj_ledger import leadership
from hajj_ledger.leadership import FileLock, LogWatch, PostgresLock, lead, leader_lock
from hajj_ledger.ledger import JourneyLedger
from hajj_ledger.migrations import upgrade
from hajj_ledger.projections import PROJECTIONS
from hajj_ledger.projections.runner import Runner
from hajj_ledger.projections.schema import engine_for
from hajj_ledger.store.connections import DIRECT_DATABASE_URL_VARIABLE
from tests.conftest import POSTGRES_AVAILABLE
from tests.support import eventually, register

needs_postgres = [
    pytest.mark.postgres,
    pytest.mark.skipif(not POSTGRES_AVAILABLE, reason="no PostgreSQL (set CI=true to require it)"),
]


def terminate(url: str, application_name: str, pid: int | None = None) -> int:
    """End the server sessions of that name (that one, if `pid`), as a network failure or an operator would; how
    many there were."""
    with psycopg.connect(url, autocommit=True) as admin:
        ended = admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = %s "
            "AND datname = current_database() AND pid = coalesce(%s, pid)",
            (application_name, pid),
        ).fetchall()
    return len(ended)


def backend(lock: Any) -> int:
    assert isinstance(lock, PostgresLock) and lock.connection is not None
    pid: int = lock.connection.info.backend_pid
    return pid


@pytest.mark.parametrize("schema", ["public", "other"])
@pytest.mark.postgres
@pytest.mark.skipif(not POSTGRES_AVAILABLE, reason="no PostgreSQL (set CI=true to require it)")
def test_one_of_two_postgres_holders_wins_and_the_other_takes_over_when_its_connection_drops(
    postgres_url: str, schema: str
) -> None:
    url = f"{postgres_url}?schema={schema}&connect_timeout=3"  # the ledger's own settings: not libpq's, left out
    first, second = leader_lock(url), leader_lock(url)
    elsewhere = leader_lock(f"{postgres_url}?schema=another")  # another deployment in the same database
    try:
        assert first.acquire() and not second.acquire() and elsewhere.acquire()
        assert first.held() and not second.held()
        assert terminate(postgres_url, "hajj-ledger leader lock", backend(first)) == 1
        assert not first.held()  # it notices: its connection is gone
        assert second.acquire() and second.held() and not first.acquire()
        second.release()  # its session ends a moment after its connection closes
        eventually(first.acquire, within=2)
    finally:
        for lock in (first, second, elsewhere):
            lock.release()


def test_one_of_two_file_holders_wins_until_it_lets_go(tmp_path: Path) -> None:
    lock = leader_lock(f"sqlite:///{tmp_path}/ledger.sqlite3")
    assert isinstance(lock, FileLock) and lock.path == tmp_path / "ledger.sqlite3.leader"
    other = FileLock(lock.path)
    assert lock.acquire() and not other.acquire() and lock.held() and not other.held()
    lock.release()
    assert other.acquire() and not lock.acquire()
    other.release()


class Leaders:
    """Two nodes' leader loops in threads; their job notes which node runs and fails if two ever do at once."""

    def __init__(self, locks: list[Any]) -> None:
        self.locks = locks
        self.running: list[int] = []
        self.overlaps = 0
        self.guard = threading.Lock()
        self.stops = [threading.Event() for _ in locks]
        self.threads = [
            threading.Thread(target=lead, args=({"job": self.job(i)}, self.stops[i], lock), daemon=True)
            for i, lock in enumerate(locks)
        ]

    def job(self, node: int) -> Callable[[threading.Event], None]:
        def run(stop: threading.Event) -> None:
            with self.guard:
                self.overlaps += bool(self.running)
                self.running.append(node)
            stop.wait()
            with self.guard:
                self.running.remove(node)

        return run

    def leader(self) -> int | None:
        with self.guard:
            return self.running[0] if self.running else None

    def __enter__(self) -> Leaders:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        for stop in self.stops:
            stop.set()
        for thread in self.threads:
            thread.join(10)
        assert not any(thread.is_alive() for thread in self.threads)


@pytest.mark.parametrize("store", ["sqlite", pytest.param("postgres", marks=needs_postgres)])
def test_the_leader_loop_runs_the_job_on_one_node_and_hands_over(
    store: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    url = f"sqlite:///{tmp_path}/ledger.sqlite3" if store == "sqlite" else request.getfixturevalue("postgres_url")
    with Leaders([leader_lock(url), leader_lock(url)]) as leaders:
        eventually(lambda: leaders.leader() is not None, within=5)
        first = leaders.leader()
        assert first is not None
        time.sleep(2.5)  # the standby keeps offering: still one leader
        assert leaders.leader() == first and leaders.overlaps == 0
        if store == "postgres":
            # The leader's connection drops (its lock with it): it stops its job, the other takes over.
            assert terminate(url, "hajj-ledger leader lock", backend(leaders.locks[first])) == 1
        else:
            leaders.stops[first].set()  # one machine: the leader stepping down is the only way to lose it
        took = eventually(lambda: leaders.leader() not in (None, first), within=5)
        assert took < 4 and leaders.overlaps == 0
        if store == "postgres":
            eventually(lambda: leaders.locks[first].held() is False, within=1)


def test_a_job_that_fails_is_started_again(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(leadership, "OFFER_SECONDS", 0.1)
    monkeypatch.setattr(leadership, "HANDOVER_SECONDS", 0.1)
    runs: list[float] = []
    stop = threading.Event()

    def failing(_: threading.Event) -> None:
        runs.append(time.monotonic())
        if len(runs) >= 3:
            stop.set()
        raise RuntimeError("a bug")

    reported: list[bool] = []
    lead({"failing": failing}, stop, leader_lock(f"sqlite:///{tmp_path}/l.sqlite3"), reported.append)
    assert len(runs) == 3 and reported == [True, False] * 3


# Following the log.


@pytest.fixture
def runner(store_url: str) -> Iterator[Runner]:
    JourneyLedger(store_url).close()
    engine = engine_for(store_url)
    upgrade(engine)
    engine.dispose()
    found = Runner(PROJECTIONS, store_url)
    yield found
    found.close()


def caught_up(runner: Runner, position: int) -> bool:
    return all(status.position >= position for status in runner.status())


def test_a_following_runner_sees_each_write_and_stops_when_told(
    runner: Runner, store_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # PostgreSQL: were the runner not woken by the notifications, it would see each write only this late.
    monkeypatch.setattr(leadership, "SAFETY_POLL_SECONDS", 60.0)
    stop = threading.Event()
    following = threading.Thread(target=runner.run, kwargs={"stop": stop}, daemon=True)
    following.start()
    ledger = JourneyLedger(store_url)
    try:
        for _ in range(3):
            time.sleep(1)  # idle: the SQLite poll backs off
            [recording] = ledger.save(register())
            assert eventually(partial(caught_up, runner, recording.notification.id), within=10) < 10
    finally:
        stop.set()
        following.join(2)
        ledger.close()
    assert not following.is_alive()


def test_the_sqlite_poll_backs_off_while_idle(tmp_path: Path) -> None:
    ledger = JourneyLedger(f"sqlite:///{tmp_path}/ledger.sqlite3")
    stop = threading.Event()
    watch = LogWatch(ledger, stop)
    try:
        stop.set()  # each wait returns at once: only the sleeps it would take are looked at
        delays = []
        for _ in range(6):
            delays.append(watch.delay)
            watch.wait()
        watch.found()
        assert delays == [0.05, 0.1, 0.2, 0.4, 0.5, 0.5] and watch.delay == 0.05
    finally:
        watch.close()
        ledger.close()


@pytest.mark.postgres
@pytest.mark.skipif(not POSTGRES_AVAILABLE, reason="no PostgreSQL (set CI=true to require it)")
def test_the_log_watch_listens_again_after_its_connection_drops(postgres_url: str) -> None:
    ledger = JourneyLedger(postgres_url)
    stop = threading.Event()
    watch = LogWatch(ledger, stop, postgres_url)
    try:
        watch.wait()  # connects and starts listening: returns at once, anything may have been written before
        assert terminate(postgres_url, "hajj-ledger listener") == 1
        started = time.monotonic()
        watch.wait()  # finds its connection gone; says so by returning: the follower reads the log once more
        watch.wait()  # listening again
        assert time.monotonic() - started < leadership.SAFETY_POLL_SECONDS + 1
        woken = threading.Event()

        def wait() -> None:
            watch.wait()
            woken.set()

        waiting = threading.Thread(target=wait, daemon=True)
        started = time.monotonic()
        waiting.start()
        time.sleep(0.3)
        ledger.save(register())
        assert woken.wait(5) and time.monotonic() - started < 1.0  # the notification, not the safety poll
        stop.set()
        started = time.monotonic()
        watch.wait()
        assert time.monotonic() - started < 0.1
    finally:
        watch.close()
        ledger.close()


@pytest.mark.postgres
@pytest.mark.skipif(not POSTGRES_AVAILABLE, reason="no PostgreSQL (set CI=true to require it)")
def test_the_lock_and_the_listener_use_the_direct_url(postgres_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Behind PgBouncer the ledger's URL names the bouncer; session state goes to PostgreSQL itself."""
    ledger = JourneyLedger(postgres_url)
    pooled = postgres_url.replace(":5432/", ":1/")  # nothing listens there: were it used, connecting would fail
    monkeypatch.setenv(DIRECT_DATABASE_URL_VARIABLE, postgres_url)
    lock = leader_lock(pooled)
    watch = LogWatch(ledger, threading.Event(), pooled)
    try:
        assert lock.acquire() and lock.held()
        watch.wait()
        assert watch.connection is not None  # listening
    finally:
        watch.close()
        lock.release()
        ledger.close()
