"""Every native route as a ``Call``: its method, path, parameters and response type.

The OpenAI-compatible ``/v1/*`` routes are deliberately absent: use the official ``openai``
package with ``base_url=<server>/v1`` and an API key.
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import IO, Any

import httpx

from mongars_sdk import _models as m
from mongars_sdk._base import Call, model, model_list, nothing, without_none

FileInput = str | Path | bytes | IO[bytes]


def _id(value: uuid.UUID | str) -> str:
    return str(value)


# -- health ----------------------------------------------------------------------------------


def health() -> Call[m.Liveness]:
    return Call("GET", "/healthz", model(m.Liveness), authenticated=False)


def ready() -> Call[m.Readiness]:
    return Call(
        "GET", "/ready", model(m.Readiness), authenticated=False, ok_statuses=frozenset({503})
    )


# -- auth and the caller's account -----------------------------------------------------------


def login(username: str, password: str) -> Call[m.TokenResponse]:
    return Call(
        "POST",
        "/api/v1/auth/login",
        model(m.TokenResponse),
        json={"username": username, "password": password},
        authenticated=False,
    )


def refresh(refresh_token: str) -> Call[m.TokenResponse]:
    return Call(
        "POST",
        "/api/v1/auth/refresh",
        model(m.TokenResponse),
        json={"refresh_token": refresh_token},
        authenticated=False,
    )


def logout() -> Call[None]:
    return Call("POST", "/api/v1/auth/logout", nothing)


def register(username: str, password: str) -> Call[m.User]:
    return Call(
        "POST",
        "/api/v1/user/register",
        model(m.User),
        json={"username": username, "password": password},
        authenticated=False,
    )


def me() -> Call[m.User]:
    return Call("GET", "/api/v1/user/me", model(m.User))


def change_password(old_password: str, new_password: str) -> Call[m.TokenResponse]:
    return Call(
        "POST",
        "/api/v1/user/change-password",
        model(m.TokenResponse),
        json={"old_password": old_password, "new_password": new_password},
    )


def create_ws_ticket() -> Call[m.Ticket]:
    return Call("POST", "/api/v1/auth/ws/ticket", model(m.Ticket))


# -- API keys --------------------------------------------------------------------------------


def create_api_key(name: str, expires_in_days: int | None) -> Call[m.ApiKeyCreated]:
    body = without_none(name=name, expires_in_days=expires_in_days)
    return Call("POST", "/api/v1/api-keys", model(m.ApiKeyCreated), json=body)


def list_api_keys() -> Call[list[m.ApiKey]]:
    return Call("GET", "/api/v1/api-keys", model_list(m.ApiKey))


def delete_api_key(key_id: uuid.UUID | str) -> Call[None]:
    return Call("DELETE", f"/api/v1/api-keys/{_id(key_id)}", nothing)


# -- chat ------------------------------------------------------------------------------------


def chat_body(
    message: str,
    conversation_id: uuid.UUID | str | None,
    use_rag: bool,
    collections: list[str] | None,
    role: str | None = None,
) -> dict[str, Any]:
    body: dict[str, Any] = {"message": message}
    if role is not None:
        body["role"] = role
    if conversation_id is not None:
        body["conversation_id"] = _id(conversation_id)
    if use_rag:
        body["use_rag"] = True
    if collections is not None:
        body["collections"] = collections
    return body


def chat(body: dict[str, Any]) -> Call[m.ChatResponse]:
    return Call("POST", "/api/v1/conversation/chat", model(m.ChatResponse), json=body)


def chat_stream(body: dict[str, Any]) -> Call[None]:
    return Call("POST", "/api/v1/conversation/chat/stream", nothing, json=body)


def resume_stream(stream_id: str, after: int) -> Call[None]:
    return Call("GET", f"/api/v1/streams/{stream_id}", nothing, params={"after": after})


def cancel(conversation_id: uuid.UUID | str) -> Call[m.CancelResponse]:
    return Call(
        "POST", f"/api/v1/conversations/{_id(conversation_id)}/cancel", model(m.CancelResponse)
    )


# -- history and conversations ---------------------------------------------------------------


def _history_page(response: httpx.Response) -> m.HistoryPage:
    items = model_list(m.HistoryItem)(response)
    next_link = response.links.get("next", {}).get("url")
    return m.HistoryPage(items=items, next_url=next_link)


def history(
    *,
    limit: int | None = None,
    before: int | None = None,
    conversation_id: uuid.UUID | str | None = None,
) -> Call[m.HistoryPage]:
    params = without_none(
        limit=limit,
        before=before,
        conversation_id=_id(conversation_id) if conversation_id is not None else None,
    )
    return Call("GET", "/api/v1/conversation/history", _history_page, params=params)


def history_url(url: str) -> Call[m.HistoryPage]:
    """The page a ``Link: rel="next"`` header points at (a path with its query)."""
    return Call("GET", url, _history_page)


def list_conversations(limit: int, offset: int) -> Call[m.ConversationPage]:
    params = {"limit": limit, "offset": offset}
    return Call("GET", "/api/v1/conversations", model(m.ConversationPage), params=params)


def get_conversation(conversation_id: uuid.UUID | str) -> Call[m.ConversationDetail]:
    path = f"/api/v1/conversations/{_id(conversation_id)}"
    return Call("GET", path, model(m.ConversationDetail))


def rename_conversation(conversation_id: uuid.UUID | str, title: str) -> Call[m.Conversation]:
    path = f"/api/v1/conversations/{_id(conversation_id)}"
    return Call("PATCH", path, model(m.Conversation), json={"title": title})


def delete_conversation(conversation_id: uuid.UUID | str) -> Call[None]:
    return Call("DELETE", f"/api/v1/conversations/{_id(conversation_id)}", nothing)


def export_conversation_json(conversation_id: uuid.UUID | str) -> Call[m.ConversationExport]:
    path = f"/api/v1/conversations/{_id(conversation_id)}/export"
    return Call("GET", path, model(m.ConversationExport), params={"format": "json"})


def export_conversation_markdown(conversation_id: uuid.UUID | str) -> Call[str]:
    path = f"/api/v1/conversations/{_id(conversation_id)}/export"
    return Call("GET", path, lambda response: response.text, params={"format": "markdown"})


def search_conversations(query: str, limit: int) -> Call[list[m.SearchHit]]:
    params = {"q": query, "limit": limit}
    return Call("GET", "/api/v1/conversations/search", model_list(m.SearchHit), params=params)


# -- RAG -------------------------------------------------------------------------------------


def _ingest_answer(response: httpx.Response) -> m.IngestResponse | m.IngestJob:
    if response.status_code == 202:
        return m.IngestJob.model_validate_json(response.content)
    return m.IngestResponse.model_validate_json(response.content)


def _file_part(file: FileInput, filename: str | None) -> tuple[str, bytes, str]:
    # Read whole, so that a retried upload sends the same bytes again.
    if isinstance(file, str | Path):
        path = Path(file)
        return (filename or path.name, path.read_bytes(), "application/octet-stream")
    if isinstance(file, bytes):
        return (filename or "upload.txt", file, "application/octet-stream")
    name = filename or Path(str(getattr(file, "name", "upload.txt"))).name
    return (name, file.read(), "application/octet-stream")


def upload_document(
    file: FileInput,
    *,
    filename: str | None,
    collection: str | None,
    shared: bool,
    background: bool | None,
) -> Call[m.IngestResponse | m.IngestJob]:
    form: dict[str, Any] = without_none(collection=collection)
    if shared:
        form["shared"] = "true"
    if background is not None:
        form["background"] = "true" if background else "false"
    return Call(
        "POST",
        "/api/v1/rag/documents",
        _ingest_answer,
        data=form,
        files={"file": _file_part(file, filename)},
    )


def get_ingest_job(job_id: str) -> Call[m.IngestJob]:
    return Call("GET", f"/api/v1/rag/jobs/{job_id}", model(m.IngestJob))


def list_documents(collection: str | None, limit: int, offset: int) -> Call[list[m.Document]]:
    params = without_none(collection=collection, limit=limit, offset=offset)
    return Call("GET", "/api/v1/rag/documents", model_list(m.Document), params=params)


def delete_document(document_id: uuid.UUID | str) -> Call[None]:
    return Call("DELETE", f"/api/v1/rag/documents/{_id(document_id)}", nothing)


def search_documents(
    query: str, limit: int, collections: list[str] | None
) -> Call[m.DocumentSearchResponse]:
    body = without_none(query=query, limit=limit, collections=collections)
    return Call("POST", "/api/v1/rag/search", model(m.DocumentSearchResponse), json=body)


def rag_context(query: str, max_results: int, repositories: list[str] | None) -> Call[m.RagContext]:
    body = without_none(query=query, max_results=max_results, repositories=repositories)
    return Call("POST", "/api/v1/review/rag-context", model(m.RagContext), json=body)


# -- models (admin) --------------------------------------------------------------------------


def list_models() -> Call[m.ModelsResponse]:
    return Call("GET", "/api/v1/models", model(m.ModelsResponse))


def set_model_role(role: str, body: dict[str, Any]) -> Call[m.ModelsResponse]:
    return Call("PUT", f"/api/v1/models/roles/{role}", model(m.ModelsResponse), json=body)


def provision_models(
    roles: list[str] | None, profile: str | None, force: bool
) -> Call[m.ProvisionJob]:
    body = {"roles": roles, "profile": profile, "force": force}
    return Call("POST", "/api/v1/models/provision", model(m.ProvisionJob), json=body)


def get_provision_job(job_id: str) -> Call[m.ProvisionJob]:
    return Call("GET", f"/api/v1/models/jobs/{job_id}", model(m.ProvisionJob))


# -- usage -----------------------------------------------------------------------------------


def my_usage() -> Call[m.Usage]:
    return Call("GET", "/api/v1/user/me/usage", model(m.Usage))


def user_usage(username: str) -> Call[m.UserUsage]:
    return Call("GET", f"/api/v1/users/{username}/usage", model(m.UserUsage))


def set_user_quota(
    username: str, daily_messages: int | None, daily_tokens: int | None
) -> Call[m.UserUsage]:
    body = {"daily_messages": daily_messages, "daily_tokens": daily_tokens}
    return Call("PUT", f"/api/v1/users/{username}/quota", model(m.UserUsage), json=body)


# -- users (admin) ---------------------------------------------------------------------------


def list_users(limit: int, offset: int) -> Call[m.UserPage]:
    params = {"limit": limit, "offset": offset}
    return Call("GET", "/api/v1/users", model(m.UserPage), params=params)


def list_usernames() -> Call[list[str]]:
    return Call("GET", "/api/v1/user/list", lambda response: list(response.json()["users"]))


def update_user(username: str, disabled: bool | None, is_admin: bool | None) -> Call[m.User]:
    body = without_none(disabled=disabled, is_admin=is_admin)
    return Call("PATCH", f"/api/v1/users/{username}", model(m.User), json=body)


def delete_user(username: str) -> Call[None]:
    return Call("DELETE", f"/api/v1/users/{username}", nothing)
