"""Analysts' exports on SQLite and PostgreSQL: every file reads and matches the read models at the same position;
the events file rebuilds the same read models in a fresh ledger; no identity anywhere; `verify --export` passes
untouched and fails on one changed value; an incremental export appends cleanly."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import time
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit
from uuid import UUID, uuid4

import psycopg
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest
import sqlalchemy as sa
from eventsourcing.persistence import StoredEvent

from hajj_ledger.audit.chain import Chain, signing_keys
from hajj_ledger.audit.manifests import EVENTS, MANIFEST, verify_export
from hajj_ledger.audit.pages import Packed
from hajj_ledger.ledger import JourneyLedger
from hajj_ledger.migrations import upgrade
from hajj_ledger.projections import PROJECTIONS, export_events, export_models
from hajj_ledger.projections import export as exports
from hajj_ledger.projections.export import export
from hajj_ledger.projections.pseudonyms import KEPT_UUIDS, Pseudonyms
from hajj_ledger.projections.replay import replay
from hajj_ledger.projections.schema import engine_for
from hajj_ledger.simulation.season import simulate
from tests.conftest import POSTGRES_URL
from tests.integration.test_api import Api, api, is_problem  # noqa: F401 (the fixture)
from tests.support import project

MODELS = [model for projection in PROJECTIONS for model in projection.models]


@pytest.fixture
def season(store_url: str) -> str:
    """A simulated season with its read models current: the serving views stand at the head."""
    ledger = JourneyLedger(store_url)
    simulate(ledger, 25, 1446, 4)
    ledger.close()
    engine = engine_for(store_url)
    upgrade(engine)
    engine.dispose()
    project(store_url)
    return store_url


def read(directory: Path, name: str) -> pa.Table:
    manifest = json.loads((directory / MANIFEST).read_text())
    files = [directory / f["file"] for f in manifest["tables"][name]["files"]]
    if manifest["format"] == "parquet":
        return pa.concat_tables([pq.read_table(f) for f in files])
    return pa.concat_tables([pacsv.read_csv(f) for f in files])


def views_at(url: str, position: int, directory: Path) -> dict[str, list[dict[str, Any]]]:
    """Every read model as of `position`, built aside: what an export at that position must hold."""
    engine = engine_for(f"sqlite:///{directory}/expected.sqlite3")
    replay(url, position, engine)
    with engine.connect() as connection:
        found = {m.name: [dict(r) for r in connection.execute(sa.select(m.view())).mappings()] for m in MODELS}
    engine.dispose()
    return found


def public_keys() -> Any:
    keys = signing_keys(required=True)
    assert keys is not None
    return keys.public


@pytest.mark.parametrize("fmt", ["parquet", "csv"])
def test_every_file_reads_and_its_counts_and_sums_match_the_read_models(season: str, tmp_path: Path, fmt: str) -> None:
    ledger = JourneyLedger(season)
    head = ledger.head()
    ledger.close()
    for at in (head, head // 2):  # the serving views at the head; rebuilt aside for a past position
        out = tmp_path / f"{fmt}-{at}"
        manifest = export(out, at=at, fmt=fmt, url=season)
        assert manifest["position"] == at and verify_export(out, public_keys()) == []
        expected = views_at(season, at, tmp_path / f"expected-{fmt}-{at}")
        for model in MODELS:
            table = read(out, model.name)
            rows = expected[model.name]
            assert table.num_rows == len(rows) == manifest["tables"][model.name]["rows"], model.name
            for column in model.columns():
                if isinstance(column.type, sa.Integer) and rows:
                    total = sum(r[column.name] or 0 for r in rows)
                    summed = pc.sum(table.column(column.name)).as_py() or 0  # None: every value null (not closed)
                    assert summed == total, (model.name, column.name)
        events = read(out, EVENTS)
        assert events.column("position").to_pylist() == list(range(1, at + 1))
        assert events.schema.field("occurred_at").type == pa.timestamp("us", tz="UTC") or fmt == "csv"


def test_the_serving_views_are_exported_whatever_the_trail_index_has_reached(
    season: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The trail's index is no view: its position (here 0, the runner having kept only the views) does not send
    an export at the views' position to rebuild them aside."""

    def rebuilt(*_: Any) -> None:
        raise AssertionError("the views were rebuilt aside")

    monkeypatch.setattr("hajj_ledger.projections.export.replay", rebuilt)
    ledger = JourneyLedger(season)
    head = ledger.head()
    ledger.close()
    assert export(tmp_path / "out", at=head, fmt="csv", url=season)["position"] == head


def test_the_events_file_replayed_into_a_fresh_ledger_rebuilds_the_same_read_models(
    season: str, tmp_path: Path, postgres_or_sqlite_fresh: str
) -> None:
    out = tmp_path / "export"
    export(out, url=season)
    events = read(out, EVENTS).to_pylist()
    fresh = JourneyLedger(postgres_or_sqlite_fresh)
    for start in range(0, len(events), 1000):
        fresh.recorder.insert_events(
            [
                StoredEvent(
                    originator_id=UUID(e["aggregate_id"]),
                    originator_version=e["version"],
                    topic=e["topic"],
                    state=e["state"].encode(),
                )
                for e in events[start : start + 1000]
            ]
        )
    fresh.close()
    engine = engine_for(postgres_or_sqlite_fresh)
    upgrade(engine)
    engine.dispose()
    project(postgres_or_sqlite_fresh)
    rebuilt = views_at(postgres_or_sqlite_fresh, len(events), tmp_path / "rebuilt")
    for model in MODELS:
        names = model.column_names
        exported = sorted(tuple(_plain(r[k]) for k in names) for r in read(out, model.name).to_pylist())
        again = sorted(tuple(_plain(r[k]) for k in names) for r in rebuilt[model.name])
        assert exported == again, model.name


def _plain(value: Any) -> Any:
    """One spelling per value, whichever store or file it came from."""
    if isinstance(value, datetime):
        return (value if value.tzinfo else value.replace(tzinfo=UTC)).astimezone(UTC).isoformat()
    if isinstance(value, UUID | date):
        return str(value)
    return value


@pytest.fixture
def postgres_or_sqlite_fresh(store_url: str, tmp_path: Path) -> Iterator[str]:
    """A second, empty store of the same kind."""
    if store_url.startswith("sqlite"):
        yield f"sqlite:///{tmp_path}/fresh.sqlite3"
        return
    name = f"hajj_ledger_test_{uuid4().hex[:16]}"
    with psycopg.connect(POSTGRES_URL, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    yield urlunsplit(urlsplit(POSTGRES_URL)._replace(path=f"/{name}"))
    with psycopg.connect(POSTGRES_URL, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.mark.parametrize("fmt", ["parquet", "csv"])
def test_no_string_from_the_identity_vault_appears_in_any_file(season: str, tmp_path: Path, fmt: str) -> None:
    ledger = JourneyLedger(season)
    secrets: set[str] = set()
    for sealed in ledger.store.select_all_sealed():
        identity = ledger.keys.open(sealed)
        secrets |= {identity.name_arabic, identity.name_latin, identity.passport_number}
        secrets.add(identity.date_of_birth.isoformat())
        secrets |= {str(sealed.journey_id), sealed.journey_id.hex, sealed.fingerprint}
    for journey_id in ledger.store.select_vault_journeys():
        secrets.add(str(ledger.journey(journey_id).pilgrim_id))
    ledger.close()
    assert len(secrets) > 100
    out = tmp_path / "export"
    export(out, fmt=fmt, url=season)
    texts = []
    for file in sorted(out.rglob(f"*.{fmt}")):
        if fmt == "csv":
            texts.append(file.read_text())
        else:
            texts.append(json.dumps(pq.read_table(file).to_pylist(), default=str, ensure_ascii=False))
    text = "\n".join(texts)
    assert len(texts) == len(MODELS) + 1 and len(text) > 10_000
    leaked = [s for s in secrets if s in text]
    assert leaked == []


@pytest.mark.parametrize("fmt", ["parquet", "csv"])
def test_verify_export_passes_untouched_and_fails_on_a_single_changed_value(
    season: str, tmp_path: Path, fmt: str
) -> None:
    out = tmp_path / "export"
    export(out, fmt=fmt, url=season)
    assert verify_export(out, public_keys()) == []
    target = out / f"trip_manifest.{fmt}"
    if fmt == "parquet":
        table = pq.read_table(target)
        boarded = table.column("boarded").to_pylist()
        boarded[0] += 1
        pq.write_table(
            table.set_column(table.schema.get_field_index("boarded"), "boarded", pa.array(boarded, pa.int32())), target
        )
    else:
        lines = target.read_text().splitlines()
        lines[1] = lines[1].replace(",", ",9", 1)
        target.write_text("\n".join(lines) + "\n")
    problems = verify_export(out, public_keys())
    assert problems and "trip_manifest" in problems[0]

    other = tmp_path / "again"
    export(other, fmt=fmt, url=season)
    manifest = json.loads((other / MANIFEST).read_text())
    manifest["tables"]["season_funnel"]["rows"] += 1
    (other / MANIFEST).write_text(json.dumps(manifest))
    assert "signature" in verify_export(other, public_keys())[0]


def test_an_incremental_export_appends_cleanly(season: str, tmp_path: Path) -> None:
    ledger = JourneyLedger(season)
    first_at = ledger.head()
    out = tmp_path / "export"
    export(out, url=season)
    simulate(ledger, 5, 1445, 8)
    head = ledger.head()
    ledger.close()
    project(season)
    manifest = export(out, since=first_at, url=season)
    assert manifest["position"] == head
    assert [(f["from"], f["to"]) for f in manifest["tables"][EVENTS]["files"]] == [(1, first_at), (first_at + 1, head)]
    assert pq.read_table(out / EVENTS).column("position").to_pylist() == list(range(1, head + 1))
    assert verify_export(out, public_keys()) == []
    with pytest.raises(Exception, match="ends at"):
        export(out, since=first_at, url=season)


def _pseudonym(key: bytes, value: str) -> str:
    """The pseudonym of an id as exports have always made it: BLAKE2b keyed with the export key, 16 bytes, spelled
    as a UUID. Written out here so that a change to the export's own code cannot move it."""
    digest = hashlib.blake2b(value.encode(), key=key, digest_size=16).hexdigest()
    return f"{digest[:8]}-{digest[8:12]}-{digest[12:16]}-{digest[16:20]}-{digest[20:]}"


def test_every_id_is_pseudonymised_as_exports_always_did(season: str, tmp_path: Path) -> None:
    key = base64.b64decode(os.environ["HAJJ_LEDGER_EXPORT_KEY"])
    out = tmp_path / "export"
    export(out, url=season)
    ledger = JourneyLedger(season)
    stored = {n.id: n for n in ledger.recorder.select_notifications(start=1, limit=1_000_000)}
    ledger.close()
    events = read(out, EVENTS).to_pylist()
    assert len(events) == len(stored)
    people = {"pilgrim_id", "journey_id"}
    for event in events:
        notification = stored[event["position"]]
        expected = json.loads(notification.state)
        for name in people & expected.keys():
            expected[name] = _pseudonym(key, expected[name])
        stamp = expected["stamp"]
        stamp["command_id"] = _pseudonym(key, stamp["command_id"])
        if stamp["correlation_id"]:
            stamp["correlation_id"] = _pseudonym(key, stamp["correlation_id"])
        if "identity_digest" in expected:
            expected["identity_digest"] = None
        journey = ".journey:" in notification.topic
        aggregate = str(notification.originator_id)
        assert event["aggregate_id"] == (_pseudonym(key, aggregate) if journey else aggregate)
        assert json.loads(event["state"]) == expected
        assert (event["agency_id"], event["role"]) == (stamp["agency_id"], stamp["role"])
        assert event["occurred_at"] == datetime.fromisoformat(stamp["occurred_at"])


def test_a_page_is_rewritten_by_column_exactly_as_event_by_event(season: str) -> None:
    """The columnar rewrite and the event-by-event one (for pages it does not handle) agree to the byte, and a
    page holding an escaped character falls back to the second."""
    pseudonyms = Pseudonyms(bytes(range(32)))
    ledger = JourneyLedger(season)
    pages = list(Chain(ledger).tables.pages_with_digests(0, ledger.head(), 500))
    ledger.close()
    for page in pages:
        columns = export_events._rewritten(page, pseudonyms)
        assert columns is not None and columns.equals(export_events._decoded(page.rows(), pseudonyms))
        assert Packed.of(page.rows()) == page
    rows = pages[0].rows()
    state = rows[3][4]
    escaped = state.replace(b'"role":"', b'"role":"\\u006d', 1)  # still the same JSON, spelled another way
    rows[3] = (*rows[3][:4], escaped, rows[3][5])
    assert export_events._rewritten(Packed.of(rows), pseudonyms) is None
    assert export_events.events_table(Packed.of(rows), pseudonyms).equals(export_events._decoded(rows, pseudonyms))


def test_an_export_made_event_by_event_goes_on_by_column_and_joins(
    season: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An export written before the columnar rewrite (event by event) takes an incremental part written after it:
    the parts verify as one, and hold exactly what one export written by column holds (the same pseudonyms, so
    they join with each other and with every export made with the key)."""
    ledger = JourneyLedger(season)
    first_at = ledger.head()
    out = tmp_path / "export"
    with monkeypatch.context() as patched:
        patched.setattr(exports, "events_table", lambda page, made: export_events._decoded(page.rows(), made))
        export(out, url=season)
    simulate(ledger, 6, 1446, 9)
    head = ledger.head()
    ledger.close()
    project(season)
    export(out, since=first_at, url=season)
    assert verify_export(out, public_keys()) == []
    events = read(out, EVENTS)
    assert events.column("position").to_pylist() == list(range(1, head + 1))
    again = tmp_path / "again"
    export(again, at=head, url=season)
    assert read(again, EVENTS).to_pylist() == events.to_pylist()


def _pyarrow_counts(table: Path, column: str) -> dict[str, int]:
    grouped = pq.read_table(table).group_by(column).aggregate([(column, "count")])
    return dict(zip(grouped.column(column).to_pylist(), grouped.column(f"{column}_count").to_pylist(), strict=True))


def _duckdb_counts(table: Path, column: str) -> dict[str, int]:
    import duckdb

    files = f"{table}/*.parquet" if table.is_dir() else str(table)
    grouped = duckdb.sql(f"SELECT {column}, count(*) FROM read_parquet('{files}') GROUP BY {column}")
    assert grouped is not None
    return dict(grouped.fetchall())


def _pandas_counts(table: Path, column: str) -> dict[str, int]:
    import pandas as pd

    return {k: int(v) for k, v in pd.read_parquet(table).groupby(column).size().items()}


@pytest.mark.parametrize(
    "counts", [_pyarrow_counts, _duckdb_counts, _pandas_counts], ids=["pyarrow", "duckdb", "pandas"]
)
def test_an_analyst_reads_the_whole_export_and_groups_it_by_a_code_in_pyarrow_duckdb_and_pandas(
    season: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, counts: Callable[[Path, str], dict[str, int]]
) -> None:
    """The export as analysts first query it: every table read whole as it lies on disk (the events' directory of
    parts as one dataset), grouped by a column of codes, with the counts the store holds. Pages of 100 events and an
    incremental part give the files many row groups, each with a dictionary of its own codes."""
    monkeypatch.setattr(exports, "PAGE", 100)
    ledger = JourneyLedger(season)
    head = ledger.head()
    events = Counter(n.topic.rsplit(".", 1)[-1] for n in ledger.recorder.select_notifications(start=1, limit=head))
    ledger.close()
    out = tmp_path / "export"
    export(out, at=head // 2, url=season)
    manifest = export(out, since=head // 2, url=season)
    assert len(manifest["tables"][EVENTS]["files"]) == 2
    assert counts(out / EVENTS, "event") == events
    engine = engine_for(season)
    with engine.connect() as connection:
        for model in MODELS:
            codes = [c.name for c in model.columns() if isinstance(c.type, sa.String) and not c.nullable]
            if codes and manifest["tables"][model.name]["rows"]:
                rows = connection.execute(sa.select(model.view().c[codes[0]])).scalars()
                assert counts(out / f"{model.name}.parquet", codes[0]) == Counter(rows), model.name
    engine.dispose()


# Over HTTP, for the analyst role: ask, follow, download.


def test_an_analyst_asks_follows_and_downloads_an_export(api: Api, tmp_path: Path) -> None:  # noqa: F811
    ledger = JourneyLedger(api.url)
    simulate(ledger, 8, 1446, 2)
    head = ledger.head()
    ledger.close()
    is_problem(api.post("analyst", "/v1/exports", {"format": "xlsx"}), 422)
    started = api.post("analyst", "/v1/exports", {"format": "parquet"})
    assert started.status_code == 202, started.text
    export_id = started.json()["export_id"]
    deadline = time.monotonic() + 120
    while (status := api.get("analyst", f"/v1/exports/{export_id}").json())["state"] == "running":
        assert time.monotonic() < deadline
        time.sleep(0.1)
    assert status["state"] == "done", status
    assert status["position"] == head and status["done"] == status["total"] == head
    is_problem(api.get("ministry", f"/v1/exports/{export_id}"), 403)
    names = [f["name"] for f in status["files"]]
    assert MANIFEST in names and f"{EVENTS}/part-{1:012d}-{head:012d}.parquet" in names
    downloaded = tmp_path / "downloaded"
    for file in status["files"]:
        answer = api.client.get(file["url"], headers=api.auth("analyst"))
        assert answer.status_code == 200, (file, answer.text)
        (downloaded / file["name"]).parent.mkdir(parents=True, exist_ok=True)
        (downloaded / file["name"]).write_bytes(answer.content)
    assert verify_export(downloaded, public_keys()) == []
    is_problem(api.get("analyst", f"/v1/exports/{export_id}/files/../status.json"), 404)
    is_problem(api.get("analyst", f"/v1/exports/{uuid4()}"), 404)


def test_the_read_models_copied_out_of_postgresql_equal_them_read_row_by_row(postgres_url: str) -> None:
    """PostgreSQL's read models leave by COPY as CSV, parsed by pyarrow: every value (nulls, empty strings, times,
    flags, pseudonymised ids) as the rows read one by one give it."""
    ledger = JourneyLedger(postgres_url)
    simulate(ledger, 25, 1446, 4)
    ledger.close()
    engine = engine_for(postgres_url)
    upgrade(engine)
    project(postgres_url)
    pseudonyms = Pseudonyms(b"k" * 32)
    compared = 0
    with engine.connect() as connection, connection.begin():
        for model in MODELS:
            schema = export_models.model_schema(model)
            ids = {c.name: c.name not in KEPT_UUIDS for c in model.columns() if isinstance(c.type, sa.Uuid)}
            view = model.view()
            query = sa.select(*(view.c[n] for n in schema.names)).order_by(*(view.c[k] for k in model.key))
            copied = [
                export_models.pseudonymised(t, ids, pseudonyms)
                for t in export_models.copied_pages(connection, query, schema)
            ]
            fetched = [
                export_models.pseudonymised(t, ids, pseudonyms)
                for t in export_models.fetched_pages(connection, query, schema, ids)
            ]
            as_copied = pa.concat_tables(copied).to_pylist() if copied else []
            as_fetched = pa.concat_tables(fetched).to_pylist() if fetched else []
            assert as_copied == as_fetched, model.name
            compared += len(as_copied)
    engine.dispose()
    assert compared > 500  # the season filled the views
