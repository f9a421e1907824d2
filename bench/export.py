"""An analysts' export to Parquet (`--only export`), against reading the same events alone."""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.harness import EXPORT_KEY, Sizes, ledger, migrated_season, now, repeat, rss_mb, summarise


def measure_export(url: str, pilgrims: int) -> dict[str, Any]:
    """An analysts' export to Parquet of a season with its views current, against reading the same events alone
    (the store's own pace, same run); peak memory a fifth of the way in and at the end."""
    from hajj_ledger.audit.chain import Chain
    from hajj_ledger.audit.signing import KEY_FILE_VARIABLE, SigningKeys
    from hajj_ledger.projections.export import export

    directory = Path(tempfile.mkdtemp(prefix="hajj-bench-export-"))
    os.environ[KEY_FILE_VARIABLE] = str(SigningKeys.create(directory / "signing.json").path)
    os.environ.setdefault("HAJJ_LEDGER_EXPORT_KEY", EXPORT_KEY)
    migrated_season(url, pilgrims)
    exported = ledger(url)
    head = exported.head()
    started = time.perf_counter()
    for _ in Chain(exported).tables.pages_with_digests(0, head, 10_000):
        pass
    read_rate = head / (time.perf_counter() - started)
    exported.close()
    marks: dict[str, float] = {}

    def progress(done: int, total: int) -> None:
        marks.setdefault("first", time.perf_counter())
        if "fifth" not in marks and done >= total / 5:
            marks["fifth"], marks["rss_fifth"] = time.perf_counter(), rss_mb()
        marks["last"] = time.perf_counter()

    began = time.perf_counter()
    manifest = export(directory / "out", url=url, progress=progress)
    seconds = time.perf_counter() - began
    events_seconds = marks["last"] - began
    return {
        "rate": head / events_seconds,
        "events": head,
        "read_rate": read_rate,
        "seconds_all": seconds,
        "files": sum(len(t["files"]) for t in manifest["tables"].values()),
        "rss_at_fifth_mb": marks["rss_fifth"],
        "rss_growth": rss_mb() / marks["rss_fifth"],
    }


def export_figure(sizes: Sizes, kind: str) -> dict[str, Any]:
    return {**summarise(repeat(sizes.runs, kind, measure_export, pilgrims=sizes.export)), "when": now()}
