"""One mission's pilgrims planned step by step: registration and visa, then, for those who travel, arrival, the
days of Hajj and departure by mode of travel (travel), and the rare hospital stay, loss, death or overstay fitted in
between (mishaps).
"""

from __future__ import annotations

from datetime import timedelta

from hajj_ledger.domain.journey import Journey
from hajj_ledger.domain.vocabulary import Actor, Mode, Port, Role, Site
from hajj_ledger.simulation import calibration as cal
from hajj_ledger.simulation import identities
from hajj_ledger.simulation.drafting import Draft, Pilgrim, Planned
from hajj_ledger.simulation.market import open_market
from hajj_ledger.simulation.mishaps import mishaps
from hajj_ledger.simulation.travel import arrive, depart, hajj, transfer

MOFA = Actor("mofa", Role.MOFA)


class MissionPlanner(Draft):
    """One mission's plan: `plan()` draws up every pilgrim's steps and the bus trips, sent as the season's commands."""

    def plan(self) -> list[Planned]:
        m = self.mission
        open_market(self)
        modes = [Mode.LAND] * m.land + [Mode.SEA] * m.sea + [Mode.AIR] * (m.size - m.land - m.sea)
        pilgrims = []
        for mode in modes:
            pilgrim_id = self.uuid()
            male = self.rng.random() < cal.MALE_SHARE
            pilgrims.append(Pilgrim(pilgrim_id, Journey.create_id(self.season, pilgrim_id), male, mode))
        self.pilgrims = pilgrims
        travelling = [p for p in pilgrims if self.before_arrival(p)]
        airport = self.rng.choices(list(cal.AIRPORTS), weights=list(cal.AIRPORTS.values()))[0]
        back_from_mina = self.rng.choice([3, 4])  # leaving Mina on the 12th or the 13th
        # The last flights leave before the visas end (Arafat + 45 days): a day, 1.5 days of flights, hours.
        departure_day = self.rng.uniform(back_from_mina + 1, 2 + cal.DEPARTURE_WINDOW_DAYS)
        for mode in Mode:
            group = [p for p in travelling if p.mode is mode]
            if not group:
                continue
            port = {Mode.AIR: airport, Mode.SEA: Port.JEDDAH_SEA_PORT}.get(mode) or cal.LAND_PORT[m.country]
            first_city = Site.MADINAH if port is Port.MED_AIRPORT else Site.MAKKAH
            arrive(self, group, port, first_city)
            if first_city is Site.MADINAH:
                # Eight days after the last of them arrived (the flights land in no order), or before Hajj.
                settled = max(p.steps[-1].at for p in group)
                leave = min(settled + timedelta(days=8), self.day(-2, 4, 10))
                transfer(self, group, Site.MADINAH, Site.MAKKAH, leave)
            hajj(self, group, back_from_mina)
            depart(self, group, port, departure_day, madinah_first=first_city is Site.MADINAH)
        for p in travelling:
            mishaps(self, p)
        return self.market + [step for p in pilgrims for step in p.steps] + self.trips

    def before_arrival(self, p: Pilgrim) -> bool:
        """Registration to visa; False when the journey ends before travel."""
        m, rng = self.mission, self.rng
        planned = self.day(-rng.uniform(120, 150))
        at = self.add(
            p,
            self.registered_at(planned),
            self.actor,
            "Registered",
            pilgrim_id=p.id,
            season=self.season,
            country=m.country,
            pre_cleared=m.country in ("IDN", "PAK", "MYS", "BGD", "TUR") and rng.random() < 0.3,
            identity=identities.identity(rng, m.country, p.male, self.arafat.date()),
        )
        at = self.add(
            p,
            max(at, planned) + timedelta(days=rng.uniform(1, 5)),  # its market open, however early it registered
            self.actor,
            "PackageContracted",
            journey_id=p.journey_id,
            contract_id=self.contract_id,
            package_id=f"PKG-{m.number:05d}",
        )
        at = self.add(p, self.day(-rng.uniform(60, 90)), self.actor, "VisaRequested", journey_id=p.journey_id)
        if rng.random() < cal.VISA_REJECTED:
            at = self.add(
                p,
                at + timedelta(days=rng.uniform(2, 10)),
                MOFA,
                "VisaRejected",
                journey_id=p.journey_id,
                reason="requirements_not_met",
            )
            if rng.random() >= cal.REAPPLIED_AFTER_REJECTION:
                if rng.random() < 0.8:
                    self.add(
                        p,
                        at + timedelta(days=rng.uniform(3, 10)),
                        self.actor,
                        "Cancelled",
                        journey_id=p.journey_id,
                        reason="visa_refused",
                    )
                return False
            at = self.add(
                p, at + timedelta(days=rng.uniform(1, 5)), self.actor, "VisaRequested", journey_id=p.journey_id
            )
        at = self.add(
            p,
            at + timedelta(days=rng.uniform(2, 10)),
            MOFA,
            "VisaIssued",
            journey_id=p.journey_id,
            valid_until=self.arafat + timedelta(days=45),
        )
        if rng.random() < cal.CANCELLED_BEFORE_ARRIVAL:
            reason = rng.choice(["withdrawn", "no_show"])
            self.add(
                p,
                at + timedelta(days=rng.uniform(1, 20)),
                self.actor,
                "Cancelled",
                journey_id=p.journey_id,
                reason=reason,
            )
            return False
        return True
