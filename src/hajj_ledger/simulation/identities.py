"""Realistic identities for simulated pilgrims: names as people write them, in Arabic script and in the several
Latin spellings one Arabic name takes in passports (محمد: MOHAMMED, MUHAMMAD, MOHAMED, MHMAD...)."""

from __future__ import annotations

import random
from datetime import date, timedelta
from typing import Any

# (Arabic script, Latin spellings seen in passports)
Name = tuple[str, tuple[str, ...]]

ARAB_MALE: list[Name] = [
    ("محمد", ("MOHAMMED", "MUHAMMAD", "MOHAMED", "MOHAMMAD", "MHMAD", "MUHAMMED")),
    ("أحمد", ("AHMED", "AHMAD", "AHMET")),
    ("عبد الله", ("ABDULLAH", "ABDALLAH", "ABDULLA", "ABDOULAYE")),
    ("عبد الرحمن", ("ABDULRAHMAN", "ABDELRAHMAN", "ABDURRAHMAN", "ABDOURAHMANE")),
    ("علي", ("ALI", "ALY")),
    ("حسن", ("HASSAN", "HASAN", "HASSANE")),
    ("خالد", ("KHALED", "KHALID")),
    ("يوسف", ("YOUSSEF", "YUSUF", "YOUSEF", "YOUSOUF")),
    ("إبراهيم", ("IBRAHIM", "EBRAHIM", "IBRAHIMA")),
    ("عمر", ("OMAR", "UMAR", "OUMAR")),
    ("مصطفى", ("MOSTAFA", "MUSTAFA", "MUSTAPHA")),
]
ARAB_FEMALE: list[Name] = [
    ("فاطمة", ("FATIMA", "FATMA", "FATEMA", "FATOUMATA")),
    ("عائشة", ("AISHA", "AICHA", "AYSHA", "AYŞE")),
    ("مريم", ("MARYAM", "MARIAM", "MERYEM")),
    ("خديجة", ("KHADIJA", "KHADIDJA", "HATİCE")),
    ("زينب", ("ZAINAB", "ZEINAB", "ZEYNEP")),
    ("أمينة", ("AMINA", "AMINAH", "EMINE")),
    ("نور", ("NOUR", "NUR", "NOOR")),
]
ARAB_FAMILY: list[Name] = [
    ("الأنصاري", ("ALANSARI", "AL-ANSARI", "EL ANSARY")),
    ("الحسيني", ("ALHUSSEINI", "EL HOSSEINY", "AL-HUSAYNI")),
    ("العمري", ("ALOMARI", "AL-OMARI", "EL OMARY")),
    ("الشريف", ("ALSHARIF", "EL SHERIF", "ASH-SHARIF")),
    ("المصري", ("ALMASRI", "EL MASRY")),
    ("التميمي", ("ALTAMIMI", "AL-TAMIMI")),
    ("البغدادي", ("ALBAGHDADI", "EL BAGHDADY")),
]
INDONESIAN: list[Name] = [  # often a single name
    ("سيتي", ("SITI",)), ("سري", ("SRI",)), ("نور حياتي", ("NURHAYATI",)), ("بودي", ("BUDI",)),
    ("ديوي", ("DEWI",)), ("سوكارنو", ("SUKARNO",)), ("ويدودو", ("WIDODO",)), ("رحمة", ("RAHMAT", "RACHMAT")),
    ("أحمد فوزي", ("AHMAD FAUZI",)), ("مرني", ("MARNI",)),
]  # fmt: skip
SOUTH_ASIAN_FAMILY: list[Name] = [
    ("خان", ("KHAN",)), ("بيبي", ("BIBI",)), ("حسين", ("HUSSAIN", "HOSSAIN", "HUSAIN")), ("رحمن", ("RAHMAN",)),
    ("قريشي", ("QURESHI", "KURESHI")), ("صديقي", ("SIDDIQUI", "SIDDIQI")), ("بيغم", ("BEGUM",)),
]  # fmt: skip
TURKISH_FAMILY: list[Name] = [
    ("يلماز", ("YILMAZ",)), ("كايا", ("KAYA",)), ("دمير", ("DEMİR", "DEMIR")), ("شاهين", ("ŞAHİN", "SAHIN")),
    ("تشليك", ("ÇELİK", "CELIK")), ("أوزتورك", ("ÖZTÜRK", "OZTURK")),
]  # fmt: skip
GROUPS = {
    "IDN": "indonesian", "MYS": "indonesian", "PAK": "south_asian", "IND": "south_asian", "BGD": "south_asian",
    "AFG": "south_asian", "TUR": "turkish",
}  # fmt: skip


def identity(rng: random.Random, country: str, male: bool, arafat: date) -> dict[str, Any]:
    """A plausible identity for a pilgrim of `country`: a dict as the Register command takes it."""
    given = rng.choice(ARAB_MALE if male else ARAB_FEMALE)
    group = GROUPS.get(country, "arab")
    if group == "indonesian":
        parts = [rng.choice(INDONESIAN)] if rng.random() < 0.6 else [given, rng.choice(INDONESIAN)]
    elif group == "south_asian":
        parts = [given, rng.choice(SOUTH_ASIAN_FAMILY)]
    elif group == "turkish":
        parts = [given, rng.choice(TURKISH_FAMILY)]
    else:
        father = rng.choice(ARAB_MALE)
        parts = [given, ("بن" if male else "بنت", ("BIN" if male else "BINT",)), father, rng.choice(ARAB_FAMILY)]
    age = rng.triangular(25, 85, 55)
    return {
        "name_arabic": " ".join(arabic for arabic, _ in parts),
        "name_latin": " ".join(rng.choice(latin) for _, latin in parts),
        "passport_number": f"{rng.choice('ABCEHKLNPSTUZ')}{rng.randint(1_000_000, 99_999_999)}",
        "passport_country": country,
        "nationality": country,
        "date_of_birth": (arafat - timedelta(days=int(age * 365.25))).isoformat(),
        "gender": "male" if male else "female",
    }
