"""The Ed25519 keys that sign the chain's checkpoints.

A key file holds every key the ledger has signed with: the current one with its private half, retired ones with
their public half only, so a rotation never strands an old checkpoint. Auditors are given the public halves
(`hajj-ledger signing-key public`) and check checkpoints with those alone.
"""

from __future__ import annotations

import base64
import json
import secrets
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from hajj_ledger.preflight import SIGNING_KEY_FILE_VARIABLE, invocation
from hajj_ledger.settings import settings

KEY_FILE_VARIABLE = SIGNING_KEY_FILE_VARIABLE
DEMO_KEY_FILE = Path("var/demo-signing-keys.json")


class SigningKeyError(ValueError):
    """No usable signing key, or an unreadable key file."""


class NoSigningKeyError(SigningKeyError):
    """No signing key is configured at all (as opposed to a key file named but unusable)."""


def _new_key_id() -> str:
    """Dated for people, random so that two keys made in the same second never share an id."""
    return f"sig-{datetime.now(UTC):%Y%m%d}-{secrets.token_hex(4)}"


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def public_bytes(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(Encoding.Raw, PublicFormat.Raw)


@dataclass
class PublicKeys:
    """Key id to public key: what an auditor needs to check checkpoints."""

    keys: dict[str, Ed25519PublicKey] = field(default_factory=dict)

    def check(self, key_id: str, message: bytes, signature: bytes) -> str | None:
        """None if `signature` is `key_id`'s signature of `message`; otherwise why not."""
        key = self.keys.get(key_id)
        if key is None:
            return f"signed by unknown key {key_id!r}"
        try:
            key.verify(signature, message)
        except InvalidSignature:
            return f"signature does not verify with key {key_id!r}"
        return None

    def to_json(self) -> dict[str, Any]:
        return {"keys": {key_id: _b64(public_bytes(key)) for key_id, key in self.keys.items()}}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> PublicKeys:
        try:
            return cls({k: Ed25519PublicKey.from_public_bytes(base64.b64decode(v)) for k, v in data["keys"].items()})
        except (KeyError, TypeError, ValueError, AttributeError) as error:
            raise SigningKeyError(f"public keys: expected {{'keys': {{KEY_ID: base64}}}} ({error})") from None

    @classmethod
    def read(cls, path: str | Path) -> PublicKeys:
        try:
            return cls.from_json(json.loads(Path(path).read_text()))
        except FileNotFoundError:
            raise SigningKeyError(
                f"no public keys file {Path(path).absolute()}: `{invocation()} signing-key public > FILE` where the "
                "ledger runs (or GET /v1/audit/keys) gives them"
            ) from None
        except (OSError, json.JSONDecodeError) as error:
            raise SigningKeyError(f"public keys: cannot read {path}: {error}") from None


@dataclass
class SigningKeys:
    """The key file: the current private key and every public key ever used."""

    path: Path
    current: str
    private: Ed25519PrivateKey
    public: PublicKeys

    def sign(self, message: bytes) -> tuple[str, bytes]:
        return self.current, self.private.sign(message)

    @classmethod
    def create(cls, path: Path) -> SigningKeys:
        key_id = _new_key_id()
        private = Ed25519PrivateKey.generate()
        keys = cls(path, key_id, private, PublicKeys({key_id: private.public_key()}))
        keys.write()
        return keys

    def rotate(self) -> str:
        """A new current key; the old private key is dropped from the file, its public key kept."""
        key_id = _new_key_id()
        self.private = Ed25519PrivateKey.generate()
        self.current = key_id
        self.public.keys[key_id] = self.private.public_key()
        self.write()
        return key_id

    def write(self) -> None:
        raw = self.private.private_bytes_raw()
        data = {"current": self.current, "private": _b64(raw), **self.public.to_json()}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        temporary = self.path.with_suffix(".tmp")
        temporary.write_text(json.dumps(data, indent=2) + "\n")
        temporary.chmod(0o600)
        temporary.replace(self.path)  # never a half-written key file

    @classmethod
    def read(cls, path: Path) -> SigningKeys:
        try:
            data = json.loads(path.read_text())
            private = Ed25519PrivateKey.from_private_bytes(base64.b64decode(data["private"]))
            public = PublicKeys.from_json(data)
            current = data["current"]
        except FileNotFoundError:
            raise SigningKeyError(
                f"no signing key file {path.absolute()} ({KEY_FILE_VARIABLE}): make one with `{invocation()} "
                f"signing-key new {path}`, or set {KEY_FILE_VARIABLE} to the ledger's key file"
            ) from None
        except (OSError, json.JSONDecodeError, KeyError, TypeError, ValueError) as error:
            raise SigningKeyError(
                f"{KEY_FILE_VARIABLE}: {path} is not a usable signing key file ({error}); "
                f"`{invocation()} signing-key new FILE` makes one"
            ) from None
        if public_bytes(public.keys.get(current) or private.public_key()) != public_bytes(private.public_key()):
            raise SigningKeyError(f"{path}: the current key {current!r} does not match its private key")
        public.keys.setdefault(current, private.public_key())
        return cls(path, current, private, public)

    @classmethod
    def configured(cls, *, demo: bool, create: bool = True) -> SigningKeys:
        """From the file HAJJ_LEDGER_SIGNING_KEY_FILE names; the demo store alone gets one made on first use (unless
        not `create`: what only checks signatures never makes a key)."""
        named = settings().signing_key_file
        if named is not None:
            return cls.read(named)
        if demo and (create or DEMO_KEY_FILE.exists()):
            return cls.read(DEMO_KEY_FILE) if DEMO_KEY_FILE.exists() else cls.create(DEMO_KEY_FILE)
        raise NoSigningKeyError(
            f"no signing key: set {KEY_FILE_VARIABLE} to a key file (`{invocation()} signing-key new FILE` makes one)"
        )
