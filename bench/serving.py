"""The serving tier (issue 13): `hajj-ledger serve` against a bare server measured in the same run, several API
nodes on one database, their PostgreSQL connections, and leader failover.

- **Baseline**: bench/bare_server.py, a bare ASGI app on uvicorn with as many workers as the ledger's serve, doing
  the least per request: the same journey_status row read by id, a one-row INSERT, a 1,000-row INSERT.
- **Load**: Debian's `wrk` in its own process, the same Lua scripts (bench/lua/) for both sides; 64 connections,
  4 for batches. Rounds interleave the two sides (baseline first, then ledger first); each ratio is the median of
  the rounds' ratios, each round's ledger figure over the baseline's of the same round.
- **API nodes**: 2 and 4 `serve` processes on one database, driven by bench/spread_load.py (its own process):
  hospital admissions and discharges on journeys in the Kingdom, spread round-robin over the nodes against the
  same load kept on one node per journey. Re-run batches are read from each node's /metrics.
- **Connections**: each node's PostgreSQL connections (its processes' sockets matched to pg_stat_activity), at
  the middle and the end of each node run.
- **Failover**: `kill -9` of the node leading the projection runner and the sealer; the time until the views and
  the chain reach a command recorded after the kill, through the surviving node.

Every server runs in its own process group and is killed with it, on a fresh database that is dropped after.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import random
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import uuid4

import psycopg

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
LUA = HERE / "lua"
LEDGER = Path(sys.executable).parent / "hajj-ledger"
UVICORN = Path(sys.executable).parent / "uvicorn"
SEASON, COUNTRY, PORT_OF_ENTRY = 1446, "IDN", "HADITHA"


@dataclass(frozen=True)
class Plan:
    rounds: int = 3  # baseline and ledger, interleaved
    warmup: float = 2.0
    seconds: float = 7.0  # reads and single steps
    batch_seconds: float = 10.0
    node_rounds: int = 2  # each of 2 and 4 nodes, spread and pinned
    node_warmup: float = 2.5  # each node's write cache filled before the window opens
    node_seconds: float = 6.0
    node_journeys: int = 640  # ten a client: each journey written often, as on a busy day
    journeys: int = 5200  # in the Kingdom, read and written: a slice of 640 for each node run
    workers: int = 2  # uvicorn workers of the ledger's serve and of the baseline
    connections: int = 64
    batch_connections: int = 4
    node_counts: tuple[int, ...] = (2, 4)


FULL = Plan()
QUICK = Plan(
    rounds=1, warmup=1.5, seconds=4, batch_seconds=6, node_rounds=1, node_warmup=2, node_seconds=4, journeys=640
)

# The issue's targets, in one place: ledger / baseline ratios, and the absolute ones.
TARGETS = {
    "read": 0.5,  # requests/s, at least
    "read_p99": 2.0,  # p99 over the baseline's, at most
    "write": 0.6,
    "batch": 0.5,  # issue 29: the batch endpoint at half the bare 1,000-row server at least
    "nodes": 0.8,  # spread over pinned, at least
    "rerun_share": 0.05,  # re-run batches, below
    "connections_over_pools": 2,  # a node's connections above its configured pool sizes, at most
    "failover_s": 5.0,
}


# Parsing what the tools say (pure: tests/e2e/test_bench.py checks these).


def parse_wrk(output: str) -> dict[str, Any]:
    """The figures bench/lua/common.lua prints at the end of a wrk run, with req/s and the error count."""
    line = next((x for x in output.splitlines() if x.startswith("BENCH_RESULT ")), None)
    if line is None:
        raise RuntimeError(f"wrk printed no result:\n{output[-2000:]}")
    result: dict[str, Any] = json.loads(line.removeprefix("BENCH_RESULT "))
    result["rps"] = result["requests"] / (result["duration_us"] / 1e6)
    result["errors"] = sum(result[k] for k in ("errors_connect", "errors_read", "errors_write", "errors_status",
                                               "errors_timeout"))  # fmt: skip
    result["valid"] = result["requests"] > 0 and result["errors"] <= 0.01 * result["requests"]
    return result


SAMPLE = re.compile(r"^([A-Za-z_:][A-Za-z0-9_:]*)(?:\{[^}]*\})?\s+(\S+)")


def metric_totals(text: str) -> dict[str, float]:
    """Prometheus text: each sample's value summed over its labels, by metric name."""
    totals: dict[str, float] = {}
    for line in text.splitlines():
        match = SAMPLE.match(line)
        if match and not line.startswith("#"):
            with contextlib.suppress(ValueError):
                totals[match[1]] = totals.get(match[1], 0.0) + float(match[2])
    return totals


def write_counters(text: str) -> dict[str, float | None]:
    """The write side's counters on /metrics, by what their names say: batches, re-runs, conflicts, give-ups, stale
    cache entries (None where a node publishes no such counter)."""
    kinds: dict[str, float | None] = dict.fromkeys(("batches", "reruns", "conflicts", "give_ups", "stale"))
    for name, value in metric_totals(text).items():
        if not name.startswith("hajj_ledger_") or name.endswith(("_created", "_bucket", "_count", "_sum")):
            continue
        plain = name.replace("_", "")
        if "rerun" in plain or "retried" in plain:
            kind = "reruns"
        elif "giveup" in plain or "gaveup" in plain:
            kind = "give_ups"
        elif "conflict" in plain:
            kind = "conflicts"
        elif "stale" in plain:
            kind = "stale"
        elif "batches" in plain:
            kind = "batches"
        else:
            continue
        kinds[kind] = (kinds[kind] or 0.0) + value
    return kinds


def counter_growth(before: dict[str, float | None], after: dict[str, float | None]) -> dict[str, float | None]:
    return {k: None if after[k] is None else after[k] - (before[k] or 0.0) for k in after}  # type: ignore[operator]


def rerun_share(counters: dict[str, float | None]) -> float | None:
    batches, reruns = counters.get("batches"), counters.get("reruns")
    return reruns / batches if batches and reruns is not None else None


def judge(value: float | None, target: float, *, at_least: bool) -> str:
    if value is None:
        return "n/a"
    return "yes" if (value >= target if at_least else value <= target) else "**no**"


def median_ratio(pairs: list[tuple[float, float]]) -> float | None:
    """The median over rounds of each round's ledger figure over the baseline's."""
    ratios = [ledger / base for ledger, base in pairs if base]
    return statistics.median(ratios) if ratios else None


# Processes.


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def process_tree(pid: int) -> dict[int, list[str]]:
    """The process and its descendants, with their command lines."""
    found: dict[int, list[str]] = {}
    todo = [pid]
    while todo:
        parent = todo.pop()
        with contextlib.suppress(OSError):
            found[parent] = Path(f"/proc/{parent}/cmdline").read_bytes().decode().split("\0")
        for task in Path(f"/proc/{parent}/task").glob("*"):  # a child started from a thread is that thread's
            with contextlib.suppress(OSError):
                todo += map(int, (task / "children").read_text().split())
    return found


def role_of(argv: list[str]) -> str:
    """What a node's process is, from its command line: its background jobs, an HTTP worker, or the main one."""
    for command, role in (("project", "runner"), ("seal", "sealer"), ("worker", "jobs")):
        if command in argv[1:]:
            return role
    return "http worker" if any("multiprocessing" in a for a in argv) else "main"


class Server:
    """A server in its own process group, ready when /readyz answers (the baseline answers it 401)."""

    def __init__(self, name: str, argv: list[str], port: int, url: str, logs: Path, env: dict[str, str]) -> None:
        self.name, self.port, self.log, self.argv = name, port, logs / f"{name}.log", argv
        self.env = {**os.environ, "PYTHONPATH": str(ROOT), "HAJJ_LEDGER_DATABASE_URL": url, **env}
        self.process = self._spawn()

    def _spawn(self) -> subprocess.Popen[bytes]:
        with self.log.open("a") as log:
            return subprocess.Popen(self.argv, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                                    env=self.env)  # fmt: skip

    def wait_ready(self, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        starts = 1
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                self.stop()
                # The database server is shared: wait for a free connection slot, a few times, then give up.
                if starts < 4 and "too many clients" in self.log.read_text(errors="replace")[-3000:]:
                    time.sleep(2 * starts)
                    starts += 1
                    self.process = self._spawn()
                    continue
                raise RuntimeError(f"{self.name} exited ({self.process.returncode}); its log: {self.log}")
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{self.port}/readyz", timeout=2)
                return
            except urllib.error.HTTPError as error:
                if error.code == 401:  # the baseline: up
                    return
            except OSError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"{self.name} not ready within {timeout:.0f} s; its log: {self.log}")

    def tree(self) -> dict[int, list[str]]:
        return process_tree(self.process.pid)

    def stop(self) -> None:
        """SIGTERM to the whole group, SIGKILL to whatever is left of it after 15 s."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGTERM)
            deadline = time.monotonic() + 15
            while time.monotonic() < deadline:
                os.killpg(self.process.pid, 0)  # ProcessLookupError once the group is empty
                self.process.poll()
                time.sleep(0.1)
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()


@contextlib.contextmanager
def servers(*started: Server) -> Iterator[list[Server]]:
    """Servers started together, waited for together, always stopped."""
    try:
        for server in started:
            server.wait_ready()
        yield list(started)
    finally:
        for server in started:  # all told at once, then each waited for
            with contextlib.suppress(ProcessLookupError):
                os.killpg(server.process.pid, signal.SIGTERM)
        for server in started:
            server.stop()


@dataclass
class Setup:
    url: str
    logs: Path
    plan: Plan
    ministry_key: str  # reads every journey
    mission_key: str  # registers
    moh_key: str  # hospital steps
    ids: Path  # journey ids, for reads
    api_only: bool  # `serve --api-only` exists

    def ledger(self, name: str, port: int, workers: int, *, api_only: bool = False) -> Server:
        argv = [str(LEDGER), "serve", "--port", str(port), "--workers", str(workers)]
        pools = {name: str(size) for name, size in NODE_POOLS.items()}
        return Server(name, argv + (["--api-only"] if api_only else []), port, self.url, self.logs, pools)

    def bare(self, port: int) -> Server:
        argv = [str(UVICORN), "bench.bare_server:app", "--workers", str(self.plan.workers), "--port", str(port),
                "--no-access-log", "--log-level", "warning"]  # fmt: skip
        hashes = ",".join(hashlib.sha256(k.encode()).hexdigest() for k in (self.ministry_key, self.mission_key))
        env = {"BENCH_BARE_DB": self.url, "BENCH_BARE_KEY_HASHES": hashes}
        return Server("baseline", argv, port, self.url, self.logs, env)

    def ledger_cli(self, *args: str) -> None:
        """A `hajj-ledger` command on the bench's database, tried three times (the server is shared: it may be full
        or restarting)."""
        for attempt in range(3):
            done = subprocess.run([str(LEDGER), *args], env={**os.environ, "HAJJ_LEDGER_DATABASE_URL": self.url},
                                  capture_output=True, text=True, check=False)  # fmt: skip
            if done.returncode == 0:
                return
            time.sleep(3 * (attempt + 1))
        raise RuntimeError(f"hajj-ledger {' '.join(args)} failed:\n{done.stderr[-2000:]}")

    def catch_up(self) -> None:
        """The views and the chain at the head, so that no backlog from an earlier run is measured."""
        self.ledger_cli("project", "--once")
        self.ledger_cli("seal")

    def query(self, sql: str) -> list[tuple[Any, ...]]:
        """One query on a connection of its own; retried for a while, as the shared server may be full."""
        for attempt in range(20):
            try:
                with psycopg.connect(self.url, autocommit=True) as connection:
                    return connection.execute(sql).fetchall()
            except psycopg.OperationalError:
                if attempt == 19:
                    raise
                time.sleep(0.25)
        raise AssertionError("unreachable")


def prepare(url: str, plan: Plan, logs: Path) -> Setup:
    """Migrate, add the agencies, put `plan.journeys` journeys in the Kingdom, project them."""
    from bench.bare_server import SCHEMA
    from bench.season import open_season_now
    from hajj_ledger.api import agencies
    from hajj_ledger.domain.journey import Journey
    from hajj_ledger.domain.parsing import parse_command
    from hajj_ledger.domain.vocabulary import Actor, Role
    from hajj_ledger.ledger import JourneyLedger, Outcome
    from hajj_ledger.migrations import upgrade
    from hajj_ledger.projections.schema import engine_for

    engine = engine_for(url)
    upgrade(engine)
    with engine.begin() as connection:
        mission, mission_key = agencies.add(connection, Role.MISSION, "bench mission", f"mission-{COUNTRY}-00001")
        ministry_key = agencies.add(connection, Role.MINISTRY, "bench ministry")[1]
        moh_key = agencies.add(connection, Role.MOH, "bench hospitals")[1]
    engine.dispose()
    now = datetime.now(UTC) - timedelta(minutes=1)
    pilgrims = [uuid4() for _ in range(plan.journeys)]
    journeys = [Journey.create_id(SEASON, p) for p in pilgrims]
    port = {"port": PORT_OF_ENTRY}
    building, offer, contract = uuid4(), uuid4(), uuid4()
    company = Actor("company-bench-00001", Role.COMPANY)
    market: list[tuple[Actor, str, dict[str, Any]]] = [
        (Actor("amanah-bench", Role.AMANAH), "BuildingLicensed", {
            "building_id": building, "company_id": company.agency_id, "city": "makkah", "district": "Aziziyah",
            "beds": plan.journeys, "licence_valid_until": now + timedelta(days=365),
        }),
        (Actor("civil-defence-bench", Role.CIVIL_DEFENCE), "InspectionPassed", {
            "building_id": building, "findings": "compliant",
        }),
        (company, "OfferPublished", {
            "offer_id": offer, "season": SEASON, "kind": "makkah_housing", "site": "makkah", "places": plan.journeys,
            "price_sar": 12_000, "valid_from": now - timedelta(days=1), "valid_until": now + timedelta(days=90),
            "building_ids": [building],
        }),
        (mission.actor, "ContractProposed", {"contract_id": contract, "offer_id": offer, "places": plan.journeys}),
        (company, "ContractSigned", {"contract_id": contract}),
    ]  # fmt: skip
    steps: list[tuple[Role, str, dict[str, Any]]] = [
        (Role.MISSION, "PackageContracted", {"contract_id": contract}),
        (Role.MISSION, "VisaRequested", {}),
        (Role.MOFA, "VisaIssued", {"valid_until": (now + timedelta(days=90)).isoformat()}),
        (Role.JAWAZAT, "ArrivedAtPort", {**port, "mode": "land"}),
        (Role.JAWAZAT, "EntryCleared", port),
        (Role.CUSTOMS, "CustomsCleared", port),
        (Role.WUKALA, "ReceivedAtPort", port),
    ]
    ledger = JourneyLedger(url)
    try:
        open_season_now(ledger, SEASON)

        def command(event: str, **fields: Any) -> Any:
            return parse_command({"event": event, "command_id": uuid4(), "occurred_at": now, **fields})

        waves = [[(command(event, **fields), actor)] for actor, event, fields in market]
        waves.append(
            [(command("Registered", pilgrim_id=p, season=SEASON, country=COUNTRY), mission.actor) for p in pilgrims]
        )
        for role, event, fields in steps:
            actor = mission.actor if role is Role.MISSION else Actor(f"{role}-bench", role)
            waves.append([(command(event, journey_id=j, **fields), actor) for j in journeys])
        for wave in waves:
            for start in range(0, len(wave), 1000):
                refused = [r for r in ledger.record_batch(wave[start : start + 1000]) if not isinstance(r, Outcome)]
                if refused:
                    raise RuntimeError(f"setting up the journeys: {refused[0]}")
    finally:
        ledger.close()
    with psycopg.connect(url, autocommit=True) as db:
        db.execute(SCHEMA)
    setup = Setup(url, logs, plan, ministry_key, mission_key, moh_key, logs / "journey-ids.txt", _has_api_only())
    setup.catch_up()
    setup.ids.write_text("".join(f"{row[0]}\n" for row in setup.query("SELECT journey_id FROM journey_status")))
    return setup


def _has_api_only() -> bool:
    done = subprocess.run([str(LEDGER), "serve", "--help"], capture_output=True, text=True, check=False)
    return "--api-only" in done.stdout


# Baseline against the ledger.


def wrk(setup: Setup, scenario: str, port: int, seconds: float) -> dict[str, Any]:
    connections = setup.plan.batch_connections if scenario == "batch" else setup.plan.connections
    env = {**os.environ, "BENCH_LUA_DIR": str(LUA), "BENCH_IDS": str(setup.ids),
           "BENCH_KEY": setup.ministry_key if scenario == "read" else setup.mission_key,
           "BENCH_SEED": str(random.randrange(1 << 30))}  # fmt: skip
    argv = ["wrk", "-t1", f"-c{connections}", f"-d{max(1, round(seconds))}s", "--timeout", "10s", "-s",
            str(LUA / f"{scenario}.lua"), f"http://127.0.0.1:{port}"]  # fmt: skip
    done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=seconds + 60, check=False)
    return parse_wrk(done.stdout + done.stderr)


def side_by_side(setup: Setup, say: Any) -> list[dict[str, Any]]:
    """Rounds of: each side started, warmed and loaded with reads, single steps, batches; the order of the two
    sides alternates from round to round."""
    runs = []
    plan = setup.plan
    for round_ in range(plan.rounds):
        sides = ("baseline", "ledger") if round_ % 2 == 0 else ("ledger", "baseline")
        for side in sides:
            port = free_port()
            if side == "ledger":
                setup.catch_up()
                server = setup.ledger("ledger", port, plan.workers)
            else:
                server = setup.bare(port)
            with servers(server):
                for scenario in ("read", "write", "batch"):
                    seconds = plan.batch_seconds if scenario == "batch" else plan.seconds
                    wrk(setup, scenario, port, plan.warmup)
                    result = wrk(setup, scenario, port, seconds)
                    runs.append({"round": round_, "side": side, "scenario": scenario, **result})
                    say(f"  round {round_ + 1} {side:<8} {scenario:<5} {result['rps']:9,.0f}/s  p99 "
                        f"{result['p99_us'] / 1000:7.1f} ms  errors {result['errors']}")  # fmt: skip
    return runs


def compare(runs: list[dict[str, Any]], scenario: str, key: str = "rps") -> dict[str, Any]:
    """Both sides' medians and the median of the rounds' ratios, over valid runs only."""
    by_round: dict[int, dict[str, float]] = {}
    for run in runs:
        if run["scenario"] == scenario and run["valid"]:
            by_round.setdefault(run["round"], {})[run["side"]] = run[key]
    pairs = [(r["ledger"], r["baseline"]) for r in by_round.values() if len(r) == 2]
    ledger = [r["ledger"] for r in by_round.values() if "ledger" in r]
    base = [r["baseline"] for r in by_round.values() if "baseline" in r]
    invalid = sum(1 for run in runs if run["scenario"] == scenario and not run["valid"])
    return {
        "ledger": statistics.median(ledger) if ledger else None,
        "baseline": statistics.median(base) if base else None,
        "ratio": median_ratio(pairs),
        "round_ratios": [a / b for a, b in pairs if b],
        "invalid_runs": invalid,
    }


# Several API nodes on one database.


# The pools the bench configures on every node: the documented defaults, set so that the budget below is known.
NODE_POOLS = {"HAJJ_LEDGER_WRITE_POOL_SIZE": 2, "HAJJ_LEDGER_WRITE_POOL_OVERFLOW": 8, "HAJJ_LEDGER_READ_POOL_SIZE": 8}


def pool_budget(roles: set[str], workers: int) -> int:
    """The connections a node's configured pools allow (README, "Running a season": connections per node): each
    HTTP worker's write pool (size + overflow) and read pool; on a node running the background jobs, the leader's
    lock and LISTEN connections, the runner's 2 plus its write pool, the sealer's write pool."""
    write = NODE_POOLS["HAJJ_LEDGER_WRITE_POOL_SIZE"] + NODE_POOLS["HAJJ_LEDGER_WRITE_POOL_OVERFLOW"]
    budget = workers * (write + NODE_POOLS["HAJJ_LEDGER_READ_POOL_SIZE"])
    if roles & {"runner", "sealer", "jobs"}:
        budget += 2 + (2 + write) + write
    return budget


def pg_connections(setup: Setup, nodes: list[Server], workers: int) -> list[dict[str, Any]]:
    """Each node's connections to this database, by the role of the process holding them (the node's processes'
    TCP sockets matched, by port, to pg_stat_activity's client ports), and what its pools allow."""
    name = setup.url.rsplit("/", 1)[1].split("?")[0]
    backends = {int(row[0]) for row in setup.query(
        f"SELECT client_port FROM pg_stat_activity WHERE datname = '{name}' AND client_port IS NOT NULL")}  # fmt: skip
    ports_by_inode = _tcp_ports_by_inode()
    found = []
    for node in nodes:
        roles: dict[str, int] = {}
        tree = node.tree()
        for pid, argv in tree.items():
            with contextlib.suppress(OSError):
                for fd in Path(f"/proc/{pid}/fd").iterdir():
                    with contextlib.suppress(OSError):
                        target = os.readlink(fd)
                        if target.startswith("socket:[") and ports_by_inode.get(int(target[8:-1])) in backends:
                            roles[role_of(argv)] = roles.get(role_of(argv), 0) + 1
        budget = pool_budget({role_of(argv) for argv in tree.values()}, workers)
        found.append({"node": node.name, "total": sum(roles.values()), "by_role": roles, "budget": budget})
    return found


def _tcp_ports_by_inode() -> dict[int, int]:
    """Local port of every TCP socket connected to PostgreSQL's port (5432), by socket inode."""
    found: dict[int, int] = {}
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError):
            for line in Path(table).read_text().splitlines()[1:]:
                fields = line.split()
                if int(fields[2].rsplit(":", 1)[1], 16) == 5432:
                    found[int(fields[9])] = int(fields[1].rsplit(":", 1)[1], 16)
    return found


def scrape(port: int) -> str:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as answer:
            text: str = answer.read().decode()
            return text
    except OSError:
        return ""


def journeys_file(setup: Setup, run: int) -> Path:
    """Journeys in the Kingdom and whether each is in hospital, as the (caught-up) views have them: a slice of its
    own for each node run, so that every run starts from journeys of a few events, as a season's are. On the same
    journeys each run would start from the last one's hundreds of hospital steps, which every node of a spread run
    must load into its write cache before it is warm, and later runs would measure ever longer histories."""
    size = setup.plan.node_journeys
    offset = run * size % max(1, setup.plan.journeys - size)
    rows = setup.query("SELECT journey_id, in_hospital FROM journey_status WHERE stage = 'received' "
                       f"ORDER BY journey_id LIMIT {size} OFFSET {offset}")  # fmt: skip
    path = setup.logs / "journeys-in-kingdom.txt"
    path.write_text("".join(f"{journey} {'t' if hospital else 'f'}\n" for journey, hospital in rows))
    return path


def node_run(setup: Setup, count: int, mode: str, run: int = 0) -> dict[str, Any]:
    plan = setup.plan
    setup.catch_up()
    journeys = journeys_file(setup, run)
    ports = [free_port() for _ in range(count)]
    # One worker a node: each node's /metrics is then the whole node's (uvicorn's workers count apart).
    started = [setup.ledger(f"node{i + 1}", port, 1, api_only=setup.api_only and i > 0) for i, port in enumerate(ports)]
    with servers(*started) as nodes:
        argv = [sys.executable, str(HERE / "spread_load.py"), "--ports", ",".join(map(str, ports)), "--mode", mode,
                "--journeys", str(journeys), "--key", setup.moh_key, "--clients", str(plan.connections),
                "--warmup", str(plan.node_warmup), "--seconds", str(plan.node_seconds)]  # fmt: skip
        load = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
        try:
            assert load.stdout is not None
            if load.stdout.readline().strip() != "MEASURING":
                raise RuntimeError(f"the load generator failed: {load.communicate(timeout=30)[1][-2000:]}")
            before = [write_counters(scrape(port)) for port in ports]
            time.sleep(plan.node_seconds / 2)
            connections = [pg_connections(setup, nodes, 1)]
            out, err = load.communicate(timeout=plan.node_seconds + 60)
            if load.returncode != 0:
                raise RuntimeError(f"the load generator failed: {err[-2000:]}")
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(load.pid, signal.SIGKILL)
        metrics = [scrape(port) for port in ports]
        connections.append(pg_connections(setup, nodes, 1))
    result: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    growth = [counter_growth(b, write_counters(m)) for b, m in zip(before, metrics, strict=True)]
    totals = {k: None if all(g[k] is None for g in growth) else sum(g[k] or 0.0 for g in growth) for k in growth[0]}
    peak: dict[str, dict[str, Any]] = {}
    for sample in connections:
        for node in sample:
            if node["total"] >= peak.get(node["node"], {"total": -1})["total"]:
                peak[node["node"]] = node
    return {
        "nodes": count, "mode": mode, **result, "counters": totals, "rerun_share": rerun_share(totals),
        "connections": list(peak.values()), "api_only": setup.api_only,
    }  # fmt: skip


def node_runs(setup: Setup, say: Any) -> list[dict[str, Any]]:
    runs: list[dict[str, Any]] = []
    for round_ in range(setup.plan.node_rounds):
        for count in setup.plan.node_counts:
            modes = ("pinned", "spread") if round_ % 2 == 0 else ("spread", "pinned")
            for mode in modes:
                run = {"round": round_, **node_run(setup, count, mode, len(runs))}
                runs.append(run)
                share = run["rerun_share"]
                say(f"  round {round_ + 1} {count} nodes {mode:<6} {run['per_second']:8,.0f} commands/s  statuses "
                    f"{run['statuses']}  re-run share {'n/a' if share is None else f'{share:.1%}'}  connections "
                    f"{[c['total'] for c in run['connections']]}")  # fmt: skip
    return runs


def nodes_summary(runs: list[dict[str, Any]], count: int) -> dict[str, Any]:
    by_round: dict[int, dict[str, dict[str, Any]]] = {}
    for run in runs:
        if run["nodes"] == count:
            by_round.setdefault(run["round"], {})[run["mode"]] = run
    pairs = [(r["spread"]["per_second"], r["pinned"]["per_second"]) for r in by_round.values() if len(r) == 2]
    spread = [r["spread"] for r in by_round.values() if "spread" in r]
    shares = [s for s in (r["rerun_share"] for r in spread) if s is not None]

    def failed(run: dict[str, Any]) -> int:
        return sum(n for status, n in run["statuses"].items() if int(status) >= 300)

    return {
        "spread": statistics.median(a for a, _ in pairs) if pairs else None,
        "pinned": statistics.median(b for _, b in pairs) if pairs else None,
        "ratio": median_ratio(pairs),
        "round_ratios": [a / b for a, b in pairs if b],
        "rerun_share": statistics.median(shares) if shares else None,
        "counters": [r["counters"] for r in spread],
        "refused_spread": sum(failed(r) for r in spread),
    }


def connections_summary(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The most connections any node held, and the most any node held beyond what its pools allow."""
    worst: dict[str, Any] = {"total": 0}
    over: list[float] = []
    for run in runs:
        for node in run["connections"]:
            if node["total"] > worst["total"]:
                worst = {**node, "nodes": run["nodes"], "mode": run["mode"]}
            over.append(node["total"] - node["budget"])
    return {"max_per_node": worst, "max_over_budget": max(over) if over else None}


# Leader failover.


def leaders(setup: Setup, nodes: list[Server]) -> tuple[list[Server], str]:
    """The nodes leading, and how that was told: a `hajj_ledger_leader` gauge on /metrics; else the node holding
    a PostgreSQL advisory lock; else the nodes with a `hajj-ledger project` child."""
    gauges = [metric_totals(scrape(n.port)).get("hajj_ledger_leader") for n in nodes]
    if any(g is not None for g in gauges):
        return [n for n, g in zip(nodes, gauges, strict=True) if g], "hajj_ledger_leader gauge"
    name = setup.url.rsplit("/", 1)[1].split("?")[0]
    holders = {row[0] for row in setup.query(
        "SELECT a.client_port FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid "
        f"WHERE l.locktype = 'advisory' AND l.granted AND a.datname = '{name}'")}  # fmt: skip
    if holders:
        ports_by_inode = _tcp_ports_by_inode()
        holding = []
        for node in nodes:
            inodes = set()
            for pid in node.tree():
                with contextlib.suppress(OSError):
                    inodes |= {int(os.readlink(fd)[8:-1]) for fd in Path(f"/proc/{pid}/fd").iterdir()
                               if os.readlink(fd).startswith("socket:[")}  # fmt: skip
            if any(ports_by_inode.get(inode) in holders for inode in inodes):
                holding.append(node)
        if holding:
            return holding, "advisory lock holder"
    running = [n for n in nodes if any(role_of(argv) == "runner" for argv in n.tree().values())]
    return running, "a `hajj-ledger project` child"


def register(port: int, key: str) -> int | None:
    """One registration through a node; its position, or None if the node did not record it."""
    body = json.dumps({"occurred_at": datetime.now(UTC).isoformat(), "pilgrim_id": str(uuid4()), "season": SEASON,
                       "country": COUNTRY}).encode()  # fmt: skip
    request = urllib.request.Request(f"http://127.0.0.1:{port}/v1/journeys", body, method="POST", headers={
        "Authorization": f"Bearer {key}", "Content-Type": "application/json"})  # fmt: skip
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            position: int = json.loads(answer.read())["position"]
            return position
    except OSError:
        return None


def failover(setup: Setup, say: Any, nodes_count: int = 2, limit: float = 30.0) -> dict[str, Any]:
    """`kill -9` of the leading node's serve process; seconds until the views and the chain include a command
    recorded after it through another node."""
    setup.catch_up()
    ports = [free_port() for _ in range(nodes_count)]
    started = [setup.ledger(f"failover{i + 1}", port, 1) for i, port in enumerate(ports)]
    with servers(*started) as nodes:
        deadline = time.monotonic() + 15
        while True:  # the election may take a moment
            leading, how = leaders(setup, nodes)
            if len(leading) == 1 or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        if len(leading) != 1:
            return {"seconds": None, "reason": f"{len(leading)} of {nodes_count} nodes lead (told by {how}): "
                    "no single leader to kill"}  # fmt: skip
        old = leading[0]
        survivor = next(n for n in nodes if n is not old)
        stop = threading.Event()

        def keep_writing() -> None:  # a steady trickle through the survivor, as the other agencies go on
            while not stop.wait(0.1):
                register(survivor.port, setup.mission_key)

        writer = threading.Thread(target=keep_writing, daemon=True)
        writer.start()
        try:
            time.sleep(1)
            os.kill(old.process.pid, signal.SIGKILL)
            killed = time.monotonic()
            position = None
            while position is None and time.monotonic() - killed < limit:
                position = register(survivor.port, setup.mission_key)
            projected = sealed = None
            while position is not None and time.monotonic() - killed < limit and (projected is None or sealed is None):
                views = setup.query("SELECT min(position) FROM projection_positions WHERE serving")[0][0]
                chain = setup.query("SELECT position FROM ledger_seal")[0][0]
                if projected is None and views is not None and views >= position:
                    projected = time.monotonic() - killed
                if sealed is None and chain is not None and chain >= position:
                    sealed = time.monotonic() - killed
                time.sleep(0.05)
        finally:
            stop.set()
            writer.join()
        new, _ = leaders(setup, [survivor])
    seconds = None if projected is None or sealed is None else max(projected, sealed)
    say(f"  leader told by {how}; after kill -9: views in {projected} s, chain in {sealed} s")
    return {"seconds": seconds, "projections_s": projected, "sealer_s": sealed, "told_by": how,
            "survivor_leads": bool(new), "limit_s": limit,
            "reason": None if seconds is not None else f"not within {limit:.0f} s"}  # fmt: skip


# The section.


def check_tools() -> None:
    if shutil.which("wrk") is None:
        raise RuntimeError("the serving tier's load generator, wrk, is missing: apt-get install wrk")


def measure(url: str, plan: Plan, say: Any) -> dict[str, Any]:
    check_tools()
    logs = Path(tempfile.mkdtemp(prefix="hajj-bench-serving-"))
    say(f"serving tier: setting up {plan.journeys:,} journeys (server logs in {logs})")
    started = time.perf_counter()
    # A SIGTERM ends the bench through its `finally`s: every server's group killed, the database dropped.
    previous = signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        setup = prepare(url, plan, logs)
        say(f"serving tier: the ledger's serve against the bare baseline, {plan.rounds} rounds")
        runs = side_by_side(setup, say)
        say(f"serving tier: {' and '.join(map(str, plan.node_counts))} API nodes, spread and pinned")
        nodes = node_runs(setup, say)
        say("serving tier: leader failover")
        failed_over = failover(setup, say)
    finally:
        signal.signal(signal.SIGTERM, previous)
    return {
        "when": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "minutes": (time.perf_counter() - started) / 60,
        "plan": asdict(plan),
        "api_only": setup.api_only,
        "read": compare(runs, "read"),
        "read_p99_ms": compare([{**r, "p99_ms": r["p99_us"] / 1000} for r in runs], "read", "p99_ms"),
        "write": compare(runs, "write"),
        "batch": compare(runs, "batch"),
        "nodes": {str(count): nodes_summary(nodes, count) for count in plan.node_counts},
        "pools": NODE_POOLS,
        "connections": connections_summary(nodes),
        "failover": failed_over,
        "runs": runs,
        "node_runs": nodes,
    }


def _fmt(value: float | None, spec: str = ",.0f", unit: str = "") -> str:
    return "n/a" if value is None else f"{value:{spec}}{unit}"


def render(serving: dict[str, Any]) -> str:
    """The serving tier's section of BENCHMARKS.md."""
    plan = serving["plan"]
    rows = [
        "| figure | ledger | baseline, same run | ratio (median of rounds; each round) | target | met |",
        "|---|---|---|---|---|---|",
    ]

    def versus(label: str, figure: dict[str, Any], target: str, met: str, spec: str = ",.0f") -> None:
        rounds = ", ".join(f"{r:.2f}" for r in figure["round_ratios"])
        invalid = f"; {figure['invalid_runs']} run(s) left out (> 1% errors)" if figure.get("invalid_runs") else ""
        rows.append(f"| {label} | {_fmt(figure['ledger'], spec)} | {_fmt(figure['baseline'], spec)} | "
                    f"{_fmt(figure['ratio'], '.2f', 'x')} ({rounds}{invalid}) | {target} | {met} |")  # fmt: skip

    read, p99 = serving["read"], serving["read_p99_ms"]
    versus(f"reads (journey status by id), requests/s, {plan['connections']} connections", read,
           f"≥ {TARGETS['read']}x", judge(read["ratio"], TARGETS["read"], at_least=True))  # fmt: skip
    versus("reads, p99 ms", p99, f"≤ {TARGETS['read_p99']:.0f}x the baseline's",
           judge(p99["ratio"], TARGETS["read_p99"], at_least=False), ",.1f")  # fmt: skip
    versus("single steps (a registration; baseline: a one-row INSERT), requests/s", serving["write"],
           f"≥ {TARGETS['write']}x", judge(serving["write"]["ratio"], TARGETS["write"], at_least=True))  # fmt: skip
    batch = serving["batch"]
    versus(f"batch endpoint (1,000 registrations; baseline: a 1,000-row INSERT), requests/s, "
           f"{plan['batch_connections']} connections, runner and sealer running", batch,
           f"≥ {TARGETS['batch']}x", judge(batch["ratio"], TARGETS["batch"], at_least=True), ",.1f")  # fmt: skip
    for count, figure in serving["nodes"].items():
        rounds = ", ".join(f"{r:.2f}" for r in figure["round_ratios"])
        rows.append(
            f"| {count} API nodes: hospital steps spread round-robin over the nodes, commands/s (non-2xx answers: "
            f"{figure['refused_spread']}) | {_fmt(figure['spread'])} | {_fmt(figure['pinned'])} (each journey kept "
            f"on one node) | {_fmt(figure['ratio'], '.2f', 'x')} ({rounds}) | ≥ {TARGETS['nodes']}x | "
            f"{judge(figure['ratio'], TARGETS['nodes'], at_least=True)} |"
        )
        share = figure["rerun_share"]
        counted = ", ".join(
            f"{kind.replace('_', '-')} {_fmt(statistics.median(values))}"
            for kind in ("batches", "reruns", "conflicts", "give_ups", "stale")
            if (values := [c[kind] for c in figure["counters"] if c.get(kind) is not None])
        )
        counted = f": {counted}" if counted else ""
        rows.append(
            f"| {count} API nodes, spread: re-run batches, share of batches (/metrics{counted}) | "
            f"{_fmt(share, '.1%')} |  |  | < {TARGETS['rerun_share']:.0%} | "
            f"{judge(share, TARGETS['rerun_share'], at_least=False)} |"
        )
    connections = serving["connections"]
    worst = connections["max_per_node"]
    roles = ", ".join(f"{role} {n}" for role, n in sorted(worst.get("by_role", {}).items()))
    over = connections["max_over_budget"]
    pools = ", ".join(f"{name.removeprefix('HAJJ_LEDGER_')}={size}" for name, size in serving["pools"].items())
    rows.append(
        f"| PostgreSQL connections of one API node, most held under load ({roles}; {worst.get('nodes', '?')} nodes, "
        f"{worst.get('mode', '?')}; pools {pools}) | {worst['total']} | {worst.get('budget', 'n/a')} allowed by its "
        f"pools (most beyond them, any node: {_fmt(over, '+.0f')}) |  | ≤ pool sizes "
        f"+ {TARGETS['connections_over_pools']} | {judge(over, TARGETS['connections_over_pools'], at_least=False)} |"
    )
    failed_over = serving["failover"]
    detail = ""
    if failed_over.get("told_by"):
        detail = (f"views {_fmt(failed_over.get('projections_s'), '.2f')} s, chain "
                  f"{_fmt(failed_over.get('sealer_s'), '.2f')} s; leader told by {failed_over['told_by']}")  # fmt: skip
    if failed_over.get("reason"):
        detail += ("; " if detail else "") + failed_over["reason"]
    rows.append(
        f"| leader failover: `kill -9` of the leading node to the views and the chain including a later command, s "
        f"({detail}) | {_fmt(failed_over['seconds'], '.2f')} |  |  | ≤ {TARGETS['failover_s']:.0f} s | "
        f"{judge(failed_over['seconds'], TARGETS['failover_s'], at_least=False)} |"
    )
    return (
        "## Serving tier\n\n"
        f"Measured by `make bench` (or `bench/run.py --only serving`) on {serving['when']}, "
        f"{serving['minutes']:.0f} minutes. The baseline is bench/bare_server.py on uvicorn with the ledger's "
        f"{plan['workers']} workers; both sides loaded by `wrk` (its own process, bench/lua/), in "
        f"{plan['rounds']} interleaved round(s); API nodes run 1 worker each"
        f"{', all but the first `--api-only`' if serving['api_only'] else ''}, {plan['node_rounds']} round(s), "
        "loaded by bench/spread_load.py. n/a: the ledger does not publish that figure yet.\n\n" + "\n".join(rows) + "\n"
    )
