"""The read side: each agency's views, kept current from the ledger's log by `hajj-ledger project`.

PROJECTIONS is the one list of the views; the runner, the migrations, `status` and `rebuild` all read it.
FOLLOWED is what the runner keeps current: the views and the audit trail's index (not a view: the audit service
reads it).
"""

from __future__ import annotations

from hajj_ledger.projections.awaiting_transport import AwaitingTransport
from hajj_ledger.projections.framework import Projection
from hajj_ledger.projections.health_cases import HealthCases
from hajj_ledger.projections.journey_status import JourneyStatus
from hajj_ledger.projections.missing_persons import MissingPersons
from hajj_ledger.projections.overstay_watch import OverstayWatch
from hajj_ledger.projections.port_arrivals import PortArrivals
from hajj_ledger.projections.season_funnel import SeasonFunnel
from hajj_ledger.projections.site_headcount import SiteHeadcount
from hajj_ledger.projections.trail_index import TrailIndex
from hajj_ledger.projections.trip_manifest import TripManifest

PROJECTIONS: tuple[Projection, ...] = (
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
TRAIL_INDEX = TrailIndex()
FOLLOWED: tuple[Projection, ...] = (*PROJECTIONS, TRAIL_INDEX)


def projection(name: str) -> Projection:
    for found in FOLLOWED:
        if found.name == name:
            return found
    raise KeyError(f"no projection {name!r}; known: {', '.join(p.name for p in FOLLOWED)}")
