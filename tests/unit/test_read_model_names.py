"""The read models are named once (hajj_ledger.projections.VIEWS): `status` lists them by name without making them."""

from hajj_ledger.projections import FOLLOWED, FOLLOWED_NAMES, projection


def test_each_name_makes_the_projection_of_that_name() -> None:
    assert [p.name for p in FOLLOWED] == list(FOLLOWED_NAMES)
    assert projection("season_funnel") is FOLLOWED[FOLLOWED_NAMES.index("season_funnel")]
