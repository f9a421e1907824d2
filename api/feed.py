"""The change feed's hub: one reader per process follows the log and hands each new stretch to every subscriber.

The reader is a thread of its own (reading the store and decoding events block): it wakes as the background jobs do
(`LogWatch`: the NOTIFY of each append on PostgreSQL, a backing-off poll on SQLite), reads what is new once, renders
each event once (`Following`), and passes the stretch to the event loop, which puts each event its subscribers may
be told of into their queues. Each queue is bounded: a subscriber that cannot keep up is not waited for. Its queue
stops taking events once full, its stream ends after the last event it was given, and it resumes from there with
`Last-Event-ID` (what a browser's EventSource sends by itself). Nothing a subscriber does slows the reader, nor the
writers, who never see it.

A subscriber that starts behind the reader reads the log itself up to where the reader was when it joined; the
events the reader brought meanwhile wait in its queue, so it misses nothing and is told nothing twice. It reads
through a `Following` of its own: owners are learned in log order, and the reader's, which decide what every live
subscriber is told, are learned by the reader alone, whatever stretch of the past a subscriber asks for.

A stream starts with a comment line, sent at once (a client sees the answer's status line then, not with the first
heartbeat); once its key is revoked (the process's `Revocations` looks every few seconds), it ends with a `revoked`
event.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections import deque
from collections.abc import AsyncIterator, Collection
from dataclasses import dataclass, field

import orjson

from hajj_ledger.api.agencies import REVOKED, Agency, Revocations
from hajj_ledger.domain.access import may_follow
from hajj_ledger.following import Following, Told
from hajj_ledger.leadership import LogWatch
from hajj_ledger.ledger import JourneyLedger
from hajj_ledger.settings import settings, variable_for

BUFFER_VARIABLE = variable_for("feed_buffer")  # events a subscriber's queue holds
HEARTBEAT_VARIABLE = variable_for("feed_heartbeat")  # seconds between comment lines
PAGE = 1000  # events read from the log at once
BACKLOG_KNOWN = 10 * PAGE  # aggregates a subscriber reading the past remembers the owners of (others: from the store)
RECENT_PAGES = 20  # pages of the log looked back through for a subscriber's latest events: what opening one costs
OPENING = b": following the log\r\n\r\n"
FELL_BEHIND = b": this client fell behind: the stream ends here; resume with Last-Event-ID\r\n\r\n"
REVOKED_EVENT = b"event: revoked\r\ndata: " + orjson.dumps({"reason": REVOKED}) + b"\r\n\r\n"
log = logging.getLogger("hajj_ledger.api.feed")


def frame(told: Told) -> bytes:
    """The event as one SSE message: its position the id, its name the event type, the JSON the data."""
    return b"id: %d\r\nevent: %s\r\ndata: %s\r\n\r\n" % (told.position, told.event.encode(), told.body)


@dataclass(eq=False)
class Subscriber:
    """One client's stream: who it is, what it asked for, and the events waiting for it."""

    agency: Agency
    events: frozenset[str] | None  # the event types it asked for; None: every one it may be told of
    limit: int
    season: int | None = None  # the season it follows (and events of no season: trips, buildings); None: every one
    after: int = 0  # the reader's position when it joined: the queue holds only events past it
    queue: deque[bytes] = field(default_factory=deque)  # the SSE messages, framed once for every subscriber
    full: bool = False  # the queue overflowed: the stream ends once the queue is drained
    woken: asyncio.Event = field(default_factory=asyncio.Event)

    def admits(self, told: Told) -> bool:
        return (
            (self.events is None or told.event in self.events)
            and (self.season is None or told.season is None or told.season == self.season)
            and may_follow(self.agency.role, self.agency.agency_id, told.event, told.owners)
        )

    def offer(self, stretch: Collection[tuple[Told, bytes]]) -> None:
        if self.full:
            return
        for told, message in stretch:
            if told.position > self.after and self.admits(told):
                if len(self.queue) == self.limit:
                    self.full = True
                    break
                self.queue.append(message)
        self.woken.set()


class Feed:
    """The hub of one process: its reader starts with the first subscriber and runs until `close`."""

    def __init__(self, ledger: JourneyLedger, revocations: Revocations) -> None:
        self.ledger = ledger
        self.revocations = revocations
        self.following = Following(ledger)  # the reader's alone: what it learns decides what live subscribers hear
        self.buffer = settings().feed_buffer
        self.heartbeat = settings().feed_heartbeat
        self.position = 0  # how far the reader has handed the log to the subscribers (on the event loop)
        self.subscribers: set[Subscriber] = set()
        self._stop = threading.Event()
        self._reader: threading.Thread | None = None
        self._started: asyncio.Future[None] | None = None

    async def _start(self) -> None:
        if self._started is None:
            loop = asyncio.get_running_loop()
            self._started = loop.create_future()
            head = await asyncio.to_thread(self.ledger.head)
            self.position = head
            self._reader = threading.Thread(target=self._read, args=(loop, head), name="feed reader", daemon=True)
            self._reader.start()
            self._started.set_result(None)
        await self._started

    def close(self) -> None:
        self._stop.set()
        if self._reader is not None:
            self._reader.join(10)

    def _read(self, loop: asyncio.AbstractEventLoop, position: int) -> None:
        watch = LogWatch(self.ledger, self._stop)
        try:
            while not self._stop.is_set():
                try:
                    reached, stretch = self.following.read(position, PAGE)
                except Exception:
                    log.exception("the feed's reader could not read the log; trying again")
                    self._stop.wait(1.0)
                    continue
                if reached == position:
                    watch.wait()
                    continue
                position = reached
                watch.found()
                # Framed here, once for every subscriber, and off the event loop that serves them all.
                loop.call_soon_threadsafe(self._hand_out, reached, [(told, frame(told)) for told in stretch])
        finally:
            watch.close()

    def _hand_out(self, reached: int, stretch: list[tuple[Told, bytes]]) -> None:
        for subscriber in self.subscribers:
            subscriber.offer(stretch)
        self.position = reached

    async def stream(
        self, agency: Agency, after: int | None, events: frozenset[str] | None, season: int | None = None
    ) -> AsyncIterator[bytes]:
        """The SSE messages of one subscriber: the events after `after` (default: from now) that it may be told of
        and asked for, in log order; it ends after the last one given when the subscriber falls too far behind, and
        with a `revoked` event once its key is revoked."""
        await self._start()
        subscriber = Subscriber(agency, events, self.buffer, season)
        given = self.position if after is None else after
        past = Following(self.ledger, BACKLOG_KNOWN)
        loop = asyncio.get_running_loop()
        with self.revocations.watching(agency, lambda: loop.call_soon_threadsafe(subscriber.woken.set)) as key:
            try:
                # Far behind, it reads the log alone first, so that its queue does not fill while it does; it joins
                # the reader within a page of it, and reads on alone up to where the reader was then.
                joined = self.position - given <= PAGE
                if joined:
                    self._join(subscriber, given)
                yield OPENING  # once joined: a client told nothing yet misses nothing recorded after this line
                progressed = True
                while not joined or given < subscriber.after:
                    if not joined and (self.position - given <= PAGE or not progressed):
                        self._join(subscriber, given)
                        joined = True
                        continue
                    until = subscriber.after if joined else None
                    reached, backlog = await asyncio.to_thread(past.read, given, PAGE, until)
                    if chunk := b"".join(frame(told) for told in backlog if subscriber.admits(told)):
                        yield chunk
                    if key.revoked:
                        yield REVOKED_EVENT
                        return
                    progressed = reached > given
                    if joined and not progressed:
                        break
                    given = reached
                while True:
                    if subscriber.queue:  # what came while the last was sent, in one write
                        waiting = subscriber.queue
                        subscriber.queue = deque()
                        yield b"".join(waiting)
                    if subscriber.full:
                        yield FELL_BEHIND
                        return
                    if key.revoked:
                        yield REVOKED_EVENT
                        return
                    subscriber.woken.clear()
                    await subscriber.woken.wait()  # an event, or the key revoked
            finally:
                self.subscribers.discard(subscriber)

    def recent(
        self, agency: Agency, events: frozenset[str] | None, season: int | None, count: int, latest: int | None = None
    ) -> int:
        """Where a stream that opens with the subscriber's latest `count` events starts: before the earliest of them
        (fewer if the RECENT_PAGES pages read hold fewer; none, the head). It reads the log backwards a page at a
        time, each page with a `Following` of its own (owners are learned in log order); it blocks. `latest`, the
        last position of the subscriber's own journeys (journey_status), is where to look next when the last pages
        hold too few: a mission's last events may lie far back, behind the other missions' departures."""
        subscriber = Subscriber(agency, events, 0, season)
        head = self.ledger.head()
        found = self._back(subscriber, head, count)
        if len(found) < count and latest is not None and latest < head - RECENT_PAGES * PAGE:
            found = self._back(subscriber, latest, count - len(found)) + found
        return found[-count:][0] - 1 if found else head

    def _back(self, subscriber: Subscriber, end: int, count: int) -> list[int]:
        """The positions of the last `count` events the subscriber is told of, up to `end`, within RECENT_PAGES."""
        found: list[int] = []
        for _ in range(RECENT_PAGES):
            if end <= 0 or len(found) >= count:
                break
            start = max(0, end - PAGE)
            _, stretch = Following(self.ledger, PAGE).read(start, PAGE, end)
            found = [told.position for told in stretch if subscriber.admits(told)] + found
            end = start
        return found[-count:]

    def _join(self, subscriber: Subscriber, given: int) -> None:
        """From now on, the subscriber's queue takes the events past where the reader is; it reads alone only up to
        there."""
        subscriber.after = max(self.position, given)
        self.subscribers.add(subscriber)
