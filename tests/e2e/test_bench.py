"""The benchmark suite keeps working: a smoke run at tiny sizes writes every figure (never timed here)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import STORES

ROOT = Path(__file__).parents[2]
FIGURES = [
    "ingest",
    "raw_batched",
    "raw_single",
    "library_default",
    "single_1",
    "single_64",
    "scale",
    "catchup",
    "lag",
    "identity",
    "api",
    "chain",
    "export",
]


@pytest.mark.slow  # minutes a store: every benchmark once, at its smallest
@pytest.mark.parametrize("store", STORES)  # a run a store: the two side by side under xdist
def test_a_smoke_run_writes_every_figure(store: str, tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "run.py"), "--smoke", "--out", str(tmp_path), "--stores", store],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr
    results = json.loads((tmp_path / "bench" / "results.json").read_text())
    figures = results["figures"][store]
    assert set(FIGURES) <= set(figures)
    for name in FIGURES:
        assert figures[name]["median"] > 0, name
        assert figures[name]["rss_mb"] > 0, name
    if store == "postgres":  # a season's scale is grown in PostgreSQL's SQL
        season = figures["season"]
        assert season["export"]["events"] == season["store"]["events"] >= 60_000
        assert season["reads"]["verify_rate"] > 0 and season["reads"]["as_of_page"]["p99_ms"] > 0
    assert figures["ingest"]["details"][0]["refused"] == 0
    assert figures["single_64"]["details"][0]["refused"] == 0
    table = (tmp_path / "BENCHMARKS.md").read_text()
    assert "batched ingest" in table and "64 concurrent clients" in table and "scale run" in table
    assert ("season: export to Parquet" in table) == (store == "postgres")
    assert 0 < figures["ingest"]["details"][0]["market_events"] < figures["ingest"]["details"][0]["events"]
    assert "the market in the season" in table
    if store == "postgres":  # the races run against real servers, on PostgreSQL only
        runs = figures["races"]["details"][0]["runs"]
        for race in ("contract_1", "bed_1", "contract_2", "bed_2"):
            assert runs[race]["holds"] and runs[race]["winners"] == runs[race]["room"], runs[race]
        assert table.count("| exactly 2 win, none over capacity | yes |") == 4


def _results(market_share: float, ingest: float) -> dict[str, Any]:
    """The stored results, with the ingest figure of PostgreSQL set to `ingest` events/s."""
    results: dict[str, Any] = json.loads((ROOT / "bench" / "results.json").read_text())
    figure = results["figures"]["postgres"]["ingest"]
    figure["median"] = ingest
    figure["details"][0] |= {"events": 1000, "market_events": int(1000 * market_share)}
    return results


def test_batched_ingest_with_the_market_is_judged_against_its_ratio_to_raw_before_the_market() -> None:
    from bench.harness import Sizes
    from bench.report.page import table
    from bench.report.suite import BEFORE_MARKET

    raw = _results(0.05, 1.0)["figures"]["postgres"]["raw_batched"]["median"]

    def judged(ingest: float) -> str:
        results = _results(0.05, ingest)
        text = table(results["figures"], Sizes(**results["sizes"]))
        [line] = [line for line in text.splitlines() if "with the market, against before it" in line]
        assert f"≥ {BEFORE_MARKET['raw_ratio']:.2f}x raw (before the market: 18,049/s)" in line
        return line.rsplit(" | ", 2)[-2]

    assert judged(raw * 0.2449) == "yes"  # 0.24x as shown
    assert judged(raw * 0.2349) == "**no**"
    results = _results(0.05, raw * 0.3)
    assert "the market in the season: 5.0% of its events" in table(results["figures"], Sizes(**results["sizes"]))


def test_a_race_with_a_give_up_or_one_winner_too_many_is_not_met_and_says_so() -> None:
    from bench.report.postgres import race_rows

    def run(winners: int, give_ups: int = 0, free: int = 0) -> dict[str, Any]:
        refused = 64 - winners - give_ups
        holds = winners == 5 and free == 0
        return {"room": 5, "winners": winners, "refused_naming_numbers": refused, "give_ups": give_ups, "other": 0,
                "seconds": 0.5, "view": {"free": free}, "holds": holds}  # fmt: skip

    def races(*runs: dict[str, dict[str, Any]]) -> dict[str, Any]:
        return {"rss_mb": 90.0, "details": [{"racers": 64, "runs": {**r, "over_capacity_1": 0, "over_capacity_2": 0}}
                                            for r in runs]}  # fmt: skip

    fine = {"contract_1": run(5), "bed_1": run(5), "contract_2": run(5), "bed_2": run(5)}
    assert all(row.endswith("| yes | 90 MB |") for row in race_rows("postgres", races(fine, fine)))
    gave_up = {**fine, "bed_2": run(4, give_ups=1, free=1)}
    rows = race_rows("postgres", races(fine, gave_up))
    [bed_2] = [row for row in rows if "bed race" in row and "2 nodes" in row]
    assert "winners 5, 4;" in bed_2 and "give-ups 1;" in bed_2 and "free in the views after catch-up 0, 1;" in bed_2
    assert bed_2.endswith("| **no** | 90 MB |")
    assert sum(row.endswith("| yes | 90 MB |") for row in rows) == 3


# The serving tier's figures come from what wrk and the nodes print: those readings, checked on known text.

WRK_OUTPUT = """Running 8s test @ http://127.0.0.1:8301
  1 threads and 64 connections
BENCH_RESULT {"requests": 4000, "duration_us": 8000000, "bytes": 1, "errors_connect": 0, "errors_read": 0, \
"errors_write": 0, "errors_status": 30, "errors_timeout": 0, "p50_us": 9000, "p90_us": 20000, "p99_us": 75000, \
"max_us": 90000, "mean_us": 11000.0}
"""


def test_a_wrk_run_is_read_with_its_rate_and_is_left_out_beyond_one_percent_errors() -> None:
    from bench.serving import parse_wrk

    run = parse_wrk(WRK_OUTPUT)
    assert run["rps"] == 500 and run["p99_us"] == 75000 and run["errors"] == 30 and run["valid"]
    assert not parse_wrk(WRK_OUTPUT.replace('"errors_status": 30', '"errors_status": 41'))["valid"]
    with pytest.raises(RuntimeError, match="no result"):
        parse_wrk("unable to connect to 127.0.0.1:8301 Connection refused")


def test_the_write_counters_are_read_from_metrics_by_name_and_absent_ones_stay_unknown() -> None:
    from bench.serving_nodes import counter_growth, rerun_share, write_counters

    before = write_counters(  # as the ledger publishes them, and what must not be taken for them
        "# HELP hajj_ledger_write_batches_total batches of commands recorded\n"
        "# TYPE hajj_ledger_write_batches_total counter\n"
        "hajj_ledger_write_batches_total 20.0\n"
        "hajj_ledger_write_conflicts_total 2.0\n"
        "hajj_ledger_write_reruns_total 1.0\n"
        "hajj_ledger_write_stale_total 3.0\n"
        "hajj_ledger_write_batches_created 1.7e9\n"
        'hajj_ledger_http_requests_total{method="POST",route="/v1/commands:batch",status="200"} 99.0\n'
    )
    assert before == {"batches": 20.0, "reruns": 1.0, "conflicts": 2.0, "give_ups": None, "stale": 3.0}
    after = write_counters(
        "hajj_ledger_write_batches_total 220.0\nhajj_ledger_write_reruns_total 9.0\n"
        "hajj_ledger_write_give_ups_total 1.0\n"
    )
    growth = counter_growth(before, after)
    assert growth == {"batches": 200.0, "reruns": 8.0, "conflicts": None, "give_ups": 1.0, "stale": None}
    assert rerun_share(growth) == pytest.approx(0.04)
    assert rerun_share(write_counters("hajj_ledger_http_requests_total 5.0\n")) is None


def test_targets_are_judged_on_medians_of_same_round_ratios() -> None:
    from bench.report.serving import judge
    from bench.serving_nodes import median_ratio

    assert median_ratio([(50.0, 100.0), (90.0, 100.0), (70.0, 100.0)]) == pytest.approx(0.7)
    assert median_ratio([]) is None
    assert judge(0.7, 0.6, at_least=True) == "yes"
    assert judge(0.5, 0.6, at_least=True) == "**no**"
    assert judge(3.0, 2.0, at_least=False) == "**no**"
    assert judge(None, 5.0, at_least=False) == "n/a"


def test_the_serving_section_pairs_each_round_with_its_baseline_and_shows_each_target_met_or_not() -> None:
    from bench.report.serving import render
    from bench.serving import compare
    from bench.serving_nodes import connections_summary, nodes_summary
    from bench.serving_setup import FULL

    def run(round_: int, side: str, scenario: str, rps: float, valid: bool = True) -> dict[str, Any]:
        return {"round": round_, "side": side, "scenario": scenario, "rps": rps, "p99_us": 1000 * rps, "valid": valid}

    runs = [
        run(0, "baseline", "read", 1000), run(0, "ledger", "read", 600), run(1, "ledger", "read", 200),
        run(1, "baseline", "read", 500), run(2, "baseline", "read", 900), run(2, "ledger", "read", 50, valid=False),
    ]  # fmt: skip
    read = compare(runs, "read")
    assert read["round_ratios"] == [0.6, 0.4] and read["ratio"] == pytest.approx(0.5) and read["invalid_runs"] == 1

    def node_run(round_: int, mode: str, rate: float, share: float | None) -> dict[str, Any]:
        counters = {"batches": 100.0, "reruns": None if share is None else 100 * share, "conflicts": None}
        return {"round": round_, "nodes": 2, "mode": mode, "per_second": rate, "statuses": {"201": 10, "409": 1},
                "rerun_share": share, "counters": counters,
                "connections": [{"node": "node1", "total": 14, "by_role": {"main": 14}, "budget": 18},
                                {"node": "node2", "total": 13, "by_role": {"main": 13}, "budget": 10}]}  # fmt: skip

    nodes = [node_run(0, "pinned", 100, None), node_run(0, "spread", 90, 0.02)]
    two = nodes_summary(nodes, 2)
    assert two["ratio"] == pytest.approx(0.9) and two["rerun_share"] == pytest.approx(0.02)
    assert two["refused_spread"] == 1
    connections = connections_summary(nodes)
    assert connections["max_per_node"]["total"] == 14 and connections["max_over_budget"] == 3
    text = render({
        "when": "now", "minutes": 9.5, "plan": FULL.__dict__, "api_only": False, "read": read, "read_p99_ms": read,
        "write": read, "batch": read, "nodes": {"2": two}, "connections": connections, "pools": {"X_POOL": 1},
        "failover": {"seconds": None, "reason": "2 of 2 nodes lead (told by a `hajj-ledger project` child)"},
    })  # fmt: skip
    lines = {line.split(" | ")[0]: line for line in text.splitlines() if line.startswith("| ")}
    assert lines["| reads (journey status by id), requests/s, 64 connections"].endswith("| ≥ 0.5x | yes |")
    assert "| 0.50x (0.60, 0.40; 1 run(s) left out (> 1% errors)) |" in text
    assert next(v for k, v in lines.items() if k.startswith("| 2 API nodes, spread: re-run")).endswith("| yes |")
    assert next(v for k, v in lines.items() if k.startswith("| PostgreSQL connections")).endswith("| **no** |")
    assert next(v for k, v in lines.items() if k.startswith("| leader failover")).endswith("| n/a |")
