"""The base class of every event the ledger records (`RecordedEvent`); each aggregate nests its events under it."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any, ClassVar

from eventsourcing.domain import Aggregate

from hajj_ledger.domain.catalogue import Step
from hajj_ledger.domain.vocabulary import Stamp


class RecordedEvent(Aggregate.Event):
    """What every event of the ledger carries, and the stage change its catalogue row gives it."""

    stamp: Stamp
    steps: ClassVar[Mapping[str, Step]]

    @property
    def recorded_at(self) -> datetime:
        """When the ledger recorded it: the library's own timestamp, set by the ledger's clock."""
        return self.timestamp

    def apply(self, aggregate: Any) -> None:
        to = self.steps[type(self).__name__].to
        if to is not None:
            aggregate.stage = to
