"""`make bench`: the ledger's figures against baselines measured in the same run; writes BENCHMARKS.md.

Every measurement runs in a fresh process on a fresh database (PostgreSQL: a new database; SQLite: a new file),
so each has its own peak memory and nothing warm carries over. Figures are medians of several runs with their
min-max, because these machines are noisy; ratios compare figures measured in the same run.

    python bench/run.py                 # the full suite (about a quarter of an hour)
    python bench/run.py --smoke --out D # tiny sizes, one run each: checks the suite still works (no serving tier)
    python bench/run.py --only serving  # the serving tier alone (about ten minutes; --quick: a few), into the results
    python bench/run.py --only trail    # the audit trail's filtered pages on 3 M events (--smoke: 50,000)
    python bench/run.py --only cli      # the command line's start times alone (a minute), into the results
    python bench/run.py --only races    # the contract and bed races over HTTP, 1 and 2 nodes (PostgreSQL only)
    python bench/run.py --only catchup --only lag  # the projection runner's catch-up and live lag, both stores
    python bench/run.py --only ingest --stores postgres  # batched ingest beside its raw baseline, in one run
    python bench/run.py --only identity  # registration with identity against without, vault lookups, both stores
    python bench/run.py --only feed --only relay   # the change feed's p99 to 50 clients, the relay to NATS
    python bench/run.py --only dashboard  # the dashboard's first paint on the demo store, in Chromium (SQLite)
    python bench/run.py --only season   # a season's scale: export, as-of, verify on 10 M events (--season-events N)
    python bench/run.py --only season --stores postgres --season-keep hajj_season  # its store built once, kept
    python bench/run.py --only seasons  # closing seasons of 10 M and 1 M events, verify, append (--season-events N)
    python bench/run.py --only failover  # a promotion under load: private primary and synchronous standby (root)
    python bench/run.py --only restore   # a pgBackRest restore drill, 10 M events, private cluster (--season-events N)
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run as `python bench/run.py`: the bench package is importable as in its children
# The simulated seasons carry identities: the vault needs a master key (a fixed one, for benchmarks only).
os.environ.setdefault("HAJJ_LEDGER_MASTER_KEYS", "bench-1:" + "B" * 43)

from bench import serving  # noqa: E402
from bench.catchup import catchup_figure, lag_figure, rebuild_figure  # noqa: E402
from bench.chain import chain_figure  # noqa: E402
from bench.cli import cli_figure  # noqa: E402
from bench.closing import closing_figure  # noqa: E402
from bench.dashboard import first_paint_figure  # noqa: E402
from bench.export import export_figure  # noqa: E402
from bench.following import feed_figure, relay_figure  # noqa: E402
from bench.harness import FULL, SMOKE, Sizes, child, now  # noqa: E402
from bench.http_load import api_figure  # noqa: E402
from bench.identity import identity_figure  # noqa: E402
from bench.ingest import ingest_figures, recording_figures, scale_figure  # noqa: E402
from bench.races import races_figure  # noqa: E402
from bench.recovery import failover_figure, restore_figure  # noqa: E402
from bench.report.page import page  # noqa: E402
from bench.season_scale import season_figure  # noqa: E402
from bench.serving_setup import FULL as FULL_PLAN  # noqa: E402
from bench.serving_setup import QUICK, Plan  # noqa: E402
from bench.trail import trail_figure  # noqa: E402

Figure = Callable[[Sizes, str], dict[str, Any]]
# The stores grown in PostgreSQL's SQL, a deployment's serving tier and races, the recovery drills.
POSTGRES_ONLY = ("serving", "trail", "season", "seasons", "races", "failover", "restore", "rebuild")
ONLY = [
    "chain",
    "export",
    "serving",
    "trail",
    "cli",
    "catchup",
    "rebuild",
    "lag",
    "feed",
    "relay",
    "dashboard",
    "season",
    "seasons",
    "races",
    "ingest",
    "identity",
    "failover",
    "restore",
]


def suite(sizes: Sizes, stores: list[str], plan: Plan) -> dict[str, Any]:
    figures: dict[str, Any] = {}
    for kind in stores:

        def say(text: str, kind: str = kind) -> None:
            print(f"[{kind}] {text}", file=sys.stderr, flush=True)

        recorded = recording_figures(sizes, kind, say)
        say("projection catch-up and live lag")
        catchup, lag = catchup_figure(sizes, kind), lag_figure(sizes, kind)
        say(f"identity vault, {sizes.vault:,} identities")
        identity = identity_figure(sizes, kind)
        say("HTTP API under load (a serve process, clients in this one)")
        api = api_figure(sizes, kind)
        say(f"hash chain: ingest with the sealer following, verify, proofs ({sizes.chain:,} pilgrims)")
        chain = chain_figure(sizes, kind)
        say(f"export to Parquet ({sizes.export:,} pilgrims)")
        exported = export_figure(sizes, kind)
        say("command line start, --help, status, history and record")
        cli = cli_figure(sizes, kind)
        say(f"scale run, {sizes.scale:,} pilgrims")
        scale = scale_figure(sizes, kind)
        figures[kind] = {
            **recorded,
            "scale": scale,
            "catchup": catchup,
            "lag": lag,
            "identity": identity,
            "api": api,
            "chain": chain,
            "export": exported,
            "cli": cli,
        }
        if kind == "sqlite":  # the demo store is SQLite's
            say("the dashboard's first paint on the demo store, in Chromium")
            figures[kind]["dashboard"] = first_paint_figure(sizes, kind)
        if kind == "postgres":  # the trail's figure: PostgreSQL only (its store is grown in PostgreSQL's SQL)
            say(f"audit trail, filtered pages on {sizes.trail:,} events")
            figures[kind]["trail"] = trail_figure(sizes, kind)
            say(f"a season's scale: export, as-of and verify on {sizes.season:,} events")
            figures[kind]["season"] = season_figure(sizes, kind)
            say(f"the contract and bed races, {sizes.racers} HTTP clients, 1 and 2 nodes")
            figures[kind]["races"] = races_figure(sizes, kind)
        if kind == "postgres" and sizes is FULL:  # not in --smoke: it needs wrk and minutes
            figures[kind]["serving"] = serving.serving_figure(plan)
    return figures


def only(args: argparse.Namespace, plan: Plan) -> dict[str, Figure]:
    """What `--only X` measures: a figure of that name (`ingest`: two, see `main`)."""
    return {
        "chain": chain_figure,
        "export": export_figure,
        "cli": cli_figure,
        "serving": lambda sizes, kind: serving.serving_figure(plan),
        "trail": trail_figure,
        "dashboard": first_paint_figure,
        "season": lambda sizes, kind: season_figure(sizes, kind, args.season_events, args.season_keep),
        "seasons": lambda sizes, kind: closing_figure(sizes, kind, args.season_events),
        "races": races_figure,
        "failover": failover_figure,
        "restore": lambda sizes, kind: restore_figure(sizes, kind, args.season_events),
        "catchup": catchup_figure,
        "rebuild": rebuild_figure,
        "identity": identity_figure,
        "lag": lag_figure,
        "feed": feed_figure,
        "relay": relay_figure,
    }


def arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, one run each")
    parser.add_argument("--out", type=Path, default=ROOT, help="where BENCHMARKS.md and bench/results.json go")
    parser.add_argument("--stores", default="postgres,sqlite")
    parser.add_argument("--render", action="store_true", help="rewrite BENCHMARKS.md from bench/results.json only")
    parser.add_argument("--only", choices=ONLY, action="append", help="measure these figures alone, into the results")
    parser.add_argument("--quick", action="store_true", help="the serving tier in one short round (a few minutes)")
    parser.add_argument("--season-events", type=int, metavar="N", help="events in the season's store (10,000,000)")
    parser.add_argument("--season-keep", metavar="DB", help="the season's store in this PostgreSQL database, kept")
    return parser.parse_args()


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        child(*sys.argv[2:4])
        return
    args = arguments()
    sizes = SMOKE if args.smoke else FULL
    plan = QUICK if args.quick else FULL_PLAN
    results_file = args.out / "bench" / "results.json"
    serving_measured = "postgres" in args.stores.split(",") and (
        "serving" in (args.only or []) or not (args.only or args.render or args.smoke)
    )
    if serving_measured:
        try:
            serving.check_tools()  # before, not after, the rest of the suite
        except RuntimeError as missing:
            sys.exit(f"bench: {missing}")
    if args.render:
        results = json.loads(results_file.read_text())
    elif args.only:  # these figures' baselines are measured in their own runs: they stand beside an earlier suite
        results = json.loads(results_file.read_text())
        measures = only(args, plan)
        for kind in args.stores.split(","):
            for name in args.only:
                if name in POSTGRES_ONLY and kind != "postgres":
                    continue
                if name == "dashboard" and kind != "sqlite":
                    continue  # the demo store's
                if name == "ingest":  # the batched ingest beside its raw baseline, measured in the same run
                    results["figures"][kind].update(ingest_figures(sizes, kind))
                else:
                    results["figures"][kind][name] = measures[name](sizes, kind)
                results_file.write_text(json.dumps(results, indent=2) + "\n")  # each figure kept as it is measured
    else:
        started = time.perf_counter()
        figures = suite(sizes, args.stores.split(","), plan)
        machine = f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
        minutes = (time.perf_counter() - started) / 60
        results = {"when": now(), "machine": machine, "minutes": minutes, "sizes": sizes.__dict__, "figures": figures}
        results_file.parent.mkdir(parents=True, exist_ok=True)
        results_file.write_text(json.dumps(results, indent=2) + "\n")
    text = page(results, ROOT / "bench" / "NOTES.md")
    (args.out / "BENCHMARKS.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
