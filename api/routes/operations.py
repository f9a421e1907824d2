"""For operators and their probes, without a key: liveness, readiness, metrics."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from hajj_ledger.api import metrics
from hajj_ledger.api.deps import LedgerDep, ReadModelsDep
from hajj_ledger.migrations import current, head

router = APIRouter(tags=["operations"])


@router.get("/healthz", summary="The process answers")
def healthz() -> dict[str, str]:
    """For a liveness probe, without a key: `{"status": "ok"}` while the process serves. It changes nothing."""
    return {"status": "ok"}


@router.get("/readyz", summary="The database answers and its schema is at the migrations' head")
def readyz(ledger: LedgerDep, read_models: ReadModelsDep) -> JSONResponse:
    """For a readiness probe, without a key: 200 with the migration and the ledger's position; 503 (Retry-After) while
    the database is away, the writer restarts or the schema is behind. It changes nothing."""
    checks: dict[str, Any] = {}
    if ledger.writer_down:  # ended, and started again within a second: no write would be recorded meanwhile
        return JSONResponse(
            {"status": "unavailable", "writer": "restarting", "detail": "the ledger's writer is being started again"},
            status_code=503, headers={"Retry-After": "1"},
        )  # fmt: skip
    try:  # through the read side's engine, which fails at once while the database is away (the ledger retries)
        checks["migration"] = current(read_models)
        checks["ledger_position"] = ledger.head()
    except Exception as error:  # whatever the driver raises while the database is away
        checks["database"] = f"unreachable: {type(error).__name__}"
        return JSONResponse({"status": "unavailable", **checks}, status_code=503, headers={"Retry-After": "1"})
    wanted = head()
    if checks["migration"] != wanted:
        return JSONResponse(
            {"status": "unavailable", "detail": f"migrations at {checks['migration']}, want {wanted}", **checks},
            status_code=503,
        )
    return JSONResponse({"status": "ready", **checks})


@router.get("/metrics", summary="Prometheus metrics", response_class=Response)
def prometheus() -> Response:
    """For Prometheus, without a key: requests and latencies by route and status, events appended, each view's lag
    in events (this worker's own, with several). It changes nothing."""
    return Response(generate_latest(metrics.REGISTRY), media_type=CONTENT_TYPE_LATEST)
