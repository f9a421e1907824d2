"""The page: its heading, the table (each section's rows, the stores side by side within a section), the notes
under it, the serving tier's section and bench/NOTES.md."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.harness import Sizes
from bench.report import postgres, suite
from bench.report.cells import HEAD
from bench.report.serving import render as serving_section

Section = Callable[[str, dict[str, Any]], list[str]]
# In the table's order; each section's rows for every store in turn.
SECTIONS: tuple[Section, ...] = (
    suite.runner_rows,
    postgres.recovery_rows,
    suite.identity_rows,
    suite.api_rows,
    suite.chain_rows,
    suite.export_rows,
    postgres.seasons_rows,
    postgres.trail_rows,
    postgres.races_rows,
    suite.cli_rows,
    suite.dashboard_rows,
)


def table(figures: dict[str, Any], sizes: Sizes) -> str:
    """Every figure of every store (`figures`, by store), each beside its baseline and target; notes under it."""
    rows = [HEAD]
    rows += [row for kind, found in figures.items() for row in suite.recording_rows(kind, found, sizes.scale)]
    rows += [row for section in SECTIONS for kind, found in figures.items() for row in section(kind, found)]
    return "\n".join(rows) + "\n\n" + "\n".join(suite.notes(figures)) + "\n"


def page(results: dict[str, Any], notes: Path) -> str:
    """BENCHMARKS.md from the results (bench/results.json) and the notes on how each figure is taken."""
    figures = results["figures"]
    serving = figures.get("postgres", {}).get("serving")
    return (
        "# Benchmarks\n\n"
        f"Measured by `make bench` on {results['when']} ({results['machine']}; PostgreSQL and SQLite on the same "
        f"machine), {results.get('minutes', 13):.0f} minutes in all. Each figure is the median of its runs, each run "
        "a fresh process on a fresh database; baselines are measured in the same run. Raw data: "
        "`bench/results.json`.\n\n"
        + table(figures, Sizes(**results["sizes"]))
        + "\n"
        + (serving_section(serving) + "\n" if serving is not None else "")
        + notes.read_text()
    )
