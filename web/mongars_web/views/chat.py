"""Conversations: the list, one conversation, sending a message without JavaScript, export,
delete, search, and the WebSocket ticket for the page's script."""

from __future__ import annotations

import uuid
from typing import Any

from django.contrib import messages
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect, JsonResponse
from django.urls import reverse
from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from mongars_web import markdown
from mongars_web.api import Api, ApiError, LoginRequired, connector_of, plain_words
from mongars_web.forms import MessageForm
from mongars_web.views.common import login_required, page, page_number

PAGE_SIZE = 20
EXPORT_FORMATS = ("markdown", "json")
# The page's script swaps this for the new conversation's id after its first message.
PLACEHOLDER_ID = uuid.UUID(int=0)


@require_GET
@login_required
async def conversation_list(request: HttpRequest) -> HttpResponse:
    number = page_number(request)
    response = await Api(request).call(
        "GET",
        "/api/v1/conversations",
        params={"limit": PAGE_SIZE, "offset": (number - 1) * PAGE_SIZE},
    )
    body = response.json()
    return await page(
        request,
        "conversation_list.html",
        {
            "conversations": body["items"],
            "page_number": number,
            "has_next": number * PAGE_SIZE < body["total"],
            "has_previous": number > 1,
            "form": MessageForm(),
        },
    )


def _with_html(messages_out: list[dict[str, Any]]) -> list[dict[str, Any]]:
    for message in messages_out:
        if message["role"] == "assistant":
            message["html"] = mark_safe(markdown.render(message["content"]))  # noqa: S308 - sanitised by nh3
    return messages_out


async def _chat_page(
    request: HttpRequest,
    conversation: dict[str, Any] | None,
    form: MessageForm,
    *,
    error: str | None = None,
    status: int = 200,
) -> HttpResponse:
    connector = connector_of(request)
    return await page(
        request,
        "conversation.html",
        {
            "conversation": conversation,
            "chat_messages": _with_html(conversation["messages"]) if conversation else [],
            "form": form,
            "error": error,
            "ws_url": connector.websocket_url(getattr(request, "scope", {})) or "",
            "url_template": reverse("conversation", args=[PLACEHOLDER_ID]),
        },
        status=status,
    )


async def _send(
    request: HttpRequest, conversation_id: uuid.UUID | None
) -> tuple[dict[str, Any] | None, MessageForm, ApiError | None]:
    """Run one turn from the posted form: (the turn's answer, the form, the refusal)."""
    form = MessageForm(request.POST)
    if not form.is_valid():
        return None, form, None
    body: dict[str, Any] = {"message": form.cleaned_data["message"]}
    if conversation_id is not None:
        body["conversation_id"] = str(conversation_id)
    try:
        answer = (await Api(request).call("POST", "/api/v1/conversation/chat", json=body)).json()
    except ApiError as error:
        return None, form, error
    return answer, form, None


@require_http_methods(["GET", "POST"])
@login_required
async def new_chat(request: HttpRequest) -> HttpResponse:
    if request.method == "GET":
        return await _chat_page(request, None, MessageForm())
    answer, form, error = await _send(request, None)
    if answer is not None:
        return _to_answer(answer)
    return await _chat_page(
        request,
        None,
        form,
        error=plain_words(error) if error else None,
        status=error.status if error else 400,
    )


def _to_answer(answer: dict[str, Any]) -> HttpResponseRedirect:
    url = reverse("conversation", args=[answer["conversation_id"]])
    return HttpResponseRedirect(f"{url}#message-{answer['message_id']}")


@require_http_methods(["GET", "POST"])
@login_required
async def conversation(request: HttpRequest, conversation_id: uuid.UUID) -> HttpResponse:
    api = Api(request)
    if request.method == "POST":
        answer, form, error = await _send(request, conversation_id)
        if answer is not None:
            return _to_answer(answer)
        status = error.status if error else 400
        message = plain_words(error) if error else None
        if error is not None and error.status == 404:
            raise error  # no such conversation (or not yours): the error page says so
    else:
        form, status, message = MessageForm(), 200, None
    found = (await api.call("GET", f"/api/v1/conversations/{conversation_id}")).json()
    return await _chat_page(request, found, form, error=message, status=status)


@require_GET
@login_required
async def export(request: HttpRequest, conversation_id: uuid.UUID) -> HttpResponse:
    export_format = request.GET.get("format", "markdown")
    if export_format not in EXPORT_FORMATS:
        export_format = "markdown"
    upstream = await Api(request).call(
        "GET",
        f"/api/v1/conversations/{conversation_id}/export",
        params={"format": export_format},
    )
    response = HttpResponse(
        upstream.content, content_type=upstream.headers.get("content-type", "text/plain")
    )
    response["Content-Disposition"] = upstream.headers.get(
        "content-disposition", 'attachment; filename="conversation"'
    )
    return response


@require_POST
@login_required
async def delete(request: HttpRequest, conversation_id: uuid.UUID) -> HttpResponse:
    await Api(request).call("DELETE", f"/api/v1/conversations/{conversation_id}")
    messages.success(request, "The conversation was deleted.")
    return HttpResponseRedirect(reverse("home"))


def _highlighted(snippet: str, spans: list[list[int]]) -> SafeString:
    """The snippet (plain text from the API) escaped, with its matched words in <mark>."""
    parts, position = [], 0
    for start, end in sorted(spans):
        if start < position or end > len(snippet):
            continue
        parts += [escape(snippet[position:start]), f"<mark>{escape(snippet[start:end])}</mark>"]
        position = end
    parts.append(escape(snippet[position:]))
    return mark_safe("".join(parts))  # noqa: S308 - every piece escaped above


@require_GET
@login_required
async def search(request: HttpRequest) -> HttpResponse:
    query = request.GET.get("q", "").strip()
    hits: list[dict[str, Any]] = []
    error = None
    status = 200
    if query:
        try:
            response = await Api(request).call(
                "GET", "/api/v1/conversations/search", params={"q": query[:200]}
            )
        except ApiError as refusal:
            error, status = plain_words(refusal), refusal.status
        else:
            hits = response.json()
            for hit in hits:
                hit["html"] = _highlighted(hit["snippet"], hit["highlights"])
    return await page(
        request,
        "search.html",
        {"query": query, "hits": hits, "error": error, "searched": bool(query)},
        status=status,
    )


@require_POST
async def ws_ticket(request: HttpRequest) -> JsonResponse:
    """A single-use WebSocket ticket for the page's script (CSRF-checked like every POST)."""
    connector = connector_of(request)
    try:
        body = (await Api(request).call("POST", "/api/v1/auth/ws/ticket")).json()
    except LoginRequired:
        return JsonResponse(
            {"detail": "Your session has expired; log in again.", "login_url": reverse("login")},
            status=401,
        )
    except ApiError as error:
        return JsonResponse({"detail": plain_words(error), "code": error.code}, status=error.status)
    return JsonResponse(
        {
            "ticket": body["ticket"],
            "ttl": body["ttl"],
            "ws_url": connector.websocket_url(getattr(request, "scope", {})),
        }
    )
