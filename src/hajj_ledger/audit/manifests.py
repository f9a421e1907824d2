"""What makes an analysts' export provable: its manifest, signed by the ledger's key, and the check of it.

The manifest names every file with its SHA-256 and row count, and carries the chain's signed checkpoint covering the
export's position with the digests between. The events files hold each event's chain digest (of the event as
stored, before pseudonymisation), so the export's events chain, from the first position, to the signed head:
`hajj-ledger verify --export DIR` proves the export is exactly what the ledger held, with the public keys alone.
"""

from __future__ import annotations

import base64
import csv
import hashlib
import json
from pathlib import Path
from typing import Any

from hajj_ledger.audit.links import GENESIS, Checkpoint, next_link
from hajj_ledger.audit.signing import PublicKeys, SigningKeys

EVENTS = "events"
MANIFEST = "manifest.json"


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as file:
        while block := file.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def _signed_bytes(manifest: dict[str, Any]) -> bytes:
    unsigned = {k: v for k, v in manifest.items() if k != "signature"}
    return json.dumps(unsigned, sort_keys=True, separators=(",", ":")).encode()


def sign_manifest(manifest: dict[str, Any], keys: SigningKeys | None) -> None:
    """Signed with the current key; names the key file that signed it, whose public keys check it on this machine
    (from any directory: `verify --export` finds them there)."""
    assert keys is not None
    manifest["key_file"] = str(keys.path.absolute())
    key_id, signature = keys.sign(_signed_bytes(manifest))
    manifest["signature"] = {"key_id": key_id, "value": base64.b64encode(signature).decode()}


def manifest_signature_problem(manifest: dict[str, Any], public: PublicKeys) -> str | None:
    """Why the manifest's signature does not check with `public`; None if it does."""
    signature = manifest.get("signature") or {}
    try:
        value = base64.b64decode(signature["value"])
    except (KeyError, TypeError, ValueError):
        return "the manifest is not signed"
    return public.check(str(signature.get("key_id", "?")), _signed_bytes(manifest), value)


def read_manifest(directory: Path) -> dict[str, Any] | None:
    path = directory / MANIFEST
    return json.loads(path.read_text()) if path.exists() else None


def signers(manifest: dict[str, Any]) -> list[str]:
    """The ids of the keys that signed the manifest and the checkpoint it carries."""
    ids = [
        (manifest.get("signature") or {}).get("key_id"),
        manifest.get("chain", {}).get("checkpoint", {}).get("key_id"),
    ]
    return list(dict.fromkeys(str(i) for i in ids if i))


def named_key_file(manifest: dict[str, Any], directory: Path) -> Path | None:
    """The key file the manifest names, where it exists outside the export: a file shipped inside an export proves
    nothing about where it came from."""
    named = manifest.get("key_file")
    if not named or not Path(named).is_file():
        return None
    inside = Path(named).resolve().is_relative_to(directory.resolve())
    return None if inside else Path(named)


def verify_export(directory: Path, public: PublicKeys) -> list[str]:
    """Why the export in `directory` is not exactly what the ledger held; empty if it is."""
    path = directory / MANIFEST
    if not path.exists():
        return [f"{path}: no manifest"]
    manifest: dict[str, Any] = json.loads(path.read_text())
    why = manifest_signature_problem(manifest, public)
    if why is not None:
        return [f"manifest: {why}"]
    problems = []
    for name, table in manifest["tables"].items():
        for entry in table["files"]:
            file = directory / entry["file"]
            if not file.exists():
                problems.append(f"{name}: {entry['file']} is missing")
            elif file_sha256(file) != entry["sha256"]:
                problems.append(f"{name}: {entry['file']} differs from the file exported (SHA-256)")
    if problems:
        return problems
    signed = manifest["chain"]["checkpoint"]
    checkpoint = Checkpoint(
        signed["position"],
        bytes.fromhex(signed["head"]),
        signed["signed_at"],
        signed["key_id"],
        base64.b64decode(signed["signature"]),
    )
    why = public.check(checkpoint.key_id, checkpoint.message(), checkpoint.signature)
    if why is not None:
        return [f"checkpoint {checkpoint.position}: {why}"]
    link, last, count = GENESIS, 0, 0
    for entry in sorted(manifest["tables"][EVENTS]["files"], key=lambda e: e["from"]):
        for position, digest in _digests(directory / entry["file"]):
            if position <= last:
                return [f"{entry['file']}: position {position} out of order"]
            link, last, count = next_link(link, position, digest), position, count + 1
    if last != manifest["position"] or count != manifest["tables"][EVENTS]["rows"]:
        return [f"events: end at {last} with {count:,} rows; the manifest says {manifest['position']}"]
    for position, digest in manifest["chain"]["following"]:
        link = next_link(link, position, bytes.fromhex(digest))
    if link != checkpoint.head:
        return [f"events: they do not chain to the head signed at position {checkpoint.position}"]
    return []


def _digests(path: Path) -> Any:
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        for batch in pq.ParquetFile(path).iter_batches(columns=["position", "digest"], batch_size=65_536):
            yield from zip(batch.column(0).to_pylist(), batch.column(1).to_pylist(), strict=True)
        return
    with path.open(newline="", encoding="utf-8") as file:
        for row in csv.DictReader(file):
            yield int(row["position"]), bytes.fromhex(row["digest"])
