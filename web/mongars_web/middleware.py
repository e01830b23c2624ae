"""The UI's own middleware: its page headers (CSP, Referrer-Policy), and API refusals that
end a page."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from urllib.parse import urlencode

from asgiref.sync import iscoroutinefunction
from django.contrib import messages
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.http.response import HttpResponseBase
from django.shortcuts import render
from django.urls import reverse
from django.utils.decorators import sync_and_async_middleware
from django.utils.deprecation import MiddlewareMixin

from mongars_web.api import USER_KEY, ApiError, LoginRequired, connector_of, plain_words

Handler = Callable[[HttpRequest], HttpResponseBase | Awaitable[HttpResponseBase]]


def _policy(request: HttpRequest) -> str:
    connect = ["'self'"]
    websocket = connector_of(request).websocket_url(getattr(request, "scope", {}))
    if websocket:  # a remote API: the page talks to its WebSocket directly
        connect.append(websocket.split("/ws/", 1)[0])
    return (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        f"connect-src {' '.join(connect)}; base-uri 'none'; form-action 'self'; "
        "object-src 'none'; frame-ancestors 'none'"
    )


def _add_page_headers(request: HttpRequest, response: HttpResponseBase) -> HttpResponseBase:
    response.setdefault("Content-Security-Policy", _policy(request))
    # The API's "no-referrer" would make browsers send "Origin: null" with the pages' own
    # forms, which CSRF protection then refuses; same-origin keeps it off other sites.
    response.setdefault("Referrer-Policy", "same-origin")
    return response


@sync_and_async_middleware
def page_headers(get_response: Handler) -> Handler:
    """Only the page's own scripts and styles (nothing inline, no CDN), and no frames."""
    if iscoroutinefunction(get_response):

        async def middleware_async(request: HttpRequest) -> HttpResponseBase:
            response = get_response(request)
            assert not isinstance(response, HttpResponseBase)
            return _add_page_headers(request, await response)

        return middleware_async

    def middleware(request: HttpRequest) -> HttpResponseBase:
        response = get_response(request)
        assert isinstance(response, HttpResponseBase)
        return _add_page_headers(request, response)

    return middleware


class ApiErrorPages(MiddlewareMixin):
    """A page the API refused: back to the login page when the login is over, otherwise an
    error page saying what went wrong in plain words."""

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        if isinstance(exception, LoginRequired):
            if exception.reason == "expired":
                messages.info(request, "Your session has expired; please log in again.")
            login = reverse("login")
            if request.method == "GET":  # back to this page after logging in
                login += "?" + urlencode({"next": request.get_full_path()})
            return HttpResponseRedirect(login)
        if isinstance(exception, ApiError):
            title = {
                403: "Not allowed",
                404: "Not found",
            }.get(exception.status, "Something went wrong")
            return render(
                request,
                "mongars_web/error.html",
                {
                    "title": title,
                    "detail": plain_words(exception),
                    "user": request.session.get(USER_KEY),
                },
                status=exception.status if exception.status >= 400 else 502,
            )
        return None
