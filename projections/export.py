"""Analysts' snapshots: the events and every read model as of one log position, pseudonymised, in Parquet or CSV.

One directory per export: `events/` (one file per export run: a later `--since` run appends a part), one file per
read model, and `manifest.json`: the position, the season, row counts, the SHA-256 and schema of every file, and the
chain's signed checkpoint covering the position, with the manifest itself signed by the ledger's key.

An export is of one season: each read model whose rows are of a season (a `season` column) holds that season's rows
only (trips and buildings are of no season: whole). The events are the whole log up to the position, as the chain's
proof needs every one; an event names its journey, whose season the exported `journey_status` gives.
`hajj-ledger verify --export DIR` checks all of it (`hajj_ledger.audit.manifests`).

Pseudonymised (`pseudonyms.py`): every id that names a person or a command is replaced by a keyed hash. The events
file is written by `export_events.py`, a page of the log at a time; the read models' files by `export_models.py`.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import tempfile
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import UTC, date, datetime
from importlib.metadata import version
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from hajj_ledger.audit.chain import Chain, signing_keys
from hajj_ledger.audit.manifests import EVENTS, MANIFEST, file_sha256, sign_manifest
from hajj_ledger.domain.errors import ValidationError
from hajj_ledger.ledger import JourneyLedger
from hajj_ledger.projections import EXPORT_FORMATS, PROJECTIONS
from hajj_ledger.projections.export_events import EVENTS_SCHEMA, events_table
from hajj_ledger.projections.export_models import PAGE, copied_pages, fetched_pages, model_schema, pseudonymised
from hajj_ledger.projections.pseudonyms import KEPT_UUIDS, KEY_VARIABLE, Pseudonyms
from hajj_ledger.projections.read_season import SEASON, by_season, default_season
from hajj_ledger.projections.replay import replay
from hajj_ledger.projections.schema import engine_for, positions
from hajj_ledger.store.recorders import database_url

Progress = Callable[[int, int], None]  # (events written, events to write)


FORMATS = EXPORT_FORMATS


@dataclasses.dataclass
class Export:
    """One run of an export: where, as of which position, from which position (0: everything)."""

    out: Path
    at: int
    since: int
    fmt: str
    pseudonyms: Pseudonyms
    manifest: dict[str, Any]
    season: int | None = None  # the season the read models' rows are of; None: the current one, once known


class Writer:
    """A table written page by page: Parquet row groups, or CSV rows; never the whole table in memory."""

    def __init__(self, path: Path, schema: pa.Schema, fmt: str) -> None:
        self.path, self.schema, self.fmt, self.rows = path, schema, fmt, 0
        path.parent.mkdir(parents=True, exist_ok=True)
        if fmt == "parquet":
            # Dictionary pages for the columns of codes only: for ids, JSON and digests (nearly all distinct) the
            # writer would build a dictionary of each page's values only to give it up. The codes come as Arrow
            # dictionaries (cheap to make, written as they are) but without Arrow's schema in the file they read
            # back as plain strings: each page has a dictionary of its own, and pyarrow refuses to group a column
            # whose dictionaries differ between row groups or files.
            codes = [f.name for f in schema if pa.types.is_dictionary(f.type)]
            self._parquet = pq.ParquetWriter(path, schema, compression="zstd", use_dictionary=codes, store_schema=False)
        else:
            self._file = path.open("w", newline="", encoding="utf-8")
            self._csv = csv.writer(self._file)
            self._csv.writerow(schema.names)

    def write_table(self, table: pa.Table) -> None:
        self.rows += table.num_rows
        if self.fmt == "parquet":
            self._parquet.write_table(table)
            return
        for row in zip(*(table.column(n).to_pylist() for n in self.schema.names), strict=True):
            self._csv.writerow(_csv_value(v) for v in row)

    def close(self) -> dict[str, Any]:
        if self.fmt == "parquet":
            self._parquet.close()
        else:
            self._file.close()
        return {"file": self.path.name, "rows": self.rows, "sha256": file_sha256(self.path)}


def _csv_value(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat()
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, bytes):
        return value.hex()
    return value


def _schema_json(schema: pa.Schema) -> list[dict[str, Any]]:
    """The columns as the files read back: codes as plain strings (see Writer)."""
    return [{"name": f.name, "type": str(_read_type(f.type)), "nullable": f.nullable} for f in schema]


def _read_type(kind: pa.DataType) -> pa.DataType:
    return kind.value_type if pa.types.is_dictionary(kind) else kind


def export(
    out: Path,
    *,
    at: int | None = None,
    since: int | None = None,
    fmt: str = "parquet",
    url: str | None = None,
    progress: Progress | None = None,
    season: int | None = None,
) -> dict[str, Any]:
    """Export the events up to `at` (default: the head) and every read model as of `at` into `out`, the rows of a
    model by season those of `season` only (default: the current season; with `since`, the previous export's); with
    `since`, only the events after it, appended to the export already in `out` (which must end at `since`)."""
    url = url or database_url()
    if fmt not in FORMATS:
        raise ValidationError("format", f"expected one of {', '.join(FORMATS)}, got {fmt!r}")
    ledger = JourneyLedger(url, create_tables=False)
    try:
        chain = Chain(ledger, signing_keys(url, required=True))
        head = ledger.head()
        at = head if at is None else at
        if not 0 < at <= head:
            raise ValidationError("at", f"must be a position in the log, 1 to {head:,}")
        manifest = _previous(out, since, fmt)
        if since is not None and since >= at:
            raise ValidationError("since", f"the previous export already reaches {since:,}; nothing after it")
        checkpoint = chain.checkpoint()  # seals up to the head: a checkpoint at or after `at` exists from here
        covering = chain.tables.checkpoint_at_or_after(at)
        assert checkpoint is not None and covering is not None
        run = Export(out, at, since or 0, fmt, Pseudonyms.configured(url), manifest, _season(manifest, season))
        if manifest.get("pseudonym_key_id", run.pseudonyms.key_id) != run.pseudonyms.key_id:
            raise ValidationError(KEY_VARIABLE, "the previous export in that directory was made with another key")
        _write_events(chain, run, progress)
        _write_models(url, run)
        manifest.update(
            ledger_version=version("hajj-ledger"),
            format=fmt,
            position=at,
            exported_at=datetime.now(UTC).isoformat(timespec="seconds"),
            pseudonym_key_id=run.pseudonyms.key_id,
            season=run.season,
            chain={
                "following": [[p, d.hex()] for p, d in chain.tables.digests(at, covering.position)],
                "checkpoint": covering.to_json(),
            },
        )
        sign_manifest(manifest, chain.keys)
        (out / MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n")
        return manifest
    finally:
        ledger.close()


def _previous(out: Path, since: int | None, fmt: str) -> dict[str, Any]:
    """The manifest an incremental export appends to; a fresh one for a new export into an empty directory."""
    path = out / MANIFEST
    if since is None:
        if out.exists() and any(out.iterdir()):
            raise ValidationError("out", f"{out} is not empty; export into a new directory, or give --since")
        out.mkdir(parents=True, exist_ok=True)
        return {"tables": {}}
    if not path.exists():
        raise ValidationError("since", f"no previous export in {out} to append to")
    manifest: dict[str, Any] = json.loads(path.read_text())
    if manifest["position"] != since:
        raise ValidationError("since", f"the export in {out} ends at {manifest['position']:,}, not {since:,}")
    if manifest["format"] != fmt:
        raise ValidationError("format", f"the export in {out} is {manifest['format']}")
    return manifest


def _season(manifest: dict[str, Any], season: int | None) -> int | None:
    """The season of an export's read models: the one asked for; appending, the previous export's, and no other."""
    previous: int | None = manifest.get("season")
    if previous is not None and season not in (None, previous):
        raise ValidationError("season", f"the export being appended to is of season {previous}, not {season}")
    return season if season is not None else previous


def _write_events(chain: Chain, run: Export, progress: Progress | None) -> None:
    suffix = "parquet" if run.fmt == "parquet" else "csv"
    writer = Writer(run.out / EVENTS / f"part-{run.since + 1:012d}-{run.at:012d}.{suffix}", EVENTS_SCHEMA, run.fmt)
    with ThreadPoolExecutor(1, thread_name_prefix="export-writer") as background:
        written: Future[None] | None = None
        for page in chain.tables.pages_with_digests(run.since, run.at, PAGE):
            table = events_table(page, run.pseudonyms)
            if written is not None:
                written.result()
            written = background.submit(writer.write_table, table)  # compressing and writing overlap the next page
            if progress is not None:
                progress(int.from_bytes(page.positions[-8:], "big", signed=True) - run.since, run.at - run.since)
        if written is not None:
            written.result()
    entry = writer.close()
    tables = run.manifest["tables"]
    entries = tables.setdefault(EVENTS, {"files": [], "rows": 0, "schema": _schema_json(EVENTS_SCHEMA)})
    entries["files"].append({**entry, "file": f"{EVENTS}/{entry['file']}", "from": run.since + 1, "to": run.at})
    entries["rows"] += entry["rows"]


def _write_models(url: str, run: Export) -> None:
    """Every read model as of `at`: the serving views if every projection stands exactly there (read in one
    snapshot), else rebuilt aside by the projection runner stopped at `at`."""
    engine = engine_for(url)
    try:
        with engine.connect() as connection, connection.begin():
            if connection.dialect.name == "postgresql":
                connection.execute(sa.text("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ"))
            installed = sa.inspect(connection).has_table(positions.name)
            exported = positions.c.projection.in_([p.name for p in PROJECTIONS])  # the views, not the trail's index
            query = sa.select(positions.c.position).where(positions.c.serving, exported)
            serving = connection.execute(query).scalars().all() if installed else []
            if serving and set(serving) == {run.at}:
                _models_from(connection, run)
                return
    finally:
        engine.dispose()
    with tempfile.TemporaryDirectory(prefix="hajj-ledger-export-") as directory:
        aside = engine_for(f"sqlite:///{directory}/views.sqlite3")
        try:
            replay(url, run.at, aside)
            with aside.connect() as connection:
                _models_from(connection, run)
        finally:
            aside.dispose()


def _models_from(connection: Connection, run: Export) -> None:
    copied = connection.dialect.name == "postgresql"
    if run.season is None:
        run.season = default_season(connection)
    for projection in PROJECTIONS:
        for model in projection.models:
            schema = model_schema(model)
            suffix = "parquet" if run.fmt == "parquet" else "csv"
            writer = Writer(run.out / f"{model.name}.{suffix}", schema, run.fmt)
            ids = {c.name: c.name not in KEPT_UUIDS for c in model.columns() if isinstance(c.type, sa.Uuid)}
            view = model.view()
            query = sa.select(*(view.c[n] for n in schema.names)).order_by(*(view.c[k] for k in model.key))
            if run.season is not None and by_season(model):  # one season's rows; trips and buildings have none
                query = query.where(view.c[SEASON] == run.season)
            pages = copied_pages(connection, query, schema) if copied else fetched_pages(connection, query, schema, ids)
            written = False
            for page in pages:
                writer.write_table(pseudonymised(page, ids, run.pseudonyms))
                written = True
            if not written:
                writer.write_table(schema.empty_table())
            run.manifest["tables"][model.name] = {
                "files": [writer.close()],
                "rows": writer.rows,
                "schema": _schema_json(schema),
            }
