"""Why the ledger refuses a command. Each error says what was refused and why, in words an agency can act on."""

from __future__ import annotations

from collections.abc import Iterable


class LedgerError(Exception):
    """A command the ledger refused; nothing of it was stored."""

    kind = "refused"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class ValidationError(LedgerError):
    """A value is malformed or out of range."""

    kind = "invalid"

    def __init__(self, field: str, reason: str, problems: list[tuple[str, str]] | None = None) -> None:
        self.problems = problems or [(field, reason)]
        super().__init__("; ".join(f"{f}: {r}" for f, r in self.problems))
        self.field = field
        self.reason = reason


class OccurredTooEarlyError(ValidationError):
    """A step dated before its journey could have had it: before registration, or too long before its latest step."""

    def __init__(self, reason: str) -> None:
        super().__init__("occurred_at", reason)


class NotFoundError(LedgerError):
    kind = "not_found"


class PermissionDeniedError(LedgerError):
    kind = "forbidden"

    def __init__(self, role: str, event: str, reason: str = "", *, verb: str = "record") -> None:
        because = f" ({reason})" if reason else ""
        super().__init__(f"role '{role}' may not {verb} {event}{because}")
        self.role = str(role)
        self.event = event
        self.action = f"{verb} {event}"


class IllegalStepError(LedgerError):
    """A step the journey's rules do not allow from where it stands."""

    kind = "illegal_step"

    def __init__(self, event: str, stage: str, allowed: Iterable[str], reason: str = "") -> None:
        self.event = event
        self.stage = str(stage)
        self.allowed = sorted(allowed)
        why = reason or "not allowed from this stage"
        steps = ", ".join(self.allowed) or "none (it has ended)"
        super().__init__(f"{event}: {why}; current stage '{stage}'; allowed steps: {steps}")


class OutsideSeasonError(IllegalStepError):
    """A step its season's calendar does not allow: the season not open, closing or later, or the day outside the
    window the step belongs to. `stage` is the season's."""

    def __init__(self, event: str, season: int, stage: str | None, reason: str) -> None:
        LedgerError.__init__(self, f"{event}: refused: {reason}; season {season} is '{stage or 'not opened'}'")
        self.event = event
        self.season = season
        self.stage = str(stage or "not opened")
        self.allowed = []


class IdentityErasedError(NotFoundError):
    """The pilgrim's identity was destroyed; the journey's events remain."""


class CapacityError(LedgerError):
    """No room left: seats on a bus, places on an offer or a contract, beds in a building."""

    kind = "full"


class TripFullError(CapacityError):
    kind = "trip_full"


class OfferFullError(CapacityError):
    kind = "offer_full"


class ContractFullError(CapacityError):
    kind = "contract_full"


class BuildingFullError(CapacityError):
    kind = "building_full"


class ConflictError(LedgerError):
    """Concurrent writers kept changing the same journey or trip; the command was not recorded."""

    kind = "conflict"


class DuplicateRegistrationError(ConflictError):
    pass


class IdempotencyKeyReusedError(ConflictError):
    """A command id already used for a different command."""
