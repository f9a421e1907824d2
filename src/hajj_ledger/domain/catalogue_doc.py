"""The event catalogue as people read it: a Markdown table per kind of aggregate (docs/journey.md, the API docs,
`hajj-ledger rules`)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from enum import StrEnum

from hajj_ledger.domain.catalogue import JOURNEY_STEPS, Step


def _declared_order(member: StrEnum) -> int:
    return list(type(member)).index(member)


def _cell(values: Iterable[StrEnum]) -> str:
    """Enumeration members in their declared order (the journey's order, for stages)."""
    ordered = sorted(values, key=_declared_order)
    return ", ".join(str(v) for v in ordered) or "(new)"


def render_markdown(steps: Mapping[str, Step] = JOURNEY_STEPS) -> str:
    """The table as people read it (docs/journey.md, the API docs)."""
    lines = [
        "| event | recorded by | allowed from | leads to | also needs |",
        "|---|---|---|---|---|",
    ]
    for step in steps.values():
        needs = "; ".join([c.text for c in step.conditions] + ([step.note] if step.note else []))
        lines.append(
            f"| {step.event} | {_cell(step.roles)} | {_cell(step.from_)} | {step.to or 'unchanged'} | {needs} |"
        )
    return "\n".join(lines) + "\n"
