"""What an identity's documents must look like to be taken as documents: a passport number as ICAO 9303's
machine-readable zone prints one, a country of ISO 3166-1 alpha-3, a date of birth in the past and within a life.

Checked when an identity is given (registered, recorded, corrected), so that "string", a birth today or country
"YXD" are refused with the field and the reason, and nothing is stored.
"""

from __future__ import annotations

import re
import unicodedata
from datetime import UTC, date, datetime

# ISO 3166-1 alpha-3: the 249 officially assigned codes (countries and territories), as of 2024.
COUNTRIES = frozenset(
    """
    ABW AFG AGO AIA ALA ALB AND ARE ARG ARM ASM ATA ATF ATG AUS AUT AZE BDI BEL BEN BES BFA BGD BGR BHR BHS BIH BLM
    BLR BLZ BMU BOL BRA BRB BRN BTN BVT BWA CAF CAN CCK CHE CHL CHN CIV CMR COD COG COK COL COM CPV CRI CUB CUW CXR
    CYM CYP CZE DEU DJI DMA DNK DOM DZA ECU EGY ERI ESH ESP EST ETH FIN FJI FLK FRA FRO FSM GAB GBR GEO GGY GHA GIB
    GIN GLP GMB GNB GNQ GRC GRD GRL GTM GUF GUM GUY HKG HMD HND HRV HTI HUN IDN IMN IND IOT IRL IRN IRQ ISL ISR ITA
    JAM JEY JOR JPN KAZ KEN KGZ KHM KIR KNA KOR KWT LAO LBN LBR LBY LCA LIE LKA LSO LTU LUX LVA MAC MAF MAR MCO MDA
    MDG MDV MEX MHL MKD MLI MLT MMR MNE MNG MNP MOZ MRT MSR MTQ MUS MWI MYS MYT NAM NCL NER NFK NGA NIC NIU NLD NOR
    NPL NRU NZL OMN PAK PAN PCN PER PHL PLW PNG POL PRI PRK PRT PRY PSE PYF QAT REU ROU RUS RWA SAU SDN SEN SGP SGS
    SHN SJM SLB SLE SLV SMR SOM SPM SRB SSD STP SUR SVK SVN SWE SWZ SXM SYC SYR TCA TCD TGO THA TJK TKL TKM TLS TON
    TTO TUN TUR TUV TWN TZA UGA UKR UMI URY USA UZB VAT VCT VEN VGB VIR VNM VUT WLF WSM YEM ZAF ZMB ZWE
    """.split()  # noqa: SIM905 (a block of codes reads better than 249 quoted strings)
)
MAX_AGE_YEARS = 130  # older than anyone on record (122): a year of birth mistyped, not a pilgrim
PASSPORT_NUMBER = re.compile(r"[A-Z0-9]{5,9}")  # ICAO 9303's document number: up to 9, A-Z and 0-9 (5: this ledger's)


def passport_number(text: str) -> str:
    """A passport number as written to one form: NFKC, upper case, no spaces (the vault's index reads it so)."""
    return unicodedata.normalize("NFKC", text).upper().replace(" ", "")


def checked_passport_number(text: str) -> str:
    number = passport_number(text)
    if not PASSPORT_NUMBER.fullmatch(number) or not any(c.isdigit() for c in number):
        raise ValueError(
            f"{text!r} is not a passport number as a passport's machine-readable zone prints one (ICAO 9303): "
            "5 to 9 letters A-Z and digits, at least one of them a digit"
        )
    return number


def checked_country(code: str) -> str:
    if code not in COUNTRIES:
        raise ValueError(f"{code!r} is not a country's ISO 3166-1 alpha-3 code (e.g. IDN, PAK, EGY)")
    return code


def checked_date_of_birth(day: date) -> date:
    today = datetime.now(UTC).date()
    if day >= today:
        raise ValueError(f"{day} is not in the past: a date of birth is before today ({today})")
    oldest = date(today.year - MAX_AGE_YEARS, today.month, 28 if (today.month, today.day) == (2, 29) else today.day)
    if day < oldest:
        raise ValueError(f"{day} would make the pilgrim older than {MAX_AGE_YEARS} years (born {oldest} or later)")
    return day
