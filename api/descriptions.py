"""Every route's description completed from one place: who may call it and for what duty (domain/access.py, by the
roles the route declares), and what it refuses. A step's endpoint says the same from the catalogue
(api/routes/steps.py); a route's own text says what it gives and anything it changes."""

from __future__ import annotations

from collections.abc import Iterable

from fastapi.routing import APIRoute

from hajj_ledger.api.deps import ROLES
from hajj_ledger.domain.access import READS
from hajj_ledger.domain.vocabulary import Role

# Each read's route, by "METHOD /path", as access.py lists them.
_READ_OF = {route: read for read in READS.values() for route in read.routes}
REFUSED = "**Refused:** 401 without a valid key; 403 for any other role; 422 naming each parameter that is wrong."


def complete(routes: Iterable[APIRoute]) -> None:
    """Add to each route's description who may call it, and why, and what it refuses; a route that declares no
    roles (the operators' probes) takes no key and is left as it is."""
    for route in routes:
        roles = (route.openapi_extra or {}).get(ROLES)
        if roles is None or "recording" in route.tags:  # the steps and the batch say it from the catalogue
            continue
        names = [f"{method} {route.path}" for method in route.methods or ()]
        read = next((_READ_OF[name] for name in names if name in _READ_OF), None)
        if read is None:
            who = ", ".join(f"`{role}`" for role in roles)
        else:
            who = "\n".join(f"- `{role}`: {read.grants[Role(role)]}" for role in roles)
        said = route.description or (read.what[:1].upper() + read.what[1:] + "." if read else "")
        route.description = f"{said}\n\n**Who may call it:**\n\n{who}\n\n{REFUSED}".strip()
