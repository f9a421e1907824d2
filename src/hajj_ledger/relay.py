"""The relay to NATS JetStream (`hajj-ledger publish`): the log, in its order, for agencies' back-end systems: each
event once for each audience that may follow it, on a subject naming that audience, so that NATS permissions can give
each agency exactly its own (`hajj-ledger nats-users`).

An event's audiences are the feed's (`may_follow`): each role told of it (FEED_EVENTS), a role scoped on the event's
aggregate (EVENT_SCOPES: a journey's mission and company, an offer's company, a contract's mission and company, a
building's company) as the agency that owns it then, any other role as all its agencies at once. Each audience gets
the event on `<root>.<season>.<role>.<agency>.<event>` (root `hajj`), `<agency>` being `all` for a role told of every
such event (MOFA of every visa, a mission of every company's offers...); a scoped role whose owner is not known yet (a
journey's company before its contract) is told nothing. The roles told of every event of the ledger, unscoped (the
ministry and the auditors), are one audience, `log` in the role's place: they may read exactly the same messages, so
each event is one message for them all, `<root>.<season>.log.all.<event>`. The body is the event as the
change feed and the trail give it (JSON, no personal data), rendered from the stored JSON without building domain
events (`Following`), the same for every audience.
A journey's, an offer's and a contract's events are in their season. A trip's and a building's carry none: theirs
is the Hijri year of the day they happened in, the year before in Muharram to Rabi' al-Awwal (a season's departures
run into the next year). Subject tokens
keep letters, digits, `-` and `_`; any other character becomes `~` and the two hex digits of each of its UTF-8 bytes
(`.` is `~2e`, `~` itself `~7e`), an empty id is `~`, and an id `all` is `~61ll`, so every id has one token, every
token one id, and no agency's token is `all`.

No gap and no repeat, whatever fails: each message carries `<position>.<n>` as `Nats-Msg-Id` (its log position and
its audience's rank among the event's, so each audience's message is deduplicated on its own: the stream drops a
repeat within its duplicate window) and `Nats-Expected-Last-Sequence`, the stream's sequence it must follow. The
stream stores messages one at a time in the order they came, so when one fails every message after it is refused
too, and nothing is stored out of order. The relay resumes after the message in the stream's last header (after a
crash, a lost connection, a new leader): an event's audiences are the same whenever it is read, so the rest of an
event half published goes first. The stream, the relay's own, is made when missing.
A page of the log (5,000 events) is published at once, only its last message asking for an acknowledgement: the
stream takes that one only after every message before it (each must follow the one before), so its acknowledgement
is the whole page's.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import re
import threading
from dataclasses import dataclass
from datetime import date
from typing import TYPE_CHECKING, Any

from hajj_ledger.domain.access import FEED_EVENTS
from hajj_ledger.domain.catalogue import EVENT_SCOPES, STEPS
from hajj_ledger.domain.vocabulary import Role, makkah_day
from hajj_ledger.following import Following, Told
from hajj_ledger.leadership import LogWatch
from hajj_ledger.settings import settings, variable_for

if TYPE_CHECKING:
    from nats.js import JetStreamContext

    from hajj_ledger.ledger import JourneyLedger

URL_VARIABLE, STREAM_VARIABLE, ROOT_VARIABLE = map(variable_for, ("nats_url", "nats_stream", "nats_subject_root"))
PAGE = 5000  # events read from the log, then published, at once
ACK_SECONDS = 10.0  # a message not acknowledged by then ends the session (the server may have gone)
RETRY_SECONDS = 1.0  # after a failure, the relay starts again from the stream's last message this much later
POSITION = "Nats-Msg-Id"
EXPECTED = "Nats-Expected-Last-Sequence"
ALL = "all"  # the agency token of the messages every agency of a role may read
LOG = "log"  # the role token of the messages of the roles told of every event (the ministry, the auditors)
# Roles told of every event of the ledger, unscoped: they read the same messages, so they share them.
LOG_READERS = frozenset(
    role
    for role in Role
    if FEED_EVENTS.get(role) == frozenset(STEPS) and not any(role in scopes for scopes in EVENT_SCOPES.values())
)
_HEADERS = f"NATS/1.0\r\n{POSITION}: %d.%d\r\n{EXPECTED}: %d\r\n\r\n".encode()  # a message's, as HPUB frames them
_HPUB = b"HPUB %s %d %d\r\n%s%s\r\n"  # subject, the headers' size, headers and body's, headers, body
log = logging.getLogger("hajj_ledger.relay")
_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")


def token(text: str) -> str:
    """`text` as one subject token, reversibly: see the module's documentation."""
    if text == ALL:
        return "~61" + ALL[1:]
    return _UNSAFE.sub(lambda found: "".join(f"~{byte:02x}" for byte in found.group().encode()), text) or "~"


def audience(role: Role) -> str:
    """The subjects' token of a role's audience: `log` for the roles told of every event, its own name for others."""
    return LOG if role in LOG_READERS else role.value


@functools.cache
def hearers(event: str) -> tuple[tuple[str, str | None], ...]:
    """The audiences told of `event`, each with the owners' column it is scoped on (None: it hears of every one), once
    each and in a fixed order: an event's audiences, and so their messages' ranks, are the same whenever it is
    relayed."""
    scopes = EVENT_SCOPES.get(event, {})
    told = (
        (audience(role), scopes[role][0] if role in scopes else None)
        for role in Role
        if event in FEED_EVENTS.get(role, ())
    )
    return tuple(dict.fromkeys(told))  # the log's once, where its first reader comes


@functools.lru_cache(maxsize=4096)
def trip_season(day: date) -> int:
    from hijridate import Gregorian  # only when a trip's event is relayed

    hijri = Gregorian(day.year, day.month, day.day).to_hijri()
    return hijri.year - 1 if hijri.month <= 3 else hijri.year


@dataclass(frozen=True)
class Target:
    """Where the relay publishes: the server, its stream and the subjects' root."""

    url: str
    stream: str
    root: str

    @classmethod
    def configured(cls) -> Target:
        given = settings()
        return cls(given.nats_url, given.nats_stream, given.nats_subject_root)

    def subjects(self, told: Told) -> list[bytes]:
        """The subjects `told` is published to, one for each of its audiences, as the protocol writes them."""
        season = told.season if told.season is not None else trip_season(makkah_day(told.occurred_at))
        owners = told.owners or {}
        found = []
        for role, column in hearers(told.event):
            if column is None:
                found.append(_subject(self.root, season, role, None, told.event))
            elif (owner := owners.get(column)) is not None:
                found.append(_subject(self.root, season, role, owner, told.event))
        return found


@functools.lru_cache(maxsize=65_536)  # a season's subjects are few: agencies times their events
def _subject(root: str, season: int, role: str, agency_id: str | None, event: str) -> bytes:
    """The subject of an agency's message (None: of every agency of the role, or of the log's audience)."""
    return f"{root}.{season}.{role}.{ALL if agency_id is None else token(agency_id)}.{event}".encode()


class Relay:
    """Publishes one ledger's log to one stream, from where the stream ends."""

    def __init__(self, ledger: JourneyLedger, target: Target) -> None:
        self.ledger = ledger
        self.target = target
        self.following = Following(ledger)
        self.position = 0  # the position of the last event whose every message the stream holds
        self.sequence = 0  # the stream's last sequence
        self.published = 0  # messages of the event after `position` the stream holds already (the rest go first)

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

        lost = asyncio.Event()  # set when the connection goes: a page's acknowledgement then never comes

        async def connection_lost() -> None:
            lost.set()

        connection = await nats.connect(
            self.target.url, connect_timeout=3, allow_reconnect=False, disconnected_cb=connection_lost
        )
        watch = LogWatch(self.ledger, stop)
        try:
            await self._resume(connection.jetstream())
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
                # The next page is read while this one is published and its acknowledgement comes back.
                reading = asyncio.create_task(asyncio.to_thread(self.following.read, reached, PAGE, until))
                last, messages = await self._publish(connection, stretch)
                self._acknowledged(stretch, messages, await _answer(last, lost) if last else None)
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
        self.position = self.published = 0
        if self.sequence:
            last = await stream.get_msg(self.target.stream, seq=self.sequence)
            position, _, rank = (last.headers or {})[POSITION].partition(".")
            self.position = int(position)
            if rank:  # the event's next audiences may be still to go: it is read again, its first rank + 1 skipped
                self.position, self.published = self.position - 1, int(rank) + 1
        log.info("relay: stream %s at sequence %d, position %d", self.target.stream, self.sequence, self.position)

    async def _publish(self, connection: Any, stretch: list[Told]) -> tuple[asyncio.Future[Any] | None, int]:
        """Publish a page's messages, every one but the last without asking for an acknowledgement, the last one as
        a request, whose answer comes once the stream has taken (or refused) every message before it; and how many
        there are (none: no request)."""
        expected = self.sequence
        skip = self.published  # after a resume: the first event's messages the stream holds already
        frames = []
        last: tuple[bytes, int, int, Told] | None = None
        for told in stretch:
            if len(told.body) > connection.max_payload:  # `publish` would refuse it; the server would hang up
                raise ValueError(f"position {told.position}: {len(told.body)} bytes, over the server's max_payload")
            for rank, subject in enumerate(self.target.subjects(told)):
                if skip:
                    skip -= 1
                    continue
                framed = _HEADERS % (told.position, rank, expected)
                frames.append(_HPUB % (subject, len(framed), len(framed) + len(told.body), framed, told.body))
                last = subject, rank, expected, told
                expected += 1
        if last is None:
            return None, 0
        # The messages are framed here and go to the connection's write queue as one piece, where nats-py's `publish`
        # ends too: `publish` builds and checks each message's headers itself, at a cost a message as high as reading
        # and rendering the event from the log. The relay's tests publish through this against the real server.
        if len(frames) > 1:
            await connection._send_command(b"".join(frames[:-1]))
        subject, rank, follows, told = last
        headers = {POSITION: f"{told.position}.{rank}", EXPECTED: str(follows)}
        request = connection.request(subject.decode(), told.body, timeout=ACK_SECONDS, headers=headers)
        answer: asyncio.Future[Any] = asyncio.ensure_future(request)
        return answer, len(frames)

    def _acknowledged(self, stretch: list[Told], messages: int, answer: Any) -> None:
        """The page is stored, in order, only if its last message is stored right after all the others: each was to
        follow the one before (its expected sequence), so the last one is stored only if every one before it was."""
        import json

        from nats.js.api import PubAck
        from nats.js.errors import APIError

        if messages:
            found = json.loads(answer.data)
            if "error" in found:
                raise APIError.from_error(found["error"])
            ack = PubAck.from_response(found)
            wanted = self.sequence + messages
            if ack.duplicate or ack.seq != wanted:
                raise RuntimeError(
                    f"position {stretch[-1].position} was stored as sequence {ack.seq} (duplicate: {ack.duplicate}), "
                    f"not {wanted}"
                )
            self.sequence = ack.seq
        self.position, self.published = stretch[-1].position, 0


async def _answer(request: asyncio.Future[Any], lost: asyncio.Event) -> Any:
    """The answer to `request`, unless the connection is lost first or it takes ACK_SECONDS."""
    losing = asyncio.ensure_future(lost.wait())
    try:
        done, _ = await asyncio.wait({request, losing}, timeout=ACK_SECONDS, return_when=asyncio.FIRST_COMPLETED)
    finally:
        losing.cancel()
    if request in done:
        return request.result()
    request.cancel()
    raise ConnectionError("the connection to NATS was lost") if lost.is_set() else TimeoutError("no acknowledgement")


def publish(stop: threading.Event, database_url: str | None = None, target: Target | None = None) -> None:
    """The relay as a job of the leader (`hajj-ledger publish`)."""
    from hajj_ledger.ledger import JourneyLedger

    ledger = JourneyLedger(database_url, create_tables=False)
    try:
        Relay(ledger, target or Target.configured()).run(stop)
    finally:
        ledger.close()
