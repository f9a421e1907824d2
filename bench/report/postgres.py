"""The rows of the figures measured on PostgreSQL alone, each apart (`--only X`): every view rebuilt in bulk, the
recovery drills (failover, restore), a season's scale and closing seasons, the audit trail on millions of events,
and the contract and bed races."""

from __future__ import annotations

import os
import statistics
from typing import Any

from bench.harness import SEASON_PILGRIMS
from bench.report.cells import judged, number, verdict

FAILOVER_WRITES_TARGET = 2.0  # seconds without an acknowledged write across a promotion
FAILOVER_RESUMED_TARGET = 5.0  # seconds from the primary's crash until the leader's views show a write made after it
RESTORE_RTO_TARGET = 15 * 60  # seconds from the decision to restore to the ledger answering, verified, views current


def rebuild_rows(kind: str, figure: dict[str, Any]) -> list[str]:
    """Every view from zero in bulk (`--only rebuild`, PostgreSQL), all together and each alone, beside the
    incremental runner's batches in the same run. The targets are for a 10 M-event store; this one is smaller."""
    run = figure["details"][0]
    events, together, batches = run["events"], run["rate"], run["incremental"]

    def line(label: str, value: float, target: float) -> str:
        return (
            f"| {kind} | {label} ({events:,} events) | {number(value)} |  | 1 | {number(batches)} (the batches, same "
            f"run) | {value / batches:.2f}x | ≥ {number(target)}/s (on 10 M events) | {verdict(value >= target)} |  |"
        )

    in_sql = run.get("in_sql", [])  # results measured before views were built in SQL name none

    def how(name: str) -> str:
        return "in SQL" if name in in_sql else "folded"

    found = [line(f"every view from zero in bulk ({len(in_sql)} in SQL), together, events/s", together, 100_000)]
    found += [
        line(f"{name} from zero in bulk ({how(name)}), alone, events/s", rate, 150_000)
        for name, rate in run["alone"].items()
    ]
    found.append(
        f"| {kind} | memory of the bulk path, all views together ({events:,} events) | "
        f"{run['rss_together_mb']:.0f} MB peak |  | 1 | {run['rss_incremental_mb']:.0f} MB (the batches) |  |  |  |  |"
    )
    return found


def recovery_rows(kind: str, f: dict[str, Any]) -> list[str]:
    """The promotion under load (`--only failover`) and the restore drill (`--only restore`)."""
    return [
        *(failover_rows(kind, f["failover"]) if "failover" in f else []),
        *(restore_rows(kind, f["restore"]) if "restore" in f else []),
    ]


# The failover's figures: (key, label, target in seconds).
FAILOVER_FIGURES = (
    (
        "writes_unavailable",
        "failover: writes unavailable across a promotion under load, s (longest gap between acknowledged writes; "
        "2 nodes, 4 clients, synchronous standby promoted)",
        FAILOVER_WRITES_TARGET,
    ),
    (
        "views_resumed",
        "failover: from the primary's crash to the views showing a write made after it, s (the leader resumed on the "
        "new primary)",
        FAILOVER_RESUMED_TARGET,
    ),
    (
        "sealed_resumed",
        "failover: from the primary's crash to the seal reaching that write, s",
        FAILOVER_RESUMED_TARGET,
    ),
)


def failover_rows(kind: str, figure: dict[str, Any]) -> list[str]:
    found = []
    for key, label, target in FAILOVER_FIGURES:
        f = figure[key]
        found.append(
            f"| {kind} | {label} | {f['median']:.2f} | {f['min']:.2f}-{f['max']:.2f} | {figure['runs']} |  |  | "
            f"≤ {target:g} s | {verdict(f['median'] <= target)} |  |"
        )
    return found


# The restore drill's phases, as the drill names them and as the table does.
RESTORE_PHASES = (
    ("restore", "restore"),
    ("replay", "WAL replay"),
    ("seal", "seal"),
    ("verify", "verify"),
    ("views", "views caught up"),
    ("answering", "first command acknowledged"),
)


def restore_rows(kind: str, f: dict[str, Any]) -> list[str]:
    events = f"{f['events']:,} events, {f['store_bytes'] / 2**30:.1f} GiB"
    phases = ", ".join(f"{name} {f[key]:.1f}" for key, name in RESTORE_PHASES)
    lost = f["lost_before_point"]

    def rto_row(label: str, seconds: float) -> str:
        met = verdict(seconds <= RESTORE_RTO_TARGET)
        return f"| {kind} | {label} | {seconds:.1f} |  | 1 |  |  | ≤ {RESTORE_RTO_TARGET:g} s | {met} |  |"

    rows = [
        rto_row(
            f"restore drill: RTO, s, from the decision to restore to the ledger answering, verified, its views current "
            f"({events}, pgBackRest full backup + WAL archive, point-in-time restore into a new cluster; phases, s: "
            f"{phases})",
            f["rto"],
        )
    ]
    if x := f.get("extrapolated"):
        rows.append(
            rto_row(
                f"restore drill: RTO extrapolated to {x['events']:,} events, s (restore {x['restore']:.0f} s and "
                f"verify {x['verify']:.0f} s: scaled x{x['scale']:.2f} with the store, fixed costs and all; the WAL "
                "replay, seal, views and first command grow with the writes since the backup, not with the store)",
                x["rto"],
            )
        )
    return [
        *rows,
        f"| {kind} | restore drill: RPO to the restore point, acknowledged commands missing (of "
        f"{f['before_point']:,} acknowledged before it; {f['after_point']:,} after it, none restored) | {lost} |  | 1 "
        f"|  |  | 0 | {verdict(lost == 0)} |  |",
        f"| {kind} | restore drill: archiving alone (archive_timeout 60 s), acknowledged commands after the last "
        f"archived WAL segment at the crash, lost to a restore to the end of the archive (the last "
        f"{f['unarchived_seconds']:.1f} s of writes) | {f['unarchived']:,} |  | 1 |  |  | stated | ≤ 60 s of "
        "writes |  |",
        f"| {kind} | restore drill: full backup, s ({events}; the repository then {f['backup_bytes'] / 2**30:.1f} GiB, "
        f"lz4) | {f['backup']:.1f} |  | 1 |  |  |  |  |  |",
    ]


def seasons_rows(kind: str, f: dict[str, Any]) -> list[str]:
    """A season's scale (`--only season`) and closing seasons (`--only seasons`)."""
    return [
        *(season_rows(kind, f["season"]) if "season" in f else []),
        *(closing_rows(kind, f["seasons"]) if "seasons" in f else []),
    ]


def _line(kind: str, label: str, value: str, target: str, met: bool, rss: str = "") -> str:
    """A figure measured once, with its target."""
    return f"| {kind} | {label} | {value} |  | 1 |  |  | {target} | {verdict(met)} | {rss} |"


def season_rows(kind: str, f: dict[str, Any]) -> list[str]:
    exported, reads, store = f["export"], f["reads"], f["store"]
    events = f"{store['events']:,} events"
    page, journey = reads["as_of_page"], reads["journey_as_of"]
    minutes = f["season_export_minutes"]
    return [
        _line(
            kind,
            f"season: export to Parquet, events/s ({events}, sealed, views at the head; every read model)",
            f"{number(exported['rate'])} ({number(exported['events_rate'])} the events alone)",
            "≥ 100,000/s",
            exported["rate"] >= 100_000,
            f"{exported['rss_mb']:.0f} MB",
        ),
        _line(
            kind,
            f"season: export peak RSS ({events})",
            f"{exported['rss_mb']:.0f} MB (x{exported['rss_growth']:.2f} from 1/5 to end)",
            "< 300 MB",
            exported["rss_mb"] < 300,
        ),
        _line(
            kind,
            f"season: journey_status as of a random position, a page of 100, p99 ms (p50), {events}",
            f"{page['p99_ms']:.1f} ({page['p50_ms']:.1f})",
            "< 1,000 ms",
            page["p99_ms"] < 1000,
        ),
        _line(
            kind,
            f"season: a journey as of a random position, p99 ms (p50), {events}",
            f"{journey['p99_ms']:.1f} ({journey['p50_ms']:.1f})",
            "< 50 ms",
            journey["p99_ms"] < 50,
        ),
        _line(
            kind,
            f"season: verify, events/s ({events})",
            number(reads["verify_rate"]),
            "≥ 150,000/s",
            reads["verify_rate"] >= 150_000,
            f"{reads['rss_mb']:.0f} MB",
        ),
        _line(
            kind,
            f"season: export of {SEASON_PILGRIMS:,} pilgrims ({f['season_events'] / 1e6:.1f} M events), "
            "extrapolated, minutes",
            f"{minutes:.1f}",
            "< 10",
            minutes < 10,
        ),
    ]


def closing_rows(kind: str, f: dict[str, Any]) -> list[str]:
    rows = []
    largest = max(c["events"] for c in f["closes"])
    for c in f["closes"]:
        shrunk = c["store_before"] - c["store_after"]
        at_10m = c["seconds"] * 10_000_000 / c["events"] / 60  # the time grows with the events: all of it is per event
        stages = ", ".join(f"{name.replace('_', ' ')} {s:.0f} s" for name, s in c.get("stages", {}).items())
        load = f"; load {c['load']:.1f} on {os.cpu_count()} cores" if "load" in c else ""
        span = f" over {c['span']:,} positions" if "span" in c else ""
        minutes = f"{c['seconds'] / 60:.1f}"
        if c["events"] == largest:  # the target's season; a smaller one's chain may span the larger one's positions
            label = (
                f"closing season {c['season']} ({c['events']:,} events{span}; {stages}{load}): archive, verify, take "
                "out, minutes (extrapolated to 10 M events)"
            )
            rows.append(_line(kind, label, f"{minutes} ({at_10m:.1f})", "≤ 10 min at 10 M", at_10m <= 10))
        else:
            rows.append(
                f"| {kind} | closing season {c['season']} ({c['events']:,} events{span}, its archive's chain from the "
                f"checkpoint before its first event to its last; {stages}{load}), minutes | {minutes} |  | 1 |  |  "
                "|  |  |  |"
            )
        label = (
            f"closing season {c['season']}: the store shrank by, MB (its partitions: "
            f"{c['season_bytes'] / 2**20:,.0f} MB)"
        )
        rows.append(_line(kind, label, f"{shrunk / 2**20:,.0f}", "its size", shrunk >= 0.95 * c["season_bytes"]))
    label = f"an archived season verified alone, events/s ({f['verified']:,} events)"
    rows.append(_line(kind, label, number(f["verify_rate"]), "≥ 150,000/s", f["verify_rate"] >= 150_000))
    fresh, closed = f["append"]["fresh"], f["append"]["closed"]
    ratio = closed / fresh
    runs = f.get("append_runs", {})
    spread = " - ".join(number(r) for r in sorted(runs.get("closed", [])))
    rows.append(
        f"| {kind} | appending with two closed seasons behind, events/s, median of the rounds (fresh store, same "
        f"seasons, in turn: {number(fresh)}) | {number(closed)} | {spread} | {len(runs.get('closed', [])) or 1} | "
        f"{number(fresh)} (fresh store) | {ratio:.2f}x | within 5% | {verdict(ratio >= 0.95)} |  |"
    )
    return rows


def trail_rows(kind: str, f: dict[str, Any]) -> list[str]:
    """The audit trail's filtered pages on millions of events (`--only trail`)."""
    if "trail" not in f:
        return []
    trail = f["trail"]
    d = trail["details"][0]
    target, met = judged(kind, "< 50 ms at 3 M events", d["p99_ms"] < 50 and d["events"] >= 3_000_000)
    rows = [
        f"| {kind} | audit trail, a filtered page (100 entries) p99 ms, {d['events']:,} events, {d['pages']:,} "
        f"pages (p50 {d['p50_ms']:.1f}) | {d['p99_ms']:.1f} |  | 1 |  |  | {target} | {met} | "
        f"{trail['rss_mb']:.0f} MB |"
    ]
    rows += [
        f"| {kind} | trail filtered by {name.replace('+', ' + ').replace('time', 'recorded time')}, p99 ms "
        f"(p50 {q['p50_ms']:.1f}) | {q['p99_ms']:.1f} |  | 1 |  |  |  |  |  |"
        for name, q in d["kinds"].items()
    ]
    rows.append(
        f"| {kind} | trail index backfill (the projection runner from position 0), events/s "
        f"| {number(d['backfill_rate'])} |  | 1 |  |  |  |  |  |"
    )
    return rows


def races_rows(kind: str, f: dict[str, Any]) -> list[str]:
    """The contract and bed races (`--only races`)."""
    return race_rows(kind, f["races"]) if "races" in f else []


# The races: (name, what is raced for, what the room is).
RACES = (
    ("contract", "contract race: signatures", "places of an offer"),
    ("bed", "bed race: check-ins", "beds of a building"),
)


def race_rows(kind: str, races: dict[str, Any]) -> list[str]:
    """A row for each race on 1 and 2 nodes: the seconds to the last answer; met when every run had exactly the
    winners there was room for, every other client refused (naming the numbers, or a give-up, shown apart) and
    nothing over capacity in the views."""
    details = races["details"]
    found = []
    for name, what, unit in RACES:
        for nodes in (1, 2):
            runs = [d["runs"][f"{name}_{nodes}"] for d in details]
            seconds = sorted(r["seconds"] for r in runs)
            room, racers = runs[0]["room"], details[0]["racers"]
            where = "1 node of 2 workers" if nodes == 1 else "2 nodes, clients spread over both"

            def total(key: str, runs: list[dict[str, Any]] = runs) -> int:
                return sum(int(r[key]) for r in runs)

            free = ", ".join(str(r["view"]["free"]) for r in runs)
            over = sum(int(d["runs"][f"over_capacity_{nodes}"]) for d in details)
            winners = ", ".join(str(r["winners"]) for r in runs)
            label = (
                f"{what}, {racers} HTTP clients for the last {room} {unit}, {where}, s to the last answer (winners "
                f"{winners}; refused 409 naming the numbers {total('refused_naming_numbers')}; give-ups "
                f"{total('give_ups')}; other answers {total('other')}; free in the views after catch-up {free}; rows "
                f"over capacity {over})"
            )
            met = verdict(all(r["holds"] for r in runs))
            found.append(
                f"| {kind} | {label} | {statistics.median(seconds):.3f} | {seconds[0]:.3f}-{seconds[-1]:.3f} | "
                f"{len(runs)} |  |  | exactly {room} win, none over capacity | {met} | {races['rss_mb']:.0f} MB |"
            )
    return found
