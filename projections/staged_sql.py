"""Pieces of SQL over the staged events (projections/bulk_sql.py) that several views' `in_sql` share.

A view's `apply` keeps, for most columns, the value of the last event of some kinds; over the whole log at once that
is the last staged event of those kinds of each aggregate (`last_of`). Days are Makkah's (`makkah_day_sql`).
"""

from __future__ import annotations

from collections.abc import Iterable

from hajj_ledger.domain.vocabulary import MAKKAH_TIME
from hajj_ledger.projections.bulk_sql import literals


def last_of(staged: str, events: Iterable[str]) -> str:
    """The last staged event of those named, of each aggregate that has one: every staged column, as a subquery."""
    return (
        f'(SELECT DISTINCT ON (aggregate_id) * FROM "{staged}" WHERE event IN ({literals(sorted(events))}) '
        "ORDER BY aggregate_id, position DESC)"
    )


def makkah_day_sql(moment: str) -> str:
    """The day in Makkah of an instant (a timestamptz expression), as `vocabulary.makkah_day` works it out."""
    offset = MAKKAH_TIME.utcoffset(None)
    assert offset is not None
    return f"({moment} AT TIME ZONE INTERVAL '{int(offset.total_seconds())} seconds')::date"
