"""The synchronous client. ``AsyncClient`` (``_async_client.py``) has the same methods."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from types import TracebackType
from typing import Any, Self, TypeVar

import httpx

from mongars_sdk import _endpoints as ep
from mongars_sdk import _models as m
from mongars_sdk._base import (
    DEFAULT_TIMEOUT,
    Call,
    Credentials,
    RetryPolicy,
    build_request,
    default_headers,
    is_expired_token,
    without_none,
)
from mongars_sdk._exceptions import APIConnectionError, APITimeoutError, error_for
from mongars_sdk._sse import DROPPED, SSEDecoder, StreamProgress
from mongars_sdk._websocket import WebSocketSession

T = TypeVar("T")


class Client:
    """A monGARS client. Authenticate with ``api_key=``, or call ``login()``: the access token
    is then refreshed by itself before it expires (and once more if the server says it has).

    ```python
    with Client("http://127.0.0.1:8000", api_key="mg_...") as client:
        print(client.chat("Hello!").response)
    ```
    """

    def __init__(
        self,
        base_url: str,
        *,
        api_key: str | None = None,
        access_token: str | None = None,
        refresh_token: str | None = None,
        timeout: float | httpx.Timeout = DEFAULT_TIMEOUT,
        max_retries: int = 2,
        max_retry_wait: float = 60.0,
        max_stream_resumes: int = 5,
        headers: dict[str, str] | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self._http = httpx.Client(
            base_url=base_url,
            timeout=timeout,
            headers=default_headers(headers),
            transport=transport,
        )
        self.credentials = Credentials(
            api_key=api_key, access_token=access_token, refresh_token=refresh_token
        )
        self.retry = RetryPolicy(max_retries=max_retries, max_wait=max_retry_wait)
        self.max_stream_resumes = max_stream_resumes
        self._refresh_lock = threading.Lock()

    @property
    def base_url(self) -> httpx.URL:
        return self._http.base_url

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- sending -----------------------------------------------------------------------------

    def _send(self, call: Call[Any], *, stream: bool = False) -> httpx.Response:
        """Send with refresh and retries; the response is open (``stream``) or read."""
        refreshed = False
        attempt = 0
        while True:
            if call.authenticated and self.credentials.refresh_due():
                self._refresh_tokens(self.credentials.access_token)
            bearer_sent = self.credentials.access_token
            request = build_request(self._http, call, self.credentials)
            try:
                response = self._http.send(request, stream=stream)
            except httpx.TransportError as exc:
                # Only a connection never made is surely unsent; otherwise retry idempotent ones.
                wait = None
                if call.idempotent or isinstance(exc, httpx.ConnectError):
                    wait = self.retry.delay(attempt, exc, idempotent=True)
                if wait is None:
                    cls = APITimeoutError if isinstance(exc, httpx.TimeoutException) else None
                    raise (cls or APIConnectionError)(str(exc), request=request) from exc
                attempt += 1
                time.sleep(wait)
                continue
            if response.is_success or response.status_code in call.ok_statuses:
                if not stream:
                    response.read()
                return response
            response.read()
            response.close()
            if (
                is_expired_token(response)
                and call.authenticated
                and self.credentials.can_refresh()
                and not refreshed
            ):
                refreshed = True
                self._refresh_tokens(bearer_sent)
                continue
            error = error_for(response)
            wait = self.retry.delay(attempt, error, idempotent=call.idempotent)
            if wait is None:
                raise error
            attempt += 1
            time.sleep(wait)

    def _run(self, call: Call[T]) -> T:
        return call.parse(self._send(call))

    def _refresh_tokens(self, stale_access_token: str | None) -> None:
        with self._refresh_lock:
            # Another thread may have rotated the tokens while this one waited for the lock.
            if self.credentials.access_token != stale_access_token:
                return
            if self.credentials.refresh_token is None:
                return
            tokens = self._run(ep.refresh(self.credentials.refresh_token))
            self.credentials.store(tokens)

    # -- health ------------------------------------------------------------------------------

    def health(self) -> m.Liveness:
        return self._run(ep.health())

    def ready(self) -> m.Readiness:
        """Readiness, including a ``not_ready`` report (the server's 503)."""
        return self._run(ep.ready())

    # -- auth and the caller's account -------------------------------------------------------

    def login(self, username: str, password: str) -> m.TokenResponse:
        """Log in; later calls use (and refresh) these tokens."""
        tokens = self._run(ep.login(username, password))
        self.credentials.store(tokens)
        return tokens

    def refresh(self) -> m.TokenResponse:
        """Rotate the tokens now (normally done by itself)."""
        if self.credentials.refresh_token is None:
            raise ValueError("no refresh token: log in first")
        tokens = self._run(ep.refresh(self.credentials.refresh_token))
        self.credentials.store(tokens)
        return tokens

    def logout(self) -> None:
        """End this login: its access and refresh tokens stop working."""
        self._run(ep.logout())
        self.credentials.clear()

    def register(self, username: str, password: str) -> m.User:
        return self._run(ep.register(username, password))

    def me(self) -> m.User:
        return self._run(ep.me())

    def change_password(self, old_password: str, new_password: str) -> m.TokenResponse:
        """Change the password; earlier tokens die and the client keeps the fresh ones."""
        tokens = self._run(ep.change_password(old_password, new_password))
        if self.credentials.api_key is None:
            self.credentials.store(tokens)
        return tokens

    def create_ws_ticket(self) -> m.Ticket:
        return self._run(ep.create_ws_ticket())

    # -- API keys ----------------------------------------------------------------------------

    def create_api_key(self, name: str, *, expires_in_days: int | None = None) -> m.ApiKeyCreated:
        """Create a key; its secret (``.key``) is only in this answer."""
        return self._run(ep.create_api_key(name, expires_in_days))

    def list_api_keys(self) -> list[m.ApiKey]:
        return self._run(ep.list_api_keys())

    def delete_api_key(self, key_id: uuid.UUID | str) -> None:
        self._run(ep.delete_api_key(key_id))

    # -- chat --------------------------------------------------------------------------------

    def chat(
        self,
        message: str,
        *,
        conversation_id: uuid.UUID | str | None = None,
        use_rag: bool = False,
        collections: list[str] | None = None,
        role: str | None = None,
    ) -> m.ChatResponse:
        """One turn, answered whole once it is generated and stored."""
        return self._run(
            ep.chat(ep.chat_body(message, conversation_id, use_rag, collections, role))
        )

    def chat_stream(
        self,
        message: str,
        *,
        conversation_id: uuid.UUID | str | None = None,
        use_rag: bool = False,
        collections: list[str] | None = None,
        role: str | None = None,
    ) -> ChatStream:
        """One turn, streamed: iterate the events (``start``, ``delta``…, ``done``). A dropped
        connection is resumed by itself; an ``error`` event raises ``StreamError``."""
        body = ep.chat_body(message, conversation_id, use_rag, collections, role)
        return ChatStream(self, ep.chat_stream(body))

    def resume_stream(self, stream_id: str, *, after: int = 0) -> ChatStream:
        """Follow a stream from after event ``after`` (for example from another process)."""
        stream = ChatStream(self, ep.resume_stream(stream_id, after))
        stream.progress.stream_id, stream.progress.last_seq = stream_id, after
        return stream

    def cancel(self, conversation_id: uuid.UUID | str) -> m.CancelResponse:
        """Stop the answers being generated in a conversation (what was said is kept)."""
        return self._run(ep.cancel(conversation_id))

    # -- history and conversations -----------------------------------------------------------

    def history(
        self,
        *,
        limit: int | None = None,
        before: int | None = None,
        conversation_id: uuid.UUID | str | None = None,
    ) -> m.HistoryPage:
        """One page of turns, newest first; ``next_url`` leads to the older ones."""
        return self._run(ep.history(limit=limit, before=before, conversation_id=conversation_id))

    def iter_history(
        self, *, page_size: int = 50, conversation_id: uuid.UUID | str | None = None
    ) -> Iterator[m.HistoryItem]:
        """Every turn, newest first, following ``Link: rel="next"`` page after page."""
        page = self.history(limit=page_size, conversation_id=conversation_id)
        while True:
            yield from page.items
            if page.next_url is None:
                return
            page = self._run(ep.history_url(page.next_url))

    def list_conversations(self, *, limit: int = 20, offset: int = 0) -> m.ConversationPage:
        return self._run(ep.list_conversations(limit, offset))

    def get_conversation(self, conversation_id: uuid.UUID | str) -> m.ConversationDetail:
        return self._run(ep.get_conversation(conversation_id))

    def rename_conversation(self, conversation_id: uuid.UUID | str, title: str) -> m.Conversation:
        return self._run(ep.rename_conversation(conversation_id, title))

    def delete_conversation(self, conversation_id: uuid.UUID | str) -> None:
        self._run(ep.delete_conversation(conversation_id))

    def export_conversation(self, conversation_id: uuid.UUID | str) -> m.ConversationExport:
        return self._run(ep.export_conversation_json(conversation_id))

    def export_conversation_markdown(self, conversation_id: uuid.UUID | str) -> str:
        return self._run(ep.export_conversation_markdown(conversation_id))

    def search_conversations(self, query: str, *, limit: int = 20) -> list[m.SearchHit]:
        return self._run(ep.search_conversations(query, limit))

    # -- WebSocket ---------------------------------------------------------------------------

    def websocket(self, *, auto_resume: bool = True, max_reconnects: int = 3) -> WebSocketSession:
        """A session on the real-time channel (``with client.websocket() as ws: ...``)."""
        return WebSocketSession(self, auto_resume=auto_resume, max_reconnects=max_reconnects)

    # -- RAG ---------------------------------------------------------------------------------

    def upload_document(
        self,
        file: ep.FileInput,
        *,
        filename: str | None = None,
        collection: str | None = None,
        shared: bool = False,
        background: bool | None = None,
    ) -> m.IngestResponse | m.IngestJob:
        """Ingest a .txt, .md, .pdf or .html file: the stored document, or a background job."""
        return self._run(
            ep.upload_document(
                file, filename=filename, collection=collection, shared=shared, background=background
            )
        )

    def get_ingest_job(self, job_id: str) -> m.IngestJob:
        return self._run(ep.get_ingest_job(job_id))

    def list_documents(
        self, *, collection: str | None = None, limit: int = 50, offset: int = 0
    ) -> list[m.Document]:
        return self._run(ep.list_documents(collection, limit, offset))

    def delete_document(self, document_id: uuid.UUID | str) -> None:
        self._run(ep.delete_document(document_id))

    def search_documents(
        self, query: str, *, limit: int = 5, collections: list[str] | None = None
    ) -> m.DocumentSearchResponse:
        return self._run(ep.search_documents(query, limit, collections))

    def rag_context(
        self, query: str, *, max_results: int = 5, repositories: list[str] | None = None
    ) -> m.RagContext:
        return self._run(ep.rag_context(query, max_results, repositories))

    # -- models (admin) ----------------------------------------------------------------------

    def list_models(self) -> m.ModelsResponse:
        return self._run(ep.list_models())

    def set_model_role(
        self,
        role: str,
        *,
        backend: str,
        model: str | None = None,
        base_url: str | None = None,
        temperature: float | None = None,
        max_tokens: int | None = None,
    ) -> m.ModelsResponse:
        body = without_none(
            backend=backend,
            model=model,
            base_url=base_url,
            temperature=temperature,
            max_tokens=max_tokens,
        )
        return self._run(ep.set_model_role(role, body))

    def provision_models(
        self, *, roles: list[str] | None = None, profile: str | None = None, force: bool = False
    ) -> m.ProvisionJob:
        """Start pulling the models the roles need (202); follow it with get_provision_job."""
        return self._run(ep.provision_models(roles, profile, force))

    def get_provision_job(self, job_id: str) -> m.ProvisionJob:
        return self._run(ep.get_provision_job(job_id))

    # -- usage -------------------------------------------------------------------------------

    def my_usage(self) -> m.Usage:
        return self._run(ep.my_usage())

    def user_usage(self, username: str) -> m.UserUsage:
        return self._run(ep.user_usage(username))

    def set_user_quota(
        self, username: str, *, daily_messages: int | None, daily_tokens: int | None
    ) -> m.UserUsage:
        return self._run(ep.set_user_quota(username, daily_messages, daily_tokens))

    # -- users (admin) -----------------------------------------------------------------------

    def list_users(self, *, limit: int = 50, offset: int = 0) -> m.UserPage:
        return self._run(ep.list_users(limit, offset))

    def list_usernames(self) -> list[str]:
        return self._run(ep.list_usernames())

    def update_user(
        self, username: str, *, disabled: bool | None = None, is_admin: bool | None = None
    ) -> m.User:
        return self._run(ep.update_user(username, disabled, is_admin))

    def delete_user(self, username: str) -> None:
        self._run(ep.delete_user(username))


class ChatStream:
    """A streamed answer: iterate it for ``StreamEvent``s; ``text`` and ``result`` hold what
    has arrived. Use it as a context manager (or iterate to the end) to release the
    connection."""

    def __init__(self, client: Client, first_call: Call[None]) -> None:
        self._client = client
        self._first_call = first_call
        self._response: httpx.Response | None = None
        self.progress = StreamProgress(max_resumes=client.max_stream_resumes)

    @property
    def stream_id(self) -> str | None:
        return self.progress.stream_id

    @property
    def text(self) -> str:
        return self.progress.text

    @property
    def result(self) -> m.TurnResult | None:
        """The stored answer, once ``done`` has arrived."""
        return self.progress.result

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        if self._response is not None:
            self._response.close()
            self._response = None

    def until_done(self) -> m.TurnResult | None:
        """Read the whole stream; the stored answer."""
        for _event in self:
            pass
        return self.result

    def __iter__(self) -> Iterator[m.StreamEvent]:
        call = self._first_call
        progress = self.progress
        try:
            while not progress.finished:
                cause: Exception | None = None
                try:
                    self._response = self._client._send(call, stream=True)
                    progress.opened(self._response)
                    decoder = SSEDecoder()
                    for line in self._response.iter_lines():
                        event = decoder.feed(line)
                        if event is not None and progress.accept(event):
                            yield event
                            if progress.finished:
                                return
                except DROPPED as exc:
                    cause = exc
                finally:
                    self.close()
                progress.dropped(cause)
                assert progress.stream_id is not None
                time.sleep(self._client.retry.backoff_delay(progress.resumes - 1))
                call = ep.resume_stream(progress.stream_id, progress.last_seq)
        finally:
            self.close()
