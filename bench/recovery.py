"""Recovery drills on private PostgreSQL clusters, as their end-to-end tests run them: a promotion under load
(`--only failover`, tests/e2e/test_failover.py) and a pgBackRest restore of a season's store (`--only restore`,
tests/e2e/test_restore_drill.py)."""

from __future__ import annotations

import os
import tempfile
from dataclasses import asdict
from pathlib import Path
from typing import Any

from bench.harness import FULL, Sizes, now, run_child
from bench.season_scale import measure_season_store


def failover_figure(sizes: Sizes, kind: str) -> dict[str, Any]:
    """A promotion under load (tests/e2e/test_failover.py, checked as the test checks it), `sizes.runs` times: a
    private primary and its synchronous standby made with initdb and pg_basebackup, two nodes holding one URL naming
    both, four clients; the primary crashes, the standby is promoted. Medians of the seconds without an acknowledged
    write, and until the views (and the seal) showed a write made after the crash."""
    from tests.e2e.test_failover import failover, medians

    runs = []
    for _ in range(sizes.runs):
        with tempfile.TemporaryDirectory(prefix="hajj-bench-failover-") as directory:
            runs.append(failover(Path(directory), before=3.0 if sizes is FULL else 1.0))
    return {**medians(runs), "when": now()}


def restore_figure(sizes: Sizes, kind: str, events: int | None = None) -> dict[str, Any]:
    """The restore drill (tests/e2e/test_restore_drill.py, checked as the test checks it) on a private primary
    grown to `events` events (default sizes.season: 10 M) as the season's store is (simulated, copied in SQL with
    fresh aggregate ids, sealed with signed checkpoints, every view caught up), archiving its WAL into a private
    pgBackRest repository: a full backup, writes, a named restore point, writes, a crash, a point-in-time restore
    into a new data directory. The RTO and each of its phases; the RPO to the point (acknowledged commands missing)
    and what archiving alone would have lost (acknowledged commands after the last archived WAL segment)."""
    from hajj_ledger.audit.signing import KEY_FILE_VARIABLE, SigningKeys
    from tests.clusters import private_root
    from tests.e2e.test_restore_drill import drill

    full = sizes is FULL
    grown: dict[str, Any] = {}
    with private_root("hajj-bench-restore-") as root:
        keys = SigningKeys.create(root / "signing.json").path
        env = {**os.environ, KEY_FILE_VARIABLE: str(keys)}

        def grow(url: str) -> None:
            pilgrims = sizes.pilgrims if full else 300
            season_events = events or sizes.season
            grown.update(
                run_child(measure_season_store, url=url, events=season_events, pilgrims=pilgrims, keys=str(keys))
            )

        drilled = drill(
            root,
            env,
            grow=grow,
            rounds=3,
            commands=1000 if full else 20,
            unarchived_for=10.0 if full else 1.0,
            server={"shared_buffers": "1GB", "max_wal_size": "8GB"} if full else {},
            thorough=not full,
        )
    rto = drilled.rto
    found = {"median": rto, "min": rto, "max": rto, "runs": 1, "store": grown, **asdict(drilled), "rto": rto}
    found["when"] = now()
    if drilled.events < sizes.season:  # a smaller store: what grows with it scaled up to a season's
        scale = sizes.season / drilled.events
        grows = {"restore": drilled.restore * scale, "verify": drilled.verify * scale, "backup": drilled.backup * scale}
        rto = drilled.rto + (drilled.restore + drilled.verify) * (scale - 1)
        found["extrapolated"] = {"events": sizes.season, "scale": scale, "rto": rto, **grows}
    return found
