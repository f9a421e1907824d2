"""The audit trail's filtered pages on a store grown to millions of events (`--only trail`, PostgreSQL: the store
is grown in its SQL)."""

from __future__ import annotations

import random
import time
from datetime import UTC, datetime
from typing import Any

from bench.harness import (
    FULL,
    SEED,
    Sizes,
    ledger,
    migrated_season,
    now,
    postgres,
    quantiles,
    repeat,
    replicate,
    summarise,
)


def measure_trail(url: str, events: int, pilgrims: int, samples: int) -> dict[str, Any]:
    """The audit trail's filtered pages (100 entries, from the start or from a random cursor) on a store of `events`
    events: by agency (every agency equally likely, so the rare ones as often as the busy), by event type, by a
    recorded-time range, and combined; p50 and p99 of each kind."""
    from hajj_ledger.audit.reads import TrailQuery, trail
    from hajj_ledger.projections import TRAIL_INDEX
    from hajj_ledger.projections.runner import Runner

    migrated_season(url, pilgrims)
    total = replicate(url, events)
    runner = Runner([TRAIL_INDEX], url)
    started = time.perf_counter()
    runner.catch_up(TRAIL_INDEX)
    backfill = total / (time.perf_counter() - started)
    runner.close()
    connection = postgres(url)
    connection.execute("VACUUM ANALYZE")  # what autovacuum does to tables this size soon after
    agencies = [r[0] for r in connection.execute("SELECT DISTINCT agency_id FROM trail_index")]
    names = [r[0] for r in connection.execute("SELECT DISTINCT event FROM trail_index")]
    audited = ledger(url)
    pick = random.Random(SEED)

    def recorded_at(position: int) -> datetime:
        found = connection.execute(
            "SELECT recorded_us FROM trail_index WHERE position >= %s ORDER BY position LIMIT 1", (position,)
        ).fetchone()
        assert found is not None
        return datetime.fromtimestamp(found[0] / 1e6, UTC)

    def moments() -> list[datetime]:
        """The recorded times of two events from 10 to 300,000 positions apart."""
        low = pick.randint(1, total)
        high = min(total, low + int(10 ** pick.uniform(1, 5.5)))
        return [recorded_at(low), recorded_at(high)]

    def query(kind: str) -> TrailQuery:
        fields: dict[str, Any] = {}
        if "agency" in kind:
            fields["agency_id"] = pick.choice(agencies)
        if "event" in kind:
            fields["event"] = pick.choice(names)
        if "time" in kind:
            fields["recorded_from"], fields["recorded_until"] = sorted(moments())
        return TrailQuery(**fields)

    kinds = ("agency", "event", "time", "agency+event", "agency+time", "event+time", "agency+event+time")
    timings: dict[str, list[float]] = {kind: [] for kind in kinds}
    matched = 0
    for _ in range(samples):
        for kind in kinds:
            chosen = query(kind)
            after = 0 if pick.random() < 0.5 else pick.randint(1, total)
            started = time.perf_counter()
            page = trail(audited, chosen, after, 100)
            timings[kind].append((time.perf_counter() - started) * 1000)
            matched += len(page.entries)
    audited.close()
    connection.close()

    every = [t for values in timings.values() for t in values]
    overall = quantiles(every)
    return {
        "rate": overall["p99_ms"],
        "events": total,
        "backfill_rate": backfill,
        "agencies": len(agencies),
        "pages": len(every),
        "entries": matched,
        **overall,
        "kinds": {k: quantiles(v) for k, v in timings.items()},
    }


def trail_figure(sizes: Sizes, kind: str) -> dict[str, Any]:
    """One store of sizes.trail events (building it takes minutes; the pages are measured hundreds of times)."""
    pilgrims, samples = (sizes.pilgrims, 100) if sizes is FULL else (200, 30)
    runs = repeat(1, kind, measure_trail, events=sizes.trail, pilgrims=pilgrims, samples=samples)
    return {**summarise(runs), "when": now()}
