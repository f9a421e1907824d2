"""Several API nodes on one database (hospital steps spread round-robin over 2 and 4 nodes, against the same load
kept on one node per journey), each node's PostgreSQL connections against what its pools allow, and the leader's
failover (`kill -9` of the node leading the runner and the sealer)."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from uuid import uuid4

from bench.harness import SEASON
from bench.servers import Server, free_port, role_of, servers
from bench.serving_setup import COUNTRY, NODE_POOLS, Setup

HERE = Path(__file__).resolve().parent


# What each node publishes on /metrics (pure: tests/e2e/test_bench.py checks these).


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


def median_ratio(pairs: list[tuple[float, float]]) -> float | None:
    """The median over rounds of each round's ledger figure over the baseline's."""
    ratios = [ledger / base for ledger, base in pairs if base]
    return statistics.median(ratios) if ratios else None


# Several API nodes on one database.


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
    backends = {
        int(row[0])
        for row in setup.query(
            f"SELECT client_port FROM pg_stat_activity WHERE datname = '{name}' AND client_port IS NOT NULL"
        )
    }
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
    rows = setup.query(
        "SELECT journey_id, in_hospital FROM journey_status WHERE stage = 'received' "
        f"ORDER BY journey_id LIMIT {size} OFFSET {offset}"
    )
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
                "--warmup", str(plan.node_warmup), "--seconds", str(plan.node_seconds)]  # fmt: skip # flag/value pairs
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
        "nodes": count,
        "mode": mode,
        **result,
        "counters": totals,
        "rerun_share": rerun_share(totals),
        "connections": list(peak.values()),
        "api_only": setup.api_only,
    }


def node_runs(setup: Setup, say: Any) -> list[dict[str, Any]]:
    runs: list[dict[str, Any]] = []
    for round_ in range(setup.plan.node_rounds):
        for count in setup.plan.node_counts:
            modes = ("pinned", "spread") if round_ % 2 == 0 else ("spread", "pinned")
            for mode in modes:
                run = {"round": round_, **node_run(setup, count, mode, len(runs))}
                runs.append(run)
                share = run["rerun_share"]
                say(
                    f"  round {round_ + 1} {count} nodes {mode:<6} {run['per_second']:8,.0f} commands/s  statuses "
                    f"{run['statuses']}  re-run share {'n/a' if share is None else f'{share:.1%}'}  connections "
                    f"{[c['total'] for c in run['connections']]}"
                )
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
    holders = {
        row[0]
        for row in setup.query(
            "SELECT a.client_port FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid "
            f"WHERE l.locktype = 'advisory' AND l.granted AND a.datname = '{name}'"
        )
    }
    if holders:
        ports_by_inode = _tcp_ports_by_inode()
        holding = []
        for node in nodes:
            inodes = set()
            for pid in node.tree():
                with contextlib.suppress(OSError):
                    inodes |= {
                        int(os.readlink(fd)[8:-1])
                        for fd in Path(f"/proc/{pid}/fd").iterdir()
                        if os.readlink(fd).startswith("socket:[")
                    }
            if any(ports_by_inode.get(inode) in holders for inode in inodes):
                holding.append(node)
        if holding:
            return holding, "advisory lock holder"
    running = [n for n in nodes if any(role_of(argv) == "runner" for argv in n.tree().values())]
    return running, "a `hajj-ledger project` child"


def register(port: int, key: str) -> int | None:
    """One registration through a node; its position, or None if the node did not record it."""
    body = json.dumps(
        {"occurred_at": datetime.now(UTC).isoformat(), "pilgrim_id": str(uuid4()), "season": SEASON, "country": COUNTRY}
    ).encode()
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/v1/journeys",
        body,
        method="POST",
        headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
    )
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
            return {
                "seconds": None,
                "reason": f"{len(leading)} of {nodes_count} nodes lead (told by {how}): no single leader to kill",
            }
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
    return {
        "seconds": seconds,
        "projections_s": projected,
        "sealer_s": sealed,
        "told_by": how,
        "survivor_leads": bool(new),
        "limit_s": limit,
        "reason": None if seconds is not None else f"not within {limit:.0f} s",
    }
