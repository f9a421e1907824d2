"""The benchmark suite keeps working: a smoke run at tiny sizes writes every figure (never timed here)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import POSTGRES_AVAILABLE

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


def test_a_smoke_run_writes_every_figure(tmp_path: Path) -> None:
    stores = "postgres,sqlite" if POSTGRES_AVAILABLE else "sqlite"
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "run.py"), "--smoke", "--out", str(tmp_path), "--stores", stores],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr
    results = json.loads((tmp_path / "bench" / "results.json").read_text())
    for store in stores.split(","):
        figures = results["figures"][store]
        assert set(FIGURES) <= set(figures)
        for name in FIGURES:
            assert figures[name]["median"] > 0, name
            assert figures[name]["rss_mb"] > 0, name
        assert figures["ingest"]["details"][0]["refused"] == 0
        assert figures["single_64"]["details"][0]["refused"] == 0
    table = (tmp_path / "BENCHMARKS.md").read_text()
    assert "batched ingest" in table and "64 concurrent clients" in table and "scale run" in table


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
    from bench.serving import counter_growth, rerun_share, write_counters

    before = write_counters(
        "# HELP hajj_ledger_write_batches_total batches\n"
        'hajj_ledger_write_batches_total{kind="single"} 10.0\n'
        'hajj_ledger_write_batches_total{kind="batch"} 10.0\n'
        "hajj_ledger_write_batches_created 1.7e9\n"
        "hajj_ledger_batch_reruns_total 1.0\n"
        'hajj_ledger_http_requests_total{route="/v1/commands:batch"} 99.0\n'
    )
    assert before == {"batches": 20.0, "reruns": 1.0, "conflicts": None, "give_ups": None}
    after = write_counters("hajj_ledger_write_batches_total 220.0\nhajj_ledger_batch_reruns_total 9.0\n")
    growth = counter_growth(before, after)
    assert growth == {"batches": 200.0, "reruns": 8.0, "conflicts": None, "give_ups": None}
    assert rerun_share(growth) == pytest.approx(0.04)
    assert rerun_share(write_counters("hajj_ledger_http_requests_total 5.0\n")) is None


def test_targets_are_judged_on_medians_of_same_round_ratios() -> None:
    from bench.serving import judge, median_ratio

    assert median_ratio([(50.0, 100.0), (90.0, 100.0), (70.0, 100.0)]) == pytest.approx(0.7)
    assert median_ratio([]) is None
    assert judge(0.7, 0.6, at_least=True) == "yes"
    assert judge(0.5, 0.6, at_least=True) == "**no**"
    assert judge(3.0, 2.0, at_least=False) == "**no**"
    assert judge(None, 5.0, at_least=False) == "n/a"
