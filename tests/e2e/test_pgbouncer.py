"""The ledger behind PgBouncer in transaction mode (Debian's pgbouncer 1.18: no prepared statements across
transactions, no startup options): migrate over the direct URL, then `serve`, its runner and its sealer, and writers
of this process that conflict with it, all through the pooler, in a schema of their own; the views, the history and
the chain agree afterwards."""

from __future__ import annotations

import json
import os
import pwd
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit
from uuid import UUID

import httpx
import psycopg
import pytest

from hajj_ledger.domain.errors import LedgerError
from hajj_ledger.domain.vocabulary import Role
from hajj_ledger.ledger import JourneyLedger, Outcome
from tests.conftest import IN_CI, POSTGRES_AVAILABLE, POSTGRES_URL
from tests.support import (
    EXECUTABLE,
    T0,
    actor,
    command,
    free_port,
    open_market,
    registration,
    season_opened,
    serving,
)

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.skipif(not POSTGRES_AVAILABLE, reason=f"no PostgreSQL at {POSTGRES_URL} (set CI=true to require it)"),
]
PGBOUNCER = shutil.which("pgbouncer") or "/usr/sbin/pgbouncer"
SCHEMA = "season_pooled"
MISSION = "mission-IDN-7"


@dataclass(frozen=True)
class Pooled:
    url: str  # through PgBouncer
    direct: str  # straight to PostgreSQL
    env: dict[str, str]


@pytest.fixture
def pgbouncer(postgres_url: str) -> Iterator[Pooled]:
    """A private PgBouncer in transaction mode before the test's database. It refuses to run as root, so as root it
    runs as the `postgres` user, in a directory of its own."""
    if not os.access(PGBOUNCER, os.X_OK):
        message = "pgbouncer is not installed (apt-get install pgbouncer)"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    database = urlsplit(postgres_url).path.lstrip("/")
    port = free_port()
    directory = Path(tempfile.mkdtemp(prefix="hajj-pgbouncer-"))
    user = urlsplit(postgres_url).username or "postgres"
    # The pooler cannot pass a search path (it refuses the `options` startup parameter): its database entry sets it
    # on each server connection, as docs/operations.md ("PgBouncer") tells operators to.
    (directory / "pgbouncer.ini").write_text(
        f"[databases]\n"
        f"{database} = host=127.0.0.1 port=5432 dbname={database} connect_query='SET search_path = {SCHEMA}'\n"
        f"[pgbouncer]\n"
        f"listen_addr = 127.0.0.1\nlisten_port = {port}\nunix_socket_dir =\n"
        f"auth_type = trust\nauth_file = {directory}/users.txt\n"
        f"pool_mode = transaction\ndefault_pool_size = 6\nmax_client_conn = 200\n"
        f"logfile = {directory}/pgbouncer.log\n"
    )
    (directory / "users.txt").write_text(f'"{user}" ""\n')
    command = [PGBOUNCER, str(directory / "pgbouncer.ini")]
    if os.geteuid() == 0:
        postgres = pwd.getpwnam("postgres")
        os.chown(directory, postgres.pw_uid, postgres.pw_gid)
        command = ["setpriv", f"--reuid={postgres.pw_uid}", f"--regid={postgres.pw_gid}", "--clear-groups", *command]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    pooled = f"postgresql://{user}@127.0.0.1:{port}/{database}?schema={SCHEMA}&pool_mode=transaction"
    direct = f"{postgres_url}?schema={SCHEMA}"
    env = {**os.environ, "HAJJ_LEDGER_DATABASE_URL": pooled, "HAJJ_LEDGER_DIRECT_DATABASE_URL": direct}
    try:
        for _ in range(100):
            try:
                psycopg.connect(f"postgresql://{user}@127.0.0.1:{port}/{database}", connect_timeout=1).close()
                break
            except psycopg.OperationalError:
                assert process.poll() is None, (directory / "pgbouncer.log").read_text()
                time.sleep(0.1)
        else:
            pytest.fail(f"pgbouncer never answered: {(directory / 'pgbouncer.log').read_text()}")
        yield Pooled(pooled, direct, env)
    finally:
        process.terminate()
        process.wait(timeout=20)
        shutil.rmtree(directory, ignore_errors=True)


def run(env: dict[str, str], *arguments: str) -> str:
    done = subprocess.run(
        [str(EXECUTABLE), *arguments], env=env, capture_output=True, text=True, timeout=180, check=False
    )
    assert done.returncode == 0, (arguments, done.stdout, done.stderr)
    return done.stdout


@pytest.fixture
def served(pgbouncer: Pooled, tmp_path: Path) -> Iterator[tuple[str, str]]:
    """`hajj-ledger serve` (with its runner and sealer) through the pooler; its address and a mission's key."""
    run(pgbouncer.env, "migrate")
    added = run(pgbouncer.env, "agency", "add", "--role", "mission", "--name", "the mission", "--scope", MISSION)
    key = added.split("API key (shown once, keep it secret): ")[1].strip()
    season_opened(pgbouncer.url)
    with serving(pgbouncer.env, tmp_path / "serve.log") as [base]:
        yield base, key
    assert "prepared statement" not in (tmp_path / "serve.log").read_text()


def test_the_ledger_behind_pgbouncer_in_transaction_mode(pgbouncer: Pooled, served: tuple[str, str]) -> None:
    base, key = served
    headers = {"Authorization": f"Bearer {key}"}

    def register(index: int) -> UUID:
        answer = httpx.post(f"{base}/v1/journeys", json=registration("IDN"), headers=headers, timeout=30)
        assert answer.status_code == 201, answer.text
        return UUID(answer.json()["aggregate_id"])

    with ThreadPoolExecutor(8) as pool:
        journeys = list(pool.map(register, range(40)))

    # Three writers contract every journey at once: the server, and two ledgers of this process whose caches
    # hold each journey as registered. All but one lose each race: their transactions fail on the version
    # conflict, roll back, and the command is run again on the journey as stored, where it is refused.
    writers = [JourneyLedger(pgbouncer.url, create_tables=False) for _ in range(2)]
    for ledger in writers:
        assert all(ledger.journey(j).stage == "registered" for j in journeys)
    contracts = {j: open_market(writers[0], 1, mission=MISSION).contract_id for j in journeys}  # a place each

    def over_http(journey_id: UUID) -> bool:
        body = {"occurred_at": T0.isoformat(), "contract_id": str(contracts[journey_id])}
        answer = httpx.post(f"{base}/v1/journeys/{journey_id}/package-contracted", json=body, headers=headers)
        assert answer.status_code in (201, 409), answer.text
        return answer.status_code == 201

    def in_process(ledger: JourneyLedger, journey_id: UUID) -> bool:
        contract = command("PackageContracted", journey_id=journey_id, contract_id=contracts[journey_id])
        try:
            return isinstance(ledger.record(contract, actor(Role.MISSION, MISSION)), Outcome)
        except LedgerError:
            return False

    try:
        with ThreadPoolExecutor(12) as pool:
            races = {
                j: [
                    pool.submit(over_http, j),
                    pool.submit(in_process, writers[0], j),
                    pool.submit(in_process, writers[1], j),
                ]
                for j in journeys
            }
            won = {j: [f.result() for f in futures] for j, futures in races.items()}
        assert all(sum(w) == 1 for w in won.values()), "each journey contracted exactly once"
        head = writers[0].head()
        for j in journeys:
            history = [type(e).__name__ for e in writers[0].history(j)]
            assert history == ["Registered", "PackageContracted"], history
    finally:
        for ledger in writers:
            ledger.close()

    # The server's runner, through the pooler, brings the views to the head.
    listed = httpx.get(
        f"{base}/v1/views/journey_status", params={"min_position": head, "limit": 100}, headers=headers, timeout=30
    )
    assert listed.status_code == 200, listed.text
    rows: list[dict[str, Any]] = listed.json()["items"]
    assert sorted(UUID(r["journey_id"]) for r in rows) == sorted(journeys)
    assert {r["stage"] for r in rows} == {"contracted"}

    # The chain, sealed through the pooler by the server's sealer and by this checkpoint, verifies.
    run(pgbouncer.env, "checkpoint")
    report = json.loads(run(pgbouncer.env, "verify", "--json"))
    # The season's opening; each journey's registration and contracted package (with its place taken), and its
    # market's seven events.
    assert report["ok"] and report["sealed_head"] == head and report["events"] == 1 + 10 * len(journeys), report
    with psycopg.connect(pgbouncer.direct.split("?")[0]) as connection:
        public = connection.execute("SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public'")
        assert public.fetchone() == (0,), "nothing of the ledger outside its schema"
