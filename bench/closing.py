"""Closing seasons (`--only seasons`, PostgreSQL): two seasons (the first of 10 M events, the second of a tenth of
that), each a simulated season's log copied in SQL with fresh aggregate ids in its own season's partition, sealed,
closed to a local archive; the archive verified; appending beside a fresh store."""

from __future__ import annotations

import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.harness import FULL, SEED, Sizes, fresh_store, ledger, now, postgres, run_child


def _copy_season(url: str, season: int, events: int) -> None:
    """Grow `season`'s part of the log to `events` by copying its simulated events in SQL with fresh aggregate ids."""
    grown = ledger(url)
    events_table = grown.recorder.events_table_name
    grown.close()
    with postgres(url) as connection:
        counted = connection.execute(f"SELECT count(*) FROM {events_table} WHERE season = %s", (season,)).fetchone()
        assert counted is not None
        base = counted[0]
        for copy in range(1, -(-events // base)):
            connection.execute(
                f"INSERT INTO {events_table} (originator_id, originator_version, topic, state, season) "
                "SELECT md5(originator_id::text || %(copy)s)::uuid, originator_version, topic, state, season "
                f"FROM (SELECT * FROM {events_table} WHERE season = %(season)s ORDER BY notification_id "
                "LIMIT %(rows)s) AS s ORDER BY notification_id",
                {"copy": f"{season}-{copy}", "season": season, "rows": min(base, events - base * copy)},
            )


def _store_bytes(url: str) -> int:
    """The hot store's size: every table of its schema, with its indexes and TOAST."""
    with postgres(url) as connection:
        [size] = connection.execute(
            "SELECT sum(pg_total_relation_size(c.oid)) FROM pg_class AS c JOIN pg_namespace AS n "
            "ON n.oid = c.relnamespace WHERE n.nspname = current_schema() AND c.relkind = 'r'"
        ).fetchone()  # type: ignore[misc]
    return int(size)


def _season_bytes(url: str, season: int) -> int:
    with postgres(url) as connection:
        [size] = connection.execute(
            "SELECT pg_total_relation_size('journeyledger_events_s' || %s) "
            "+ pg_total_relation_size('command_receipts_s' || %s)",
            (season, season),
        ).fetchone()  # type: ignore[misc]
    return int(size)


def measure_closing(
    url: str, fresh: str, events: int, pilgrims: int, appended: int, keys: str, out: str
) -> dict[str, Any]:
    """Close two seasons (the first of `events` events, the second of a tenth of that), each timed by stage, with
    the store's size before and after; verify the first one's archive; then the append rate (a simulated season of
    `appended` pilgrims) on this store and on a fresh one, in turn."""
    from hajj_ledger.archive.seasons import close
    from hajj_ledger.archive.verification import verify_archive
    from hajj_ledger.audit.chain import Chain, signing_keys
    from hajj_ledger.audit.signing import KEY_FILE_VARIABLE
    from hajj_ledger.simulation.season import simulate

    os.environ[KEY_FILE_VARIABLE] = keys
    closed = (1445, 1446)
    store = ledger(url)
    for season in closed:
        simulate(store, pilgrims, season, SEED)
    store.close()
    # The first season at full size; the second, closed too so that appending has two closed seasons behind it, at
    # a tenth of it at most (growing and sealing a second 10 M would double the run for no other figure).
    sizes = {closed[0]: events, closed[1]: min(events, max(events // 10, 1_000_000))}
    for season in closed:
        _copy_season(url, season, sizes[season])
    store = ledger(url)
    signing = signing_keys(url, required=True)
    assert signing is not None
    started = time.perf_counter()
    Chain(store, signing).checkpoint()
    seal_rate = sum(sizes.values()) / (time.perf_counter() - started)
    with postgres(url) as connection:
        connection.execute("VACUUM ANALYZE")
    closes = []
    for season in closed:
        before, season_bytes = _store_bytes(url), _season_bytes(url, season)
        started = time.perf_counter()
        stages: dict[str, float] = {}
        extent = close(store, season, f"{out}/{season}", signing, stages=stages)["events"]
        seconds, count = time.perf_counter() - started, extent["count"]
        closes.append(
            {
                "season": season,
                "events": count,
                "seconds": seconds,
                "store_before": before,
                "span": extent["last"] - extent["first"] + 1,
                "store_after": _store_bytes(url),
                "season_bytes": season_bytes,
                "stages": stages,
                "load": os.getloadavg()[0],
            }
        )
    verdict = verify_archive(f"{out}/{closed[0]}", signing.public)  # the full-size season's
    assert verdict.ok, verdict.problems
    # The same seasons appended to each store in turn, three rounds, the first store of a round alternating: the
    # machine's drift falls on both alike, and the medians are compared.
    runs: dict[str, list[float]] = {"fresh": [], "closed": []}
    stores = {"fresh": ledger(fresh), "closed": store}
    for turn, season in enumerate((1447, 1444, 1443)):  # seasons ended (the simulator plays only those)
        for name in ("fresh", "closed") if turn % 2 == 0 else ("closed", "fresh"):
            target = stores[name]
            started = time.perf_counter()
            head = target.head()
            simulate(target, appended, season, SEED + 1)
            runs[name].append((target.head() - head) / (time.perf_counter() - started))
    for target in stores.values():
        target.close()
    return {
        "rate": verdict.events / verdict.seconds,
        "seal_rate": seal_rate,
        "closes": closes,
        "verify_rate": verdict.events / verdict.seconds,
        "verified": verdict.events,
        "append": {name: statistics.median(found) for name, found in runs.items()},
        "append_runs": runs,
    }


def closing_figure(sizes: Sizes, kind: str, events: int | None = None) -> dict[str, Any]:
    from hajj_ledger.audit.signing import SigningKeys

    full = sizes is FULL
    with (
        tempfile.TemporaryDirectory(prefix="hajj-bench-closing-") as directory,
        fresh_store(kind) as url,
        fresh_store(kind) as fresh,
    ):
        keys = Path(directory) / "signing.json"
        SigningKeys.create(keys)
        found = run_child(
            measure_closing,
            url=url,
            fresh=fresh,
            events=events or sizes.season,
            pilgrims=sizes.pilgrims if full else 40,
            appended=1000 if full else 20,
            keys=str(keys),
            out=directory,
        )
    rate = found["rate"]
    return {"median": rate, "min": rate, "max": rate, "runs": 1, "rss_mb": found["rss_mb"], **found, "when": now()}
