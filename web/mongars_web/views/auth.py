"""Log in, register, log out."""

from __future__ import annotations

from django.contrib import messages
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_http_methods, require_POST

from mongars_web.api import Api, ApiError, plain_words
from mongars_web.forms import LoginForm, RegisterForm
from mongars_web.views.common import current_user, page


def _next_url(request: HttpRequest) -> str:
    target = str(request.POST.get("next") or request.GET.get("next") or "")
    if target and url_has_allowed_host_and_scheme(
        target, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        return target
    return str(reverse("home"))


@require_http_methods(["GET", "POST"])
async def login(request: HttpRequest) -> HttpResponse:
    if await current_user(request) and request.method == "GET":
        return HttpResponseRedirect(reverse("home"))
    form = LoginForm(request.POST or None)
    status = 200
    if request.method == "POST" and form.is_valid():
        try:
            await Api(request).log_in(form.cleaned_data["username"], form.cleaned_data["password"])
        except ApiError as error:
            form.add_error(None, plain_words(error))
            status = error.status
        else:
            return HttpResponseRedirect(_next_url(request))
    elif request.method == "POST":
        status = 400
    return await page(
        request, "login.html", {"form": form, "next": _next_url(request)}, status=status
    )


@require_http_methods(["GET", "POST"])
async def register(request: HttpRequest) -> HttpResponse:
    form = RegisterForm(request.POST or None)
    status = 200
    if request.method == "POST" and form.is_valid():
        api = Api(request)
        username, password = form.cleaned_data["username"], form.cleaned_data["password"]
        try:
            await api.anonymous(
                "POST",
                "/api/v1/user/register",
                json={"username": username, "password": password},
            )
            await api.log_in(username, password)
        except ApiError as error:
            form.add_api_error(error)
            status = error.status
        else:
            messages.success(request, f"Welcome, {username}! Your account is ready.")
            return HttpResponseRedirect(reverse("home"))
    elif request.method == "POST":
        status = 400
    return await page(request, "register.html", {"form": form}, status=status)


@require_POST
async def logout(request: HttpRequest) -> HttpResponse:
    await Api(request).log_out()
    messages.info(request, "You are logged out.")
    return HttpResponseRedirect(reverse("login"))
