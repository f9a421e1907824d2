"""The FastAPI application: `/v1` for agencies, `/healthz`, `/readyz` and `/metrics` for operators.

`hajj-ledger serve` runs it under uvicorn; `create_app` is its factory.
"""

from __future__ import annotations

import asyncio
import gc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import sqlalchemy as sa
from fastapi import APIRouter, FastAPI
from fastapi.routing import APIRoute
from starlette.routing import Route

from hajj_ledger.api import metrics, problems
from hajj_ledger.api.agencies import Keys, Revocations
from hajj_ledger.api.archives import ClosedSeasons
from hajj_ledger.api.dashboard import add_dashboard
from hajj_ledger.api.deps import Services, check_caller
from hajj_ledger.api.descriptions import complete
from hajj_ledger.api.docs import add_docs
from hajj_ledger.api.feed import Feed
from hajj_ledger.api.front import Guard
from hajj_ledger.api.hot import HotReads, hot_writes
from hajj_ledger.api.reads import Reads
from hajj_ledger.api.routes import (
    agency,
    audit,
    chain,
    commands,
    exports,
    identities,
    journeys,
    operations,
    overview,
    seasons,
    steps,
    views,
)
from hajj_ledger.api.routes import (
    feed as feed_route,
)
from hajj_ledger.api.sources import standby_urls
from hajj_ledger.audit.chain import Chain, signing_keys
from hajj_ledger.ledger import JourneyLedger
from hajj_ledger.projections import PROJECTIONS
from hajj_ledger.projections.replay import PastViews
from hajj_ledger.projections.schema import engine_for, positions
from hajj_ledger.settings import settings
from hajj_ledger.store import recorders as store

WRITER_CLOSE_SECONDS = 3.0  # at shutdown, the batch under way is waited for this long (its store's patience, 2.5 s)


def create_app(database_url: str | None = None, *, max_wait: float | None = None) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        ledger = JourneyLedger(database_url)
        # Keys, probes and metrics only: the hot reads have their own pool (api/reads.py).
        engine = engine_for(database_url, pool_size=2)
        wait = max_wait if max_wait is not None else settings().max_wait
        past = PastViews(ledger, database_url)
        # The sealer runs beside the server (`serve`); the API reads the chain and makes checkpoints on demand.
        sealed = Chain(ledger, signing_keys(database_url, required=False))
        revocations = Revocations(engine)  # one watch of the keys of the open answers, the feed's and the waits'
        reads = Reads(ledger, database_url or store.database_url(), wait, engine, revocations, standbys=standby_urls())
        await reads.open()
        feed = Feed(ledger, revocations)
        archives = ClosedSeasons(engine, sealed.keys)
        app.state.services = Services(
            ledger, engine, Keys(engine), wait, past, sealed, reads, feed, archives, database_url
        )
        lag = metrics.ProjectionLag(lambda: _lags(app.state.services))
        writes = metrics.WriteCounters(lambda: ledger.stats)
        metrics.REGISTRY.register(lag)
        metrics.REGISTRY.register(writes)
        # What start-up made lives as long as the app: out of the collector's sight, its full collections stay short
        # (they walked every route, model and module on each pass: a read's p99 went up by the pauses).
        gc.collect()
        gc.freeze()
        try:
            yield
        finally:
            metrics.REGISTRY.unregister(writes)
            metrics.REGISTRY.unregister(lag)
            await reads.close()
            await asyncio.to_thread(feed.close)
            await asyncio.to_thread(revocations.close)
            past.close()
            await asyncio.to_thread(archives.close)
            ledger.close(timeout=WRITER_CLOSE_SECONDS)
            engine.dispose()

    app = FastAPI(
        title="hajj-ledger",
        version="1",
        summary="The pilgrim journey ledger: agencies record each step and read their own views.",
        lifespan=lifespan,
        docs_url=None,  # served from the package's own files: api/docs.py
        redoc_url=None,
        openapi_url="/openapi.json",
    )
    # Each router carries its whole path and the caller check (an included router's prefix is not in the
    # route's own path, which the 403s and the metrics name).
    view_router, step_router = views.router(), steps.router()
    routers = (
        step_router,
        commands.router,
        journeys.router,
        identities.router,
        view_router,
        audit.router,
        chain.router,
        exports.router,
        feed_route.router,
        overview.router,
        agency.router,
        seasons.router,
    )
    for router in routers:
        app.include_router(router, responses=problems.RESPONSES)
    complete([route for router in routers for route in router.routes if isinstance(route, APIRoute)])
    app.include_router(operations.router)
    add_docs(app)
    add_dashboard(app)
    app.state.hot_reads = _hot_reads(view_router)  # asked by Guard before FastAPI's routing
    app.state.hot_writes = hot_writes(step_router, commands.router)
    problems.install(app, check_caller)
    app.state.routes = [  # the methods each path takes, for a 405's Allow
        r for router in (*routers, operations.router, app.router) for r in router.routes if isinstance(r, Route)
    ]
    app.add_middleware(Guard)
    return app


def _hot_reads(view_router: APIRouter) -> HotReads:
    """A journey's status and every view's pages: the reads asked most."""
    status = next(r for r in journeys.router.routes if isinstance(r, APIRoute) and r.endpoint is journeys.status)
    return HotReads([status, *(r for r in view_router.routes if isinstance(r, APIRoute))])


def _lags(services: Services) -> dict[str, int]:
    head = services.ledger.head()
    with services.engine.connect() as connection:
        rows = connection.execute(
            sa.select(positions.c.projection, positions.c.position).where(positions.c.serving.is_(True))
        ).all()
    known = {name: position for name, position in rows}
    return {p.name: head - known.get(p.name, 0) for p in PROJECTIONS}
