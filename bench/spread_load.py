"""Load for several API nodes on one database, run as its own process by bench/serving.py.

Each of the clients owns its share of the journeys (all in the Kingdom) and records hospital admissions and
discharges on them in turn, one request at a time, over keep-alive connections (one per node). Where a request
goes is the only difference between the two modes:

  spread   a journey's successive commands go to successive nodes (round-robin): every node's write cache
           sees the others' writes
  pinned   a journey's commands always go to the same node (the load is still shared by all nodes)

Prints `MEASURING` when the warm-up ends, then one JSON line with the measured window's figures.

  python bench/spread_load.py --ports 8301,8302 --mode spread --journeys ids.txt --key hl_... --seconds 8
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import statistics
import sys
import time
from datetime import UTC, datetime

LENGTH = re.compile(rb"content-length: *(\d+)", re.IGNORECASE)
STEPS = ("hospital-admitted", "hospital-discharged")


def node_of(mode: str, journey_index: int, visit: int, nodes: int) -> int:
    """The node a journey's `visit`-th command goes to."""
    return (journey_index + visit) % nodes if mode == "spread" else journey_index % nodes


class Window:
    """What is counted: only requests answered between the end of the warm-up and the end of the run."""

    def __init__(self) -> None:
        self.open = False
        self.latencies: list[float] = []
        self.by_node: dict[int, list[float]] = {}
        self.statuses: dict[int, int] = {}
        self.reconnects = 0


async def client(
    ports: list[int], mode: str, journeys: list[tuple[int, str, bool]], key: str, stop: asyncio.Event, window: Window
) -> None:
    connections = [await asyncio.open_connection("127.0.0.1", port) for port in ports]
    visits = [0] * len(journeys)
    in_hospital = [hospital for _, _, hospital in journeys]
    try:
        turn = 0
        while not stop.is_set():
            slot = turn % len(journeys)
            turn += 1
            index, journey_id, _ = journeys[slot]
            reader, writer = connections[node_of(mode, index, visits[slot], len(ports))]
            visits[slot] += 1
            body = json.dumps({"occurred_at": datetime.now(UTC).isoformat(), "facility": "bench-hospital"}).encode()
            head = (
                f"POST /v1/journeys/{journey_id}/{STEPS[in_hospital[slot]]} HTTP/1.1\r\nhost: bench\r\n"
                f"authorization: Bearer {key}\r\ncontent-type: application/json\r\ncontent-length: {len(body)}\r\n\r\n"
            )
            started = time.perf_counter()
            node = node_of(mode, index, visits[slot] - 1, len(ports))
            try:
                writer.write(head.encode() + body)
                answer = await reader.readuntil(b"\r\n\r\n")
            except (asyncio.IncompleteReadError, ConnectionError):
                # The server closed a keep-alive connection (idle too long): open it again and send once more.
                writer.close()
                connections[node] = reader, writer = await asyncio.open_connection("127.0.0.1", ports[node])
                window.reconnects += 1
                writer.write(head.encode() + body)
                answer = await reader.readuntil(b"\r\n\r\n")
            length = LENGTH.search(answer)
            await reader.readexactly(int(length.group(1)) if length else 0)
            status = int(answer[9:12])
            if status < 300 or status == 422:  # recorded; or refused as illegal: it was in the other state already
                in_hospital[slot] = not in_hospital[slot]
            if window.open:
                window.latencies.append(time.perf_counter() - started)
                window.by_node.setdefault(node, []).append(window.latencies[-1])
                window.statuses[status] = window.statuses.get(status, 0) + 1
    finally:
        for _, writer in connections:
            writer.close()


async def run(args: argparse.Namespace) -> dict[str, object]:
    ports = [int(p) for p in args.ports.split(",")]
    with open(args.journeys) as lines:
        rows = [line.split() for line in lines if line.strip()]
    journeys = [(index, journey_id, hospital == "t") for index, (journey_id, hospital) in enumerate(rows)]
    stop, window = asyncio.Event(), Window()
    shares = [journeys[c :: args.clients] for c in range(args.clients)]
    tasks = [asyncio.create_task(client(ports, args.mode, share, args.key, stop, window)) for share in shares if share]
    await asyncio.sleep(args.warmup)
    window.open = True
    print("MEASURING", flush=True)
    started = time.perf_counter()
    await asyncio.sleep(args.seconds)
    window.open = False
    seconds = time.perf_counter() - started
    stop.set()
    await asyncio.gather(*tasks)
    latencies = sorted(window.latencies)
    ok = sum(n for status, n in window.statuses.items() if status < 300)
    return {
        "requests": len(latencies),
        "per_second": ok / seconds,
        "p50_ms": 1000 * latencies[len(latencies) // 2] if latencies else None,
        "p99_ms": 1000 * latencies[int(len(latencies) * 0.99)] if latencies else None,
        "statuses": {str(k): v for k, v in sorted(window.statuses.items())},
        "node_p50_ms": [1000 * statistics.median(window.by_node.get(n) or [0.0]) for n in range(len(ports))],
        "seconds": seconds,
        "reconnects": window.reconnects,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ports", required=True, help="the nodes' ports, comma-separated")
    parser.add_argument("--mode", choices=["spread", "pinned"], required=True)
    parser.add_argument("--journeys", required=True, help="a file of lines `JOURNEY_ID t|f` (t: in hospital)")
    parser.add_argument("--key", default=os.environ.get("BENCH_KEY"), help="a key that records hospital steps")
    parser.add_argument("--clients", type=int, default=64)
    parser.add_argument("--warmup", type=float, default=2)
    parser.add_argument("--seconds", type=float, default=8)
    args = parser.parse_args()
    print(json.dumps(asyncio.run(run(args))), flush=True)
    sys.exit(0)


if __name__ == "__main__":
    main()
