"""What every page needs: the logged-in user, rendering, and API errors in plain words."""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import Any

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from mongars_web.api import (
    TOKENS_KEY,
    USER_KEY,
    LoginRequired,
    connector_of,
)

View = Callable[..., Awaitable[HttpResponse]]


def login_required(view: View) -> View:
    """Pages for logged-in people only: the others go to the login page (and come back).
    Whether the login is still valid is the API's call, at the page's first request."""

    @functools.wraps(view)
    async def checked(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if not await request.session.aget(TOKENS_KEY):
            raise LoginRequired()
        return await view(request, *args, **kwargs)

    return checked


async def current_user(request: HttpRequest) -> dict[str, Any] | None:
    user: dict[str, Any] | None = await request.session.aget(USER_KEY)
    return user


def page_number(request: HttpRequest) -> int:
    """``?page=``, 1 when absent or not a page number. isdecimal, not isdigit: "²" is a digit
    to Python that int() refuses."""
    raw = request.GET.get("page", "1")
    return int(raw) if raw.isdecimal() and 0 < int(raw) < 1_000_000 else 1


async def page(
    request: HttpRequest, template: str, context: dict[str, Any] | None = None, status: int = 200
) -> HttpResponse:
    user = await current_user(request)
    connector = connector_of(request)
    full = {
        "user": user,
        "registration_open": connector.registration_open is not False,
        **(context or {}),
    }
    return render(request, f"mongars_web/{template}", full, status=status)


def csrf_failure(request: HttpRequest, reason: str = "") -> HttpResponse:
    # Sync on purpose: Django calls this view from its (sync) CSRF middleware hook.
    return render(
        request,
        "mongars_web/error.html",
        {
            "title": "Form expired",
            "detail": "This form could not be accepted (its security token was missing or "
            "stale). Go back, reload the page and send it again.",
        },
        status=403,
    )
