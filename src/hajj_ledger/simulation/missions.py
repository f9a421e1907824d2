"""Allocation: how many pilgrims come from each country, by the calibration's shares (largest remainders, not
sampling, so even a small season has the right shares), and the missions of 100-400 that carry them.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from hajj_ledger.domain.vocabulary import REGION_OF, Mode
from hajj_ledger.simulation import calibration as cal


@dataclass(frozen=True)
class Mission:
    number: int
    country: str
    size: int
    land: int  # how many of its pilgrims travel by land, and by sea; the rest fly
    sea: int

    @property
    def agency_id(self) -> str:
        return f"mission-{self.country}-{self.number:05d}"


def _largest_remainder(total: int, weights: dict[str, float]) -> dict[str, int]:
    whole = sum(weights.values())
    exact = {k: total * w / whole for k, w in weights.items()}
    counts = {k: math.floor(v) for k, v in exact.items()}
    short = total - sum(counts.values())
    for k in sorted(exact, key=lambda k: exact[k] - counts[k], reverse=True)[:short]:
        counts[k] += 1
    return counts


def allocate(pilgrims: int) -> dict[str, int]:
    """Pilgrims per country: regions by their GASTAT shares, countries within a region by quota."""
    by_country: dict[str, int] = {}
    for region, count in _largest_remainder(pilgrims, cal.REGION_SHARE).items():
        weights = {c: float(w) for c, w in cal.COUNTRIES[region].items()}
        by_country.update(_largest_remainder(count, weights))
    return by_country


def _mode_fractions() -> tuple[float, float]:
    """The share of land (sea) pilgrims among those who can come by land (sea) that meets the calibration."""
    region = {r: s for r, s in cal.REGION_SHARE.items()}

    def share(countries: Sequence[str]) -> float:
        total = 0.0
        for country in countries:
            r = REGION_OF[country]
            total += region[r] * cal.COUNTRIES[r][country] / sum(cal.COUNTRIES[r].values())
        return total

    land = cal.MODE_SHARE[Mode.LAND] / share(list(cal.LAND_PORT))
    sea = cal.MODE_SHARE[Mode.SEA] / share(cal.SEA_COUNTRIES)
    return min(land, 1.0), min(sea, 1.0)


def missions(pilgrims: int, seed: int, season: int) -> Iterator[Mission]:
    """The season's missions, countries interleaved (stride scheduling) so that every stretch is a mixture."""
    land_fraction, sea_fraction = _mode_fractions()
    queues: dict[str, list[int]] = {}
    for country, count in allocate(pilgrims).items():
        rng = random.Random(f"{seed}:{season}:{country}")
        sizes = []
        while count > 0:
            size = min(count, rng.randint(*cal.MISSION_SIZE))
            sizes.append(size)
            count -= size
        if sizes:
            queues[country] = sizes
    passes = {country: 0.0 for country in queues}
    strides = {country: 1.0 / len(sizes) for country, sizes in queues.items()}
    number = 0
    while queues:
        country = min(queues, key=lambda c: (passes[c], c))
        size = queues[country].pop(0)
        passes[country] += strides[country]
        if not queues[country]:
            del queues[country]
        land = round(size * land_fraction) if country in cal.LAND_PORT else 0
        sea = round(size * sea_fraction) if country in cal.SEA_COUNTRIES else 0
        number += 1
        yield Mission(number, country, size, land, sea)
