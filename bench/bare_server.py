"""The serving tier's baseline: a bare ASGI app on uvicorn doing the least the ledger's API does per request,
against the same PostgreSQL database, with psycopg's async pool and orjson.

  GET  /v1/journeys/{id}     one journey_status row (the view the ledger's API reads), as JSON
  POST /v1/journeys          one registration: parse the JSON, check its fields, INSERT one row (one transaction)
  POST /v1/commands:batch    up to 1,000 registrations, INSERTed in one transaction (pipelined executemany)

A request must carry `Authorization: Bearer KEY` whose SHA-256 is in BENCH_BARE_KEY_HASHES (hex, comma-separated):
a check in memory, as the ledger's key cache hit is. Run by bench/serving.py as

  BENCH_BARE_DB=postgresql://... BENCH_BARE_KEY_HASHES=... uvicorn bench.bare_server:app --workers 2
"""

from __future__ import annotations

import hashlib
import os
import uuid
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

import orjson
from psycopg_pool import AsyncConnectionPool

Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

DB = os.environ.get("BENCH_BARE_DB", "")
POOL = int(os.environ.get("BENCH_BARE_POOL", "8"))
KEYS = {bytes.fromhex(h) for h in os.environ.get("BENCH_BARE_KEY_HASHES", "").split(",") if h}
READ = "SELECT * FROM journey_status WHERE journey_id = %s"
# Made by bench/serving.py before the server starts (two workers creating it at once would collide).
SCHEMA = """
CREATE TABLE IF NOT EXISTS bench_bare_registrations (
    position bigserial PRIMARY KEY,
    id uuid NOT NULL UNIQUE,
    pilgrim_id uuid NOT NULL,
    season integer NOT NULL,
    country varchar(3) NOT NULL,
    occurred_at timestamptz NOT NULL,
    body bytea NOT NULL,
    UNIQUE (pilgrim_id, season)
)"""
COLUMNS = "(id, pilgrim_id, season, country, occurred_at, body) VALUES (%s, %s, %s, %s, %s, %s)"
INSERT_ONE = f"INSERT INTO bench_bare_registrations {COLUMNS} RETURNING position"
INSERT_MANY = f"INSERT INTO bench_bare_registrations {COLUMNS}"
JSON = [(b"content-type", b"application/json")]
pool: AsyncConnectionPool | None = None


async def _answer(send: Send, status: int, body: bytes) -> None:
    await send({"type": "http.response.start", "status": status, "headers": JSON})
    await send({"type": "http.response.body", "body": body})


async def _body(receive: Receive) -> bytes:
    chunks = []
    while True:
        message = await receive()
        chunks.append(message.get("body", b""))
        if not message.get("more_body"):
            return b"".join(chunks)


def _registration(item: dict[str, Any]) -> tuple[Any, ...]:
    """The least a registration is checked for: its fields' types (ValueError, KeyError or TypeError otherwise)."""
    season, country = item["season"], item["country"]
    if not isinstance(season, int) or not isinstance(country, str) or len(country) != 3:
        raise ValueError("season / country")
    occurred = datetime.fromisoformat(item["occurred_at"])
    return (uuid.uuid4(), uuid.UUID(item["pilgrim_id"]), season, country, occurred, orjson.dumps(item))


async def _lifespan(receive: Receive, send: Send) -> None:
    global pool
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            pool = AsyncConnectionPool(DB, min_size=POOL, max_size=POOL, open=False, kwargs={"autocommit": True})
            await pool.open(wait=True)
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            if pool is not None:
                await pool.close()
            await send({"type": "lifespan.shutdown.complete"})
            return


async def app(scope: dict[str, Any], receive: Receive, send: Send) -> None:
    if scope["type"] == "lifespan":
        await _lifespan(receive, send)
        return
    assert pool is not None
    auth = next((value for name, value in scope["headers"] if name == b"authorization"), b"")
    if not auth.startswith(b"Bearer ") or hashlib.sha256(auth[7:]).digest() not in KEYS:
        await _answer(send, 401, b'{"title":"Unauthorized"}')
        return
    method, path = scope["method"], scope["path"]
    if method == "GET" and path.startswith("/v1/journeys/"):
        try:
            journey_id = uuid.UUID(path[13:])
        except ValueError:
            await _answer(send, 422, b'{"title":"Invalid input"}')
            return
        async with pool.connection() as connection:
            cursor = await connection.execute(READ, (journey_id,))
            row = await cursor.fetchone()
            names = [column.name for column in cursor.description or ()]
        if row is None:
            await _answer(send, 404, b'{"title":"Not found"}')
            return
        await _answer(send, 200, orjson.dumps(dict(zip(names, row, strict=True)), option=orjson.OPT_UTC_Z))
    elif method == "POST" and path == "/v1/journeys":
        try:
            values = _registration(orjson.loads(await _body(receive)))
        except (ValueError, KeyError, TypeError):
            await _answer(send, 422, b'{"title":"Invalid input"}')
            return
        async with pool.connection() as connection:  # autocommit: the INSERT is its own transaction
            cursor = await connection.execute(INSERT_ONE, values)
            inserted = await cursor.fetchone()
        position = inserted[0] if inserted else None
        await _answer(send, 201, orjson.dumps({"command_id": values[0], "position": position, "repeated": False}))
    elif method == "POST" and path == "/v1/commands:batch":
        try:
            rows = [_registration(item) for item in orjson.loads(await _body(receive))["commands"]]
        except (ValueError, KeyError, TypeError):
            await _answer(send, 422, b'{"title":"Invalid input"}')
            return
        async with pool.connection() as connection, connection.transaction(), connection.cursor() as cursor:
            await cursor.executemany(INSERT_MANY, rows)  # psycopg 3 pipelines it
        results = [{"index": i, "status": 201, "command_id": row[0]} for i, row in enumerate(rows)]
        await _answer(send, 200, orjson.dumps({"results": results}))
    else:
        await _answer(send, 404, b'{"title":"Not found"}')
