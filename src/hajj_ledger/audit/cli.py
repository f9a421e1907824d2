"""`hajj-ledger seal | checkpoint | verify | proof | signing-key`: the hash chain from the command line."""

from __future__ import annotations

import argparse
import json
import sys
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hajj_ledger import preflight
from hajj_ledger.preflight import READ, WRITE, SetupError
from hajj_ledger.preflight import SIGNING_KEY_FILE_VARIABLE as KEY_FILE_VARIABLE
from hajj_ledger.settings import settings

if TYPE_CHECKING:
    from hajj_ledger.audit.signing import PublicKeys
    from hajj_ledger.audit.verification import Report

# `verify`'s exit statuses (2: cannot run as configured): 0 only for what was checked whole.
VERIFIED, TAMPERED, NOT_SEALED, NOT_SIGNED, NO_CHECKPOINT = 0, 1, 3, 4, 5
GRACE_SECONDS = 300  # events younger than this may wait for the sealer; older unsealed ones fail `verify`


def register(commands: Any) -> None:
    seal = commands.add_parser(
        "seal", help="extend the hash chain to the head of the log, with signed checkpoints (--follow: keep going)"
    )
    seal.add_argument("--follow", action="store_true", help="keep sealing as the log grows")
    seal.add_argument("--every", type=int, help="positions between checkpoints (default 1,000)")
    seal.add_argument("--seconds", type=float, default=60.0, help="with --follow: a checkpoint at least this often")
    seal.set_defaults(run=_seal, store=WRITE, needs=(named_signing_key,))

    checkpoint = commands.add_parser("checkpoint", help="seal to the head and sign a checkpoint there, now")
    checkpoint.set_defaults(run=_checkpoint, store=WRITE, needs=(signing_key,))

    checks = (
        "re-read the store (or an export): check every event against the chain and every checkpoint's signature; "
        f"exit {VERIFIED} all checked and intact, {TAMPERED} altered, 2 cannot run as configured, {NOT_SEALED} events "
        f"older than the grace period not sealed (or none sealed), {NOT_SIGNED} signatures not checked: no public "
        f"key, or not the signer's, {NO_CHECKPOINT} no signed checkpoint vouches for the chain"
    )
    verify = commands.add_parser("verify", help=checks, description=checks)
    verify.add_argument(
        "--keys", type=Path, metavar="FILE",
        help="the public keys to trust, as `signing-key public` prints them (- for stdin); default: the signing "
        f"key file's ({KEY_FILE_VARIABLE}), else for an export the key file it names, else the demo store's",
    )  # fmt: skip
    verify.add_argument(
        "--grace", type=float, default=GRACE_SECONDS, metavar="SECONDS",
        help=f"how long a new event may wait for the sealer (default {GRACE_SECONDS})",
    )  # fmt: skip
    verify.add_argument("--json", action="store_true")
    verify.add_argument("--export", type=Path, metavar="DIR", help="check an analysts' export instead of the store")
    verify.add_argument("--season", type=int, help="with --archived: the closed season")
    verify.add_argument("--archived", action="store_true", help="check the closed season --season's archive")
    verify.set_defaults(run=_verify, verifies=True)

    proof = commands.add_parser("proof", help="what an auditor needs to check one event offline (JSON)")
    proof.add_argument("position", type=int)
    proof.add_argument("--season", type=int, help="with --archived: the closed season holding the position")
    proof.add_argument("--archived", action="store_true", help="from the closed season --season's archive")
    proof.set_defaults(run=_proof, store=READ)

    keys = commands.add_parser("signing-key", help="the Ed25519 keys that sign checkpoints")
    actions = keys.add_subparsers(required=True, metavar="ACTION")
    new = actions.add_parser("new", help="make a key file (then point HAJJ_LEDGER_SIGNING_KEY_FILE at it)")
    new.add_argument("file", type=Path)
    new.set_defaults(run=_key_new)
    rotate = actions.add_parser("rotate", help="sign with a new key from now on; old checkpoints stay verifiable")
    rotate.set_defaults(run=_key_rotate, needs=(signing_key,))
    public = actions.add_parser("public", help="print the public keys, for auditors (`verify --keys`)")
    public.set_defaults(run=_key_public, needs=(signing_key,))

    master = commands.add_parser("master-key", help="the identity vault's master keys")
    master_actions = master.add_subparsers(required=True, metavar="ACTION")
    made = master_actions.add_parser(
        "new", help="make a master key file (then point HAJJ_LEDGER_MASTER_KEY_FILE at it); with an existing "
        "file, a new current key before the others (then `identity rotate-key`)",
    )  # fmt: skip
    made.add_argument("file", type=Path)
    made.set_defaults(run=_master_key_new)


def signing_key(url: str) -> None:
    """The keys that sign the chain's checkpoints, for the commands that sign."""
    _usable_signing_key(url, required=True)


def named_signing_key(url: str) -> None:
    """The signing key file, when one is named (or the demo store's), for the commands that sign when they can: a
    server or a sealer stops at once for a file it cannot use, rather than sign nothing for want of it."""
    _usable_signing_key(url, required=False)


def _usable_signing_key(url: str, *, required: bool) -> None:
    from hajj_ledger.audit.chain import signing_keys
    from hajj_ledger.audit.signing import SigningKeyError

    try:
        signing_keys(url, required=required)
    except SigningKeyError as error:
        raise SetupError(str(error)) from None


def _seal(args: argparse.Namespace) -> int:
    from hajj_ledger.audit.chain import CHECKPOINT_EVERY, Chain, signing_keys
    from hajj_ledger.audit.signing import SigningKeyError
    from hajj_ledger.leadership import stop_on_signals
    from hajj_ledger.ledger import JourneyLedger

    args.every = CHECKPOINT_EVERY if args.every is None else args.every
    if args.every < 1:
        raise SigningKeyError(f"--every: must be at least 1, got {args.every}")
    keys = signing_keys(required=False)
    if keys is None:
        print(f"hajj-ledger: no signing key ({KEY_FILE_VARIABLE}): sealing without checkpoints", file=sys.stderr)
    with JourneyLedger() as ledger:
        chain = Chain(ledger, keys, every=args.every)
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
    from hajj_ledger.audit.chain import Chain, signing_keys
    from hajj_ledger.ledger import JourneyLedger

    with JourneyLedger() as ledger:
        made = Chain(ledger, signing_keys(required=True)).checkpoint()
    print(json.dumps(made.to_json() if made else None))
    return 0


def _verify(args: argparse.Namespace) -> int:
    from hajj_ledger.audit.chain import Chain

    if args.export:
        return _verify_export(args)
    public, _ = _public_keys(args.keys)
    preflight.check(READ)
    from hajj_ledger.ledger import JourneyLedger

    ledger = JourneyLedger(create_tables=False)
    try:
        report = Chain(ledger).verify(public)
        overdue = _overdue(ledger, report.sealed_head, args.grace)
    finally:
        ledger.close()
    code = _verdict(report, overdue)
    if args.json:
        print(json.dumps({**report_json(report), "overdue": overdue, "exit": code}))
    else:
        _print_report(report, overdue, args.grace)
    return code


def _public_keys(given: Path | None, named: Path | None = None) -> tuple[PublicKeys | None, str]:
    """The public keys `verify` trusts, and where they came from: those given; else the signing key file's; else
    the key file an export names (where it exists); else the demo store's, if there is one here. Only read: never
    made, so that no directory holds keys of its own that nothing was signed with."""
    from hajj_ledger.audit.chain import signing_keys
    from hajj_ledger.audit.signing import PublicKeys

    if given is not None:
        if str(given) == "-":
            return PublicKeys.from_json(json.load(sys.stdin)), "the public keys read from stdin"
        return PublicKeys.read(given), f"the public keys of {given}"
    if named is not None and settings().signing_key_file is None:
        return PublicKeys.read(named), f"the public keys of {named}, the key file the export names"
    keys = signing_keys(required=False, create=False)
    if keys is None:
        return None, "no public keys"
    return keys.public, f"the public keys of {keys.path.absolute()}"


def _verify_export(args: argparse.Namespace) -> int:
    from hajj_ledger.audit.manifests import MANIFEST, named_key_file, read_manifest, signers, verify_export

    manifest = read_manifest(args.export)
    if manifest is None:
        raise SetupError(f"no {MANIFEST} in {args.export}: give the directory `export --out DIR` wrote")
    public, source = _public_keys(args.keys, named_key_file(manifest, args.export))
    unknown = [key for key in signers(manifest) if public is None or key not in public.keys]
    if public is None:
        why = (
            f"no public key to check {args.export}'s signatures (key {', '.join(unknown)}) with: give --keys FILE "
            f"(`{preflight.invocation()} signing-key public` prints them where the ledger runs; GET /v1/audit/keys), "
            f"or set {KEY_FILE_VARIABLE}"
        )
        code, problems = NOT_SIGNED, [f"NOT VERIFIED: {why}"]
    elif unknown:
        why = (
            f"{args.export} is signed by key {', '.join(unknown)}, which {source} do not hold (they hold "
            f"{', '.join(public.keys) or 'none'}): give the public keys of the ledger that made it (--keys FILE)"
        )
        code, problems = NOT_SIGNED, [f"NOT VERIFIED: {why}"]
    else:
        problems = verify_export(args.export, public)
        code = TAMPERED if problems else VERIFIED
    if args.json:
        print(json.dumps({"ok": code == VERIFIED, "problems": problems, "keys": source, "exit": code}))
    elif code == VERIFIED:
        print(f"OK: {args.export} is exactly what the ledger held: every file matches the manifest, whose signature "
              f"and checkpoint check with {source}.")  # fmt: skip
    else:
        print("\n".join(problems))
    return code


def _overdue(ledger: Any, sealed_head: int, grace: float) -> int:
    """How many events after the sealed head were recorded longer than `grace` seconds ago (0 if none)."""
    from datetime import UTC, datetime

    head = ledger.head()
    after = ledger.recorder.select_notifications(start=sealed_head + 1, limit=1)
    if not after:
        return 0
    recorded: datetime = ledger.mapper.to_domain_event(after[0]).timestamp
    return head - sealed_head if (datetime.now(UTC) - recorded).total_seconds() > grace else 0


def _verdict(report: Report, overdue: int) -> int:
    if not report.ok:
        return TAMPERED
    if overdue or report.events == 0:
        return NOT_SEALED
    if report.checkpoints == 0:  # a key would check nothing: no signature vouches for the chain
        return NO_CHECKPOINT
    if report.unchecked_checkpoints:
        return NOT_SIGNED
    return VERIFIED


def report_json(report: Report) -> dict[str, Any]:
    first = report.first
    return {
        "ok": report.ok,
        "sealed_head": report.sealed_head,
        "events": report.events,
        "unsealed": report.unsealed,
        "checkpoints": report.checkpoints,
        "last_checkpoint": report.last_checkpoint,
        "unchecked_checkpoints": report.unchecked_checkpoints,
        "first": None if first is None else vars(first),
        "findings": [vars(f) for f in report.findings[:1000]],
        "findings_total": len(report.findings),
    }


def _print_report(report: Report, overdue: int, grace: float) -> None:
    if report.checkpoints == 0:
        signed = "no signed checkpoint (none was made)"
    elif report.unchecked_checkpoints:
        signed = f"no checkpoint's signature ({report.unchecked_checkpoints:,} checkpoints, no public key given)"
    else:
        signed = f"the signatures of {report.checkpoints:,} checkpoints (the latest at {report.last_checkpoint:,})"
    print(
        f"Checked {report.events:,} events up to position {report.sealed_head:,} against the chain, "
        f"and {signed}; {report.unsealed:,} newer events not sealed yet."
    )
    first = report.first
    if first is not None:
        print(f"FAILED at position {first.position}: {first.kind}: {first.detail}")
        for finding in report.findings[1:20]:
            print(f"  also at {finding.position}: {finding.kind}: {finding.detail}")
        if len(report.findings) > 20:
            print(f"  ... {len(report.findings) - 20:,} more")
    elif report.events == 0:
        print("NOT VERIFIED: no event is sealed, so nothing was checked; run `hajj-ledger seal` (or a worker).")
    elif overdue:
        print(f"NOT VERIFIED: {overdue:,} events recorded over {grace:,.0f} s ago are not sealed; is a sealer running?")
    elif report.checkpoints == 0:
        print(
            "NOT VERIFIED: the events match the chain, but no signed checkpoint vouches for the chain itself, so "
            "both could have been rewritten together. The sealer ran without a signing key: set "
            f"{KEY_FILE_VARIABLE} where it runs (`hajj-ledger signing-key new FILE` makes one), then "
            "`hajj-ledger checkpoint`."
        )
    elif report.unchecked_checkpoints:
        print("NOT VERIFIED: the chain holds, but no checkpoint's signature was checked; give --keys FILE.")
    else:
        later = report.sealed_head - report.last_checkpoint
        rest = f"; the {later:,} positions sealed after the latest checkpoint rest on the chain alone" if later else ""
        print(f"OK: every sealed event is exactly what was sealed, and every checkpoint's signature checks{rest}.")


def _proof(args: argparse.Namespace) -> int:
    from hajj_ledger.audit.chain import Chain, signing_keys
    from hajj_ledger.ledger import JourneyLedger

    with JourneyLedger(create_tables=False) as ledger:
        proof = Chain(ledger, signing_keys(required=False)).proof(args.position)
    print(json.dumps(proof, indent=2))
    return 0


def _key_new(args: argparse.Namespace) -> int:
    from hajj_ledger.audit.signing import SigningKeyError, SigningKeys

    if args.file.exists():
        raise SigningKeyError(f"{args.file} exists: not overwritten")
    made = SigningKeys.create(args.file)
    print(f"Made signing key {made.current} in {args.file}; set {KEY_FILE_VARIABLE}={args.file}")
    return 0


def _key_rotate(args: argparse.Namespace) -> int:
    from hajj_ledger.audit.chain import signing_keys

    keys = signing_keys(required=True)
    assert keys is not None
    old = keys.current
    new = keys.rotate()
    print(f"Signing with {new} from now on; {old} is retired (its public key is kept for verifying).")
    return 0


def _key_public(args: argparse.Namespace) -> int:
    from hajj_ledger.audit.chain import signing_keys

    keys = signing_keys(required=True)
    assert keys is not None
    print(json.dumps(keys.public.to_json(), indent=2))
    return 0


def _master_key_new(args: argparse.Namespace) -> int:
    from hajj_ledger.identity.vault import KEY_FILE_VARIABLE as MASTER_KEY_FILE_VARIABLE
    from hajj_ledger.identity.vault import MasterKeys, generate_key

    older = args.file.read_text() if args.file.exists() else ""
    if older:
        MasterKeys.parse(older)  # a file that is not a key file is refused, not prepended to
    key_id = f"master-{len(MasterKeys.parse(older).keys) + 1 if older else 1}"
    args.file.parent.mkdir(parents=True, exist_ok=True)
    args.file.touch(mode=0o600)
    args.file.chmod(0o600)
    args.file.write_text(f"{key_id}:{generate_key()}\n{older}")
    print(f"Made master key {key_id} in {args.file}: keep it secret and backed up (without it identities are lost).")
    print(f"Use it: export {MASTER_KEY_FILE_VARIABLE}={args.file.resolve()}")
    if older:
        print("It is the current key now; re-wrap the stored identities with it: hajj-ledger identity rotate-key")
    return 0
