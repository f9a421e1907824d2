"""The HTTP face's commands for `hajj-ledger`: serve, and agency add / revoke / list.

Registered through the `hajj_ledger.commands` entry point, so the write side's CLI never imports the HTTP face.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hajj_ledger.audit.cli import named_signing_key
from hajj_ledger.domain.errors import ValidationError
from hajj_ledger.domain.vocabulary import Role
from hajj_ledger.logs import configure_logging
from hajj_ledger.preflight import WRITE, SetupError
from hajj_ledger.settings import settings, variable_for

if TYPE_CHECKING:
    from hajj_ledger.audit.signing import SigningKeys

DEMO_KEYS = Path("var/demo-keys.json")  # the demo store only: its keys, to print again on every `make run`
# The jobs beside `serve` yield the CPU to its requests under load (batch imports went 1.4x faster), and catch up
# as the load eases: the views' lag is in /metrics. A `hajj-ledger worker` on a host of its own keeps its priority.
WORKER_NICENESS = 10
SHUTDOWN_SECONDS = 5  # requests still open this long after SIGTERM are cut off: the whole node ends within 10 s


def register(commands: Any) -> None:
    serve = commands.add_parser("serve", help="serve the HTTP API (migrates first, and keeps the views current)")
    # Unset, each is its variable's (HAJJ_LEDGER_HOST, _PORT, _WORKERS), read once the command starts.
    serve.add_argument("--host")
    serve.add_argument("--port", type=int)
    serve.add_argument("--workers", type=int)
    serve.add_argument(
        "--api-only", action="store_true", help="never run the background jobs here (`hajj-ledger worker` does)"
    )
    serve.add_argument("--no-project", action="store_true", help="do not run the projection runner beside the server")
    serve.add_argument("--no-seal", action="store_true", help="do not run the chain's sealer beside the server")
    serve.add_argument("--demo-keys", action="store_true", help="(demo store) make a key per role and print them")
    serve.set_defaults(run=_serve, store=WRITE, needs=(named_signing_key,))

    worker = commands.add_parser(
        "worker", help="offer to lead: run the projection runner and the sealer while this node leads (no HTTP)"
    )
    worker.add_argument("--no-project", action="store_true", help="do not run the projection runner")
    worker.add_argument("--no-seal", action="store_true", help="do not run the chain's sealer")
    worker.add_argument("--status-fd", type=int, help=argparse.SUPPRESS)  # `serve`'s: 1 or 0 as leadership changes
    worker.add_argument("--parent", type=int, help=argparse.SUPPRESS)  # `serve`'s pid: the worker ends with it
    worker.set_defaults(run=_worker, store=WRITE, needs=(named_signing_key,))

    agency = commands.add_parser("agency", help="the agencies that may use the HTTP API, and their keys")
    actions = agency.add_subparsers(required=True, metavar="ACTION")
    add = actions.add_parser("add", help="create an agency; prints its API key, once")
    add.add_argument("--role", required=True, choices=[r.value for r in Role])
    add.add_argument("--name", required=True)
    add.add_argument("--scope", help="a mission's or company's id, as its journeys carry it (e.g. mission-EGY-00001)")
    add.set_defaults(run=_agency_add, store=WRITE)
    revoke = actions.add_parser("revoke", help="revoke an agency's key (takes effect within seconds)")
    revoke.add_argument("agency_id")
    revoke.set_defaults(run=_agency_revoke, store=WRITE)
    listing = actions.add_parser("list", help="the agencies, without their keys")
    listing.set_defaults(run=_agency_list, store=WRITE)


def _agency_add(args: argparse.Namespace) -> int:
    from hajj_ledger.api import agencies
    from hajj_ledger.domain.catalogue import SCOPE

    role = Role(args.role)
    if role in SCOPE and not args.scope:
        raise ValidationError("scope", f"a {role} reads only its own journeys: give the id they carry")
    engine = _migrated()
    with engine.begin() as connection:
        agency, key = agencies.add(connection, role, args.name, args.scope)
    print(f"agency {agency.agency_id} ({agency.role}): {agency.name}")
    print(f"API key (shown once, keep it secret): {key}")
    return 0


def _agency_revoke(args: argparse.Namespace) -> int:
    from hajj_ledger.api import agencies

    with _migrated().begin() as connection:
        agencies.revoke(connection, args.agency_id)
    print(f"agency {args.agency_id}: key revoked")
    return 0


def _agency_list(args: argparse.Namespace) -> int:
    from hajj_ledger.api import agencies

    with _migrated().connect() as connection:
        rows = agencies.listed(connection)
    for row in rows:
        revoked = f"revoked {row['revoked_at']:%Y-%m-%d %H:%M}" if row["revoked_at"] else "active"
        print(f"{row['agency_id']:<32} {row['role']:<9} {revoked:<24} {row['name']}")
    return 0


def _migrated() -> Any:
    from hajj_ledger.migrations import upgrade
    from hajj_ledger.projections.schema import engine_for

    engine = engine_for()
    upgrade(engine)
    return engine


def _serve(args: argparse.Namespace) -> int:
    import uvicorn

    from hajj_ledger.api import metrics

    for name in ("host", "port", "workers"):
        if getattr(args, name) is None:
            setattr(args, name, getattr(settings(), name))
    _check_port(args.host, args.port)
    _migrated()
    if args.demo_keys:
        _print_demo_keys()
    # A worker beside however many HTTP workers: it offers to lead, and runs the jobs only while it does.
    flags = [flag for flag, off in (("--no-project", args.no_project), ("--no-seal", args.no_seal)) if off]
    if not args.api_only and len(flags) < 2:
        metrics.REGISTRY.register(metrics.LEADER)
        threading.Thread(target=_keep_worker_running, args=(flags,), name="worker", daemon=True).start()
    print(
        f"Serving the hajj-ledger API on http://{args.host}:{args.port}/v1 (docs: http://{args.host}:{args.port}/docs)"
    )
    configure_logging()
    config = uvicorn.Config(
        "hajj_ledger.api.app:create_app", factory=True, host=args.host, port=args.port, workers=args.workers,
        access_log=False, log_level="warning", timeout_graceful_shutdown=SHUTDOWN_SECONDS,
    )  # fmt: skip
    if args.workers == 1:
        uvicorn.Server(config).run()
    else:
        from uvicorn.supervisors import Multiprocess

        from hajj_ledger.api.listener import SharedPort

        Multiprocess(config, sockets=[SharedPort(args.host, args.port)]).run()
    return 0


def _check_port(host: str, port: int) -> None:
    """Before anything says "Serving": the address can be listened on. Bound without SO_REUSEPORT, so that a port
    held by any listener, `serve`'s own workers' included, is found in use."""
    import errno
    import socket

    from hajj_ledger.api.listener import family

    probe = socket.socket(family(host), socket.SOCK_STREAM)
    probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the server binds: a port just freed is free
    try:
        probe.bind((host, port))
    except OSError as error:
        if error.errno == errno.EADDRINUSE:
            raise SetupError(
                f"port {port} on {host} is in use (another server?): stop what listens there "
                f"(`ss -ltnp 'sport = :{port}'` names it), or serve on another port: --port {port + 1} "
                f"(or {variable_for('port')})"
            ) from None
        raise SetupError(f"cannot listen on {host}:{port}: {error.strerror or error} (--host, --port)") from None
    finally:
        probe.close()


def _keep_worker_running(flags: list[str]) -> None:
    """`hajj-ledger worker` beside the server, started again whenever it ends; it ends with the server, however the
    server ends (uvicorn re-raises SIGTERM after shutting down, so nothing after it runs: the worker watches).
    It reports its leadership on a pipe: the leader gauge follows it, and falls to 0 when it ends."""
    from hajj_ledger.api import metrics

    while True:
        report, status = os.pipe()
        process = subprocess.Popen(
            [sys.executable, "-m", "hajj_ledger.cli", "worker", *flags, "--status-fd", str(status),
             "--parent", str(os.getpid())],
            pass_fds=(status,),
        )  # fmt: skip
        os.close(status)
        with open(report, "rb", buffering=0) as reports:
            while change := reports.read(1):
                metrics.LEADER.leading = change == b"1"
        metrics.LEADER.leading = False
        code = process.wait()
        print(f"hajj-ledger: the worker exited ({code}); starting it again in 2 s", file=sys.stderr)
        time.sleep(2)


def _worker(args: argparse.Namespace) -> int:
    from hajj_ledger.audit.chain import signing_keys
    from hajj_ledger.audit.signing import KEY_FILE_VARIABLE
    from hajj_ledger.leadership import Job, lead, leader_lock, stop_on_signals, stop_with_parent

    configure_logging()
    _migrated().dispose()
    jobs: dict[str, Job] = {}
    if not args.no_project:
        jobs["projection runner"] = _run_projections
    if not args.no_seal:
        keys = signing_keys(required=False)
        if keys is None:
            print(f"hajj-ledger: no signing key ({KEY_FILE_VARIABLE}): sealing without checkpoints", file=sys.stderr)
        jobs["sealer"] = lambda stop: _seal(keys, stop)
    report = os.fdopen(args.status_fd, "wb", buffering=0) if args.status_fd is not None else None

    def changed(leading: bool) -> None:
        if report is not None:
            with contextlib.suppress(BrokenPipeError):  # `serve` has gone: this worker is ending too
                report.write(b"1" if leading else b"0")

    # What the jobs run on, imported now rather than when this worker wins the lock: a takeover starts at once.
    import hajj_ledger.projections.runner  # noqa: F401
    from hajj_ledger.audit.chain import Chain  # noqa: F401
    from hajj_ledger.projections import FOLLOWED  # noqa: F401

    stop = threading.Event()
    stop_on_signals(stop)
    if args.parent is not None:  # beside `serve`'s HTTP workers
        stop_with_parent(stop, args.parent)
        os.nice(WORKER_NICENESS)
    lead(jobs, stop, leader_lock(), changed)
    return 0


def _run_projections(stop: threading.Event) -> None:
    from hajj_ledger.projections import FOLLOWED
    from hajj_ledger.projections.runner import Runner

    runner = Runner(FOLLOWED)
    try:
        runner.run(stop=stop)
    finally:
        runner.close()


def _seal(keys: SigningKeys | None, stop: threading.Event) -> None:
    from hajj_ledger.audit.chain import Chain
    from hajj_ledger.ledger import JourneyLedger

    ledger = JourneyLedger()
    try:
        Chain(ledger, keys).follow(stop)
    finally:
        ledger.close()


def _print_demo_keys() -> None:
    """A key per role on the demo store, made once and kept in var/ beside it (never for a real store)."""
    from hajj_ledger.api import agencies
    from hajj_ledger.projections.schema import engine_for
    from hajj_ledger.store.recorders import DEFAULT_DATABASE_URL, database_url

    if database_url() != DEFAULT_DATABASE_URL:
        raise ValidationError("demo_keys", "only for the embedded demo store")
    keys: dict[str, dict[str, str]] = json.loads(DEMO_KEYS.read_text()) if DEMO_KEYS.exists() else {}
    if len(keys) < len(Role):
        scopes = _demo_scopes()
        with engine_for().begin() as connection:
            for role in Role:
                if role.value not in keys:
                    agency, key = agencies.add(connection, role, f"demo {role}", scopes.get(role))
                    keys[role.value] = {"agency_id": agency.agency_id, "key": key}
        DEMO_KEYS.write_text(json.dumps(keys, indent=1))
        DEMO_KEYS.chmod(0o600)
    print("Demo keys (Authorization: Bearer KEY):")
    for name, known in keys.items():
        print(f"  {name:<13} {known['agency_id']:<28} {known['key']}")


def _demo_scopes() -> dict[Role, str]:
    """The demo's mission and company: those of a journey the simulated season contracted."""
    from hajj_ledger.ledger import JourneyLedger

    ledger = JourneyLedger()
    try:
        for row in ledger.recorder.select_notifications(start=1, limit=5000):
            if row.topic.endswith("Journey.PackageContracted"):
                journey = ledger.journey(row.originator_id)  # type: ignore[arg-type]
                if journey.company_id:
                    return {Role.MISSION: journey.mission_id, Role.COMPANY: journey.company_id}
    finally:
        ledger.close()
    return {Role.MISSION: "mission-IDN-demo", Role.COMPANY: "company-demo"}
