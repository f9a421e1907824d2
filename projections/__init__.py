"""The read side: each agency's views, kept current from the ledger's log by `hajj-ledger project`.

PROJECTIONS is the one list of the views; the runner, the migrations, `status` and `rebuild` all read it.
FOLLOWED is what the runner keeps current: the views and the audit trail's index (TRAIL_INDEX; not a view: the
audit service reads it). They are made on first use, so that the command line can name the read side's commands
without importing SQLAlchemy.
"""

from __future__ import annotations

from functools import cache
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from hajj_ledger.projections.framework import Projection

    PROJECTIONS: tuple[Projection, ...]
    TRAIL_INDEX: Projection
    FOLLOWED: tuple[Projection, ...]

PAST_VIEWS = ("journey_status", "season_funnel")  # the read models `hajj-ledger view --as-of` shows as of the past
EXPORT_FORMATS = ("parquet", "csv")


@cache
def _projections() -> tuple[Projection, ...]:
    from hajj_ledger.projections.awaiting_transport import AwaitingTransport
    from hajj_ledger.projections.health_cases import HealthCases
    from hajj_ledger.projections.journey_status import JourneyStatus
    from hajj_ledger.projections.missing_persons import MissingPersons
    from hajj_ledger.projections.overstay_watch import OverstayWatch
    from hajj_ledger.projections.port_arrivals import PortArrivals
    from hajj_ledger.projections.season_funnel import SeasonFunnel
    from hajj_ledger.projections.site_headcount import SiteHeadcount
    from hajj_ledger.projections.trip_manifest import TripManifest

    return (
        JourneyStatus(),
        PortArrivals(),
        AwaitingTransport(),
        TripManifest(),
        SiteHeadcount(),
        HealthCases(),
        MissingPersons(),
        OverstayWatch(),
        SeasonFunnel(),
    )


@cache
def _trail_index() -> Projection:
    from hajj_ledger.projections.trail_index import TrailIndex

    return TrailIndex()


def __getattr__(name: str) -> Any:
    if name == "PROJECTIONS":
        return _projections()
    if name == "TRAIL_INDEX":
        return _trail_index()
    if name == "FOLLOWED":
        return (*_projections(), _trail_index())
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def projection(name: str) -> Projection:
    followed = (*_projections(), _trail_index())
    for found in followed:
        if found.name == name:
            return found
    raise KeyError(f"no projection {name!r}; known: {', '.join(p.name for p in followed)}")
