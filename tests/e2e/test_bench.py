"""The benchmark suite keeps working: a smoke run at tiny sizes writes every figure (never timed here)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

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
