"""The read side's URLs: what libpq is given of a store URL, and the standbys named by the environment."""

from __future__ import annotations

import pytest

from hajj_ledger.api.reads import READ_URL_VARIABLE, conninfo, standby_urls


def test_our_own_parameters_are_kept_from_libpq_and_the_schema_is_named() -> None:
    info, schema = conninfo("postgres://u:p@db:6432/ledger?schema=season_1446&pool_size=4&sslmode=require")
    assert info == "postgresql://u:p@db:6432/ledger?sslmode=require" and schema == "season_1446"
    assert conninfo("postgresql://postgres@127.0.0.1:5432/ledger") == (
        "postgresql://postgres@127.0.0.1:5432/ledger",
        None,
    )


def test_standbys_are_comma_separated(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(READ_URL_VARIABLE, raising=False)
    assert standby_urls() == []
    monkeypatch.setenv(READ_URL_VARIABLE, " postgresql://a/ledger, postgresql://b/ledger ,")
    assert standby_urls() == ["postgresql://a/ledger", "postgresql://b/ledger"]
