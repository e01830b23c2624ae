"""Liveness and readiness, for load balancers and orchestrators."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import anyio
from fastapi import APIRouter, Response

from mongars import __version__
from mongars.api.dependencies import ResourcesDep
from mongars.api.schemas.health import CheckResult, Liveness, Readiness
from mongars.db.database import ping

router = APIRouter(tags=["health"])

READY_CHECK_TIMEOUT_SECONDS = 2.0


@router.get("/healthz")
async def liveness() -> Liveness:
    """The process is up and serving (checks nothing else)."""
    return Liveness(version=__version__)


@router.get("/ready", responses={503: {"model": Readiness}})
async def readiness(resources: ResourcesDep, response: Response) -> Readiness:
    """Whether this replica can serve requests: 503 with the failing check otherwise."""
    checks = {"database": await _check(lambda: ping(resources.engine))}
    if resources.redis is not None:
        checks["redis"] = await _check(resources.redis.ping)
    ready = all(check.ok for check in checks.values())
    if not ready:
        response.status_code = 503
    return Readiness(status="ready" if ready else "not_ready", checks=checks)


async def _check(probe: Callable[[], Awaitable[object]]) -> CheckResult:
    try:
        with anyio.fail_after(READY_CHECK_TIMEOUT_SECONDS):
            await probe()
    except TimeoutError:
        return CheckResult(ok=False, detail=f"no answer within {READY_CHECK_TIMEOUT_SECONDS} s")
    except Exception as exc:  # any failure means "not ready", and says why
        return CheckResult(ok=False, detail=f"{type(exc).__name__}: {exc}"[:300])
    return CheckResult(ok=True, detail="reachable")
