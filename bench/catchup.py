"""The projection runner: each view caught up from position 0 (`--only catchup`), every view rebuilt from zero in
bulk beside the incremental batches (`--only rebuild`, PostgreSQL), and the live lag under a steady load
(`--only lag`); `steady_load` is the change feed's writer too."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime
from typing import Any

from bench.harness import (
    FULL,
    Sizes,
    lag_quantiles,
    migrated_season,
    repeat,
    replicate,
    rss_mb,
    season_batches,
    simulated_ledger,
    summarise,
)


def measure_catchup(url: str, pilgrims: int) -> dict[str, Any]:
    """Each projection from position 0 to the head of a simulated season's log, one after another."""
    from hajj_ledger.projections import PROJECTIONS
    from hajj_ledger.projections.runner import Runner

    migrated_season(url, pilgrims)
    runner = Runner(PROJECTIONS, url)
    head = runner.ledger.head()
    rates: dict[str, float] = {}
    rss_fifth = 0.0
    for projection in PROJECTIONS:
        started = time.perf_counter()
        position = 0
        while moved := runner.step(projection):
            position += moved
            if not rss_fifth and position >= head / 5:
                rss_fifth = rss_mb()
        rates[projection.name] = head / (time.perf_counter() - started)
    runner.close()
    slowest = min(rates, key=rates.__getitem__)
    return {
        "rate": rates[slowest],
        "slowest": slowest,
        "rates": rates,
        "events": head,
        "rss_at_fifth_mb": rss_fifth,
        "rss_growth": rss_mb() / rss_fifth,
    }


def measure_rebuild(url: str, pilgrims: int, events: int) -> dict[str, Any]:
    """Every view (and the trail's index) from position 0 on a simulated season grown to `events`: the incremental
    runner's batches, then the bulk path for all of them together, then for each alone, in the same process."""
    from hajj_ledger.projections import FOLLOWED
    from hajj_ledger.projections import runner as runner_module
    from hajj_ledger.projections.bulk import build
    from hajj_ledger.projections.runner import Runner

    migrated_season(url, pilgrims)
    replicate(url, events)
    runner = Runner(FOLLOWED, url)
    head = runner.ledger.head()
    runner_module.BULK_BEHIND = head  # the batches alone, as before the bulk path
    started = time.perf_counter()
    runner.run(once=True)
    incremental = head / (time.perf_counter() - started)
    rss_incremental = rss_mb()
    for projection in FOLLOWED:
        runner.prepare(projection, "b")
    started = time.perf_counter()
    build(runner.engine, runner.ledger, [(p, "b") for p in FOLLOWED])
    together = head / (time.perf_counter() - started)
    rss_together = rss_mb()
    alone: dict[str, float] = {}
    for projection in FOLLOWED:
        runner.prepare(projection, "b")
        started = time.perf_counter()
        build(runner.engine, runner.ledger, [(projection, "b")])
        alone[projection.name] = head / (time.perf_counter() - started)
    runner.close()
    in_sql = [p.name for p in FOLLOWED if p.in_sql is not None]  # built in SQL on PostgreSQL; the rest folded
    return {
        "rate": together,
        "incremental": incremental,
        "alone": alone,
        "events": head,
        "in_sql": in_sql,
        "rss_incremental_mb": rss_incremental,
        "rss_together_mb": rss_together,
    }


def measure_lag(url: str, seconds: float, events_per_second: int) -> dict[str, Any]:
    """How long after it is recorded an event is in every read model, while the ledger takes a steady load."""
    from hajj_ledger.projections import PROJECTIONS
    from hajj_ledger.projections.runner import Runner

    migrated_season(url, 20)
    runner = Runner(PROJECTIONS, url)
    runner.run(once=True)
    lags: list[float] = []
    apply = runner._apply  # each projection's part of a stretch of the log, in a transaction of its own

    def timed_apply(projection: Any, generation: str, position: int, last: int, log: Any) -> int:
        moved = apply(projection, generation, position, last, log)  # committed on return
        now = datetime.now(UTC)
        lags.extend((now - e.timestamp).total_seconds() for _, e in log.events(projection, position))
        return moved

    runner._apply = timed_apply  # type: ignore[method-assign,assignment]
    stop = threading.Event()
    follower = threading.Thread(target=runner.run, kwargs={"stop": stop})
    follower.start()
    recorded, elapsed = steady_load(url, seconds, events_per_second)
    time.sleep(1.0)
    stop.set()
    follower.join()
    runner.close()
    return {
        **lag_quantiles(lags),
        "events": len(lags),
        "load_events_per_s": recorded / elapsed,
    }


def steady_load(url: str, seconds: float, events_per_second: int) -> tuple[int, float]:
    """A simulated season recorded at `events_per_second` for `seconds`, in batches every 50 ms: the events recorded
    and the seconds it took."""
    writer = simulated_ledger(url)
    # A command records 0.8 events on average in the simulated season (refusals, steps of the market): a season
    # with twice the pilgrims that rate needs, so that its commands never run out before the clock does.
    commands = [c for batch in season_batches(max(100, int(seconds * events_per_second / 14))) for c in batch]
    tick = 0.05
    per_tick = max(1, int(events_per_second * tick))
    started = time.perf_counter()
    sent = recorded = ticks = 0
    while time.perf_counter() - started < seconds and sent < len(commands):
        results = writer.record_batch(commands[sent : sent + per_tick])
        recorded += sum(len(getattr(r, "events", ())) for r in results)
        sent += per_tick
        ticks += 1
        # The events a command records vary with the season's mix (the market's steps, refusals): aim at the events
        # due by the end of the next tick, at the commands-per-event seen so far, so that a short tick is made up.
        due = events_per_second * tick * (ticks + 1) - recorded
        per_tick = max(1, round(due * sent / max(recorded, 1)))
        time.sleep(max(0.0, started + ticks * tick - time.perf_counter()))
    elapsed = time.perf_counter() - started
    writer.close()
    if sent >= len(commands):
        raise RuntimeError(f"the season's commands ran out after {elapsed:.1f} s of {seconds} s")
    return recorded, elapsed


def measure_steady(url: str, seconds: float, events_per_second: int) -> dict[str, Any]:
    """`steady_load` in a child process: the change feed's writer."""
    recorded, elapsed = steady_load(url, seconds, events_per_second)
    return {"recorded": recorded, "elapsed": elapsed}


# The figures.


def catchup_figure(sizes: Sizes, kind: str) -> dict[str, Any]:
    return summarise(repeat(sizes.runs, kind, measure_catchup, pilgrims=sizes.pilgrims))


def rebuild_figure(sizes: Sizes, kind: str) -> dict[str, Any]:
    """One store of sizes.rebuild events (its every view built several times over in the run)."""
    return summarise(repeat(1, kind, measure_rebuild, pilgrims=sizes.pilgrims, events=sizes.rebuild))


def lag_figure(sizes: Sizes, kind: str) -> dict[str, Any]:
    seconds = 20 if sizes is FULL else 2
    return summarise(repeat(sizes.runs, kind, measure_lag, seconds=seconds, events_per_second=1000))
