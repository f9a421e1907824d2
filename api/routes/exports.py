"""Analysts' exports over HTTP: ask for one, follow its progress, download its files (streamed from disk).

An export runs in a thread of the process that was asked, writing its files and a `status.json` beside them, so
any worker answers for its progress; the files are served as written, never built in memory."""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any
from uuid import UUID, uuid4

from fastapi import APIRouter, Body, Depends
from fastapi.responses import FileResponse
from pydantic import Field

from hajj_ledger.api.deps import Caller, StoreUrlDep, Text, allow, caller
from hajj_ledger.api.problems import ProblemError, not_found
from hajj_ledger.api.schemas import ExportCreate, ExportPublic
from hajj_ledger.audit.manifests import MANIFEST
from hajj_ledger.domain.access import EXPORTERS
from hajj_ledger.domain.errors import LedgerError
from hajj_ledger.projections.export import export
from hajj_ledger.settings import settings, variable_for

router = APIRouter(prefix="/v1/exports", tags=["exports"], dependencies=[Depends(caller)])
EXPORTS_VARIABLE = variable_for("export_dir")
STATUS = "status.json"


def exports_dir() -> Path:
    return settings().export_dir


def _write_status(directory: Path, **status: Any) -> None:
    temporary = directory / f".{STATUS}.tmp"
    temporary.write_text(json.dumps(status))
    temporary.replace(directory / STATUS)  # a reader sees the old status or the new, never half of one


def _run(directory: Path, files: Path, body: ExportCreate, url: str | None, owner: str) -> None:
    started = datetime.now(UTC).isoformat(timespec="seconds")

    def progress(done: int, total: int) -> None:
        _write_status(directory, state="running", owner=owner, done=done, total=total, started_at=started)

    try:
        manifest = export(files, at=body.at, fmt=body.format, url=url, progress=progress, season=body.season)
    except (LedgerError, ValueError) as error:
        _write_status(directory, state="failed", owner=owner, error=str(error), started_at=started)
    except Exception as error:
        _write_status(directory, state="failed", owner=owner, error=type(error).__name__, started_at=started)
    else:
        total = manifest["position"]
        _write_status(directory, state="done", owner=owner, done=total, total=total, started_at=started, position=total,
                      season=manifest["season"])  # fmt: skip


def _status(export_id: UUID, owner: str) -> tuple[Path, dict[str, Any]]:
    directory = exports_dir() / export_id.hex
    try:
        status: dict[str, Any] = json.loads((directory / STATUS).read_text())
    except (OSError, ValueError):
        status = {}
    if status.get("owner") != owner:  # another agency's export is, for this one, not there at all
        raise not_found(f"export {export_id} not found")
    return directory, status


def _public(export_id: UUID, directory: Path, status: dict[str, Any]) -> ExportPublic:
    files: list[dict[str, Any]] = []
    if status["state"] == "done":
        manifest = json.loads((directory / "files" / MANIFEST).read_text())
        names = [MANIFEST, *(f["file"] for t in manifest["tables"].values() for f in t["files"])]
        files = [{"name": n, "url": f"/v1/exports/{export_id}/files/{n}"} for n in names]
    return ExportPublic(
        export_id=export_id,
        state=status["state"],
        done=status.get("done", 0),
        total=status.get("total", 0),
        position=status.get("position"),
        season=status.get("season"),
        error=status.get("error"),
        files=files,
    )


@router.post("", status_code=202, openapi_extra=allow(EXPORTERS), summary="Start an export; follow its progress")
def start(
    body: Annotated[ExportCreate, Body(openapi_examples={"season": {"value": {"format": "parquet", "season": 1446}}})],
    agency: Caller,
    store_url: StoreUrlDep,
) -> ExportPublic:
    """Starts writing a pseudonymised, signed snapshot of the ledger as of `at` (default: the head): the events and
    every read model of one season, in Parquet or CSV (docs/analysts.md). It changes nothing of the ledger; the
    export is the caller's own, and answers 202 with its id at once: follow it at `GET /v1/exports/{export_id}`."""
    export_id = uuid4()
    directory = exports_dir() / export_id.hex
    directory.mkdir(parents=True)
    _write_status(directory, state="running", owner=agency.agency_id, done=0, total=0)
    worker = threading.Thread(
        target=_run, args=(directory, directory / "files", body, store_url, agency.agency_id), daemon=True
    )
    worker.start()
    return _public(export_id, *_status(export_id, agency.agency_id))


@router.get("/{export_id}", openapi_extra=allow(EXPORTERS), summary="An export's progress, and its files when done")
def progress(export_id: UUID, agency: Caller) -> ExportPublic:
    """The export's state (`running`, `done`, `failed`), positions done of the total, and once done its files. Another
    agency's export, or none, is a 404."""
    return _public(export_id, *_status(export_id, agency.agency_id))


@router.get(
    "/{export_id}/files/{name:path}",
    openapi_extra=allow(EXPORTERS),
    summary="One file of a finished export, streamed",
    response_class=FileResponse,
)
def download(export_id: UUID, name: Annotated[Text, Field(max_length=255)], agency: Caller) -> FileResponse:
    """A file the export's manifest names (`manifest.json`, `events/part-….parquet`, a view's file), as written;
    409 while the export is running, 404 for a name it does not list."""
    directory, status = _status(export_id, agency.agency_id)
    if status["state"] != "done":
        raise ProblemError(409, "not-ready", "Not ready", f"export {export_id} is {status['state']}")
    listed = {f.name for f in _public(export_id, directory, status).files}
    if name not in listed:  # only what the manifest names: no path leads anywhere else
        raise not_found(f"export {export_id} has no file {name!r}")
    media = "application/json" if name.endswith(".json") else "application/octet-stream"
    return FileResponse(directory / "files" / name, media_type=media, filename=Path(name).name)
