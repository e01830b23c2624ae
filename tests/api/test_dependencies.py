"""Route dependencies stay on the event loop: FastAPI runs a plain ``def`` dependency or route
function in a worker thread, a hand-off that costs more than reading an attribute."""

from __future__ import annotations

import inspect
from collections.abc import Iterator
from typing import Any

from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute

from mongars.app import API_ROUTERS


def dependants(dependant: Dependant) -> Iterator[Dependant]:
    for sub in dependant.dependencies:
        yield sub
        yield from dependants(sub)


def runs_on_the_loop(call: Any) -> bool:
    # A security scheme is an instance whose __call__ is async.
    target = call if inspect.isfunction(call) else getattr(call, "__call__", call)  # noqa: B004
    return inspect.iscoroutinefunction(target) or inspect.isasyncgenfunction(target)


def test_every_route_and_dependency_is_async() -> None:
    routes = [r for router in API_ROUTERS for r in router.routes if isinstance(r, APIRoute)]
    assert len(routes) > 30
    threaded = {
        f"{route.path}: {getattr(d.call, '__qualname__', d.call)}"
        for route in routes
        for d in (route.dependant, *dependants(route.dependant))
        if d.call is not None and not runs_on_the_loop(d.call)
    }
    # FastAPI's own form class for the docs' login, which then spends ~100 ms on argon2 anyway.
    assert threaded == {"/token: OAuth2PasswordRequestForm"}
