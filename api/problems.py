"""Every error as RFC 9457 `application/problem+json`: a type, a title, the status, a detail, and what to fix."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.routing import Route

from hajj_ledger.domain.errors import (
    CapacityError,
    ConflictError,
    IdentityErasedError,
    IllegalStepError,
    LedgerError,
    NotFoundError,
    PermissionDeniedError,
    TripFullError,
    ValidationError,
)
from hajj_ledger.identity.vault import VaultKeyError
from hajj_ledger.store.connections import OutcomeUnknownError, StoreUnavailableError

log = logging.getLogger("hajj_ledger.api")
MAX_BODY = 2 * 1024 * 1024  # a request body's limit: a batch of 1,000 commands with identities fits well under it
MEDIA_TYPE = "application/problem+json"
TYPES = "https://hajj-ledger.org/problems/"


class ProblemPublic(BaseModel):
    """RFC 9457: what went wrong, for people (title, detail) and programs (type, status, and the fields below)."""

    model_config = ConfigDict(extra="allow")

    type: str
    title: str
    status: int
    detail: str


_PROBLEM = {"application/problem+json": {"schema": ProblemPublic.model_json_schema()}}
# Every route answers its refusals so; declaring 4XX also replaces FastAPI's own (application/json) 422 entry.
RESPONSES: dict[int | str, dict[str, Any]] = {
    "4XX": {"description": "refused: a problem document says why", "content": _PROBLEM},
    "5XX": {
        "description": "the database or the vault is unavailable (503 unavailable, Retry-After: nothing recorded), or "
        "a write's outcome is unknown (503 outcome-unknown: send it again with the same command_id to settle it)",
        "content": _PROBLEM,
    },
}


class ProblemError(Exception):
    """An HTTP answer other than success, raised anywhere below a route."""

    def __init__(self, status: int, kind: str, title: str, detail: str, **extra: Any) -> None:
        super().__init__(detail)
        self.status, self.kind, self.title, self.detail, self.extra = status, kind, title, detail, extra
        self.headers: dict[str, str] = {}

    def body(self) -> dict[str, Any]:
        return {
            "type": TYPES + self.kind,
            "title": self.title,
            "status": self.status,
            "detail": self.detail,
            **self.extra,
        }

    def response(self) -> JSONResponse:
        return JSONResponse(self.body(), status_code=self.status, media_type=MEDIA_TYPE, headers=self.headers)


SEND_KEY = "send the agency's key as `Authorization: Bearer KEY`"


def invalid(detail: str, errors: list[dict[str, Any]]) -> ProblemError:
    """What to fix: `errors` names each input (`path`) and, where it helps, why (`reason`)."""
    return ProblemError(422, "invalid", "Invalid input", detail, errors=errors)


def not_found(detail: str) -> ProblemError:
    return ProblemError(404, "not-found", "Not found", detail)


def unauthorized(detail: str = SEND_KEY) -> ProblemError:
    problem = ProblemError(401, "unauthorized", "Unauthorized", detail)
    problem.headers["WWW-Authenticate"] = "Bearer"
    return problem


def unavailable(detail: str, retry_after: int = 1) -> ProblemError:
    problem = ProblemError(503, "unavailable", "Service unavailable", detail)
    problem.headers["Retry-After"] = str(retry_after)
    return problem


def outcome_unknown(command_ids: list[str], detail: str | None = None) -> ProblemError:
    """A write whose commit may or may not have happened (the connection was lost after it was sent, or the answer
    did not come within the write's bound): sending the same command id again settles it, recorded once."""
    ids = ", ".join(command_ids[:3]) + (f" and {len(command_ids) - 3} more" if len(command_ids) > 3 else "")
    told = detail or (
        f"the database did not confirm whether the command was recorded ({ids}): send it again with the same "
        "command_id (or the same Idempotency-Key); it is recorded once, or answered as a repeat if it was"
    )
    problem = ProblemError(503, "outcome-unknown", "Outcome unknown", told, command_ids=command_ids)
    problem.headers["Retry-After"] = "1"
    return problem


def for_store_error(error: BaseException, command_ids: list[str] | None = None) -> ProblemError | None:
    """The problem for an error of the store's that says what is known: the outcome unknown (503 outcome-unknown,
    with the command ids that settle it), or nothing recorded (503 unavailable). None for any other error."""
    if isinstance(error, OutcomeUnknownError):
        return outcome_unknown(command_ids or [])
    if isinstance(error, StoreUnavailableError):
        return unavailable("the database is not reachable; nothing was recorded: retry shortly", error.retry_after)
    return None


def from_ledger(error: LedgerError) -> ProblemError:
    """The HTTP form of a refusal by the ledger: the status says what kind, the body says exactly what."""
    match error:
        case ValidationError():
            errors = [{"path": field, "reason": reason} for field, reason in error.problems]
            return invalid(error.message, errors)
        case PermissionDeniedError():
            return ProblemError(403, "forbidden", "Forbidden", error.message, role=error.role, action=error.action)
        case IdentityErasedError():
            return ProblemError(410, "identity-erased", "Identity erased", error.message)
        case NotFoundError():
            return not_found(error.message)
        case IllegalStepError():
            return ProblemError(
                409, "illegal-step", "Illegal step", error.message, current_stage=error.stage, allowed=error.allowed
            )
        case TripFullError():
            return ProblemError(409, "trip-full", "Trip full", error.message)
        case CapacityError():
            return ProblemError(409, error.kind.replace("_", "-"), "No room left", error.message)
        case ConflictError():
            return ProblemError(409, "conflict", "Conflict", error.message)
        case VaultKeyError():
            log.error("identity vault: %s", error.message)
            return unavailable("the identity vault's master key is not available; the operators are told")
    return ProblemError(400, error.kind, "Refused", error.message)


def as_problem(error: BaseException) -> ProblemError | None:
    """The problem an error of a route stands for, as the app answers it whichever way the request came in (FastAPI's
    handlers below, or a hot route); None for any other error."""
    if isinstance(error, ProblemError):
        return error
    if isinstance(error, LedgerError):
        return from_ledger(error)
    return None


def install(app: FastAPI, check_caller: Callable[[Request], None]) -> None:
    """The handlers that answer every error as a problem. `check_caller` refuses a caller as the routes would (the
    key, then the role): a request refused before its dependencies ran still checks them first."""

    async def _problem(request: Request, error: Exception) -> JSONResponse:
        problem = as_problem(error)
        assert problem is not None, "handles the errors as_problem knows"
        return problem.response()

    app.add_exception_handler(ProblemError, _problem)
    app.add_exception_handler(LedgerError, _problem)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, error: RequestValidationError) -> JSONResponse:
        if request.url.path.startswith("/v1/"):
            try:
                await run_in_threadpool(check_caller, request)
            except ProblemError as refusal:
                return refusal.response()
        errors = [
            {"path": ".".join(str(p) for p in e["loc"]), "reason": str(e["msg"]).removeprefix("Value error, ")}
            for e in error.errors()
        ]
        detail = "; ".join(f"{e['path']}: {e['reason']}" for e in errors)
        return invalid(detail, errors).response()

    @app.exception_handler(HTTPException)
    async def _http(request: Request, error: HTTPException) -> JSONResponse:
        titles = {404: "Not found", 405: "Method not allowed", 401: "Unauthorized"}
        problem = ProblemError(
            error.status_code, f"http-{error.status_code}", titles.get(error.status_code, "Error"), str(error.detail)
        )
        problem.headers.update(error.headers or {})
        if error.status_code == 405:  # Starlette names the first route's methods only; a path may have several
            problem.headers["Allow"] = ", ".join(allowed_methods(request))
        return problem.response()


def allowed_methods(request: Request) -> list[str]:
    """The methods the request's path takes, from every route of the app (`app.state.routes`: FastAPI's own list
    holds the included routers, whose routes it does not show)."""
    routes: list[Route] = request.app.state.routes
    path = request.scope["path"]
    return sorted({m for r in routes if r.path_regex.match(path) for m in r.methods or ()})
