"""Name keys: the spellings of one name meet, different names mostly do not."""

from __future__ import annotations

import unicodedata

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hajj_ledger.identity.spelling import name_keys
from hajj_ledger.simulation import identities

TABLES = [
    *identities.ARAB_MALE, *identities.ARAB_FEMALE, *identities.ARAB_FAMILY, *identities.INDONESIAN,
    *identities.SOUTH_ASIAN_FAMILY, *identities.TURKISH_FAMILY,
]  # fmt: skip
# Spellings that are really other forms of the name (West African, Turkish, Indonesian) or that split it
# differently: a search for them finds what is written that way, not the Arabic.
OTHER_FORMS = {"ABDOULAYE", "FATOUMATA", "HATİCE", "SAHIN", "CELIK", "ÇELİK", "NURHAYATI", "RAHMAT", "RACHMAT"}


@pytest.mark.parametrize(("arabic", "latin"), TABLES, ids=[arabic for arabic, _ in TABLES])
def test_every_spelling_of_a_name_has_the_keys_of_its_arabic(arabic: str, latin: tuple[str, ...]) -> None:
    assert latin
    for spelling in latin:
        if spelling in OTHER_FORMS:  # found as it is written, never as the Arabic
            assert not name_keys(spelling) & name_keys(arabic), spelling
        else:
            assert name_keys(spelling) == name_keys(arabic), spelling


@pytest.mark.parametrize(
    ("one", "other"),
    [
        ("ABD AL-RAHMAN", "عبد الرحمن"),
        ("Abdul Rahman", "ABDURRAHMAN"),
        ("Muḥammad ibn ʿAbd Allāh", "MOHAMED BIN ABDALLAH"),
        ("مُحَمَّد", "MEHMET"),
        ("Al-Sharif", "ash-Sharif"),
        ("Yusuf", "يوسف"),
    ],
)
def test_the_same_name(one: str, other: str) -> None:
    assert name_keys(one) == name_keys(other)


@pytest.mark.parametrize(("one", "other"), [("AHMED", "HAMID"), ("YUSUF", "YASIN"), ("KHALID", "HALID")])
def test_different_names(one: str, other: str) -> None:  # (OMAR and AMIR do meet: keys find, not prove)
    assert name_keys(one) != name_keys(other)


def test_articles_and_son_of_are_not_keys() -> None:
    assert name_keys("AL BIN BINT ال بن") == set()
    assert name_keys("ALI") == {"al"}  # a name, not an article


@given(st.text(max_size=80))
def test_any_text_gives_keys_and_case_does_not_matter(text: str) -> None:
    assert name_keys(text.upper()) == name_keys(text.lower()) or not text.isascii()


@given(st.text(alphabet="abcdefghijklmnopqrstuvwxyz ", min_size=1, max_size=40))
def test_accents_do_not_matter(text: str) -> None:
    accented = unicodedata.normalize("NFC", "".join(c + "\u0301" if c.isalpha() else c for c in text))
    assert name_keys(accented) == name_keys(text)


@pytest.mark.parametrize(
    ("name", "keys"),
    [
        ("ALI ABD RAHMAN", {"al", "abdrhmn"}),  # "servant of" alone in its part joins the next part
        ("ALI ABD-AL-RAHMAN OMAR", {"al", "abdrhmn", "amr"}),
        ("ABD", {"abd"}),  # nothing after it to join
        ("OMAR ALI OMAR", {"amr", "al"}),
    ],
)
def test_keys_worked_out_part_by_part_join_abd_as_the_whole_name_does(name: str, keys: set[str]) -> None:
    # Each part's keys are worked out once (the vault seals a season of repeated names); ABD still joins the word
    # after it, in its own part or the next one.
    assert name_keys(name) == keys
    assert name_keys(name) == name_keys(name)  # the cached answer, given again unchanged
