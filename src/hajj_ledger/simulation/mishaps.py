"""What goes wrong for a few: hospital stays, a few hours missing at Arafat, deaths and overstays, fitted between a
pilgrim's planned steps at the rates of the calibration.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from hajj_ledger.domain.vocabulary import Actor, Role, Site
from hajj_ledger.simulation import calibration as cal
from hajj_ledger.simulation.drafting import Draft, Pilgrim, Planned

MOH = Actor("moh", Role.MOH)


def mishaps(draft: Draft, p: Pilgrim) -> None:
    """Hospital stays, a few hours missing at Arafat, deaths and overstays, fitted between the steps."""
    rng = draft.rng
    if rng.random() < cal.REPORTED_MISSING:
        arafat = next(i for i, s in enumerate(p.steps) if s.fields.get("site") == Site.ARAFAT)
        lost = p.steps[arafat].at + draft.minutes(60, 240)
        found = lost + draft.minutes(60, 180)
        _insert_steps(
            p,
            arafat + 1,
            [
                Planned(
                    lost, next(draft.seq), draft.company, "ReportedMissing", {"journey_id": p.journey_id}, draft.uuid()
                ),
                Planned(
                    found,
                    next(draft.seq),
                    draft.company,
                    "Found",
                    {"journey_id": p.journey_id, "site": Site.ARAFAT},
                    draft.uuid(),
                ),
            ],
        )
    if rng.random() < cal.HOSPITAL_ADMITTED:
        gap = _quiet_gap(draft, p, days=2)
        if gap is not None:
            index, start, end = gap
            admitted = start + (end - start) * rng.uniform(0.1, 0.4)
            discharged = admitted + (end - admitted) * rng.uniform(0.3, 0.8)
            facility = f"HOSPITAL-{rng.randint(1, 25):02d}"
            _insert_steps(
                p,
                index,
                [
                    Planned(
                        admitted,
                        next(draft.seq),
                        MOH,
                        "HospitalAdmitted",
                        {"journey_id": p.journey_id, "facility": facility},
                        draft.uuid(),
                    ),
                    Planned(
                        discharged,
                        next(draft.seq),
                        MOH,
                        "HospitalDischarged",
                        {"journey_id": p.journey_id, "facility": facility},
                        draft.uuid(),
                    ),
                ],
            )
    if rng.random() < cal.DIED:
        gap = _quiet_gap(draft, p, days=0.5)
        if gap is not None:
            index, start, end = gap
            died = start + (end - start) * rng.uniform(0.1, 0.9)
            del p.steps[index:]
            p.steps.append(
                Planned(
                    died,
                    next(draft.seq),
                    MOH,
                    "DeathRecorded",
                    {"journey_id": p.journey_id, "facility": f"HOSPITAL-{rng.randint(1, 25):02d}"},
                    draft.uuid(),
                )
            )
            return
    if rng.random() < cal.OVERSTAYED:
        # Never leaves: everything from the last check-out on is dropped; the visa runs out.
        last_out = max(i for i, s in enumerate(p.steps) if s.event == "HousingCheckedOut")
        del p.steps[last_out:]


def _quiet_gap(draft: Draft, p: Pilgrim, days: float) -> tuple[int, datetime, datetime] | None:
    """A stretch of at least `days` housed in Makkah or Madinah with nothing else happening."""
    gaps = [
        (i + 1, s.at, p.steps[i + 1].at)
        for i, s in enumerate(p.steps[:-1])
        if s.event == "HousingCheckedIn" and p.steps[i + 1].at - s.at >= timedelta(days=days)
    ]
    return draft.rng.choice(gaps) if gaps else None


def _insert_steps(p: Pilgrim, index: int, steps: list[Planned]) -> None:
    p.steps[index:index] = steps
