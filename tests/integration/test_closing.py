"""Closing a season on SQLite and PostgreSQL: archived, verified from its place, taken out of the hot store (which
still verifies), read back from its archive exactly as before, found out when tampered with, left whole when the
close fails half-way, and restored."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import sqlalchemy as sa

from hajj_ledger.archive import verification
from hajj_ledger.archive.reading import open_season
from hajj_ledger.archive.seasons import MINISTRY, SeasonClosedError, close, closed_seasons, restore
from hajj_ledger.archive.target import MANIFEST, ArchiveError, Target
from hajj_ledger.archive.verification import CHAIN, CHECKPOINTS, EVENTS, verify_archive
from hajj_ledger.audit.as_of import AsOf, journey_as_of
from hajj_ledger.audit.chain import Chain, signing_keys
from hajj_ledger.audit.manifests import sign_manifest
from hajj_ledger.audit.reads import TrailQuery, event_json, trail
from hajj_ledger.audit.signing import SigningKeys
from hajj_ledger.domain.errors import IllegalStepError
from hajj_ledger.domain.season_commands import OpenSeason
from hajj_ledger.domain.vocabulary import SeasonStage
from hajj_ledger.ledger import JourneyLedger
from hajj_ledger.migrations import upgrade
from hajj_ledger.projections import FOLLOWED
from hajj_ledger.projections.closing import SeasonViews
from hajj_ledger.projections.replay import replay
from hajj_ledger.projections.runner import Runner
from hajj_ledger.projections.schema import engine_for
from hajj_ledger.simulation.season import simulate

CLOSED, OPEN = 1446, 1447


def _keys() -> SigningKeys:
    keys = signing_keys(required=True)
    assert keys is not None
    return keys


def _project(url: str) -> None:
    runner = Runner(FOLLOWED, url)
    try:
        runner.run(once=True)
    finally:
        runner.close()


@pytest.fixture
def seasons(store_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[JourneyLedger]:
    """Two simulated seasons in one store, its views current and its log sealed; closed seasons open under tmp."""
    monkeypatch.setenv("HAJJ_LEDGER_SEASON_CACHE", str(tmp_path / "cache"))
    ledger = JourneyLedger(store_url)
    simulate(ledger, 12, CLOSED, 4)
    simulate(ledger, 6, OPEN, 5)
    engine = engine_for(store_url)
    upgrade(engine)
    engine.dispose()
    _project(store_url)
    Chain(ledger, _keys()).checkpoint()
    yield ledger
    ledger.close()


def _season_events(ledger: JourneyLedger, season: int) -> list[tuple[int, UUID]]:
    """(position, aggregate) of every event of `season` in the store."""
    with ledger.recorder.datastore.transaction(commit=False) as cursor:  # type: ignore[attr-defined]
        postgres = ledger.database_url.startswith("postgres")
        events, position = ("journeyledger_events", "notification_id") if postgres else ("stored_events", "rowid")
        cursor.execute(
            f"SELECT {position} AS at, originator_id FROM {events} WHERE season = {'%s' if postgres else '?'} "
            f"ORDER BY {position}",
            (season,),
        )
        return [
            (r["at"] if postgres else r[0], r["originator_id"] if postgres else UUID(r[1])) for r in cursor.fetchall()
        ]


def _view_rows(url: str) -> dict[str, list[dict[str, Any]]]:
    """Every row of every view and of the trail's index, in key order."""
    engine = engine_for(url)
    try:
        with engine.connect() as connection:
            return {
                model.name: [
                    {k: _utc(v) for k, v in row.items()}
                    for row in connection.execute(
                        sa.select(model.view()).order_by(*(model.view().c[k] for k in model.key))
                    ).mappings()
                ]
                for projection in FOLLOWED
                for model in projection.models
            }
    finally:
        engine.dispose()


def _utc(value: Any) -> Any:
    """A time as the API gives it, from either store: in UTC (SQLite's come back without their zone)."""
    if isinstance(value, datetime):
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    return value


def _seasons_rows(rows: dict[str, list[dict[str, Any]]], season_ids: set[UUID], positions: set[int]) -> dict[str, Any]:
    """The rows of each archived view that are the season's (SeasonViews' rule, applied in Python)."""
    names = {t.name for t in SeasonViews().tables()}
    mine: dict[str, Any] = {}
    for name in names:
        mine[name] = [
            r
            for r in rows[name]
            if r.get("season") == CLOSED
            or any(r.get(k) in season_ids for k in ("journey_id", "trip_id", "offer_id", "contract_id"))
            or (name == "trail_index" and r["position"] in positions)
        ]
    return mine


def _audit_answers(ledger: JourneyLedger, journeys: list[UUID], positions: list[int]) -> dict[str, Any]:
    """What an auditor asks of a season: journeys' histories, journeys as of positions, trails by filter."""
    histories = {j: [event_json(e) for e in ledger.history(j)] for j in journeys}
    own = {j: [n.id for n in ledger.store.select_aggregate_notifications(j)] for j in journeys}
    as_of = {
        (j, p): journey_as_of(ledger, j, AsOf(position=p)).state()
        for j in journeys
        for p in (own[j][0], own[j][len(own[j]) // 2], positions[-1])
    }
    first = ledger.history(journeys[0])[0]
    trails = {
        name: [(e.position, e.event, e.agency_id) for e in trail(ledger, query, 0, 1000).entries]
        for name, query in {
            "journey": TrailQuery(aggregate_id=journeys[0]),
            "agency": TrailQuery(agency_id=first.stamp.agency_id, from_position=positions[0]),
            "event": TrailQuery(event="VisaIssued", from_position=positions[0], until_position=positions[-1]),
        }.items()
    }
    return {"histories": histories, "as_of": as_of, "trails": trails}


def test_a_closed_season_leaves_the_store_which_still_verifies_and_comes_back_whole(
    seasons: JourneyLedger, tmp_path: Path
) -> None:
    ledger, url = seasons, str(tmp_path / "archive" / str(CLOSED))
    before = _view_rows(ledger.database_url)
    head = ledger.head()  # the season's stages are recorded after it: the views of the log before the close
    replayed = _replayed(ledger.database_url, tmp_path / "before.sqlite3", head)
    events = _season_events(ledger, CLOSED)
    kept = _season_events(ledger, OPEN)

    manifest = close(ledger, CLOSED, url, _keys(), SeasonViews(ledger.database_url))

    assert manifest["events"] == {"first": events[0][0], "last": events[-1][0], "count": len(events)}
    assert _season_events(ledger, CLOSED) == [] and _season_events(ledger, OPEN) == kept
    assert [c.season for c in closed_seasons(ledger)] == [CLOSED]
    report = Chain(ledger).verify(_keys().public)
    assert report.ok, report.findings
    verdict = verify_archive(url, _keys().public)
    assert verdict.ok and verdict.events == len(events), verdict.problems
    season_ids = {i for _, i in events}
    after = _view_rows(ledger.database_url)
    assert not any(_seasons_rows(after, season_ids, {p for p, _ in events}).values())
    with pytest.raises(SeasonClosedError, match="closed already"):
        close(ledger, CLOSED, str(tmp_path / "again"), _keys())

    restore(ledger, CLOSED, url, _keys().public, SeasonViews(ledger.database_url))

    assert _season_events(ledger, CLOSED) == events and closed_seasons(ledger) == []
    report = Chain(ledger).verify(_keys().public)
    assert report.ok and report.events >= len(events) + len(kept), report.findings
    assert _view_rows(ledger.database_url) == before
    assert _replayed(ledger.database_url, tmp_path / "after.sqlite3", head) == replayed


def _replayed(url: str, path: Path, until: int) -> dict[str, list[dict[str, Any]]]:
    """Every view replayed from the log up to `until`, aside."""
    engine = engine_for(f"sqlite:///{path}")
    try:
        replay(url, until, engine, FOLLOWED)
    finally:
        engine.dispose()
    return _view_rows(f"sqlite:///{path}")


def test_a_closed_season_answers_from_its_archive_exactly_as_before(seasons: JourneyLedger, tmp_path: Path) -> None:
    ledger, url = seasons, str(tmp_path / "archive")
    events = _season_events(ledger, CLOSED)
    journeys = sorted({i for _, i in events if _is_journey(ledger, i)})[:4]
    positions = [events[0][0], events[len(events) // 2][0], events[-1][0]]
    asked = _audit_answers(ledger, journeys, positions)
    # A proof names the first checkpoint covering its event: the close signs one at the season's last event.
    Chain(ledger, _keys()).checkpoint_at(positions[-1])
    proofs = {p: Chain(ledger).proof(p) for p in positions}
    rows = _seasons_rows(_view_rows(ledger.database_url), {i for _, i in events}, {p for p, _ in events})

    close(ledger, CLOSED, url, _keys(), SeasonViews(ledger.database_url))
    store = open_season(CLOSED, url, _keys().public, SeasonViews())

    with JourneyLedger(store, create_tables=False) as archived:
        assert _audit_answers(archived, journeys, positions) == asked
        assert {p: Chain(archived).proof(p) for p in positions} == proofs
    opened = _view_rows(store)
    assert {name: opened[name] for name in rows} == rows


def _is_journey(ledger: JourneyLedger, aggregate_id: UUID) -> bool:
    return ledger.store.select_aggregate_notifications(aggregate_id)[0].topic.endswith("Journey.Registered")


def test_a_changed_archive_file_is_found_and_named(seasons: JourneyLedger, tmp_path: Path) -> None:
    url = tmp_path / "archive"
    close(seasons, CLOSED, str(url), _keys())
    table = pq.read_table(url / EVENTS)
    states = table.column("state").to_pylist()
    states[3] = states[3].replace(b'"', b"'", 1)
    pq.write_table(table.set_column(4, "state", pa.array(states, pa.binary())), url / EVENTS)

    verdict = verify_archive(str(url), _keys().public)

    assert verdict.problems == [f"{EVENTS}: differs from the file archived (SHA-256)"]
    manifest = json.loads((url / MANIFEST).read_text())
    manifest["files"][EVENTS]["sha256"] = verdict.problems and _sha256(url / EVENTS)  # re-signed by a forger: no key
    (url / MANIFEST).write_text(json.dumps(manifest))
    assert verify_archive(str(url), _keys().public).problems[0].startswith(f"{MANIFEST}: signature does not verify")


def _sha256(path: Path) -> str:
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_a_close_that_fails_half_way_leaves_the_hot_store_whole(
    seasons: JourneyLedger, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ledger = seasons
    events = _season_events(ledger, CLOSED)
    before = _view_rows(ledger.database_url)
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")

    with pytest.raises(ArchiveError, match="cannot make the archive's directory"):
        close(ledger, CLOSED, str(blocker / "archive"), _keys(), SeasonViews(ledger.database_url))

    def broken(*_: Any) -> Iterator[pa.Table]:
        raise ArchiveError("the target went away while the views were written")
        yield

    views = SeasonViews(ledger.database_url)
    monkeypatch.setattr(views, "read", broken)
    with pytest.raises(ArchiveError, match="went away"):
        close(ledger, CLOSED, str(tmp_path / "half"), _keys(), views)

    assert _season_events(ledger, CLOSED) == events and closed_seasons(ledger) == []
    assert _view_rows(ledger.database_url) == before
    report = Chain(ledger).verify(_keys().public)
    assert report.ok, report.findings


def test_the_command_line_closes_reads_verifies_and_restores_a_season(
    seasons: JourneyLedger, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from hajj_ledger.cli import main

    ledger, url = seasons, str(tmp_path / "archive")
    monkeypatch.setenv("HAJJ_LEDGER_DATABASE_URL", ledger.database_url)
    journey = next(i for _, i in _season_events(ledger, CLOSED) if _is_journey(ledger, i))
    last = _season_events(ledger, CLOSED)[-1][0]
    Chain(ledger, _keys()).checkpoint_at(last)  # as the close will: the proof's covering checkpoint

    def run(*argv: str) -> str:
        monkeypatch.setenv("HAJJ_LEDGER_DATABASE_URL", ledger.database_url)  # each command a process of its own
        code = main(list(argv))
        out = capsys.readouterr().out
        assert code == 0, out
        return out

    reads = [
        ("history", str(journey), "--json"),
        ("trail", "--event", "VisaIssued", "--json"),
        ("as-of", str(journey), "--position", str(last)),
        ("proof", str(last)),
        ("view", "journey_status", "--limit", "1000", "--season", str(CLOSED)),
    ]
    before = [run(*read) for read in reads]
    assert "closed" in run("season", "close", str(CLOSED), "--to", url)
    assert "OK" in run("season", "verify", url)
    assert "OK" in run("verify", "--archived", "--season", str(CLOSED))
    assert str(CLOSED) in run("season", "list")
    mine = {str(i) for _, i in _season_events(ledger, OPEN)}
    after = [run(*read, "--archived", "--season", str(CLOSED)) for read in reads]
    assert [after[0], *after[2:4]] == [before[0], *before[2:4]]
    # The trail and the view over the whole store: the closed season's part of them.
    trail = [line for line in before[1].splitlines() if json.loads(line)["aggregate_id"] not in mine]
    assert after[1].splitlines() == trail
    assert after[4] == before[4] and before[4].strip()  # a view of one season: the closed season's rows, all there

    assert "restored" in run("season", "restore", str(CLOSED), "--from", url)
    assert [run(*read) for read in reads] == before


def _unseasoned(ledger: JourneyLedger) -> None:
    """The store turned back into what it was before seasons were kept: no season columns, the log unpartitioned."""
    statements = (
        [
            "DROP INDEX stored_events_season",
            "ALTER TABLE stored_events DROP COLUMN season",
            "ALTER TABLE command_receipts DROP COLUMN season",
            "DROP TABLE log_floor",
        ]
        if not ledger.database_url.startswith("postgres")
        else [
            "CREATE TABLE old_events (originator_id uuid NOT NULL, originator_version bigint NOT NULL, topic text, "
            "state bytea, notification_id bigint NOT NULL DEFAULT nextval('journeyledger_events_notification_id_seq'), "
            "PRIMARY KEY (originator_id, originator_version))",
            "INSERT INTO old_events SELECT originator_id, originator_version, topic, state, notification_id "
            "FROM journeyledger_events",
            "ALTER SEQUENCE journeyledger_events_notification_id_seq OWNED BY old_events.notification_id",
            "DROP TABLE journeyledger_events",
            "ALTER TABLE old_events RENAME TO journeyledger_events",
            "ALTER TABLE journeyledger_events RENAME CONSTRAINT old_events_pkey TO journeyledger_events_pkey",
            "CREATE UNIQUE INDEX journeyledger_events_notification_id_idx ON journeyledger_events (notification_id)",
            "CREATE TABLE old_receipts (command_id uuid PRIMARY KEY, fingerprint text NOT NULL, outcome text NOT NULL)",
            "INSERT INTO old_receipts SELECT command_id, fingerprint, outcome FROM command_receipts",
            "DROP TABLE command_receipts",
            "ALTER TABLE old_receipts RENAME TO command_receipts",
            "ALTER TABLE command_receipts RENAME CONSTRAINT old_receipts_pkey TO command_receipts_pkey",
            "UPDATE alembic_version SET version_num = '0007'",
        ]
    )
    with ledger.recorder.datastore.transaction(commit=True) as cursor:  # type: ignore[attr-defined]
        for statement in statements:
            cursor.execute(statement)


def test_a_store_made_before_seasons_were_kept_gets_them_and_closes(seasons: JourneyLedger, tmp_path: Path) -> None:
    ledger = seasons
    closed, kept = _season_events(ledger, CLOSED), _season_events(ledger, OPEN)
    url = ledger.database_url
    _unseasoned(ledger)
    ledger.close()
    engine = engine_for(url)
    upgrade(engine)  # migration 0009 on PostgreSQL; the ledger below upgrades SQLite itself
    engine.dispose()

    with JourneyLedger(url) as upgraded:
        assert _season_events(upgraded, CLOSED) == closed and _season_events(upgraded, OPEN) == kept
        simulate(upgraded, 3, 1445, 6)  # appending carries on after the last position
        assert _season_events(upgraded, 1445)[0][0] > kept[-1][0]
        close(upgraded, CLOSED, str(tmp_path / "archive"), _keys(), SeasonViews(url))
        assert _season_events(upgraded, CLOSED) == []
        report = Chain(upgraded, _keys()).verify(_keys().public)
        assert report.ok, report.findings


def test_a_season_is_not_closed_before_its_calendar_allows_and_its_stages_are_recorded(
    seasons: JourneyLedger, tmp_path: Path
) -> None:
    ledger = seasons
    now = datetime.now(UTC)
    ledger.record(OpenSeason(command_id=uuid4(), occurred_at=now, season=1448), MINISTRY)
    with pytest.raises(IllegalStepError, match="closing begins after") as refused:
        close(ledger, 1448, str(tmp_path / "early"), _keys())
    assert refused.value.stage in ("open", "running") and ledger.season(1448).stage == SeasonStage.OPEN

    close(ledger, CLOSED, str(tmp_path / "archive"), _keys())
    archived = ledger.season(CLOSED)
    assert archived.stage == SeasonStage.ARCHIVED and archived.archive_written is not None
    assert archived.archive_written.url == (tmp_path / "archive").as_uri()
    assert archived.archive_written.event_count == closed_seasons(ledger)[0].events
    restore(ledger, CLOSED, str(tmp_path / "archive"), _keys().public)
    assert ledger.season(CLOSED).stage == SeasonStage.CLOSED


def _forged(url: Path, name: str, column: str, row: int, change: Any) -> None:
    """One value of an archived file changed by someone holding the signing key: the file's SHA-256 re-signed."""
    table = pq.read_table(url / name)
    values = table.column(column).to_pylist()
    values[row] = change(values[row])
    index = table.schema.get_field_index(column)
    pq.write_table(table.set_column(index, column, pa.array(values, table.schema.field(column).type)), url / name)
    manifest = json.loads((url / MANIFEST).read_text())
    manifest["files"][name]["sha256"] = _sha256(url / name)
    sign_manifest(manifest, _keys())
    (url / MANIFEST).write_text(json.dumps(manifest))


@pytest.mark.parametrize("stretches", ["one", "several"])
def test_an_archive_checked_in_stretches_names_an_event_or_a_link_that_was_forged(
    store_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, stretches: str
) -> None:
    """Checked in one pass, or cut at signed checkpoints into stretches that worker processes link apart (each from
    the head signed where it begins): the same events are counted, and a forged event or link is named."""
    monkeypatch.setenv("HAJJ_LEDGER_SEASON_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(verification, "PARALLEL_FROM", 0 if stretches == "several" else 10**9)
    ledger = JourneyLedger(store_url)
    simulate(ledger, 12, CLOSED, 4)
    simulate(ledger, 6, OPEN, 5)
    Chain(ledger, _keys(), every=40).checkpoint()  # checkpoints to cut at
    url = tmp_path / "archive"
    events = _season_events(ledger, CLOSED)
    close(ledger, CLOSED, str(url), _keys())
    ledger.close()
    manifest = json.loads((url / MANIFEST).read_text())
    signed = pq.read_table(url / CHECKPOINTS).column("position").to_pylist()
    cut = verification._stretches(Target(url.as_uri()), None, bytes(32), dict.fromkeys(signed, bytes(32)))
    assert len(cut) == 1 if stretches == "one" else len(cut) > 2

    verdict = verify_archive(str(url), _keys().public)

    assert verdict.ok and verdict.events == len(events) == manifest["events"]["count"], verdict.problems
    forged_event = len(events) * 2 // 3  # in a later stretch than the first
    position = events[forged_event][0]
    _forged(url, EVENTS, "state", forged_event, lambda state: state.replace(b'"', b"'", 1))
    assert verify_archive(str(url), _keys().public).problems == [
        f"{EVENTS}: the event at position {position} differs from the one the chain sealed"
    ]
    _forged(url, EVENTS, "state", forged_event, lambda state: state.replace(b"'", b'"', 1))
    assert verify_archive(str(url), _keys().public).ok
    chain = pq.read_table(url / CHAIN).column("position").to_pylist()
    links = len(chain) // 2
    _forged(url, CHAIN, "digest", links, lambda digest: bytes(32))
    problems = verify_archive(str(url), _keys().public).problems
    reached = min(p for p in signed if p >= chain[links])
    assert f"{CHAIN}: the links do not reach the head signed at position {reached}" in problems
    assert (f"{EVENTS}: the event at position {chain[links]} differs from the one the chain sealed" in problems) == (
        chain[links] in {p for p, _ in events}
    )
