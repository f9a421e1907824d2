"""The relay to NATS JetStream (`hajj-ledger publish`): the log, in its order, one message per event, for agencies'
back-end systems.

Each event goes to the subject `<root>.<season>.<role>.<agency>.<event>` (root `hajj`): the season of its journey,
who recorded it (role and agency id) and the event's name; its body is the event as the change feed and the trail
give it (JSON, no personal data). A trip's events carry no season: theirs is the Hijri year of the day they happened
in, the year before in Muharram to Rabi' al-Awwal (a season's departures run into the next year). Subject tokens
keep letters, digits, `-` and `_`; any other character becomes `~` and the two hex digits of each of its UTF-8 bytes
(`.` is `~2e`, `~` itself `~7e`), so every id has one token and every token one id.

No gap and no repeat, whatever fails: each message carries its log position as `Nats-Msg-Id` (the stream drops a
repeat within its duplicate window) and `Nats-Expected-Last-Sequence`, the stream's sequence it must follow. The
stream stores messages one at a time in the order they came, so when one fails every message after it is refused
too, and nothing is stored out of order. The relay resumes from the position in the header of the stream's last
message (after a crash, a lost connection, a new leader). The stream, the relay's own, is made when missing.
Thousands of messages are in flight at once; their acknowledgements are awaited in order, a page at a time.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import re
import threading
from dataclasses import dataclass
from datetime import date, datetime
from typing import TYPE_CHECKING, Any

from hajj_ledger.domain.vocabulary import makkah_day
from hajj_ledger.following import Following, Told
from hajj_ledger.leadership import LogWatch

if TYPE_CHECKING:
    from nats.js import JetStreamContext

    from hajj_ledger.ledger import JourneyLedger

URL_VARIABLE, URL = "HAJJ_LEDGER_NATS_URL", "nats://127.0.0.1:4222"
STREAM_VARIABLE, STREAM = "HAJJ_LEDGER_NATS_STREAM", "HAJJ_LEDGER"
ROOT_VARIABLE, ROOT = "HAJJ_LEDGER_NATS_SUBJECT_ROOT", "hajj"
PAGE = 5000  # events read from the log, then published, at once
IN_FLIGHT = 20_000  # messages published and not yet acknowledged, at most
ACK_SECONDS = 10.0  # a message not acknowledged by then ends the session (the server may have gone)
RETRY_SECONDS = 1.0  # after a failure, the relay starts again from the stream's last message this much later
POSITION = "Nats-Msg-Id"
EXPECTED = "Nats-Expected-Last-Sequence"
log = logging.getLogger("hajj_ledger.relay")
_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")


def token(text: str) -> str:
    """`text` as one subject token, reversibly: see the module's documentation."""
    return _UNSAFE.sub(lambda found: "".join(f"~{byte:02x}" for byte in found.group().encode()), text)


@functools.lru_cache(maxsize=4096)
def trip_season(day: date) -> int:
    from hijridate import Gregorian  # only when a trip's event is relayed

    hijri = Gregorian(day.year, day.month, day.day).to_hijri()
    return hijri.year - 1 if hijri.month <= 3 else hijri.year


@dataclass(frozen=True)
class Target:
    """Where the relay publishes: the server, its stream and the subjects' root."""

    url: str = URL
    stream: str = STREAM
    root: str = ROOT

    @classmethod
    def configured(cls) -> Target:
        return cls(
            os.environ.get(URL_VARIABLE, URL), os.environ.get(STREAM_VARIABLE, STREAM),
            os.environ.get(ROOT_VARIABLE, ROOT),
        )  # fmt: skip

    def subject(self, told: Told, occurred_at: datetime) -> str:
        season = told.season if told.season is not None else trip_season(makkah_day(occurred_at))
        return f"{self.root}.{season}.{told.role}.{token(told.agency_id)}.{told.event}"


class Relay:
    """Publishes one ledger's log to one stream, from where the stream ends."""

    def __init__(self, ledger: JourneyLedger, target: Target) -> None:
        self.ledger = ledger
        self.target = target
        self.following = Following(ledger)
        self.position = 0  # the position of the stream's last message
        self.sequence = 0  # the stream's last sequence

    def run(self, stop: threading.Event, until: int | None = None) -> None:
        """Relay until `stop` (or, given `until`, until that position is published), starting again after any
        failure from the stream's last message."""
        while not stop.is_set():
            try:
                asyncio.run(self._session(stop, until))
                return
            except Exception as error:
                log.warning("relay: %s: %s; starting again in %.0f s", type(error).__name__, error, RETRY_SECONDS)
                stop.wait(RETRY_SECONDS)

    async def _session(self, stop: threading.Event, until: int | None) -> None:
        import nats

        connection = await nats.connect(self.target.url, connect_timeout=3, allow_reconnect=False)
        watch = LogWatch(self.ledger, stop)
        try:
            stream = connection.jetstream(publish_async_max_pending=IN_FLIGHT)
            await self._resume(stream)
            reading = asyncio.create_task(asyncio.to_thread(self.following.read, self.position, PAGE, until))
            while not stop.is_set():
                reached, stretch = await reading
                if until is not None and reached >= until and not stretch:
                    return
                if not stretch:
                    await asyncio.to_thread(watch.wait)
                    reading = asyncio.create_task(asyncio.to_thread(self.following.read, self.position, PAGE, until))
                    continue
                watch.found()
                acks = await self._publish(stream, stretch)
                # The next page is read while this one's acknowledgements come back.
                reading = asyncio.create_task(asyncio.to_thread(self.following.read, reached, PAGE, until))
                for told, ack in zip(stretch, acks, strict=True):
                    answer = await asyncio.wait_for(ack, ACK_SECONDS)
                    if answer.duplicate or answer.seq != self.sequence + 1:
                        raise RuntimeError(f"position {told.position} was stored as sequence {answer.seq} (duplicate: "
                                           f"{answer.duplicate}), not {self.sequence + 1}")  # fmt: skip
                    self.sequence, self.position = answer.seq, told.position
            reading.cancel()
        finally:
            watch.close()
            await connection.close()

    async def _resume(self, stream: JetStreamContext) -> None:
        from nats.js.api import StorageType, StreamConfig
        from nats.js.errors import NotFoundError

        try:
            info = await stream.stream_info(self.target.stream)
        except NotFoundError:
            info = await stream.add_stream(
                StreamConfig(name=self.target.stream, subjects=[f"{self.target.root}.>"], storage=StorageType.FILE)
            )
        self.sequence = info.state.last_seq
        self.position = 0
        if self.sequence:
            last = await stream.get_msg(self.target.stream, seq=self.sequence)
            self.position = int((last.headers or {})[POSITION])
        log.info("relay: stream %s at sequence %d, position %d", self.target.stream, self.sequence, self.position)

    async def _publish(self, stream: JetStreamContext, stretch: list[Told]) -> list[Any]:
        acks = []
        expected = self.sequence
        subject = self.target.subject
        for told in stretch:
            headers = {POSITION: str(told.position), EXPECTED: str(expected)}
            acks.append(await stream.publish_async(subject(told, told.occurred_at), told.body, headers=headers))
            expected += 1
        return acks


def publish(stop: threading.Event, database_url: str | None = None, target: Target | None = None) -> None:
    """The relay as a job of the leader (`hajj-ledger publish`)."""
    from hajj_ledger.ledger import JourneyLedger

    ledger = JourneyLedger(database_url, create_tables=False)
    try:
        Relay(ledger, target or Target.configured()).run(stop)
    finally:
        ledger.close()
