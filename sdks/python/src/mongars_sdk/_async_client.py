"""The asyncio client, and the source of the sync one.

``_client.py`` (``Client``) is generated from this file by ``scripts/sdk_unasync.py`` (``make
sdk-sync``): edit this file only. Docstrings and comments are written for both clients; the
generator drops their "async " and "await " and renames ``AsyncClient`` and its kin there too.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from types import TracebackType
from typing import Any, Self, TypeVar

import anyio
import httpx

from mongars_sdk import _endpoints as ep
from mongars_sdk import _models as m
from mongars_sdk._base import (
    DEFAULT_TIMEOUT,
    AsyncLock,
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
from mongars_sdk._websocket import AsyncWebSocketSession

T = TypeVar("T")


class AsyncClient:
    """A monGARS client. Authenticate with ``api_key=``, or call ``login()``: the access token
    is then refreshed by itself before it expires (and once more if the server says it has).

    ```python
    async with AsyncClient("http://127.0.0.1:8000", api_key="mg_...") as client:
        answer = await client.chat("Hello!")
        print(answer.response)
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
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._http = httpx.AsyncClient(
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
        self._refresh_lock = AsyncLock()

    @property
    def base_url(self) -> httpx.URL:
        return self._http.base_url

    async def close(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    # -- sending -----------------------------------------------------------------------------

    async def _send(self, call: Call[Any], *, stream: bool = False) -> httpx.Response:
        """Send with refresh and retries; the response is open (``stream``) or read."""
        refreshed = False
        attempt = 0
        while True:
            if call.authenticated and self.credentials.refresh_due():
                await self._refresh_tokens(self.credentials.access_token)
            bearer_sent = self.credentials.access_token
            request = build_request(self._http, call, self.credentials)
            try:
                response = await self._http.send(request, stream=stream)
            except httpx.TransportError as exc:
                # Only a connection never made is surely unsent; otherwise retry idempotent ones.
                wait = None
                if call.idempotent or isinstance(exc, httpx.ConnectError):
                    wait = self.retry.delay(attempt, exc, idempotent=True)
                if wait is None:
                    cls = APITimeoutError if isinstance(exc, httpx.TimeoutException) else None
                    raise (cls or APIConnectionError)(str(exc), request=request) from exc
                attempt += 1
                await anyio.sleep(wait)
                continue
            if response.is_success or response.status_code in call.ok_statuses:
                if not stream:
                    await response.aread()
                return response
            await response.aread()
            await response.aclose()
            if (
                is_expired_token(response)
                and call.authenticated
                and self.credentials.can_refresh()
                and not refreshed
            ):
                refreshed = True
                await self._refresh_tokens(bearer_sent)
                continue
            error = error_for(response)
            wait = self.retry.delay(attempt, error, idempotent=call.idempotent)
            if wait is None:
                raise error
            attempt += 1
            await anyio.sleep(wait)

    async def _run(self, call: Call[T]) -> T:
        return call.parse(await self._send(call))

    async def _refresh_tokens(self, stale_access_token: str | None) -> None:
        async with self._refresh_lock:
            # Another thread may have rotated the tokens while this one waited for the lock.
            if self.credentials.access_token != stale_access_token:
                return
            if self.credentials.refresh_token is None:
                return
            tokens = await self._run(ep.refresh(self.credentials.refresh_token))
            self.credentials.store(tokens)

    # -- health ------------------------------------------------------------------------------

    async def health(self) -> m.Liveness:
        return await self._run(ep.health())

    async def ready(self) -> m.Readiness:
        """Readiness, including a ``not_ready`` report (the server's 503)."""
        return await self._run(ep.ready())

    # -- auth and the caller's account -------------------------------------------------------

    async def login(self, username: str, password: str) -> m.TokenResponse:
        """Log in; later calls use (and refresh) these tokens."""
        tokens = await self._run(ep.login(username, password))
        self.credentials.store(tokens)
        return tokens

    async def refresh(self) -> m.TokenResponse:
        """Rotate the tokens now (normally done by itself)."""
        if self.credentials.refresh_token is None:
            raise ValueError("no refresh token: log in first")
        tokens = await self._run(ep.refresh(self.credentials.refresh_token))
        self.credentials.store(tokens)
        return tokens

    async def logout(self) -> None:
        """End this login: its access and refresh tokens stop working."""
        await self._run(ep.logout())
        self.credentials.clear()

    async def register(self, username: str, password: str) -> m.User:
        return await self._run(ep.register(username, password))

    async def me(self) -> m.User:
        return await self._run(ep.me())

    async def change_password(self, old_password: str, new_password: str) -> m.TokenResponse:
        """Change the password; earlier tokens die and the client keeps the fresh ones."""
        tokens = await self._run(ep.change_password(old_password, new_password))
        if self.credentials.api_key is None:
            self.credentials.store(tokens)
        return tokens

    async def create_ws_ticket(self) -> m.Ticket:
        return await self._run(ep.create_ws_ticket())

    # -- API keys ----------------------------------------------------------------------------

    async def create_api_key(
        self, name: str, *, expires_in_days: int | None = None
    ) -> m.ApiKeyCreated:
        """Create a key; its secret (``.key``) is only in this answer."""
        return await self._run(ep.create_api_key(name, expires_in_days))

    async def list_api_keys(self) -> list[m.ApiKey]:
        return await self._run(ep.list_api_keys())

    async def delete_api_key(self, key_id: uuid.UUID | str) -> None:
        await self._run(ep.delete_api_key(key_id))

    # -- chat --------------------------------------------------------------------------------

    async def chat(
        self,
        message: str,
        *,
        conversation_id: uuid.UUID | str | None = None,
        use_rag: bool = False,
        collections: list[str] | None = None,
        role: str | None = None,
    ) -> m.ChatResponse:
        """One turn, answered whole once it is generated and stored."""
        return await self._run(
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
    ) -> AsyncChatStream:
        """One turn, streamed: iterate the events (``start``, ``delta``…, ``done``). A dropped
        connection is resumed by itself; an ``error`` event raises ``StreamError``."""
        body = ep.chat_body(message, conversation_id, use_rag, collections, role)
        return AsyncChatStream(self, ep.chat_stream(body))

    def resume_stream(self, stream_id: str, *, after: int = 0) -> AsyncChatStream:
        """Follow a stream from after event ``after`` (for example from another process)."""
        stream = AsyncChatStream(self, ep.resume_stream(stream_id, after))
        stream.progress.stream_id, stream.progress.last_seq = stream_id, after
        return stream

    async def cancel(self, conversation_id: uuid.UUID | str) -> m.CancelResponse:
        """Stop the answers being generated in a conversation (what was said is kept)."""
        return await self._run(ep.cancel(conversation_id))

    # -- history and conversations -----------------------------------------------------------

    async def history(
        self,
        *,
        limit: int | None = None,
        before: int | None = None,
        conversation_id: uuid.UUID | str | None = None,
    ) -> m.HistoryPage:
        """One page of turns, newest first; ``next_url`` leads to the older ones."""
        return await self._run(
            ep.history(limit=limit, before=before, conversation_id=conversation_id)
        )

    async def iter_history(
        self, *, page_size: int = 50, conversation_id: uuid.UUID | str | None = None
    ) -> AsyncIterator[m.HistoryItem]:
        """Every turn, newest first, following ``Link: rel="next"`` page after page."""
        page = await self.history(limit=page_size, conversation_id=conversation_id)
        while True:
            for item in page.items:
                yield item
            if page.next_url is None:
                return
            page = await self._run(ep.history_url(page.next_url))

    async def list_conversations(self, *, limit: int = 20, offset: int = 0) -> m.ConversationPage:
        return await self._run(ep.list_conversations(limit, offset))

    async def get_conversation(self, conversation_id: uuid.UUID | str) -> m.ConversationDetail:
        return await self._run(ep.get_conversation(conversation_id))

    async def rename_conversation(
        self, conversation_id: uuid.UUID | str, title: str
    ) -> m.Conversation:
        return await self._run(ep.rename_conversation(conversation_id, title))

    async def delete_conversation(self, conversation_id: uuid.UUID | str) -> None:
        await self._run(ep.delete_conversation(conversation_id))

    async def export_conversation(self, conversation_id: uuid.UUID | str) -> m.ConversationExport:
        return await self._run(ep.export_conversation_json(conversation_id))

    async def export_conversation_markdown(self, conversation_id: uuid.UUID | str) -> str:
        return await self._run(ep.export_conversation_markdown(conversation_id))

    async def search_conversations(self, query: str, *, limit: int = 20) -> list[m.SearchHit]:
        return await self._run(ep.search_conversations(query, limit))

    # -- WebSocket ---------------------------------------------------------------------------

    def websocket(
        self, *, auto_resume: bool = True, max_reconnects: int = 3
    ) -> AsyncWebSocketSession:
        """A session on the real-time channel (``async with client.websocket() as ws: ...``)."""
        return AsyncWebSocketSession(self, auto_resume=auto_resume, max_reconnects=max_reconnects)

    # -- RAG ---------------------------------------------------------------------------------

    async def upload_document(
        self,
        file: ep.FileInput,
        *,
        filename: str | None = None,
        collection: str | None = None,
        shared: bool = False,
        background: bool | None = None,
    ) -> m.IngestResponse | m.IngestJob:
        """Ingest a .txt, .md, .pdf or .html file: the stored document, or a background job."""
        return await self._run(
            ep.upload_document(
                file, filename=filename, collection=collection, shared=shared, background=background
            )
        )

    async def get_ingest_job(self, job_id: str) -> m.IngestJob:
        return await self._run(ep.get_ingest_job(job_id))

    async def list_documents(
        self, *, collection: str | None = None, limit: int = 50, offset: int = 0
    ) -> list[m.Document]:
        return await self._run(ep.list_documents(collection, limit, offset))

    async def delete_document(self, document_id: uuid.UUID | str) -> None:
        await self._run(ep.delete_document(document_id))

    async def search_documents(
        self, query: str, *, limit: int = 5, collections: list[str] | None = None
    ) -> m.DocumentSearchResponse:
        return await self._run(ep.search_documents(query, limit, collections))

    async def rag_context(
        self, query: str, *, max_results: int = 5, repositories: list[str] | None = None
    ) -> m.RagContext:
        return await self._run(ep.rag_context(query, max_results, repositories))

    # -- models (admin) ----------------------------------------------------------------------

    async def list_models(self) -> m.ModelsResponse:
        return await self._run(ep.list_models())

    async def set_model_role(
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
        return await self._run(ep.set_model_role(role, body))

    async def provision_models(
        self, *, roles: list[str] | None = None, profile: str | None = None, force: bool = False
    ) -> m.ProvisionJob:
        """Start pulling the models the roles need (202); follow it with get_provision_job."""
        return await self._run(ep.provision_models(roles, profile, force))

    async def get_provision_job(self, job_id: str) -> m.ProvisionJob:
        return await self._run(ep.get_provision_job(job_id))

    # -- usage -------------------------------------------------------------------------------

    async def my_usage(self) -> m.Usage:
        return await self._run(ep.my_usage())

    async def user_usage(self, username: str) -> m.UserUsage:
        return await self._run(ep.user_usage(username))

    async def set_user_quota(
        self, username: str, *, daily_messages: int | None, daily_tokens: int | None
    ) -> m.UserUsage:
        return await self._run(ep.set_user_quota(username, daily_messages, daily_tokens))

    # -- users (admin) -----------------------------------------------------------------------

    async def list_users(self, *, limit: int = 50, offset: int = 0) -> m.UserPage:
        return await self._run(ep.list_users(limit, offset))

    async def list_usernames(self) -> list[str]:
        return await self._run(ep.list_usernames())

    async def update_user(
        self, username: str, *, disabled: bool | None = None, is_admin: bool | None = None
    ) -> m.User:
        return await self._run(ep.update_user(username, disabled, is_admin))

    async def delete_user(self, username: str) -> None:
        await self._run(ep.delete_user(username))


class AsyncChatStream:
    """A streamed answer: ``async for event in stream`` gives ``StreamEvent``s; ``text`` and
    ``result`` hold what has arrived. Use it in ``async with`` (or iterate to the end) to
    release the connection."""

    def __init__(self, client: AsyncClient, first_call: Call[None]) -> None:
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

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        if self._response is not None:
            await self._response.aclose()
            self._response = None

    async def until_done(self) -> m.TurnResult | None:
        """Read the whole stream; the stored answer."""
        async for _event in self:
            pass
        return self.result

    async def __aiter__(self) -> AsyncIterator[m.StreamEvent]:
        call = self._first_call
        progress = self.progress
        try:
            while not progress.finished:
                cause: Exception | None = None
                try:
                    self._response = await self._client._send(call, stream=True)
                    progress.opened(self._response)
                    decoder = SSEDecoder()
                    async for line in self._response.aiter_lines():
                        event = decoder.feed(line)
                        if event is not None and progress.accept(event):
                            yield event
                            if progress.finished:
                                return
                except DROPPED as exc:
                    cause = exc
                finally:
                    await self.aclose()
                progress.dropped(cause)
                assert progress.stream_id is not None
                await anyio.sleep(self._client.retry.backoff_delay(progress.resumes - 1))
                call = ep.resume_stream(progress.stream_id, progress.last_seq)
        finally:
            await self.aclose()
