"""The read side's URLs: what libpq is given of a store URL, and the standbys named by the environment."""

from __future__ import annotations

import pytest

from hajj_ledger.api.sources import READ_URL_VARIABLE, standby_urls
from hajj_ledger.store.connections import Postgres


def test_a_standby_url_is_read_as_every_url_of_the_ledger() -> None:
    """The standbys' URLs take the same parameters as the store's (the schema, a transaction pooler) and refuse
    others by the standbys' variable."""
    standby = Postgres.from_url("postgres://u:p@db:6432/ledger?schema=season_1446", READ_URL_VARIABLE)
    assert standby.connect_kwargs() == {"options": "-csearch_path=season_1446"}
    with pytest.raises(ValueError, match=READ_URL_VARIABLE):
        Postgres.from_url("postgresql://db/ledger?pool_size=4", READ_URL_VARIABLE)


def test_standbys_are_comma_separated(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(READ_URL_VARIABLE, raising=False)
    assert standby_urls() == []
    monkeypatch.setenv(READ_URL_VARIABLE, " postgresql://a/ledger, postgresql://b/ledger ,")
    assert standby_urls() == ["postgresql://a/ledger", "postgresql://b/ledger"]
