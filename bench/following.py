"""Following the ledger: the change feed's lag to its clients under a steady load (`--only feed`), and the relay's
rate to NATS JetStream beside a bare publish loop (`--only relay`)."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import threading
import time
from collections import Counter
from contextlib import suppress
from datetime import datetime
from typing import Any
from uuid import uuid4

from bench.catchup import measure_steady
from bench.harness import CLI, FULL, Sizes, lag_quantiles, ledger, migrated_season, repeat, run_child, summarise
from bench.servers import free_port

NATS_URL = os.environ.get("HAJJ_LEDGER_BENCH_NATS_URL", "nats://127.0.0.1:4222")


def measure_feed(url: str, seconds: float, events_per_second: int, subscribers: int) -> dict[str, Any]:
    """How long after it is recorded an event reaches the change feed's clients: `hajj-ledger serve --api-only` in a
    process of its own, `subscribers` ministry clients (told of every event) on one event loop here, and a writer
    recording a simulated season at `events_per_second` beside them."""
    from hajj_ledger.api import agencies
    from hajj_ledger.domain.vocabulary import Role
    from hajj_ledger.projections.schema import engine_for

    migrated_season(url, 20)
    engine = engine_for(url)
    with engine.begin() as connection:
        key = agencies.add(connection, Role.MINISTRY, "bench ministry")[1]
    engine.dispose()
    port = free_port()
    env = {**os.environ, "HAJJ_LEDGER_DATABASE_URL": url}
    argv = [str(CLI), "serve", "--api-only", "--port", str(port)]
    server = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    lags: list[float] = []
    done = threading.Event()

    async def subscriber(ready: asyncio.Event) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        # HTTP/1.0: the stream comes unframed (no chunked encoding), so lines are split only where reads end.
        writer.write(f"GET /v1/feed HTTP/1.0\r\nHost: bench\r\nAuthorization: Bearer {key}\r\n\r\n".encode())
        await reader.readuntil(b"\r\n\r\n")
        ready.set()
        partial = b""
        while not done.is_set():
            try:
                chunk = await asyncio.wait_for(reader.read(1 << 20), 0.5)
            except TimeoutError:
                continue
            now = time.time()
            *lines, partial = (partial + chunk).split(b"\r\n")  # a read may end inside a line: keep its start
            for line in lines:
                # Only the recorded time is read out of each event: the clients share two cores with the server and
                # the writer, and parsing 50,000 events a second whole would slow the very thing measured.
                at = line.find(b'"recorded_at":"') + 15
                if line.startswith(b"data: ") and at > 14:
                    lags.append(now - datetime.fromisoformat(line[at : line.index(b'"', at)].decode()).timestamp())
        writer.close()

    async def clients() -> None:
        ready = [asyncio.Event() for _ in range(subscribers)]
        tasks = [asyncio.create_task(subscriber(r)) for r in ready]
        for event in ready:
            await event.wait()
        loading.set()
        await asyncio.gather(*tasks)

    loading = threading.Event()
    recorded = 0
    elapsed = 0.0

    def write() -> None:
        nonlocal recorded, elapsed
        loading.wait()
        # In a process of its own: as a thread here it shared the subscribers' GIL and fell short of its rate.
        written = run_child(measure_steady, url=url, seconds=seconds, events_per_second=events_per_second)
        recorded, elapsed = written["recorded"], written["elapsed"]
        time.sleep(1.0)
        done.set()

    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    break
            except OSError:
                time.sleep(0.2)
        writing = threading.Thread(target=write)
        writing.start()
        asyncio.run(clients())
        writing.join()
    finally:
        server.terminate()
        server.wait(30)
    return {
        **lag_quantiles(lags),
        "received": len(lags),
        "subscribers": subscribers,
        "load_events_per_s": recorded / elapsed,
    }


def measure_relay(url: str, pilgrims: int) -> dict[str, Any]:
    """Events a second the relay publishes to NATS JetStream (a stream of its own, file storage, deleted after),
    acknowledged, from an empty stream to the head of a simulated season's log, each event once for each of its
    audiences; and, as its baseline in the same run, a bare nats-py loop publishing the same messages (subjects and
    bodies), with the same headers and the same one acknowledgement a page, to another stream (the messages rendered
    before its clock starts), in events a second too. With the messages an event, and how many go to each role."""
    from hajj_ledger.following import Following
    from hajj_ledger.relay import PAGE, Target

    migrated_season(url, pilgrims)
    mark = uuid4().hex[:12]
    target = Target(NATS_URL, f"BENCH_{mark}", f"bench{mark}")
    bare = Target(NATS_URL, f"BARE_{mark}", f"bare{mark}")
    followed = ledger(url)
    head = followed.head()
    try:
        # The relay in a process of its own, so that its peak memory is its own (this one's holds the season's
        # simulation and the baseline's messages, rendered all at once).
        relayed = run_child(measure_relay_alone, url=url, stream=target.stream, root=target.root, until=head)
        elapsed = relayed["seconds"]
        _, told = Following(followed).read(0, head)
        messages = [(subject.decode(), t.body) for t in told for subject in bare.subjects(t)]
        page = round(PAGE * len(messages) / len(told))  # the messages of a page of the relay's, on average
        bare_seconds = asyncio.run(_bare_publish(bare, messages, page))
    finally:
        followed.close()
        asyncio.run(_delete_streams(target, bare))
    rate, baseline = head / elapsed, head / bare_seconds
    roles = Counter(subject.split(".")[2] for subject, _ in messages)
    return {
        "rate": rate,
        "events": head,
        "seconds": elapsed,
        "baseline": baseline,
        "ratio": rate / baseline,
        "messages": len(messages),
        "messages_per_event": len(messages) / len(told),
        "baseline_messages_per_s": len(messages) / bare_seconds,
        "messages_per_event_by_role": {role: n / len(told) for role, n in roles.most_common()},
        "relay_rss_mb": relayed["rss_mb"],
    }


def measure_relay_alone(url: str, stream: str, root: str, until: int) -> dict[str, Any]:
    """`Relay.run` from an empty stream up to `until`: the relay's part of `measure_relay`."""
    from hajj_ledger.relay import Relay, Target

    followed = ledger(url)
    started = time.perf_counter()
    Relay(followed, Target(NATS_URL, stream, root)).run(threading.Event(), until=until)
    seconds = time.perf_counter() - started
    followed.close()
    return {"rate": until / seconds, "seconds": seconds}


async def _bare_publish(target: Any, messages: list[tuple[str, bytes]], page: int) -> float:
    """Seconds a plain nats-py loop takes to get `messages` acknowledged: each published with its id and expected
    sequence, the last of each page (`page` messages) as a request whose answer acknowledges the page."""
    import nats
    import orjson
    from nats.js.api import StorageType, StreamConfig

    connection = await nats.connect(NATS_URL)
    try:
        await connection.jetstream().add_stream(
            StreamConfig(name=target.stream, subjects=[f"{target.root}.>"], storage=StorageType.FILE)
        )
        started = time.perf_counter()
        for start in range(0, len(messages), page):
            stretch = messages[start : start + page]
            for sequence, (subject, body) in enumerate(stretch[:-1], start):
                headers = {"Nats-Msg-Id": str(sequence + 1), "Nats-Expected-Last-Sequence": str(sequence)}
                await connection.publish(subject, body, headers=headers)
            subject, body = stretch[-1]
            last = start + len(stretch) - 1
            headers = {"Nats-Msg-Id": str(last + 1), "Nats-Expected-Last-Sequence": str(last)}
            answer = await connection.request(subject, body, timeout=10, headers=headers)
            assert orjson.loads(answer.data)["seq"] == last + 1, answer.data
        return time.perf_counter() - started
    finally:
        await connection.close()


async def _delete_streams(*targets: Any) -> None:
    import nats
    from nats.js.errors import NotFoundError

    connection = await nats.connect(NATS_URL)
    try:
        for target in targets:
            with suppress(NotFoundError):
                await connection.jetstream().delete_stream(target.stream)
    finally:
        await connection.close()


# The figures.


def feed_figure(sizes: Sizes, kind: str) -> dict[str, Any]:
    seconds, subscribers = (20, 50) if sizes is FULL else (2, 5)
    runs = repeat(sizes.runs, kind, measure_feed, seconds=seconds, events_per_second=1000, subscribers=subscribers)
    return summarise(runs)


def relay_figure(sizes: Sizes, kind: str) -> dict[str, Any]:
    return summarise(repeat(sizes.runs, kind, measure_relay, pilgrims=4000 if sizes is FULL else 60))
