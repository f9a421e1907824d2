"""The cells every section of the table writes the same way."""

from __future__ import annotations

from typing import Any

HEAD = (
    "| store | figure | measured (median) | min-max | runs | baseline, same run | ratio | target | met | peak RSS |\n"
    "|---|---|---|---|---|---|---|---|---|---|"
)


def number(value: float) -> str:
    return f"{value:,.0f}"


def verdict(met: bool) -> str:
    return "yes" if met else "**no**"


def judged(kind: str, target: str, met: bool) -> tuple[str, str]:
    """A target and whether it was met, on PostgreSQL; SQLite's figures are shown beside it, not judged."""
    return (target, verdict(met)) if kind == "postgres" else ("", "")


def figure_row(
    kind: str, label: str, figure: dict[str, Any], base: tuple[dict[str, Any], str] | None, target: str, met: str
) -> str:
    """A summarised figure's row: its median and range, and its ratio to `base` (a figure of the same run, named)."""
    baseline = ratio = ""
    if base:
        baseline, ratio = f"{number(base[0]['median'])} ({base[1]})", f"{figure['median'] / base[0]['median']:.2f}x"
    return (
        f"| {kind} | {label} | {number(figure['median'])} | {number(figure['min'])}-{number(figure['max'])} | "
        f"{figure['runs']} | {baseline} | {ratio} | {target} | {met} | {figure['rss_mb']:.0f} MB |"
    )
