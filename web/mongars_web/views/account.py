"""Change password, and the administrators' user list (disable, enable, promote, demote)."""

from __future__ import annotations

from django.contrib import messages
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import reverse
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from mongars_web.api import Api, ApiError, plain_words
from mongars_web.forms import ChangePasswordForm
from mongars_web.views.common import login_required, page, page_number

USERS_PAGE_SIZE = 50
# What each button asks the API to change.
USER_ACTIONS = {
    "disable": ({"disabled": True}, "{name} is disabled."),
    "enable": ({"disabled": False}, "{name} is enabled again."),
    "promote": ({"is_admin": True}, "{name} is now an administrator."),
    "demote": ({"is_admin": False}, "{name} is no longer an administrator."),
}


@require_http_methods(["GET", "POST"])
@login_required
async def change_password(request: HttpRequest) -> HttpResponse:
    api = Api(request)
    form = ChangePasswordForm(request.POST or None)
    status = 200
    if request.method == "POST" and form.is_valid():
        try:
            response = await api.call(
                "POST",
                "/api/v1/user/change-password",
                json={
                    "old_password": form.cleaned_data["current_password"],
                    "new_password": form.cleaned_data["new_password"],
                },
            )
        except ApiError as error:
            form.add_api_error(error)
            status = error.status
        else:
            # The change ended every earlier login, this one included: keep the fresh tokens.
            await api.start_session(response.json())
            await api.me()
            messages.success(request, "Your password is changed; your other sessions ended.")
            return HttpResponseRedirect(reverse("home"))
    elif request.method == "POST":
        status = 400
    return await page(request, "change_password.html", {"form": form}, status=status)


@require_GET
@login_required
async def users(request: HttpRequest) -> HttpResponse:
    number = page_number(request)
    body = (
        await Api(request).call(
            "GET",
            "/api/v1/users",
            params={"limit": USERS_PAGE_SIZE, "offset": (number - 1) * USERS_PAGE_SIZE},
        )
    ).json()
    return await page(
        request,
        "users.html",
        {
            "users": body["items"],
            "page_number": number,
            "has_next": number * USERS_PAGE_SIZE < body["total"],
            "has_previous": number > 1,
        },
    )


@require_POST
@login_required
async def user_action(request: HttpRequest, username: str) -> HttpResponse:
    action = request.POST.get("action", "")
    if action not in USER_ACTIONS:
        messages.error(request, f"Unknown action {action!r}.")
        return HttpResponseRedirect(reverse("users"))
    change, done = USER_ACTIONS[action]
    try:
        await Api(request).call("PATCH", f"/api/v1/users/{username}", json=change)
    except ApiError as error:
        if error.status in (401, 403):
            raise
        messages.error(request, plain_words(error))
    else:
        messages.success(request, done.format(name=username))
    return HttpResponseRedirect(reverse("users"))
