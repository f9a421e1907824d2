"""A mission's market before the season: its company's buildings licensed by the municipalities and inspected by
Civil Defence (a few fail first and pass on re-inspection), the company's housing offer naming them, with places
for the mission and a few to spare, and the mission's contract on it, proposed and signed months before the
pilgrims register.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from hajj_ledger.domain.vocabulary import USUAL_CODES, Actor, City, Role, Site
from hajj_ledger.simulation import calibration as cal
from hajj_ledger.simulation.drafting import Draft, Planned

AMANAH = {City.MAKKAH: Actor("amanah-makkah", Role.AMANAH), City.MADINAH: Actor("amanah-madinah", Role.AMANAH)}
CIVIL_DEFENCE = Actor("civil-defence", Role.CIVIL_DEFENCE)
DISTRICTS = {
    City.MAKKAH: ("Aziziyah", "Misfalah", "Ajyad", "Shisha", "Kudai", "Jarwal"),
    City.MADINAH: ("Markaziyah", "Quba", "Bab al-Majidi", "Sultanah"),
}


def open_market(draft: Draft) -> None:
    """The mission's buildings, offer and contract, as planned steps of the draft's market; the ids are the draft's."""
    rng, size = draft.rng, draft.mission.size
    licensed = draft.day(-rng.uniform(230, 260))
    for site in (Site.MAKKAH, Site.MADINAH):
        city = City(site)
        beds = size + rng.randint(0, size // 10)  # the whole mission may be housed at once
        at = _add(draft, licensed + draft.minutes(0, 600), AMANAH[city], "BuildingLicensed",
                  building_id=draft.building_ids[site], company_id=draft.company.agency_id, city=city,
                  district=rng.choice(DISTRICTS[city]), beds=beds,
                  licence_valid_until=draft.day(cal.DEPARTURE_WINDOW_DAYS + 30))  # fmt: skip
        at += timedelta(days=rng.uniform(3, 15))
        if rng.random() < cal.INSPECTION_FAILED:
            _add(draft, at, CIVIL_DEFENCE, "InspectionFailed", building_id=draft.building_ids[site],
                 findings=rng.choice(USUAL_CODES["InspectionFailed", "findings"]))  # fmt: skip
            at += timedelta(days=rng.uniform(5, 20))
        _add(draft, at, CIVIL_DEFENCE, "InspectionPassed", building_id=draft.building_ids[site],
             findings=USUAL_CODES["InspectionPassed", "findings"][0])  # fmt: skip
    opens = draft.day(-rng.uniform(200, 210))
    _add(draft, opens, draft.company, "OfferPublished", offer_id=draft.offer_id, season=draft.season,
         kind="makkah_housing", site="makkah", places=size + rng.randint(0, size // 5),
         price_sar=rng.randrange(9_000, 30_000, 500), valid_from=opens,
         valid_until=draft.day(-rng.uniform(150, 160)),
         building_ids=tuple(draft.building_ids.values()))  # fmt: skip
    proposed = _add(draft, opens + timedelta(days=rng.uniform(5, 30)), draft.actor, "ContractProposed",
                    contract_id=draft.contract_id, offer_id=draft.offer_id, places=size)  # fmt: skip
    _add(draft, proposed + timedelta(days=rng.uniform(1, 10)), draft.company, "ContractSigned",
         contract_id=draft.contract_id)  # fmt: skip


def _add(draft: Draft, at: datetime, actor: Actor, event: str, **fields: Any) -> datetime:
    draft.market.append(Planned(at, next(draft.seq), actor, event, fields, draft.uuid()))
    return at
