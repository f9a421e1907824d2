"""Two `hajj-ledger serve` processes on one PostgreSQL database, as a season runs them behind a load balancer:
writes spread over both, the same command sent to both at once and twice in one batch, and afterwards the views
equal a replay of the log and the chain verifies, with one series of checkpoints."""

from __future__ import annotations

import json
import os
import re
import sqlite3
import subprocess
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from uuid import uuid4

import httpx
import psycopg
import pytest

from tests.support import (
    EXECUTABLE,
    T0,
    market_in,
    registration,
    registration_command,
    season_opened,
    serving,
)

pytestmark = pytest.mark.postgres
MISSION = "mission-IDN-7"
PILGRIMS = 60
PAIRS = 40


@pytest.fixture
def two_nodes(postgres_url: str, tmp_path: Path) -> Iterator[tuple[list[str], dict[str, str], dict[str, str]]]:
    env = {**os.environ, "HAJJ_LEDGER_DATABASE_URL": season_opened(postgres_url)}
    keys = {}
    for role in ("mission", "ministry"):
        scope = ["--scope", MISSION] if role == "mission" else []
        made = subprocess.run(
            [str(EXECUTABLE), "agency", "add", "--role", role, "--name", f"nodes {role}", *scope],
            capture_output=True, text=True, env=env, timeout=60, check=True,
        )  # fmt: skip
        keys[role] = re.search(r"hl_\S+", made.stdout).group(0)  # type: ignore[union-attr]
    logs = [tmp_path / f"serve-{n}.log" for n in range(2)]
    with serving(env, *logs) as bases:
        yield bases, keys, env
    for log in logs:
        text = log.read_text()
        assert "Traceback" not in text and '"status": 500' not in text, text[-3000:]


@pytest.fixture
def close_after() -> Iterator[Callable[[httpx.Client], httpx.Client]]:
    clients: list[httpx.Client] = []
    yield lambda client: clients.append(client) or client  # type: ignore[func-returns-value]
    for client in clients:
        client.close()


def test_two_nodes_share_one_ledger(
    two_nodes: tuple[list[str], dict[str, str], dict[str, str]],
    tmp_path: Path,
    postgres_url: str,
    close_after: Callable[[httpx.Client], httpx.Client],
) -> None:
    bases, keys, env = two_nodes
    clients = [close_after(httpx.Client(base_url=base, timeout=60)) for base in bases]
    for client in clients:
        client.headers["Authorization"] = f"Bearer {keys['mission']}"

    # Writes spread round-robin: each journey's next step goes to the other node.
    journeys = []
    for n in range(PILGRIMS):
        answer = clients[n % 2].post("/v1/journeys", json=registration("IDN", command_id=str(uuid4())))
        assert answer.status_code == 201, answer.text
        journeys.append(answer.json()["aggregate_id"])
    contract_id = str(market_in(env["HAJJ_LEDGER_DATABASE_URL"], PILGRIMS, mission=MISSION).contract_id)
    steps = [("package-contracted", {"contract_id": contract_id}), ("visa-requested", {})]
    for s, (step, body) in enumerate(steps):
        for n, journey in enumerate(journeys):
            answer = clients[(n + s + 1) % 2].post(
                f"/v1/journeys/{journey}/{step}", json={"occurred_at": T0.isoformat(), **body}
            )
            assert answer.status_code == 201, answer.text

    # The same command to both nodes at once: one new, one repeat with the same outcome, never a 409 or a 5xx.
    with ThreadPoolExecutor(2) as pool:
        for _ in range(PAIRS):
            body = registration("IDN", command_id=str(uuid4()))
            first, second = pool.map(lambda client, body=body: client.post("/v1/journeys", json=body), clients)
            assert sorted([first.status_code, second.status_code]) == [200, 201], (first.text, second.text)
            assert {k: v for k, v in first.json().items() if k != "repeated"} == {
                k: v for k, v in second.json().items() if k != "repeated"
            }

    # The same command twice in one batch: new, then a repeat.
    twice = registration_command("IDN")
    batch = clients[1].post("/v1/commands:batch", json={"commands": [twice, twice]})
    assert [r["status"] for r in batch.json()["results"]] == [201, 200], batch.text
    assert batch.json()["results"][1]["outcome"]["repeated"] is True

    # Nothing stored twice: one Registered per pilgrim.
    with psycopg.connect(postgres_url) as connection:
        (head, registrations, distinct) = connection.execute(
            "SELECT max(notification_id), count(*) FILTER (WHERE topic LIKE %s), "
            "count(DISTINCT originator_id) FILTER (WHERE topic LIKE %s) FROM journeyledger_events",
            ("%Registered", "%Registered"),
        ).fetchone()  # type: ignore[misc]
    assert registrations == distinct == PILGRIMS + PAIRS + 1

    # The served views equal a replay of the log into a file of their own.
    ministry = {"Authorization": f"Bearer {keys['ministry']}"}
    served = httpx.get(f"{bases[0]}/v1/views/journey_status", headers=ministry, timeout=60,
                       params={"limit": 1000, "min_position": head})  # fmt: skip
    assert served.status_code == 200, served.text
    replayed = tmp_path / "replay"
    subprocess.run([str(EXECUTABLE), "replay", "--until", str(head), "--into", f"{replayed}/"],
                   env=env, check=True, capture_output=True, timeout=120)  # fmt: skip
    (file,) = replayed.glob("*.sqlite3")
    with sqlite3.connect(file) as replay:
        expected = sorted(replay.execute("SELECT journey_id, stage, position FROM journey_status").fetchall())
    got = sorted((row["journey_id"].replace("-", ""), row["stage"], row["position"]) for row in served.json()["items"])
    assert got == [(str(j).replace("-", ""), s, p) for j, s, p in expected]

    # One node leads (runs the projections and the sealer); the chain verifies.
    leading = [_leads(base) for base in bases]
    assert sorted(leading) == [False, True], leading
    subprocess.run([str(EXECUTABLE), "checkpoint"], env=env, check=True, capture_output=True, timeout=120)
    verified = subprocess.run([str(EXECUTABLE), "verify", "--json"], env=env, capture_output=True, text=True,
                              timeout=300)  # fmt: skip
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert json.loads(verified.stdout)["ok"] is True


def _leads(base: str) -> bool:
    found = re.search(r"^hajj_ledger_leader(?:\{[^}]*\})? (\S+)$", httpx.get(f"{base}/metrics").text, re.MULTILINE)
    assert found, "no hajj_ledger_leader gauge in /metrics"
    return float(found.group(1)) == 1.0
