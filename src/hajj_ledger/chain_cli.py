"""`hajj-ledger seal | checkpoint | verify | proof | signing-key`: the hash chain from the command line."""

from __future__ import annotations

import argparse
import json
import sys
import threading
from pathlib import Path
from typing import Any

from hajj_ledger.chain import CHECKPOINT_EVERY, Chain, Report, signing_keys
from hajj_ledger.leadership import stop_on_signals
from hajj_ledger.ledger import JourneyLedger
from hajj_ledger.signing import KEY_FILE_VARIABLE, PublicKeys, SigningKeyError, SigningKeys
from hajj_ledger.snapshots import verify_export


def register(commands: Any) -> None:
    seal = commands.add_parser(
        "seal", help="extend the hash chain to the head of the log, with signed checkpoints (--follow: keep going)"
    )
    seal.add_argument("--follow", action="store_true", help="keep sealing as the log grows")
    seal.add_argument("--every", type=int, default=CHECKPOINT_EVERY, help="positions between checkpoints")
    seal.add_argument("--seconds", type=float, default=60.0, help="with --follow: a checkpoint at least this often")
    seal.set_defaults(run=_seal)

    checkpoint = commands.add_parser("checkpoint", help="seal to the head and sign a checkpoint there, now")
    checkpoint.set_defaults(run=_checkpoint)

    verify = commands.add_parser(
        "verify", help="re-read the store: check every event against the chain and every checkpoint's signature"
    )
    verify.add_argument("--keys", type=Path, help="the public keys to trust (`signing-key public`); default: own")
    verify.add_argument("--json", action="store_true")
    verify.add_argument("--export", type=Path, metavar="DIR", help="check an analysts' export instead of the store")
    verify.set_defaults(run=_verify)

    proof = commands.add_parser("proof", help="what an auditor needs to check one event offline (JSON)")
    proof.add_argument("position", type=int)
    proof.set_defaults(run=_proof)

    keys = commands.add_parser("signing-key", help="the Ed25519 keys that sign checkpoints")
    actions = keys.add_subparsers(required=True, metavar="ACTION")
    new = actions.add_parser("new", help="make a key file (then point HAJJ_LEDGER_SIGNING_KEY_FILE at it)")
    new.add_argument("file", type=Path)
    new.set_defaults(run=_key_new)
    rotate = actions.add_parser("rotate", help="sign with a new key from now on; old checkpoints stay verifiable")
    rotate.set_defaults(run=_key_rotate)
    public = actions.add_parser("public", help="print the public keys, for auditors (`verify --keys`)")
    public.set_defaults(run=_key_public)


def _seal(args: argparse.Namespace) -> int:
    if args.every < 1:
        raise SigningKeyError(f"--every: must be at least 1, got {args.every}")
    keys = signing_keys(required=False)
    if keys is None:
        print(f"hajj-ledger: no signing key ({KEY_FILE_VARIABLE}): sealing without checkpoints", file=sys.stderr)
    chain = Chain(JourneyLedger(), keys, every=args.every)
    if args.follow:
        stop = threading.Event()
        stop_on_signals(stop)
        chain.follow(stop, args.seconds)
        return 0
    sealed = chain.seal_all()
    latest = chain.checkpoint() if keys is not None else None
    print(f"Sealed {sealed:,} events; latest checkpoint: {json.dumps(latest.to_json()) if latest else 'none'}")
    return 0


def _checkpoint(args: argparse.Namespace) -> int:
    made = Chain(JourneyLedger(), signing_keys(required=True)).checkpoint()
    print(json.dumps(made.to_json() if made else None))
    return 0


def _verify(args: argparse.Namespace) -> int:
    if args.keys:
        public = PublicKeys.read(args.keys)
    else:
        keys = signing_keys(required=True)
        assert keys is not None
        public = keys.public
    if args.export:
        problems = verify_export(args.export, public)
        if args.json:
            print(json.dumps({"ok": not problems, "problems": problems}))
        else:
            print("\n".join(problems) or f"OK: {args.export} is exactly what the ledger held (signed manifest).")
        return 1 if problems else 0
    report = Chain(JourneyLedger()).verify(public)
    if args.json:
        print(json.dumps(report_json(report)))
    else:
        _print_report(report)
    return 0 if report.ok else 1


def report_json(report: Report) -> dict[str, Any]:
    first = report.first
    return {
        "ok": report.ok,
        "sealed_head": report.sealed_head,
        "events": report.events,
        "unsealed": report.unsealed,
        "checkpoints": report.checkpoints,
        "first": None if first is None else vars(first),
        "findings": [vars(f) for f in report.findings[:1000]],
        "findings_total": len(report.findings),
    }


def _print_report(report: Report) -> None:
    print(
        f"Checked {report.events:,} events up to position {report.sealed_head:,} against the chain, "
        f"and {report.checkpoints:,} signed checkpoints; {report.unsealed:,} newer events not sealed yet."
    )
    first = report.first
    if first is None:
        print("OK: the store is exactly what was sealed.")
        return
    print(f"FAILED at position {first.position}: {first.kind}: {first.detail}")
    for finding in report.findings[1:20]:
        print(f"  also at {finding.position}: {finding.kind}: {finding.detail}")
    if len(report.findings) > 20:
        print(f"  ... {len(report.findings) - 20:,} more")


def _proof(args: argparse.Namespace) -> int:
    print(json.dumps(Chain(JourneyLedger(), signing_keys(required=False)).proof(args.position), indent=2))
    return 0


def _key_new(args: argparse.Namespace) -> int:
    if args.file.exists():
        raise SigningKeyError(f"{args.file} exists: not overwritten")
    made = SigningKeys.create(args.file)
    print(f"Made signing key {made.current} in {args.file}; set {KEY_FILE_VARIABLE}={args.file}")
    return 0


def _key_rotate(args: argparse.Namespace) -> int:
    keys = signing_keys(required=True)
    assert keys is not None
    old = keys.current
    new = keys.rotate()
    print(f"Signing with {new} from now on; {old} is retired (its public key is kept for verifying).")
    return 0


def _key_public(args: argparse.Namespace) -> int:
    keys = signing_keys(required=True)
    assert keys is not None
    print(json.dumps(keys.public.to_json(), indent=2))
    return 0
