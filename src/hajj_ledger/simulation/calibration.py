"""The figures a simulated season is calibrated to (`domain.md`: GASTAT 2024 and press reports).

Pilgrims from abroad only: domestic pilgrims never pass a port, a visa or a mission, so the ledger's journey
does not describe them.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hajj_ledger.domain.vocabulary import REGIONS, Mode, Port

# GASTAT 2024, pilgrims from abroad.
MALE_SHARE = 958_137 / (958_137 + 875_027)
MODE_SHARE = {
    Mode.AIR: 1_546_345 / 1_611_310,
    Mode.LAND: 60_251 / 1_611_310,
    Mode.SEA: 4_714 / 1_611_310,
}
REGION_SHARE = {"asia": 0.633, "arab": 0.223, "africa": 0.113, "europe_americas_oceania": 0.032}

# Pilgrims by country (their regions: vocabulary.REGIONS), the weights of the countries within each region: their
# 2023 quotas where reported, estimates elsewhere.
PILGRIMS: dict[str, int] = {
    "IDN": 221_000, "PAK": 179_210, "IND": 175_025, "BGD": 127_198, "IRN": 87_550,
    "TUR": 79_000, "MYS": 31_600, "AFG": 30_000, "UZB": 15_000, "CHN": 12_000, "PHL": 8_000,
    "EGY": 78_000, "DZA": 41_300, "IRQ": 34_000, "MAR": 34_000, "SDN": 32_000, "YEM": 24_000,
    "SYR": 12_000, "JOR": 8_000, "KWT": 8_000, "ARE": 7_000, "OMN": 6_000, "BHR": 4_500,
    "LBN": 4_000, "QAT": 2_000,
    "NGA": 95_000, "SEN": 12_800, "MLI": 13_000, "NER": 15_000, "ETH": 10_000, "TZA": 5_000,
    "GBR": 25_000, "FRA": 20_000, "USA": 12_000, "DEU": 5_000, "AUS": 3_000,
}  # fmt: skip
COUNTRIES = {region: {c: PILGRIMS[c] for c in countries} for region, countries in REGIONS.items()}

# Land routes from the neighbours, and the sea route across the Red Sea.
LAND_PORT = {
    "JOR": Port.AL_HADITHA,
    "SYR": Port.AL_HADITHA,
    "IRQ": Port.JADIDAT_ARAR,
    "KWT": Port.AL_RAQI,
    "YEM": Port.AL_WADIAH,
    "ARE": Port.AL_BATHA,
    "OMN": Port.AL_BATHA,
    "QAT": Port.AL_BATHA,
    "BHR": Port.KING_FAHD_CAUSEWAY,
}
SEA_COUNTRIES = ("EGY", "SDN")
AIRPORTS = {
    Port.JED_HAJJ_TERMINAL: 0.60,
    Port.JED_NORTH_TERMINAL: 0.10,
    Port.MED_AIRPORT: 0.27,
    Port.TAIF_AIRPORT: 0.02,
    Port.YANBU_AIRPORT: 0.01,
}

MISSION_SIZE = (100, 400)
FLIGHT_SEATS = (220, 310)
BUS_SEATS = (45, 50)
ARRIVAL_WINDOW_DAYS = 33  # ending 6 Dhu al-Hijjah, three days before Arafat
DEPARTURE_WINDOW_DAYS = 40  # from 13 Dhu al-Hijjah
MADINAH_AFTER_HAJJ = 0.45  # of those who did not see Madinah first

# Exceptions, per pilgrim.
VISA_REJECTED = 0.015
REAPPLIED_AFTER_REJECTION = 0.25
CANCELLED_BEFORE_ARRIVAL = 0.008
HOSPITAL_ADMITTED = 0.02
REPORTED_MISSING = 0.005
DIED = 1_301 / 1_833_164  # 2024
OVERSTAYED = 0.0005
INSPECTION_FAILED = 0.06  # of buildings at their first inspection; each passes on re-inspection
CHECKPOINTS = (1, 3)  # road security's checkpoints a bus passes between two cities

# 9 Dhu al-Hijjah (the day of Arafat) of each season, as observed; other seasons by the lunar year.
ARAFAT_DAY = {
    1444: datetime(2023, 6, 27, tzinfo=UTC),
    1445: datetime(2024, 6, 15, tzinfo=UTC),
    1446: datetime(2025, 6, 5, tzinfo=UTC),
    1447: datetime(2026, 5, 26, tzinfo=UTC),
}
LUNAR_YEAR = timedelta(days=354.367)


def arafat_day(season: int) -> datetime:
    if season in ARAFAT_DAY:
        return ARAFAT_DAY[season]
    shift = LUNAR_YEAR * (season - 1446)
    day = ARAFAT_DAY[1446] + shift
    return day.replace(hour=0, minute=0, second=0, microsecond=0)
