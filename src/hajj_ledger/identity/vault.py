"""The identity vault: who a pilgrim is, kept apart from the ledger's events and encrypted with a key of its own.

Each identity is encrypted (AES-GCM) with a data key of that pilgrim's own; the data key is stored wrapped by a
master key given by configuration. Destroying the vault row destroys the data key, and with it the identity,
while every event, which holds no identity, stays as it was ("crypto-shredding"). A passport is found through a
blind index: a keyed hash of the normalised number and issuing country, so lookups never decrypt the vault; a
name through keyed hashes of its spelling keys (see spelling.py), keyed also by the mission that registered the
pilgrim, so a search can only ever find that mission's own pilgrims.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from uuid import UUID

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from hajj_ledger.domain.command_base import Identity
from hajj_ledger.domain.documents import passport_number
from hajj_ledger.domain.errors import LedgerError
from hajj_ledger.identity.spelling import name_keys
from hajj_ledger.settings import settings, variable_for

KEYS_VARIABLE = variable_for("master_keys")
KEY_FILE_VARIABLE = variable_for("master_key_file")
DEMO_KEY_FILE = Path("var/master.keys")

ONCE = bytes(12)  # the nonce of a key used once


class VaultKeyError(LedgerError):
    """The master key is missing, malformed, or not the one that wrapped a data key."""

    kind = "vault_key"


@dataclass(frozen=True)
class Sealed:
    """One identity as stored: nothing in it is readable without the master key."""

    journey_id: UUID
    key_id: str
    wrapped_key: bytes  # the data key, encrypted with master key `key_id`
    ciphertext: bytes  # the identity, encrypted with the data key
    passport_index: bytes  # blind index of passport number and issuing country
    scope: str  # the mission whose pilgrim this is: name searches run inside it
    name_index: tuple[bytes, ...]  # blind index of the names' spelling keys, within the scope

    @property
    def fingerprint(self) -> str:
        """What an event may say of an identity: a keyed hash of its ciphertext, nothing of its content. AES-GCM's
        tag is exactly that (a MAC of the ciphertext under the pilgrim's data key), so it is used as it is."""
        return self.ciphertext[-16:].hex()


@dataclass(frozen=True)
class MasterKeys:
    """Master keys by id; the first is current: new data keys are wrapped with it, older ones still open."""

    keys: dict[str, bytes]
    current: str

    @classmethod
    def parse(cls, text: str) -> MasterKeys:
        keys: dict[str, bytes] = {}
        order = []
        for part in text.replace("\n", ",").split(","):
            if not part.strip():
                continue
            key_id, _, encoded = part.strip().partition(":")
            try:
                key = base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4))
            except ValueError:
                key = b""
            if not key_id or len(key) != 32:
                raise VaultKeyError(f"master key {key_id or '?'!r}: expected KEY_ID:base64 of 32 bytes")
            keys[key_id] = key
            order.append(key_id)
        if not keys:
            raise VaultKeyError("no master key given")
        return cls(keys, order[0])

    @classmethod
    def configured(cls, *, demo: bool) -> MasterKeys:
        """From HAJJ_LEDGER_MASTER_KEYS or the file HAJJ_LEDGER_MASTER_KEY_FILE names; the demo store alone
        gets a key file of its own made on first use."""
        given = settings()
        if given.master_keys is not None:
            return cls.parse(given.master_keys.get_secret_value())
        path = given.master_key_file
        if path is not None:
            try:
                return cls.parse(path.read_text())
            except OSError as error:
                raise VaultKeyError(f"{KEY_FILE_VARIABLE}: cannot read {path}: {error.strerror}") from None
        if demo:
            if not DEMO_KEY_FILE.exists():
                DEMO_KEY_FILE.parent.mkdir(parents=True, exist_ok=True)
                DEMO_KEY_FILE.write_text(f"demo-1:{generate_key()}\n")
                DEMO_KEY_FILE.chmod(0o600)
            return cls.parse(DEMO_KEY_FILE.read_text())
        raise VaultKeyError(
            f"no master key: set {KEYS_VARIABLE} (KEY_ID:base64 of 32 bytes, the current one first) "
            f"or {KEY_FILE_VARIABLE}"
        )

    @cached_property
    def _current_cipher(self) -> AESGCM:
        return AESGCM(self.keys[self.current])

    @cached_property
    def _index_hmac(self) -> _HMAC:
        return _HMAC(hmac.new(self.keys[self.current], b"passport index", hashlib.sha256).digest())

    @cached_property
    def _name_hmac(self) -> _HMAC:
        return _HMAC(hmac.new(self.keys[self.current], b"name index", hashlib.sha256).digest())

    def seal(self, journey_id: UUID, identity: Identity, scope: str) -> Sealed:
        data_key = os.urandom(32)
        # A data key encrypts exactly one identity (a correction gets a new key), so its nonce may be constant.
        plain = identity.model_dump_json().encode()
        ciphertext = ONCE + AESGCM(data_key).encrypt(ONCE, plain, journey_id.bytes)
        return self._sealed(journey_id, data_key, ciphertext, identity, scope)

    def _sealed(self, journey_id: UUID, data_key: bytes, ciphertext: bytes, identity: Identity, scope: str) -> Sealed:
        nonce = os.urandom(12)  # the master key wraps many data keys: a fresh nonce each time
        wrapped = nonce + self._current_cipher.encrypt(nonce, data_key, journey_id.bytes + self.current.encode())
        passport = self.passport_index(identity.passport_number, identity.passport_country)
        names = self._names_index(scope, identity.name_arabic) | self._names_index(scope, identity.name_latin)
        return Sealed(journey_id, self.current, wrapped, ciphertext, passport, scope, tuple(sorted(names)))

    def open(self, sealed: Sealed) -> Identity:
        return self._opened(sealed)[1]

    def _opened(self, sealed: Sealed) -> tuple[bytes, Identity]:
        """The data key and the identity it encrypts, or a VaultKeyError saying which key failed."""
        master = self.keys.get(sealed.key_id)
        if master is None:
            raise VaultKeyError(f"identity of journey {sealed.journey_id} is wrapped by unknown key {sealed.key_id!r}")
        try:
            data_key = _decrypt(master, sealed.wrapped_key, sealed.journey_id.bytes + sealed.key_id.encode())
            plain = _decrypt(data_key, sealed.ciphertext, sealed.journey_id.bytes)
        except InvalidTag:
            raise VaultKeyError(
                f"master key {sealed.key_id!r} does not open the identity of journey {sealed.journey_id}"
            ) from None
        return data_key, Identity.model_validate_json(plain)

    def rewrap(self, sealed: Sealed) -> Sealed:
        """The same data key under the current master key; the encrypted identity is not touched."""
        data_key, identity = self._opened(sealed)
        return self._sealed(sealed.journey_id, data_key, sealed.ciphertext, identity, sealed.scope)

    def passport_index(self, number: str, country: str) -> bytes:
        normalised = f"{passport_number(number)}|{country.upper()}"
        return self._index_hmac.digest(normalised.encode())

    def name_index(self, scope: str, keys: set[str]) -> tuple[bytes, ...]:
        """Blind index entries of spelling keys: 8 bytes each, distinct per scope (no linking across missions)."""
        return tuple(sorted(self._name_entry(scope, key) for key in keys))

    def _names_index(self, scope: str, name: str) -> frozenset[bytes]:
        """The index entries of one whole name within a scope. Whole names repeat within a mission too (a season's
        pilgrims share a few thousand names): each is worked out once, which was a third of a registration's
        sealing (bench/NOTES.md, issue 29)."""
        cached = self._names_indexes
        entries = cached.get((scope, name))
        if entries is None:
            if len(cached) > 200_000:
                cached.clear()
            entries = cached[scope, name] = frozenset(self._name_entry(scope, key) for key in name_keys(name))
        return entries

    @cached_property
    def _names_indexes(self) -> dict[tuple[str, str], frozenset[bytes]]:
        return {}

    def _name_entry(self, scope: str, key: str) -> bytes:
        entries = self._name_entries
        entry = entries.get((scope, key))
        if entry is None:
            if len(entries) > 200_000:
                entries.clear()
            entry = entries[scope, key] = self._name_hmac.digest(f"{scope}\x00{key}".encode())[:8]
        return entry

    @cached_property
    def _name_entries(self) -> dict[tuple[str, str], bytes]:
        return {}  # a mission's pilgrims share names: each entry is computed once


class _HMAC:
    """HMAC-SHA256 under one key, its padded key hashed once: `hmac.digest` sets the key up on every call, which
    cost twice the hashing of a short message (a blind index entry)."""

    def __init__(self, key: bytes) -> None:
        padded = key.ljust(64, b"\0")  # SHA-256's block; the keys here are 32 bytes, never longer than a block
        self._inner = hashlib.sha256(bytes(b ^ 0x36 for b in padded))
        self._outer = hashlib.sha256(bytes(b ^ 0x5C for b in padded))

    def digest(self, message: bytes) -> bytes:
        inner = self._inner.copy()
        inner.update(message)
        outer = self._outer.copy()
        outer.update(inner.digest())
        return outer.digest()


def generate_key() -> str:
    return base64.urlsafe_b64encode(AESGCM.generate_key(bit_length=256)).decode().rstrip("=")


def _decrypt(key: bytes, sealed: bytes, associated: bytes) -> bytes:
    return AESGCM(key).decrypt(sealed[:12], sealed[12:], associated)
