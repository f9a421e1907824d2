"""Agencies and their API keys: created by `hajj-ledger agency add`, stored hashed, compared in constant time.

A key reads `hl_<key id>_<secret>`: the key id finds the row, the SHA-256 of the whole key must equal the stored
hash (the secret is 256 random bits, so a fast hash is enough: nothing to brute-force). The key itself is printed
once and never stored.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
import secrets
import threading
from collections.abc import Callable, Collection, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime

import sqlalchemy as sa
from cachetools import TTLCache
from sqlalchemy.engine import Connection, Engine

from hajj_ledger.domain.catalogue import SCOPE, mission_country
from hajj_ledger.domain.errors import ConflictError, NotFoundError, ValidationError
from hajj_ledger.domain.vocabulary import Actor, Role
from hajj_ledger.settings import settings, variable_for

agencies = sa.Table(
    "agencies",
    sa.MetaData(),
    sa.Column("agency_id", sa.String(64), primary_key=True),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("role", sa.String(16), nullable=False),
    sa.Column("key_id", sa.String(16), nullable=False, unique=True),
    sa.Column("key_hash", sa.LargeBinary(32), nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("revoked_at", sa.DateTime(timezone=True)),
)
RECHECK_VARIABLE = variable_for("key_recheck")  # seconds between the looks at open answers' keys
REVOKED = "the key was revoked"
KEY = re.compile(r"^hl_([0-9a-f]{12})_[A-Za-z0-9_-]{43}$")
AGENCY_ID = re.compile(r"^[a-z][a-z0-9-]{1,63}$", re.IGNORECASE)
log = logging.getLogger("hajj_ledger.api")


@dataclass(frozen=True)
class Agency:
    agency_id: str
    name: str
    role: Role

    @property
    def actor(self) -> Actor:
        return Actor(self.agency_id, self.role)


def add(connection: Connection, role: Role, name: str, scope: str | None = None) -> tuple[Agency, str]:
    """A new agency and its key (returned once). For a mission or a company, `scope` is the id its journeys carry
    (a mission's registrations, a company's contracts); otherwise the id is made from the role and the name."""
    name = name.strip()
    if not name:
        raise ValidationError("name", "must not be empty")
    agency_id = scope or f"{role.replace('_', '-')}-{re.sub(r'[^a-z0-9]+', '-', name.lower()).strip('-')}"[:64]
    if not AGENCY_ID.match(agency_id):
        raise ValidationError("scope", f"{agency_id!r}: letters, digits and dashes, starting with a letter")
    if scope is not None and role not in SCOPE:
        raise ValidationError("scope", f"role {role} reads across agencies and takes no scope")
    if role == Role.MISSION and mission_country(agency_id) is None:
        raise ValidationError("scope", f"{agency_id!r}: a mission's scope names its country, e.g. mission-IDN-00007")
    key_id = secrets.token_hex(6)
    key = f"hl_{key_id}_{secrets.token_urlsafe(32)}"
    if connection.execute(sa.select(agencies.c.agency_id).where(agencies.c.agency_id == agency_id)).first():
        raise ConflictError(f"agency {agency_id} exists already")
    connection.execute(
        agencies.insert().values(
            agency_id=agency_id, name=name, role=str(role), key_id=key_id, key_hash=_hash(key),
            created_at=datetime.now(UTC),
        )
    )  # fmt: skip
    return Agency(agency_id, name, role), key


def revoke(connection: Connection, agency_id: str) -> None:
    done = connection.execute(
        agencies.update()
        .where(agencies.c.agency_id == agency_id, agencies.c.revoked_at.is_(None))
        .values(revoked_at=datetime.now(UTC))
    )
    if done.rowcount != 1:
        raise NotFoundError(f"no active agency {agency_id}")


def listed(connection: Connection) -> list[dict[str, object]]:
    columns = [c for c in agencies.c if c.name != "key_hash"]
    return [dict(r) for r in connection.execute(sa.select(*columns).order_by(agencies.c.agency_id)).mappings()]


class Keys:
    """Who a key belongs to; answers are kept a few seconds, so a revocation takes effect within that time."""

    TTL = 5.0

    def __init__(self, engine: Engine, ttl: float = TTL) -> None:
        self.engine = engine
        self._known: TTLCache[bytes, Agency | None] = TTLCache(maxsize=10_000, ttl=ttl)
        self._lock = threading.Lock()  # the cache is changed as it is read (expired answers go)

    def agency(self, key: str) -> Agency | None:
        digest = _hash(key)
        with self._lock:
            if digest in self._known:
                return self._known[digest]
        agency = self._look_up(key, digest)
        with self._lock:
            self._known[digest] = agency
        return agency

    def cached(self, key: str) -> Agency | None:
        """The agency of a key known from a recent look-up; None when it is not in the cache (nothing is read)."""
        with self._lock:
            return self._known.get(_hash(key))

    def _look_up(self, key: str, digest: bytes) -> Agency | None:
        match = KEY.match(key)
        if match is None:
            return None
        with self.engine.connect() as connection:
            row = connection.execute(sa.select(agencies).where(agencies.c.key_id == match.group(1))).mappings().first()
        if row is None or row["revoked_at"] is not None or not hmac.compare_digest(bytes(row["key_hash"]), digest):
            return None
        return Agency(row["agency_id"], row["name"], Role(row["role"]))


@dataclass(eq=False)
class Watched:
    """A long-lived answer's hold on its agency's key: `revoked` once the watch finds the key revoked."""

    agency_id: str
    wake: Callable[[], object]  # called (in the watch's thread) once the key is found revoked
    revoked: bool = False


class Revocations:
    """Whether the keys of the long-lived answers (a feed's stream, a wait for `min_position`) still stand, for the
    whole process: while any is open, a thread looks in the store itself (past the key cache: a revocation reaches
    the cache only when its answer expires), in one query for them all, every `every` seconds, so that each ends
    within that time of `hajj-ledger agency revoke`; with none open, nothing is looked at."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.every = settings().key_recheck
        self.open: dict[str, set[Watched]] = {}  # the answers open, by agency
        self._lock = threading.Lock()
        self._looking: threading.Thread | None = None
        self._stop = threading.Event()

    @contextmanager
    def watching(self, agency: Agency, wake: Callable[[], object] = lambda: None) -> Iterator[Watched]:
        watched = Watched(agency.agency_id, wake)
        with self._lock:
            self.open.setdefault(watched.agency_id, set()).add(watched)
            if self._looking is None:
                self._looking = threading.Thread(target=self._look_on, name="key watch", daemon=True)
                self._looking.start()
        try:
            yield watched
        finally:
            with self._lock:
                others = self.open[watched.agency_id]
                others.discard(watched)
                if not others:
                    del self.open[watched.agency_id]

    def close(self) -> None:
        self._stop.set()
        with self._lock:
            looking = self._looking
        if looking is not None:
            looking.join(10)

    def revoked(self, agency_ids: Collection[str]) -> set[str]:
        """Those of the agencies whose key is revoked (or that are gone)."""
        standing = sa.select(agencies.c.agency_id).where(
            agencies.c.agency_id.in_(agency_ids), agencies.c.revoked_at.is_(None)
        )
        with self.engine.connect() as connection:
            return set(agency_ids) - set(connection.scalars(standing))

    def _look_on(self) -> None:
        while not self._stop.wait(self.every):
            with self._lock:
                if not self.open:  # ends; the next answer opened starts another
                    self._looking = None
                    return
                agency_ids = list(self.open)
            try:
                revoked = self.revoked(agency_ids)
            except Exception:  # the database away: no event comes meanwhile either, and the answers go on
                log.warning(
                    "could not look at the open answers' keys; looking again in %.0f s", self.every, exc_info=True
                )
                continue
            with self._lock:
                ending = [watched for agency_id in revoked for watched in self.open.get(agency_id, ())]
            for watched in ending:
                watched.revoked = True
                watched.wake()


def _hash(key: str) -> bytes:
    return hashlib.sha256(key.encode()).digest()
