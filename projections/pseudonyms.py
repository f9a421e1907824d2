"""Pseudonyms for exports: every pilgrim, journey, command and correlation id is replaced by a keyed hash (BLAKE2b
keyed with the export key, shaped as a UUID), so exports made with one key join with each other and with nothing
else; the identity digest a registration carries is dropped. Events carry no identity, and read models none either.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import typing
from functools import cache
from pathlib import Path
from typing import Any
from uuid import UUID

import numpy as np
import orjson
import pyarrow as pa
from eventsourcing.utils import resolve_topic

from hajj_ledger.domain.errors import ValidationError
from hajj_ledger.settings import settings, variable_for
from hajj_ledger.store.recorders import DEFAULT_DATABASE_URL

KEY_VARIABLE = variable_for("export_key")  # base64 of 32 bytes: the key pseudonyms are made with


DEMO_KEY_FILE = Path("var/demo-export-key")


# Ids that name no person: kept as they are.
KEPT_UUIDS = frozenset({"trip_id", "offer_id", "contract_id", "building_id", "building_ids", "season_id"})


class Pseudonyms:
    """An id to a keyed hash of it (BLAKE2b keyed with the export key, 16 bytes, written as a UUID): the same id
    gives the same pseudonym under one key, and nothing without the key leads back."""

    def __init__(self, key: bytes) -> None:
        self.key = key
        self.key_id = hashlib.sha256(b"hajj-ledger export key id" + key).hexdigest()[:16]
        self._made: dict[str, str] = {}

    def __call__(self, value: str) -> str:
        """For ids that recur (journeys, pilgrims): remembered, up to a bound, so memory stays flat."""
        found = self._made.get(value)
        if found is None:
            if len(self._made) >= 200_000:
                self._made.clear()
            found = self._made[value] = self.once(value)
        return found

    def once(self, value: str) -> str:
        """For ids seen once (commands): not remembered. `value` is a UUID as the ledger writes it (canonical)."""
        return uuid_text(hashlib.blake2b(value.encode(), key=self.key, digest_size=16).hexdigest())

    def many(self, texts: np.ndarray) -> np.ndarray:
        """`once` of each row of `texts`, UUIDs as text (n x 36 bytes): their pseudonyms, as text, n x 36 bytes. Each
        distinct id is hashed once (a journey's recur in a page)."""
        distinct, inverse = np.unique(np.ascontiguousarray(texts).view("V36").ravel(), return_inverse=True)
        return self.each(distinct.view(np.uint8).reshape(-1, 36))[inverse.ravel()]

    def each(self, texts: np.ndarray) -> np.ndarray:
        """`many` without looking for repeats: for ids each seen once (commands')."""
        flat, keyed = np.ascontiguousarray(texts).tobytes(), hashlib.blake2b(key=self.key, digest_size=16).copy
        digests = []
        for start in range(0, len(flat), 36):
            digest = keyed()  # a copy of the keyed state: cheaper than keying anew
            digest.update(flat[start : start + 36])
            digests.append(digest.digest())
        return uuid_texts(np.frombuffer(b"".join(digests), np.uint8).reshape(-1, 16))

    @classmethod
    def configured(cls, url: str) -> Pseudonyms:
        import base64

        given = settings().export_key
        text = given.get_secret_value() if given is not None else None
        if not text and url == DEFAULT_DATABASE_URL:
            if not DEMO_KEY_FILE.exists():
                DEMO_KEY_FILE.parent.mkdir(parents=True, exist_ok=True)
                DEMO_KEY_FILE.write_text(base64.b64encode(os.urandom(32)).decode() + "\n")
                DEMO_KEY_FILE.chmod(0o600)
            text = DEMO_KEY_FILE.read_text()
        if not text:
            raise ValidationError(KEY_VARIABLE, "no export key: set it to base64 of 32 random bytes")
        try:
            key = base64.b64decode(text.strip(), validate=True)
        except ValueError:
            key = b""
        if len(key) != 32:
            raise ValidationError(KEY_VARIABLE, "expected base64 of 32 bytes")
        return cls(key)


def uuid_text(h: str) -> str:
    """32 hex digits in a UUID's canonical spelling."""
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


_HEX = np.frombuffer(b"0123456789abcdef", np.uint8)


_HYPHENS = np.array([8, 13, 18, 23])


_DIGITS = np.array([i for i in range(36) if i not in (8, 13, 18, 23)])


def uuid_texts(raw: np.ndarray) -> np.ndarray:
    """UUIDs' 16 bytes (n x 16) in their canonical spelling (n x 36 bytes of text)."""
    digits = np.empty((raw.shape[0], 32), np.uint8)
    digits[:, 0::2] = _HEX[raw >> 4]
    digits[:, 1::2] = _HEX[raw & 15]
    texts = np.full((raw.shape[0], 36), ord("-"), np.uint8)
    texts[:, _DIGITS] = digits
    return texts


def is_uuid_text(texts: np.ndarray) -> bool:
    """Whether every row (n x 36 bytes) is a UUID as the ledger writes one: lower-case hex digits and hyphens."""
    digits = texts[:, _DIGITS]
    hexadecimal = ((digits >= ord("0")) & (digits <= ord("9"))) | ((digits >= ord("a")) & (digits <= ord("f")))
    return bool(hexadecimal.all() and (texts[:, _HYPHENS] == ord("-")).all())


def fixed_texts(texts: np.ndarray) -> pa.Array:
    """Rows of n x 36 bytes of text as a string array, without a Python object a row."""
    count = texts.shape[0]
    offsets = np.arange(0, 36 * count + 1, 36, dtype=np.int32)
    return pa.Array.from_buffers(pa.string(), count, [None, pa.py_buffer(offsets), pa.py_buffer(texts.tobytes())])


@cache
def uuid_fields(topic: str) -> tuple[tuple[str, ...], bool]:
    """The UUID-valued fields of an event class that name a person or a command, and whether it has a stamp."""
    cls = resolve_topic(topic)
    hints = typing.get_type_hints(cls)
    names = []
    for field in dataclasses.fields(cls):
        hint = hints[field.name]
        if field.name not in KEPT_UUIDS and (hint is UUID or UUID in typing.get_args(hint)):
            names.append(field.name)
    return tuple(n for n in names if n != "originator_id"), "stamp" in hints


def pseudonymise_state(topic: str, state: bytes, pseudonyms: Pseudonyms) -> dict[str, Any]:
    data: dict[str, Any] = orjson.loads(state)
    names, stamped = uuid_fields(topic)
    for name in names:
        if data.get(name):
            data[name] = pseudonyms(data[name])
    if stamped:
        stamp = data["stamp"]
        for name in ("command_id", "correlation_id"):
            if stamp.get(name):
                stamp[name] = pseudonyms.once(stamp[name])
    if "identity_digest" in data:
        data["identity_digest"] = None  # a keyed hash of the vault's ciphertext: a link back to the vault
    return data
