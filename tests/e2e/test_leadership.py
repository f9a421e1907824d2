"""Nodes as a season runs them: several `serve` processes (or `serve --api-only` and a `worker`) on one database,
one of them leading (the projection runner and the sealer), a takeover when the leader is killed, and SIGTERM
ending a node and everything it started."""

from __future__ import annotations

import contextlib
import itertools
import os
import re
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import psycopg
import pytest

from hajj_ledger.audit.chain import CHECKPOINT_EVERY
from hajj_ledger.projections import PROJECTIONS
from hajj_ledger.projections.runner import Runner
from tests.conftest import POSTGRES_AVAILABLE
from tests.integration.test_projections import clean_rebuild, table_rows
from tests.support import EXECUTABLE, eventually, free_port, ready, registration, season_opened

SHUTDOWN_LIMIT = 10.0  # seconds from SIGTERM until a node and every process it started are gone
TAKEOVER_LIMIT = 5.0  # seconds from a leader's kill -9 until another node runs the runner and the sealer
needs_postgres = [
    pytest.mark.postgres,
    pytest.mark.skipif(not POSTGRES_AVAILABLE, reason="no PostgreSQL (set CI=true to require it)"),
]


Process = tuple[int, str]  # a pid and its start time: a pid alone may be another process's by the time it is looked at


def descendants(pid: int) -> set[Process]:
    """Every process below `pid`, from /proc."""
    parents: dict[Process, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            parents[int(entry.name), fields[19]] = int(fields[1])
    found: set[Process] = set()
    frontier = {pid}
    while frontier:
        children = {child for child, parent in parents.items() if parent in frontier} - found
        found |= children
        frontier = {child_pid for child_pid, _ in children}
    return found


def alive(process: Process) -> bool:
    pid, started = process
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return False
    return fields[19] == started and fields[0] != "Z"  # a zombie has ended; only its parent has not looked yet


def survivors(processes: set[Process]) -> str:
    """The command lines of those still alive, for a failure's message."""
    lines = []
    for pid, _ in sorted(filter(alive, processes)):
        with contextlib.suppress(OSError):
            lines.append(f"{pid}: {Path(f'/proc/{pid}/cmdline').read_bytes().replace(bytes(1), b' ').decode()}")
    return "; ".join(lines) or "none"


class Node:
    """`hajj-ledger serve ARGS` (or another command) as a process, its output in a log file."""

    def __init__(self, env: dict[str, str], tmp_path: Path, *args: str, http: bool = True) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.log_path = tmp_path / f"node-{self.port}.log"
        command = [str(EXECUTABLE), "serve", "--port", str(self.port), *args] if http else [str(EXECUTABLE), *args]
        with self.log_path.open("w") as log:
            self.process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
        if http:
            eventually(lambda: ready(self.base, self.process, self.log_path), 30, f"a node ready ({self.log()})")

    def log(self) -> str:
        return self.log_path.read_text()

    def leads(self) -> bool | None:
        """The node's leader gauge; None where it has none (or is gone)."""
        try:
            text = httpx.get(f"{self.base}/metrics", timeout=2).text
        except httpx.TransportError:
            return None
        found = re.search(r"^hajj_ledger_leader (\S+)$", text, re.MULTILINE)
        return None if found is None else float(found.group(1)) == 1.0

    def terminate(self) -> float:
        """SIGTERM; seconds until the node and every process it started have ended."""
        below = descendants(self.process.pid)
        self.process.send_signal(signal.SIGTERM)
        self.process.wait(SHUTDOWN_LIMIT * 2)
        try:
            return eventually(lambda: not any(map(alive, below)), SHUTDOWN_LIMIT * 2, "the node's processes end")
        except AssertionError as failed:
            raise AssertionError(f"{failed}; still alive: {survivors(below)}") from None

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)


@pytest.fixture
def env(postgres_url: str) -> dict[str, str]:
    return {**os.environ, "HAJJ_LEDGER_DATABASE_URL": season_opened(postgres_url)}


def mission_key(env: dict[str, str]) -> str:
    made = subprocess.run(
        [str(EXECUTABLE), "agency", "add", "--role", "mission", "--name", "e2e", "--scope", "mission-IDN-7"],
        capture_output=True, text=True, env=env, timeout=60, check=True,
    )  # fmt: skip
    found = re.search(r"hl_\S+", made.stdout)
    assert found is not None, made.stdout
    return found.group(0)


def register(base: str, key: str, count: int) -> list[int]:
    """`count` new journeys in one batch; their positions."""
    commands = [{"event": "Registered", **registration("IDN")} for _ in range(count)]
    answer = httpx.post(
        f"{base}/v1/commands:batch", json={"commands": commands}, headers={"Authorization": f"Bearer {key}"}, timeout=60
    )
    assert answer.status_code == 200, answer.text
    results = answer.json()["results"]
    assert [r["status"] for r in results] == [201] * count, results
    return [r["outcome"]["position"] for r in results]


def reached(url: str) -> tuple[int, int, int]:
    """(the head of the log, the least position of the serving views, the sealed position)."""
    with psycopg.connect(url) as connection:
        row = connection.execute(
            "SELECT (SELECT coalesce(max(notification_id), 0) FROM journeyledger_events), "
            "(SELECT min(position) FROM projection_positions WHERE serving), (SELECT position FROM ledger_seal)"
        ).fetchone()
    assert row is not None
    return row[0], row[1], row[2]


def lock_holders(url: str) -> int:
    with psycopg.connect(url) as connection:
        row = connection.execute(
            "SELECT count(*) FROM pg_locks JOIN pg_stat_activity USING (pid) WHERE locktype = 'advisory' AND granted "
            "AND application_name = 'hajj-ledger leader lock' AND pg_locks.database = "
            "(SELECT oid FROM pg_database WHERE datname = current_database())"
        ).fetchone()
    assert row is not None
    count: int = row[0]
    return count


class Watch:
    """Samples, in a thread, how many nodes say they lead and how many sessions hold the leader lock."""

    def __init__(self, url: str, nodes: list[Node]) -> None:
        self.url = url
        self.nodes = nodes
        self.most_leaders = 0
        self.most_holders = 0
        self.done = threading.Event()
        self.thread = threading.Thread(target=self.sample, daemon=True)

    def sample(self) -> None:
        while not self.done.wait(0.1):
            leaders = sum(bool(node.leads()) for node in self.nodes if node.process.poll() is None)
            self.most_leaders = max(self.most_leaders, leaders)
            self.most_holders = max(self.most_holders, lock_holders(self.url))

    def __enter__(self) -> Watch:
        self.thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.done.set()
        self.thread.join(10)


@pytest.fixture
def nodes() -> Iterator[list[Node]]:
    started: list[Node] = []
    yield started
    for node in started:
        node.stop()


@pytest.mark.serial  # a 5 s deadline: timed alone, not beside the rest of the suite on 2 cores
@pytest.mark.postgres
@pytest.mark.skipif(not POSTGRES_AVAILABLE, reason="no PostgreSQL (set CI=true to require it)")
def test_two_nodes_one_leader_a_takeover_after_kill_9_and_the_views_equal_a_rebuild(
    env: dict[str, str], postgres_url: str, tmp_path: Path, nodes: list[Node]
) -> None:
    key = mission_key(env)
    nodes += [Node(env, tmp_path), Node(env, tmp_path)]
    eventually(lambda: [n.leads() for n in nodes].count(True) == 1, 10, "one leader")
    writing = threading.Event()
    written: list[int] = []

    def write() -> None:
        turn = 0
        while not writing.is_set():
            live = [n for n in nodes if n.process.poll() is None]
            if not live:
                return
            turn += 1
            with contextlib.suppress(httpx.TransportError):  # the node just killed: the next batch goes to another
                written.extend(register(live[turn % len(live)].base, key, 50))

    with Watch(postgres_url, nodes) as watch:
        writer = threading.Thread(target=write, daemon=True)
        writer.start()
        time.sleep(3)
        [leader] = [n for n in nodes if n.leads()]
        [survivor] = [n for n in nodes if n is not leader]
        worker = descendants(leader.process.pid)
        assert worker, "the leader runs its jobs in a worker beside the server"
        assert not survivor.leads() and lock_holders(postgres_url) == 1

        leader.process.kill()
        killed = time.monotonic()
        leader.process.wait(10)
        # The killed node's worker finishes its batch and lets the lock go; then the survivor leads, and what is
        # written from then on is projected and sealed by it.
        eventually(lambda: survivor.leads() is True, 30, "the survivor leads")
        after = max(register(survivor.base, key, 1))
        eventually(lambda: min(reached(postgres_url)[1:]) >= after, 30, "the survivor projects and seals")
        took = time.monotonic() - killed
        assert took <= TAKEOVER_LIMIT, f"the takeover took {took:.1f} s"
        eventually(lambda: not any(map(alive, worker)), 5, "the killed node's worker ends with it")
        time.sleep(2)  # more writes, to the survivor alone
        writing.set()
        writer.join(60)
    assert watch.most_leaders == 1 and watch.most_holders == 1
    assert len(written) == len(set(written)) > 200

    eventually(lambda: len(set(reached(postgres_url))) == 1, 60, "the views and the seal reach the head")
    assert survivor.terminate() < SHUTDOWN_LIMIT

    report = views_and_chain_hold(postgres_url, env)
    head = reached(postgres_url)[0]
    assert f'"sealed_head": {head}' in report and '"unsealed": 0' in report
    with psycopg.connect(postgres_url) as connection:
        checkpoints = [row[0] for row in connection.execute("SELECT position FROM ledger_checkpoints ORDER BY 1")]
    # One series: a checkpoint every CHECKPOINT_EVERY positions, none from a second sealer's timer or batches.
    assert len(checkpoints) >= 1 and all(b - a >= CHECKPOINT_EVERY for a, b in itertools.pairwise(checkpoints))


def views_and_chain_hold(url: str, env: dict[str, str]) -> str:
    """Every view equals a rebuild from the log, and `verify` passes on the store at `url`: its JSON report."""
    runner = Runner(PROJECTIONS, url)
    try:
        for projection in PROJECTIONS:
            assert table_rows(runner, projection) == clean_rebuild(runner, projection), projection.name
    finally:
        runner.close()
    verified = subprocess.run(
        [str(EXECUTABLE), "verify", "--json"], capture_output=True, text=True, timeout=120, check=False,
        env={**env, "HAJJ_LEDGER_DATABASE_URL": url},
    )  # fmt: skip
    assert verified.returncode == 0, verified.stdout + verified.stderr
    return verified.stdout


@pytest.mark.postgres
@pytest.mark.skipif(not POSTGRES_AVAILABLE, reason="no PostgreSQL (set CI=true to require it)")
def test_an_api_only_node_beside_a_worker(
    env: dict[str, str], postgres_url: str, tmp_path: Path, nodes: list[Node]
) -> None:
    key = mission_key(env)
    nodes.append(Node(env, tmp_path, "--api-only"))
    api = nodes[0]
    time.sleep(1.5)
    assert descendants(api.process.pid) == set() and api.leads() is None  # it never runs the jobs
    nodes.append(Node(env, tmp_path, "worker", http=False))
    worker = nodes[1]
    eventually(lambda: lock_holders(postgres_url) == 1, 30, "the worker leads")
    position = max(register(api.base, key, 3))
    status = httpx.get(
        f"{api.base}/v1/views/journey_status", params={"min_position": position},
        headers={"Authorization": f"Bearer {key}"}, timeout=30,
    )  # fmt: skip
    assert status.status_code == 200, status.text
    eventually(lambda: min(reached(postgres_url)[1:]) >= position, 10, "every view and the seal reach it")
    assert worker.terminate() < SHUTDOWN_LIMIT and worker.process.returncode == 0
    assert "leading: running projection runner, sealer" in worker.log()
    assert api.terminate() < SHUTDOWN_LIMIT


@pytest.mark.parametrize("store", ["sqlite", pytest.param("postgres", marks=needs_postgres)])
def test_sigterm_ends_a_node_and_everything_it_started(
    store: str, tmp_path: Path, nodes: list[Node], request: pytest.FixtureRequest
) -> None:
    """On SQLite too the node projects and seals (its worker leads by a file lock), and SIGTERM ends it all, with a
    client still connected."""
    url = f"sqlite:///{tmp_path}/ledger.sqlite3" if store == "sqlite" else request.getfixturevalue("postgres_url")
    env = {**os.environ, "HAJJ_LEDGER_DATABASE_URL": season_opened(url)}
    key = mission_key(env)
    nodes.append(Node(env, tmp_path))
    node = nodes[0]
    eventually(lambda: node.leads() is True, 10, "the node leads")
    position = max(register(node.base, key, 5))
    with httpx.Client(headers={"Authorization": f"Bearer {key}"}, timeout=30) as client:  # a kept-alive connection
        status = client.get(f"{node.base}/v1/views/journey_status", params={"min_position": position})
        assert status.status_code == 200 and len(status.json()["items"]) == 5, status.text
        below = descendants(node.process.pid)
        assert below, "the worker"
        assert node.terminate() < SHUTDOWN_LIMIT
    assert not any(map(alive, below)), survivors(below)
