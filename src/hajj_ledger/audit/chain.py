"""The hash chain over the log, its signed checkpoints, and the check that the store still matches them.

Each event's stored bytes (topic, originator id, version, state) hash to a digest; each position's link hashes
the previous link, the position and that digest, in commit order. A sealer follows the log after the writers (it
never slows them), keeping a digest per position and, every so often and on demand, a checkpoint: the position,
the link there (the head), the time and the key id, signed with Ed25519. An auditor holding only the public keys
can then check the whole store (`verify`) or one event (`proof` plus the script in docs/auditing.md).

The events hold no identity (that lives in the vault), so erasing one never touches what the chain covers.

Here is the service (seal, checkpoint, follow, proof, verify); the digests and links are in `links`, what a
disagreement means in `verification`, and the chain's tables with their SQL for both stores in `chain_sql`.
"""

from __future__ import annotations

import base64
import logging
import sqlite3
import threading
import time
from datetime import UTC, datetime
from typing import Any

import psycopg
from eventsourcing.persistence import InterfaceError, OperationalError

from hajj_ledger.audit.chain_sql import ChainTables
from hajj_ledger.audit.links import FIRST, GENESIS, Checkpoint, checkpoint_message, event_digest, next_link
from hajj_ledger.audit.signing import NoSigningKeyError, PublicKeys, SigningKeyError, SigningKeys
from hajj_ledger.audit.verification import Finding, Report, check_run, conclude, runs
from hajj_ledger.domain.errors import NotFoundError
from hajj_ledger.leadership import LogWatch
from hajj_ledger.ledger import JourneyLedger
from hajj_ledger.store.recorders import DEFAULT_DATABASE_URL, database_url

CHECKPOINT_EVERY = 1_000  # positions between checkpoints: bounds a one-event proof to this many digests
SEAL_BATCH = 20_000
RETRY_SECONDS = 0.1  # the first wait for a store that is away; doubled up to 5 s
log = logging.getLogger("hajj_ledger.chain")


def signing_keys(url: str | None = None, *, required: bool, create: bool = True) -> SigningKeys | None:
    """The configured signing keys (the demo store makes its own, if `create`); None if none is configured and none
    is required. A key file named but unusable is an error either way: nothing is signed by mistake without it."""
    try:
        return SigningKeys.configured(demo=(url or database_url()) == DEFAULT_DATABASE_URL, create=create)
    except NoSigningKeyError:
        if required:
            raise
        return None


class Chain:
    """The sealer, the checkpoints and the verifier, over one ledger's store."""

    def __init__(
        self, ledger: JourneyLedger, keys: SigningKeys | None = None, *, every: int = CHECKPOINT_EVERY
    ) -> None:
        self.keys = keys
        self.every = every
        self.tables = ChainTables(ledger)
        self.tables.create()

    # Sealing.

    def seal(self, limit: int = SEAL_BATCH) -> int:
        """Seal the next events of the log; returns how many (0: caught up). Checkpoints every `every`
        positions when there is a key. Two sealers at once: the second finds the seal moved and seals nothing."""
        position, link = self.tables.seal_state()
        rows = self.tables.events_after(position, limit)
        if not rows:
            return 0
        last = self.tables.last_checkpoint_position()
        digests = []
        checkpoints = []
        for at, originator_id, version, topic, state in rows:
            digest = event_digest(topic, originator_id, version, state)
            link = next_link(link, at, digest)
            digests.append((at, digest))
            if self.keys is not None and at - last >= self.every:
                checkpoints.append(self._sign(at, link))
                last = at
        moved = self.tables.write_seal(position, rows[-1][0], link, digests, checkpoints)
        return len(rows) if moved else 0

    def seal_all(self) -> int:
        sealed = 0
        while step := self.seal():
            sealed += step
        return sealed

    def checkpoint(self) -> Checkpoint | None:
        """Seal up to the head and sign a checkpoint there (on demand); None while the log is empty."""
        if self.keys is None:
            raise SigningKeyError("no signing key: checkpoints cannot be made")
        self.seal_all()
        position, link = self.tables.seal_state()
        if position == 0:
            return None
        latest = self.tables.checkpoint_at_or_after(position)
        if latest is not None:
            return latest
        self.tables.add_checkpoint(self._sign(position, link))
        return self.tables.checkpoint_at_or_after(position)

    def checkpoint_at(self, position: int) -> Checkpoint:
        """A signed checkpoint at a sealed `position` (sealing up to the head first): a season's last event, say."""
        if self.keys is None:
            raise SigningKeyError("no signing key: checkpoints cannot be made")
        self.seal_all()
        sealed, _ = self.tables.seal_state()
        if not 0 < position <= sealed:
            raise NotFoundError(f"position {position} is not sealed (the seal is at {sealed})")
        found = self.tables.checkpoint_at_or_after(position)
        if found is not None and found.position == position:
            return found
        self.tables.add_checkpoint(self._sign(position, self.tables.link_at(position)))
        made = self.tables.checkpoint_at_or_after(position)
        assert made is not None
        return made

    def follow(self, stop: threading.Event, seconds: float = 60.0) -> None:
        """Keep sealing as the log grows, waking when it does (see LogWatch); a checkpoint at least every `seconds`
        while new events arrive."""
        watch = LogWatch(self.tables.ledger, stop)
        signed = time.monotonic()
        delay = RETRY_SECONDS
        try:
            while not stop.is_set():
                try:
                    if self.seal():
                        delay = RETRY_SECONDS
                        watch.found()
                        continue
                    if self.keys is not None and time.monotonic() - signed >= seconds:
                        position, _ = self.tables.seal_state()
                        if position > self.tables.last_checkpoint_position():
                            self.checkpoint()
                        signed = time.monotonic()
                except (OperationalError, InterfaceError, sqlite3.OperationalError, psycopg.OperationalError) as error:
                    # The store is away or locked (SQLite, under a busy writer): wait it out, as the runner does.
                    log.warning("sealer: store unavailable (%s); retrying in %.2fs", type(error).__name__, delay)
                    stop.wait(delay)
                    delay = min(delay * 2, 5.0)
                    continue
                # Woken by new events, or when the next timed checkpoint is due.
                watch.wait(None if self.keys is None else signed + seconds - time.monotonic())
        finally:
            watch.close()

    def _sign(self, position: int, link: bytes) -> Checkpoint:
        assert self.keys is not None
        signed_at = datetime.now(UTC).isoformat(timespec="microseconds")
        key_id, signature = self.keys.sign(checkpoint_message(position, link, signed_at, self.keys.current))
        return Checkpoint(position, link, signed_at, key_id, signature)

    # Reading.

    def checkpoints(self, after: int = FIRST, limit: int | None = None) -> list[Checkpoint]:
        return self.tables.checkpoints(after, limit)

    def proof(self, position: int) -> dict[str, Any]:
        """What an auditor needs to check the event at `position` offline against a signed checkpoint: the event
        as stored, the link before it, the digests after it up to the first checkpoint covering it, and that
        checkpoint. A position not yet covered gets a checkpoint made on demand."""
        event = self.tables.event_at(position)
        if event is None and (season := self.tables.archived_season(position)) is not None:
            raise NotFoundError(
                f"position {position} is in closed season {season}'s archive: ask with --season {season}"
            )
        if event is None:
            raise NotFoundError(f"no event at position {position}")
        covering = self.tables.checkpoint_at_or_after(position)
        if covering is None:
            self.checkpoint()
            covering = self.tables.checkpoint_at_or_after(position)
        if covering is None:
            raise NotFoundError(f"position {position} is not sealed yet")
        before = self.tables.checkpoint_before(position)
        link = before.head if before else GENESIS
        following = []
        for at, digest in self.tables.digests(before.position if before else FIRST, covering.position):
            if at < position:
                link = next_link(link, at, digest)
            elif at > position:
                following.append([at, digest.hex()])
        _, originator_id, version, topic, state = event
        return {
            "position": position,
            "event": {
                "topic": topic,
                "originator_id": originator_id.hex(),
                "originator_version": version,
                "state": base64.b64encode(state).decode(),
            },
            "previous_link": link.hex(),
            "following": following,
            "checkpoint": covering.to_json(),
        }

    # Verifying.

    def verify(self, public: PublicKeys | None) -> Report:
        """Re-read the store and check every event against the chain and every checkpoint against its signature
        (without public keys, the chain alone: no checkpoint is trusted, and the report says how many went unchecked).

        The log is checked in runs between checkpoints, each starting from a checkpoint's head, trusted once its
        signature checks: a run's findings stand on their own."""
        head, _ = self.tables.seal_state()
        checkpoints = self.tables.checkpoints(FIRST, None)
        report = Report(sealed_head=head, checkpoints=len(checkpoints))
        report.last_checkpoint = checkpoints[-1].position if checkpoints else 0
        trusted = []
        if public is None:
            report.unchecked_checkpoints, checkpoints = len(checkpoints), []
        for checkpoint in checkpoints:
            assert public is not None
            why = public.check(checkpoint.key_id, checkpoint.message(), checkpoint.signature)
            if why is None:
                trusted.append(checkpoint)
            else:
                kind = "unknown-key" if why.startswith("signed by unknown") else "signature"
                report.findings.append(Finding(checkpoint.position, kind, f"checkpoint {checkpoint.position}: {why}"))
        low, high = self.tables.bounds()
        found = [
            check_run(self.tables.checked_pages(start, end), link, inside, head)
            for start, end, link, inside in runs(low, max(high, head), trusted)
        ]
        conclude(found, trusted, report)
        return report
