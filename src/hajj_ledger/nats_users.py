"""The NATS server's users for the relay's stream (`hajj-ledger nats-users`): one for the relay, the only one that may
publish, and one for each agency, which may read its own subjects and nothing else.

An agency reads through JetStream consumers of its own, one for each subject filter of its (`Filter`): its name is
the agency's token (`~all` after it for the messages every agency of its role reads, the ministry's and the auditors'
being the log's, which they share), and its filter the agency's subjects, so the user may create it only with that
filter (the create request's subject carries the filter, and the server checks the two agree: nats-py's
`pull_subscribe(filter, durable=name, stream=...)` sends it so), read it, pull from it, acknowledge and delete it.
Its replies come on an inbox of its own, `_INBOX_<token>.>` (nats-py's `connect(inbox_prefix=...)`): a shared
`_INBOX.>` would let any user read every other's replies, and so its events. It may also subscribe to its subjects as
they are published. It may not read the stream's information (which counts the messages of every subject, so of every
agency), list the consumers, read messages directly, nor publish.

Passwords are generated (256 random bits), kept in a credentials file readable by its owner alone; a user already
in that file keeps its password when the command runs again (for one more agency), so the agencies' systems need
no new one. Neither file is ever printed.
"""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hajj_ledger.domain.access import FEED_EVENTS
from hajj_ledger.domain.errors import ValidationError
from hajj_ledger.domain.vocabulary import Role
from hajj_ledger.relay import ALL, Target, audience, hearers, token

if TYPE_CHECKING:
    from hajj_ledger.ledger import JourneyLedger

RELAY_USER = "relay"
INBOX = "_INBOX"  # nats-py's default inbox prefix: the relay's replies


@dataclass(frozen=True)
class Filter:
    """One consumer an agency may make on the stream: its name and the subjects it reads."""

    consumer: str
    subjects: str


@dataclass(frozen=True)
class AgencyUser:
    agency_id: str
    role: Role

    @property
    def inbox(self) -> str:
        """The prefix of this user's inboxes (nats-py: `connect(inbox_prefix=...)`)."""
        return f"{INBOX}_{token(self.agency_id)}"

    def filters(self, root: str) -> list[Filter]:
        """Its consumers: one on its own subjects if its role is scoped on some event it hears, one on its audience's
        `all` subjects if it hears some event of every agency (a mission: its journeys and contracts, and the
        market's offers; the ministry and the auditors: the log's)."""
        heard, role = FEED_EVENTS.get(self.role, ()), audience(self.role)
        columns = {column for event in heard for told, column in hearers(event) if told == role}
        own = token(self.agency_id)
        found = [Filter(own, f"{root}.*.{role}.{own}.>")] if columns - {None} else []
        if None in columns:
            found.append(Filter(f"{own}~{ALL}", f"{root}.*.{role}.{ALL}.>"))
        return found

    def permissions(self, target: Target) -> dict[str, Any]:
        api, stream = "$JS.API", target.stream
        publish = [f"{api}.INFO"]
        subscribe = []
        for found in self.filters(target.root):
            name = found.consumer
            publish += [
                f"{api}.CONSUMER.CREATE.{stream}.{name}.{found.subjects}",
                f"{api}.CONSUMER.INFO.{stream}.{name}",
                f"{api}.CONSUMER.MSG.NEXT.{stream}.{name}",
                f"{api}.CONSUMER.DELETE.{stream}.{name}",
                f"$JS.ACK.{stream}.{name}.>",
            ]
            subscribe.append(found.subjects)
        subscribe.append(f"{self.inbox}.>")
        return {"publish": {"allow": publish}, "subscribe": {"allow": subscribe}}


def relay_permissions(target: Target) -> dict[str, Any]:
    """The relay's: publish the stream's subjects, make the stream and read its last message."""
    api, stream = "$JS.API", target.stream
    publish = [f"{target.root}.>", f"{api}.INFO"]
    publish += [f"{api}.STREAM.{verb}.{stream}" for verb in ("INFO", "CREATE", "MSG.GET")]
    return {"publish": {"allow": publish}, "subscribe": {"allow": [f"{INBOX}.>"]}}


def parse_agency(text: str) -> AgencyUser:
    """`ROLE:AGENCY_ID`, as the command line takes it."""
    role, colon, agency_id = text.partition(":")
    if not colon or not agency_id:
        raise ValidationError("agency", f"{text!r}: give ROLE:AGENCY_ID, e.g. mission:mission-IDN-00007")
    if role not in {r.value for r in Role}:
        raise ValidationError("agency", f"{text!r}: no role {role!r} (one of {', '.join(r.value for r in Role)})")
    return AgencyUser(agency_id, Role(role))


def registered(ledger: JourneyLedger) -> list[AgencyUser]:
    """The agencies of the registry (`hajj-ledger agency add`) whose key is not revoked."""
    from eventsourcing.postgres import PostgresApplicationRecorder

    recorder: Any = ledger.recorder
    query = "SELECT agency_id, role FROM agencies WHERE revoked_at IS NULL ORDER BY agency_id"
    if isinstance(recorder, PostgresApplicationRecorder):
        from psycopg.rows import tuple_row

        with recorder.datastore.get_connection() as connection:
            rows = connection.cursor(row_factory=tuple_row).execute(query).fetchall()
    else:
        with recorder.datastore.transaction(commit=False) as cursor:
            rows = cursor.sqlite_cursor.execute(query).fetchall()
    return [AgencyUser(agency_id, Role(role)) for agency_id, role in rows]


def configuration(users: dict[str, tuple[str, dict[str, Any]]]) -> str:
    """The server's `authorization` block for users by name, each with its password and permissions."""
    lines = ["# hajj-ledger nats-users: the relay publishes, each agency reads its own subjects.", "authorization {"]
    lines.append("  users = [")
    for name, (password, permissions) in users.items():
        user = {"user": name, "password": password, "permissions": permissions}
        lines.append(f"    {json.dumps(user)}")  # NATS's configuration reads JSON
    lines += ["  ]", "}", ""]
    return "\n".join(lines)


def write_users(
    agencies: Sequence[AgencyUser], target: Target, config: Path, credentials: Path, relay_user: str = RELAY_USER
) -> tuple[list[AgencyUser], list[AgencyUser]]:
    """Write the server's configuration and the users' passwords; the users written and the agencies left out (told
    of no event: an analyst)."""
    users = {agency.agency_id: agency for agency in agencies}
    if relay_user in users:
        raise ValidationError("agency", f"{relay_user!r} is the relay's user: give the relay another (--relay-user)")
    if len(users) < len(agencies):
        raise ValidationError("agency", "an agency is given twice")
    kept = [agency for agency in users.values() if agency.filters(target.root)]
    passwords = _passwords(credentials, [relay_user, *(agency.agency_id for agency in kept)])
    permitted = {relay_user: (passwords[relay_user], relay_permissions(target))}
    permitted |= {a.agency_id: (passwords[a.agency_id], a.permissions(target)) for a in kept}
    _write_secret(config, configuration(permitted))
    left = [agency for agency in users.values() if agency not in kept]
    return kept, left


def _passwords(credentials: Path, names: Iterable[str]) -> dict[str, str]:
    """Each user's password: the one in the credentials file, or a new one (the file is written again)."""
    known: dict[str, str] = json.loads(credentials.read_text())["passwords"] if credentials.exists() else {}
    found = {name: known.get(name) or secrets.token_urlsafe(32) for name in names}
    _write_secret(credentials, json.dumps({"passwords": found}, indent=2) + "\n")
    return found


def _write_secret(path: Path, text: str) -> None:
    """Write `text` to `path`, readable by its owner alone (from its creation: never readable by others)."""
    partial = path.with_name(f".{path.name}.new")
    descriptor = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(descriptor, 0o600)  # a file left by a run that failed keeps the mode it was made with
    with os.fdopen(descriptor, "w") as file:
        file.write(text)
    os.replace(partial, path)
