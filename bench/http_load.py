"""The HTTP API under load: a real `hajj-ledger serve` process, and clients in this (separate) process.

The clients are plain asyncio sockets speaking HTTP/1.1 with keep-alive: a general-purpose HTTP client costs more
per request than the server does, and would measure itself.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any
from uuid import uuid4

from bench.harness import CLI, FULL, Sizes, repeat, summarise
from bench.servers import free_port

LENGTH = re.compile(rb"content-length: *(\d+)", re.IGNORECASE)


def request(method: str, path: str, key: str, body: Any = None) -> bytes:
    payload = json.dumps(body).encode() if body is not None else b""
    head = f"{method} {path} HTTP/1.1\r\nhost: bench\r\nauthorization: Bearer {key}\r\n"
    if body is not None:
        head += f"content-type: application/json\r\ncontent-length: {len(payload)}\r\n"
    return (head + "\r\n").encode() + payload


async def _client(port: int, requests: list[bytes], latencies: list[float], statuses: dict[int, int]) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        for raw in requests:
            started = time.perf_counter()
            writer.write(raw)
            head = await reader.readuntil(b"\r\n\r\n")
            length = LENGTH.search(head)
            await reader.readexactly(int(length.group(1)) if length else 0)
            latencies.append(time.perf_counter() - started)
            status = int(head[9:12])
            statuses[status] = statuses.get(status, 0) + 1
    finally:
        writer.close()


def load(port: int, per_client: list[list[bytes]]) -> dict[str, Any]:
    """Every client sends its requests one after the other; all clients at once. Rates, latencies, statuses."""
    latencies: list[float] = []
    statuses: dict[int, int] = {}

    async def everyone() -> None:
        await asyncio.gather(*(_client(port, requests, latencies, statuses) for requests in per_client))

    started = time.perf_counter()
    asyncio.run(everyone())
    seconds = time.perf_counter() - started
    latencies.sort()
    return {
        "requests": len(latencies),
        "per_second": len(latencies) / seconds,
        "p50_ms": 1000 * latencies[len(latencies) // 2],
        "p99_ms": 1000 * latencies[int(len(latencies) * 0.99)],
        "statuses": {str(k): v for k, v in sorted(statuses.items())},
        "seconds": seconds,
    }


@contextmanager
def serving(url: str, workers: int) -> Iterator[int]:
    import httpx

    port = free_port()
    env = {**os.environ, "HAJJ_LEDGER_DATABASE_URL": url}
    log = open(os.environ.get("HAJJ_BENCH_SERVER_LOG", os.devnull), "w")  # noqa: SIM115 (closed below)
    server = subprocess.Popen(
        [str(CLI), "serve", "--port", str(port), "--workers", str(workers)],
        env=env,
        stdout=log,
        stderr=log,
    )
    try:
        for _ in range(300):
            try:
                if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        else:
            raise RuntimeError("the server never became ready")
        yield port
    finally:
        server.terminate()
        server.wait(timeout=30)
        log.close()


def measure_api(url: str, commands: int, reads: int, batches: int, workers: int) -> dict[str, Any]:
    """Single steps from 64 clients; journey status reads from 64 clients; batches of 1,000 from 4 clients."""
    from bench.season import open_season_now_in
    from hajj_ledger.api import agencies
    from hajj_ledger.domain.vocabulary import Role
    from hajj_ledger.migrations import upgrade
    from hajj_ledger.projections.schema import engine_for

    engine = engine_for(url)
    upgrade(engine)
    with engine.begin() as connection:
        mission = agencies.add(connection, Role.MISSION, "bench mission", "mission-IDN-00001")[1]
        ministry = agencies.add(connection, Role.MINISTRY, "bench ministry")[1]
    engine.dispose()
    open_season_now_in(url)
    now = datetime.now(UTC).isoformat()

    def registration() -> dict[str, Any]:
        return {"occurred_at": now, "pilgrim_id": str(uuid4()), "season": 1446, "country": "IDN"}

    with serving(url, workers) as port:
        clients = 64
        singles = [
            [request("POST", "/v1/journeys", mission, registration()) for _ in range(commands // clients)]
            for _ in range(clients)
        ]
        single = load(port, singles)
        if set(single["statuses"]) != {"201"}:
            raise RuntimeError(f"single steps answered {single['statuses']}")
        # Status reads of the journeys just registered, once the views have them.
        journeys = _journey_ids(port, ministry, single["requests"])
        reading = [
            [
                request("GET", f"/v1/journeys/{journeys[(c * 7919 + i) % len(journeys)]}", ministry)
                for i in range(reads // clients)
            ]
            for c in range(clients)
        ]
        read = load(port, reading)
        batch_body = [
            [
                request(
                    "POST",
                    "/v1/commands:batch",
                    mission,
                    {"commands": [{"event": "Registered", **registration()} for _ in range(1000)]},
                )
                for _ in range(batches // 4)
            ]
            for _ in range(4)
        ]
        batch = load(port, batch_body)
    return {
        "rate": single["per_second"],
        "single": single,
        "read": read,
        "batch": {**batch, "events_per_second": batch["per_second"] * 1000},
        "workers": workers,
    }


def _journey_ids(port: int, key: str, count: int) -> list[str]:
    import httpx

    found: list[str] = []
    cursor = None
    deadline = time.monotonic() + 120
    while len(found) < count and time.monotonic() < deadline:
        params: dict[str, Any] = {"limit": 1000, **({"cursor": cursor} if cursor else {})}
        page = httpx.get(
            f"http://127.0.0.1:{port}/v1/views/journey_status",
            params=params,
            headers={"Authorization": f"Bearer {key}"},
            timeout=30,
        ).json()
        found += [row["journey_id"] for row in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None and len(found) < count:
            found, cursor = [], None
            time.sleep(0.5)  # the views are still catching up
    if not found:
        raise RuntimeError("no journey reached the views")
    return found


def api_figure(sizes: Sizes, kind: str) -> dict[str, Any]:
    """Single steps, status reads and batches through `hajj-ledger serve` (2 workers), each run on a fresh store."""
    batches = 20 if sizes is FULL else 4
    runs = repeat(
        sizes.runs, kind, measure_api, commands=sizes.single * 2, reads=sizes.single * 4, batches=batches, workers=2
    )
    return summarise(runs)
