"""The FastAPI application: `/v1` for agencies, `/healthz`, `/readyz` and `/metrics` for operators.

`hajj-ledger serve` runs it under uvicorn; `create_app` is its factory.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import orjson
import sqlalchemy as sa
from fastapi import APIRouter, FastAPI
from fastapi.routing import APIRoute
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from hajj_ledger.api import metrics, problems
from hajj_ledger.api.agencies import Keys, Revocations
from hajj_ledger.api.archives import ClosedSeasons
from hajj_ledger.api.dashboard import add_dashboard
from hajj_ledger.api.deps import Services, check_caller
from hajj_ledger.api.descriptions import complete
from hajj_ledger.api.docs import add_docs
from hajj_ledger.api.feed import Feed
from hajj_ledger.api.hot import HotReads, HotWrites, hot_writes
from hajj_ledger.api.problems import MAX_BODY, ProblemError, for_store_error, unauthorized, unavailable
from hajj_ledger.api.reads import Reads, database_away, standby_urls
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
)  # fmt: skip
from hajj_ledger.api.routes import (
    feed as feed_route,
)
from hajj_ledger.audit.chain import Chain, signing_keys
from hajj_ledger.ledger import JourneyLedger
from hajj_ledger.projections import PROJECTIONS
from hajj_ledger.projections.replay import PastViews
from hajj_ledger.projections.schema import engine_for, positions
from hajj_ledger.settings import settings
from hajj_ledger.store import recorders as store

access_log = logging.getLogger("hajj_ledger.access")
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
        step_router, commands.router, journeys.router, identities.router, view_router, audit.router,
        chain.router, exports.router, feed_route.router, overview.router, agency.router, seasons.router,
    )  # fmt: skip
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
    status = next(r for r in journeys.router.routes if isinstance(r, APIRoute) and r.endpoint is journeys.status)
    by_path = {r.path: r for r in view_router.routes if isinstance(r, APIRoute)}
    return HotReads(status, {p.name: by_path[f"/v1/views/{p.name}"] for p in PROJECTIONS})


def _lags(services: Services) -> dict[str, int]:
    head = services.ledger.head()
    with services.engine.connect() as connection:
        rows = connection.execute(
            sa.select(positions.c.projection, positions.c.position).where(positions.c.serving.is_(True))
        ).all()
    known = {name: position for name, position in rows}
    return {p.name: head - known.get(p.name, 0) for p in PROJECTIONS}


class Guard:
    """Around every request: a request id, a JSON access log line, metrics; the body size limit (413) and media
    type (415); the database being away (503); and anything unforeseen answered as a problem, never a bare 500."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        request_id = headers.get("x-request-id", "")[:64] or uuid.uuid4().hex
        status = 500
        sent = False

        async def send_with_id(message: Message) -> None:
            nonlocal status, sent
            if message["type"] == "http.response.start":
                status = message["status"]
                sent = True
                message["headers"] = [*message.get("headers", []), (b"x-request-id", request_id.encode())]
            await send(message)

        try:
            refusal = _refusal(scope, headers)
            if refusal is not None:
                await refusal.response()(scope, receive, send_with_id)
            elif (hot := await _hot(scope)) is not None:
                await hot(scope, receive, send_with_id)
            else:
                body = receive if "content-length" in headers else await _whole_body(receive)
                if body is None:
                    await _too_large().response()(scope, receive, send_with_id)
                    return
                written, body = await _hot_write(scope, body)
                if written is not None:
                    await written(scope, receive, send_with_id)
                    return
                await self.app(scope, body, send_with_id)
        except Exception as error:
            if sent:
                raise
            problem = _problem_for(error)
            await problem.response()(scope, receive, send_with_id)
        finally:
            route = scope.get("route")
            path = getattr(route, "path", "unmatched")
            elapsed = time.perf_counter() - started
            metrics.REQUESTS.labels(scope["method"], path, str(status)).inc()
            metrics.LATENCY.labels(scope["method"], path).observe(elapsed)
            state = scope.get("state") or {}
            if access_log.isEnabledFor(logging.INFO):
                access_log.info(
                    orjson.dumps(
                        {
                            "request_id": request_id, "method": scope["method"], "path": scope["path"],
                            "route": path, "status": status, "ms": round(elapsed * 1000, 2),
                            "agency": state.get("agency"),
                        }
                    ).decode()
                )  # fmt: skip


async def _hot_write(scope: Scope, receive: Receive) -> tuple[Response | None, Receive]:
    writes: HotWrites | None = getattr(scope["app"].state, "hot_writes", None)
    return (None, receive) if writes is None else await writes.take(scope, receive)


async def _hot(scope: Scope) -> Response | None:
    reads: HotReads | None = scope["app"].state.hot_reads
    return None if reads is None else await reads.answer(scope)


async def _whole_body(receive: Receive) -> Receive | None:
    """A body sent without a length (chunked), read to its end before the app sees any of it; None when it goes past
    the limit. No part of a body too large may reach the app: a valid command followed by enough whitespace is
    valid JSON all the same, and would be recorded while its sender is told 413."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":  # the client went away: the app hears of it as usual
            return _replaying(message, receive)
        chunk: bytes = message.get("body", b"")
        size += len(chunk)
        if size > MAX_BODY:
            return None
        chunks.append(chunk)
        if not message.get("more_body", False):
            return _replaying({"type": "http.request", "body": b"".join(chunks), "more_body": False}, receive)


def _replaying(first: Message, receive: Receive) -> Receive:
    """A receive that gives `first`, then what the client sends next (a disconnect, say)."""
    given = False

    async def replayed() -> Message:
        nonlocal given
        if given:
            return await receive()
        given = True
        return first

    return replayed


def _too_large() -> ProblemError:
    return ProblemError(413, "too-large", "Content too large", f"the body is limited to {MAX_BODY:,} bytes")


def _refusal(scope: Scope, headers: dict[str, str]) -> ProblemError | None:
    if scope["path"].startswith("/v1/") and not headers.get("authorization", "").lower().startswith("bearer "):
        # Before anything of the request is read: a caller without a key learns nothing, not even a 422.
        return unauthorized()
    length = headers.get("content-length")
    if length is not None and (not length.isdigit() or int(length) > MAX_BODY):
        return _too_large()
    has_body = (length is not None and length != "0") or "transfer-encoding" in headers
    if scope["method"] in ("POST", "PUT", "PATCH") and has_body:
        media = headers.get("content-type", "").split(";")[0].strip().lower()
        if media != "application/json" and not media.endswith("+json"):
            return ProblemError(415, "unsupported-media-type", "Unsupported media type", "send application/json")
    return None


def _problem_for(error: Exception) -> ProblemError:
    """Anything a route let through, as a problem: what is known of the store (503: nothing recorded, or the outcome
    unknown), the database away (503), else 500 with its log line. Never a bare 500."""
    if isinstance(error, ProblemError):  # raised outside FastAPI's handlers (a hot write, say): as it says
        return error
    if (known := for_store_error(error)) is not None:
        access_log.warning("store: %s", error)
        return known
    if database_away(error):
        access_log.warning("database away: %s", error)
        return unavailable("the database is not reachable; retry shortly")
    logging.getLogger("hajj_ledger.api").exception("unexpected error")
    return ProblemError(500, "internal", "Internal error", "an unexpected error; it has been logged")
