# ruff: noqa: RUF001 (the tables are Arabic and Turkish letters, which look like Latin ones on purpose)
"""Name keys: one key for the many spellings of one name, in Arabic script or in any Latin transliteration.

محمد, MOHAMMED, MUHAMMAD, MOHAMED and MEHMET all give "mhmd". A key is the name's consonant skeleton: Arabic
script mostly leaves short vowels unwritten, and Latin spellings of one Arabic name differ mostly in their vowels
and in how they write the consonants Latin lacks (kh, dh, sh, q, ou...). So both sides are reduced to the same
consonants, with a leading vowel kept as "a" (أحمد AHMED "ahmd" is not حامد HAMID "hmd"). Articles and "son of"
(AL-, EL, BIN, BINT, بن) are left out. Keys are for finding, not proving: different names may share one.
"""

from __future__ import annotations

import re
import unicodedata
from functools import lru_cache

STOP_WORDS = frozenset(
    {"al", "el", "ul", "as", "ash", "ad", "ar", "at", "az", "an", "bin", "bint", "binti", "ibn", "ben", "bn"}
    | {"ال", "بن", "بنت", "ابن"}
)
ABD = re.compile(r"^(abdoul|abdul|abdel|abdal|abdur|abdar|abdou|abdu|abd)(?=.{2})")  # "servant of": ABDULRAHMAN
ABD_WORDS = frozenset({"abd", "abdul", "abdel", "abdal", "abdu", "abdou", "abdoul", "عبد"})  # join the next word
ARTICLE = re.compile(r"^(al|el)(?=.{3})")  # glued article: ALANSARI

# Arabic, Persian and Urdu letters as the Latin letters the skeleton uses ("*" a vowel-like letter, "" dropped).
ARABIC = str.maketrans(
    {
        **dict.fromkeys("اأإآٱءئؤعى", "*"),
        **dict.fromkeys("ويیےۓ", "*"),  # long vowels; a leading و or ي is a consonant, handled below
        **dict.fromkeys("ةۃ", ""),  # taa marbuta: a final -a or -ah, often unwritten in Latin
        "ب": "b", "پ": "b", "ت": "t", "ٹ": "t", "ث": "s", "ج": "j", "چ": "S", "ح": "h", "خ": "x", "د": "d",
        "ڈ": "d", "ذ": "z", "ر": "r", "ڑ": "r", "ز": "z", "ژ": "z", "س": "s", "ش": "S", "ص": "s", "ض": "d",
        "ط": "t", "ظ": "z", "غ": "g", "ف": "f", "ق": "k", "ك": "k", "ک": "k", "گ": "g", "ل": "l", "م": "m",
        "ن": "n", "ں": "n", "ه": "h", "ھ": "h", "ہ": "h",
    }
)  # fmt: skip
LATIN_DIGRAPHS = [
    ("x", "ks"), ("kh", "x"), ("gh", "g"), ("sh", "S"), ("ch", "S"), ("th", "s"), ("dh", "z"), ("dj", "j"), ("ph", "f"),
    ("ck", "k"), ("q", "k"), ("c", "k"), ("p", "b"), ("v", "f"),
]  # fmt: skip
LATIN_BEFORE_DECOMPOSING = str.maketrans({"ş": "sh", "ç": "ch", "ı": "i", "ğ": "g"})
ARABIC_MARKS = re.compile(r"[\u0610-\u061a\u064b-\u065f\u0670\u06d6-\u06ed\u0640]")  # harakat, tatweel


def name_keys(name: str) -> set[str]:
    """The keys of every part of a full name, in Arabic script or Latin letters."""
    keys: set[str] = set()
    for part in name.split():
        part_keys = _part_keys(part)
        if part_keys is None:  # "servant of" joins the word after it, maybe in the next part
            words = [w for part in name.split() for w in _words(part)]
            return {key for word in _joined_abd(words) if (key := _key(word))}
        keys |= part_keys
    return keys


@lru_cache(maxsize=100_000)
def _part_keys(part: str) -> frozenset[str] | None:
    """The keys of one part of a name, worked out once; None when a word of it may join the next (ABD)."""
    words = _words(part)
    if any(word in ABD_WORDS for word in words):
        return None
    return frozenset(key for word in words if (key := _key(word)))


# Names repeat (a season's two million pilgrims share a few thousand name parts): each part is worked out once.
@lru_cache(maxsize=100_000)
def _words(part: str) -> tuple[str, ...]:
    return tuple(w for w in re.split(r"[\-'’.,]+", _plain(part)) if w and w not in STOP_WORDS)


@lru_cache(maxsize=100_000)
def _key(word: str) -> str:
    return _arabic_key(word) if _is_arabic(word) else _latin_key(word)


def _plain(name: str) -> str:
    name = unicodedata.normalize("NFC", name).lower().translate(LATIN_BEFORE_DECOMPOSING)
    name = ARABIC_MARKS.sub("", name)
    decomposed = unicodedata.normalize("NFKD", name)
    return unicodedata.normalize(
        "NFC",
        "".join(
            c
            for c in decomposed
            if unicodedata.category(c) != "Lm" and (not unicodedata.combining(c) or "\u0600" <= c <= "\u06ff")
        ),
    )


def _is_arabic(word: str) -> bool:
    return any("\u0600" <= c <= "\u06ff" for c in word)


def _joined_abd(words: list[str]) -> list[str]:
    """ABD AL-RAHMAN, ABDUL RAHMAN and عبد الرحمن are one name, as ABDULRAHMAN is."""
    joined: list[str] = []
    for word in words:
        if joined and joined[-1] in ABD_WORDS:
            joined[-1] += word
        else:
            joined.append(word)
    return joined


def _latin_key(word: str) -> str:
    word = "".join(c for c in word if "a" <= c <= "z")
    abd = ABD.match(word)
    if abd:
        return "abd" + _latin_key(ARTICLE.sub("", word[abd.end() :]) or word[abd.end() :])
    word = ARTICLE.sub("", word)
    for spelling, letter in LATIN_DIGRAPHS:
        word = word.replace(spelling, letter)
    return _skeleton(word, vowels="aeiouyw")


def _arabic_key(word: str) -> str:
    if word.startswith("عبد") and len(word) > 4:
        return "abd" + _arabic_key(word[3:])
    if word.startswith("ال") and len(word) > 3:
        word = word[2:]
    lead = {"و": "w", "ي": "y", "ی": "y"}.get(word[0], "")
    return _skeleton(lead + word[len(lead) :].translate(ARABIC), vowels="*")


def _skeleton(word: str, vowels: str) -> str:
    """Consonants only, doubled letters once, a leading vowel as "a", a final h dropped, a final t voiced (AHMET)."""
    word = re.sub(r"(.)\1+", r"\1", word)
    if not word:
        return ""
    head, rest = word[0], word[1:]
    if head in vowels and not (head in "yw" and rest[:1] in "aeiou"):  # YUSUF and WIDODO keep their y and w
        head = "a"
    key = head + "".join(c for c in rest if c not in vowels)
    if len(key) > 1 and key.endswith("h"):
        key = key[:-1]
    if len(key) > 1 and key.endswith("t"):
        key = key[:-1] + "d"
    return key
