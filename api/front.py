"""The front door: every request passes the Guard, which answers it through a hot route (api/hot.py) when that is
plainly valid, or hands it to FastAPI. Both ways read a request with the functions here (its headers, its key, its
body) and answer an error with the same problems, so a request cannot be read one way by one and another way by
the other."""

from __future__ import annotations

import logging
import time
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING

import orjson
from fastapi.security.utils import get_authorization_scheme_param
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from hajj_ledger.api import metrics
from hajj_ledger.api.problems import MAX_BODY, ProblemError, as_problem, for_store_error, unauthorized, unavailable
from hajj_ledger.api.sources import database_away

if TYPE_CHECKING:
    from hajj_ledger.api.agencies import Agency

access_log = logging.getLogger("hajj_ledger.access")
BODY_METHODS = ("POST", "PUT", "PATCH")


def headers_of(scope: Scope) -> dict[str, str]:
    """The request's headers by (lower-case) name; of a header given twice the first, as Starlette's `Headers` and
    so the documented routes read it."""
    found: dict[str, str] = {}
    for name, value in scope["headers"]:
        found.setdefault(name.decode("latin-1"), value.decode("latin-1"))
    return found


def bearer_key(authorization: str | None) -> str | None:
    """The key of `Authorization: Bearer KEY`, read as FastAPI's `HTTPBearer` reads it for the documented routes
    (the scheme in any case); None without one."""
    scheme, key = get_authorization_scheme_param(authorization)
    return key if scheme.lower() == "bearer" and key else None


def answered_for(scope: Scope, agency: Agency) -> None:
    """The caller, for the access log (`Guard`) and whatever reads the request's state."""
    scope.setdefault("state", {})["agency"] = agency.agency_id


@dataclass(frozen=True)
class Body:
    """A request's body, read whole before anything of the request is answered."""

    data: bytes | None  # None: the client went away before sending all of it
    receive: Receive  # what the app reads it from: the body again, then whatever the client sends next


async def read_body(receive: Receive) -> Body | None:
    """The body read to its end, or None when it goes past the limit: no part of a body too large may reach the app
    (a valid command followed by enough whitespace is valid JSON all the same, and would be recorded while its
    sender is told 413)."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":  # the client went away: the app hears of it as usual
            return Body(None, replaying(message, receive))
        chunk: bytes = message.get("body", b"")
        size += len(chunk)
        if size > MAX_BODY:
            return None
        chunks.append(chunk)
        if not message.get("more_body", False):
            data = b"".join(chunks)
            return Body(data, replaying({"type": "http.request", "body": data, "more_body": False}, receive))


def replaying(first: Message, receive: Receive) -> Receive:
    """A receive that gives `first`, then what the client sends next (a disconnect, say)."""
    given = False

    async def replayed() -> Message:
        nonlocal given
        if given:
            return await receive()
        given = True
        return first

    return replayed


class Guard:
    """Around every request: a request id, a JSON access log line, metrics; a key asked for before anything is read
    (401), the body size limit (413) and media type (415); the hot routes; the database being away (503); and
    anything unforeseen answered as a problem, never a bare 500."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        headers = headers_of(scope)
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
            await self._answer(scope, headers, receive, send_with_id)
        except Exception as error:
            if sent:
                raise
            await _problem_for(error).response()(scope, receive, send_with_id)
        finally:
            route = scope.get("route")
            path = getattr(route, "path", "unmatched")
            elapsed = time.perf_counter() - started
            metrics.REQUESTS.labels(scope["method"], path, str(status)).inc()
            metrics.LATENCY.labels(scope["method"], path).observe(elapsed)
            if access_log.isEnabledFor(logging.INFO):
                line = {
                    "request_id": request_id,
                    "method": scope["method"],
                    "path": scope["path"],
                    "route": path,
                    "status": status,
                    "ms": round(elapsed * 1000, 2),
                    "agency": (scope.get("state") or {}).get("agency"),
                }
                access_log.info(orjson.dumps(line).decode())

    async def _answer(self, scope: Scope, headers: dict[str, str], receive: Receive, send: Send) -> None:
        refusal = _refusal(scope, headers)
        if refusal is not None:
            await refusal.response()(scope, receive, send)
            return
        hot_reads = scope["app"].state.hot_reads  # api/hot.py's, which imports this module
        if hot_reads is not None and (read := await hot_reads.answer(scope, headers)) is not None:
            await read(scope, receive, send)
            return
        if scope["method"] not in BODY_METHODS and not _has_body(headers):
            await self.app(scope, receive, send)
            return
        body = await read_body(receive)
        if body is None:
            await _too_large().response()(scope, receive, send)
            return
        hot_writes = getattr(scope["app"].state, "hot_writes", None)
        if hot_writes is not None and body.data is not None:
            written = await hot_writes.answer(scope, headers, body.data)
            if written is not None:
                await written(scope, body.receive, send)
                return
        await self.app(scope, body.receive, send)


def _has_body(headers: dict[str, str]) -> bool:
    length = headers.get("content-length")
    return (length is not None and length != "0") or "transfer-encoding" in headers


def _too_large() -> ProblemError:
    return ProblemError(413, "too-large", "Content too large", f"the body is limited to {MAX_BODY:,} bytes")


def _refusal(scope: Scope, headers: dict[str, str]) -> ProblemError | None:
    if scope["path"].startswith("/v1/") and bearer_key(headers.get("authorization")) is None:
        # Before anything of the request is read: a caller without a key learns nothing, not even a 422.
        return unauthorized()
    length = headers.get("content-length")
    if length is not None and (not length.isdigit() or int(length) > MAX_BODY):
        return _too_large()
    if scope["method"] in BODY_METHODS and _has_body(headers):
        media = headers.get("content-type", "").split(";")[0].strip().lower()
        if media != "application/json" and not media.endswith("+json"):
            return ProblemError(415, "unsupported-media-type", "Unsupported media type", "send application/json")
    return None


def _problem_for(error: Exception) -> ProblemError:
    """Anything a route let through, as a problem: as the app's handlers answer it (a hot route's, say), what is
    known of the store (503: nothing recorded, or the outcome unknown), the database away (503), else 500 with its
    log line. Never a bare 500."""
    if (problem := as_problem(error)) is not None:
        return problem
    if (known := for_store_error(error)) is not None:
        access_log.warning("store: %s", error)
        return known
    if database_away(error):
        access_log.warning("database away: %s", error)
        return unavailable("the database is not reachable; retry shortly")
    logging.getLogger("hajj_ledger.api").exception("unexpected error")
    return ProblemError(500, "internal", "Internal error", "an unexpected error; it has been logged")
