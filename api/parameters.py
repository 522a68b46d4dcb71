"""Query parameters an operation does not declare are refused (400 naming the parameter).

OGC API - Features Part 1 refuses unknown parameters on ``/items`` (``/req/core/query-param-
unknown``); the tile and style operations follow the same rule, so a client's typo or a
parameter the server does not implement is never ignored silently.
"""

from __future__ import annotations

from fastapi import Request
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute

from api.errors import ProblemError

#: Query parameters every operation takes: ``scenario`` (what-if scenarios, read by
#: :class:`api.scenarios.ScenarioScope` before the route).
EVERYWHERE = frozenset({"scenario"})


def known_parameters(request: Request) -> None:
    """Refuse query parameters the matched operation does not declare, or gives twice.

    Use as a router dependency (``APIRouter(dependencies=[Depends(known_parameters)])``).

    Parameters
    ----------
    request
        The request.
    """
    route = request.scope.get("route")
    if not isinstance(route, APIRoute):
        return
    declared = _query_names(route.dependant) | EVERYWHERE
    for name in sorted(set(request.query_params)):
        if name not in declared:
            known = ", ".join(sorted(declared)) or "none"
            raise ProblemError(
                f"unknown query parameter {name!r}; this operation takes: {known}",
                parameter=name,
            )
        if len(request.query_params.getlist(name)) > 1:
            raise ProblemError(
                f"query parameter {name!r} is given more than once; give it once",
                parameter=name,
            )


def _query_names(dependant: Dependant) -> set[str]:
    """Names (aliases) of the query parameters an operation and its dependencies declare."""
    names = {param.alias for param in dependant.query_params}
    for sub in dependant.dependencies:
        names |= _query_names(sub)
    return names
