"""The serving tier's section of BENCHMARKS.md (bench/serving.py measures it): each figure of the ledger's serve
beside the bare server's of the same rounds, the API nodes, their connections and the leader's failover."""

from __future__ import annotations

import statistics
from typing import Any

from bench.report.cells import verdict

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


def judge(value: float | None, target: float, *, at_least: bool) -> str:
    if value is None:
        return "n/a"
    return verdict(value >= target if at_least else value <= target)


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
        rows.append(
            f"| {label} | {_fmt(figure['ledger'], spec)} | {_fmt(figure['baseline'], spec)} | "
            f"{_fmt(figure['ratio'], '.2f', 'x')} ({rounds}{invalid}) | {target} | {met} |"
        )

    read, p99 = serving["read"], serving["read_p99_ms"]
    versus(
        f"reads (journey status by id), requests/s, {plan['connections']} connections",
        read,
        f"≥ {TARGETS['read']}x",
        judge(read["ratio"], TARGETS["read"], at_least=True),
    )
    versus(
        "reads, p99 ms",
        p99,
        f"≤ {TARGETS['read_p99']:.0f}x the baseline's",
        judge(p99["ratio"], TARGETS["read_p99"], at_least=False),
        ",.1f",
    )
    versus(
        "single steps (a registration; baseline: a one-row INSERT), requests/s",
        serving["write"],
        f"≥ {TARGETS['write']}x",
        judge(serving["write"]["ratio"], TARGETS["write"], at_least=True),
    )
    batch = serving["batch"]
    versus(
        f"batch endpoint (1,000 registrations; baseline: a 1,000-row INSERT), requests/s, "
        f"{plan['batch_connections']} connections, runner and sealer running",
        batch,
        f"≥ {TARGETS['batch']}x",
        judge(batch["ratio"], TARGETS["batch"], at_least=True),
        ",.1f",
    )
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
        detail = (
            f"views {_fmt(failed_over.get('projections_s'), '.2f')} s, chain "
            f"{_fmt(failed_over.get('sealer_s'), '.2f')} s; leader told by {failed_over['told_by']}"
        )
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
