"""The serving tier (issue 13): `hajj-ledger serve` against a bare server measured in the same run, several API
nodes on one database, their PostgreSQL connections, and leader failover.

- **Baseline**: bench/bare_server.py, a bare ASGI app on uvicorn with as many workers as the ledger's serve, doing
  the least per request: the same journey_status row read by id, a one-row INSERT, a 1,000-row INSERT.
- **Load**: Debian's `wrk` in its own process, the same Lua scripts (bench/lua/) for both sides; 64 connections,
  4 for batches. Rounds interleave the two sides (baseline first, then ledger first); each ratio is the median of
  the rounds' ratios, each round's ledger figure over the baseline's of the same round.
- **API nodes** (bench/serving_nodes.py): 2 and 4 `serve` processes on one database, driven by bench/spread_load.py
  (its own process): hospital admissions and discharges on journeys in the Kingdom, spread round-robin over the
  nodes against the same load kept on one node per journey. Re-run batches are read from each node's /metrics.
- **Connections**: each node's PostgreSQL connections (its processes' sockets matched to pg_stat_activity), at
  the middle and the end of each node run.
- **Failover**: `kill -9` of the node leading the projection runner and the sealer; the time until the views and
  the chain reach a command recorded after the kill, through the surviving node.

Every server runs in its own process group and is killed with it, on a fresh database that is dropped after. The
section of BENCHMARKS.md is rendered by bench/report/serving.py.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from bench.harness import fresh_store, now
from bench.servers import free_port, servers
from bench.serving_nodes import connections_summary, failover, median_ratio, node_runs, nodes_summary
from bench.serving_setup import NODE_POOLS, Plan, Setup, prepare

LUA = Path(__file__).resolve().parent / "lua"


# Parsing what the tools say (pure: tests/e2e/test_bench.py checks these).


def parse_wrk(output: str) -> dict[str, Any]:
    """The figures bench/lua/common.lua prints at the end of a wrk run, with req/s and the error count."""
    line = next((x for x in output.splitlines() if x.startswith("BENCH_RESULT ")), None)
    if line is None:
        raise RuntimeError(f"wrk printed no result:\n{output[-2000:]}")
    result: dict[str, Any] = json.loads(line.removeprefix("BENCH_RESULT "))
    result["rps"] = result["requests"] / (result["duration_us"] / 1e6)
    result["errors"] = sum(
        result[k] for k in ("errors_connect", "errors_read", "errors_write", "errors_status", "errors_timeout")
    )
    result["valid"] = result["requests"] > 0 and result["errors"] <= 0.01 * result["requests"]
    return result


# Baseline against the ledger.


def wrk(setup: Setup, scenario: str, port: int, seconds: float) -> dict[str, Any]:
    connections = setup.plan.batch_connections if scenario == "batch" else setup.plan.connections
    env = {
        **os.environ,
        "BENCH_LUA_DIR": str(LUA),
        "BENCH_IDS": str(setup.ids),
        "BENCH_KEY": setup.ministry_key if scenario == "read" else setup.mission_key,
        "BENCH_SEED": str(random.randrange(1 << 30)),
    }
    argv = ["wrk", "-t1", f"-c{connections}", f"-d{max(1, round(seconds))}s", "--timeout", "10s", "-s",
            str(LUA / f"{scenario}.lua"), f"http://127.0.0.1:{port}"]  # fmt: skip # flag/value pairs
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
                    say(
                        f"  round {round_ + 1} {side:<8} {scenario:<5} {result['rps']:9,.0f}/s  p99 "
                        f"{result['p99_us'] / 1000:7.1f} ms  errors {result['errors']}"
                    )
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
        "when": now(),
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


def serving_figure(plan: Plan) -> dict[str, Any]:
    with fresh_store("postgres") as url:
        return measure(url, plan, lambda text: print(f"[postgres] {text}", file=sys.stderr, flush=True))
