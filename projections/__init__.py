"""The read side: each agency's views, kept current from the ledger's log by `hajj-ledger project`.

VIEWS is the one list of the views, by name (PROJECTIONS: the views themselves); the runner, the migrations,
`status` and `rebuild` all read it. FOLLOWED is what the runner keeps current: the views and the audit trail's index
(TRAIL_INDEX; not a view: the audit service reads it). They are made on first use, so that the command line can
name the read side's commands, and `status` list them, without importing SQLAlchemy.
"""

from __future__ import annotations

import importlib
from functools import cache
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from hajj_ledger.projections.framework import Projection

    PROJECTIONS: tuple[Projection, ...]
    TRAIL_INDEX: Projection
    FOLLOWED: tuple[Projection, ...]

PAST_VIEWS = ("journey_status", "season_funnel")  # the read models `hajj-ledger view --as-of` shows as of the past
EXPORT_FORMATS = ("parquet", "csv")


# The views, then the audit trail's index, in the order `status` lists them: each is the class of the same name in
# the module of that name (journey_status: JourneyStatus), made on first use.
VIEWS = (
    "journey_status",
    "port_arrivals",
    "awaiting_transport",
    "trip_manifest",
    "site_headcount",
    "health_cases",
    "missing_persons",
    "overstay_watch",
    "season_funnel",
    "service_offers",
    "contracts",
    "building_occupancy",
    "trips_on_road",
    "seasons",
)
FOLLOWED_NAMES = (*VIEWS, "trail_index")


@cache
def _made(name: str) -> Projection:
    module = importlib.import_module(f"{__name__}.{name}")
    made: Projection = getattr(module, name.title().replace("_", ""))()
    return made


def _projections() -> tuple[Projection, ...]:
    return tuple(_made(name) for name in VIEWS)


def _trail_index() -> Projection:
    return _made("trail_index")


def __getattr__(name: str) -> Any:
    if name == "PROJECTIONS":
        return _projections()
    if name == "TRAIL_INDEX":
        return _trail_index()
    if name == "FOLLOWED":
        return (*_projections(), _trail_index())
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def projection(name: str) -> Projection:
    if name not in FOLLOWED_NAMES:
        raise KeyError(f"no projection {name!r}; known: {', '.join(FOLLOWED_NAMES)}")
    return _made(name)
