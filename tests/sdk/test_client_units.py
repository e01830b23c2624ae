"""The Python SDK's rules on ``httpx.MockTransport``: error mapping, retries, token refresh,
pagination and stream resume, each against scripted server answers."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import httpx
import mongars_sdk
import pytest
from mongars_sdk import (
    APIConnectionError,
    APIStatusError,
    AsyncClient,
    AuthenticationError,
    BadGatewayError,
    Client,
    ConflictError,
    GatewayTimeoutError,
    GoneError,
    InternalServerError,
    NotFoundError,
    PayloadTooLargeError,
    PermissionDeniedError,
    RateLimitError,
    ServiceUnavailableError,
    UnsupportedMediaTypeError,
    ValidationError,
)
from mongars_sdk._base import websocket_url
from mongars_sdk._sse import SSEDecoder

BASE = "http://mongars.test"
TOKENS = {
    "access_token": "access-1",
    "token_type": "bearer",
    "expires_in": 900,
    "refresh_token": "refresh-1",
    "refresh_expires_in": 86400,
}
USER = {
    "id": "0b8f6c1e-9a43-4c0e-8a43-2b0f9b1d8c11",
    "username": "ada",
    "is_admin": False,
    "is_disabled": False,
    "created_at": "2026-01-01T00:00:00Z",
    "last_login_at": None,
}
Handler = Callable[[httpx.Request], httpx.Response]


def envelope(status: int, code: str, **headers: str) -> httpx.Response:
    body = {"detail": f"refused: {code}", "code": code, "request_id": "req-123"}
    return httpx.Response(status, json=body, headers=headers)


def client_for(handler: Handler, **options: Any) -> Client:
    return Client(BASE, transport=httpx.MockTransport(handler), **options)


@pytest.fixture
def sleeps(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """The waits the sync client asked for, instead of sleeping them."""
    recorded: list[float] = []
    monkeypatch.setattr("mongars_sdk._client.time.sleep", recorded.append)
    return recorded


class TestErrorMapping:
    @pytest.mark.parametrize(
        ("status", "error_class"),
        [
            (400, mongars_sdk.BadRequestError),
            (401, AuthenticationError),
            (403, PermissionDeniedError),
            (404, NotFoundError),
            (409, ConflictError),
            (410, GoneError),
            (413, PayloadTooLargeError),
            (415, UnsupportedMediaTypeError),
            (422, ValidationError),
            (429, RateLimitError),
            (500, InternalServerError),
            (502, BadGatewayError),
            (503, ServiceUnavailableError),
            (504, GatewayTimeoutError),
            (507, InternalServerError),
            (418, APIStatusError),
        ],
    )
    def test_each_status_has_its_class_carrying_the_envelope(
        self, status: int, error_class: type[APIStatusError]
    ) -> None:
        def handler(_request: httpx.Request) -> httpx.Response:
            return envelope(status, "some_code")

        with client_for(handler, max_retries=0) as client, pytest.raises(error_class) as raised:
            client.me()
        error = raised.value
        assert type(error) is error_class
        assert (error.status_code, error.code, error.request_id) == (status, "some_code", "req-123")
        assert error.detail == "refused: some_code"
        assert "req-123" in str(error)

    def test_validation_errors_expose_the_field_list(self) -> None:
        fields = [{"type": "string_too_short", "loc": ["body", "message"], "msg": "too short"}]
        body = {"detail": fields, "code": "validation_error", "request_id": "r"}

        def handler(_request: httpx.Request) -> httpx.Response:
            return httpx.Response(422, json=body)

        with client_for(handler) as client, pytest.raises(ValidationError) as raised:
            client.chat("")
        assert raised.value.errors == fields

    def test_a_body_that_is_not_the_envelope_still_maps(self) -> None:
        def handler(_request: httpx.Request) -> httpx.Response:
            return httpx.Response(502, text="upstream exploded", headers={"X-Request-ID": "x9"})

        with client_for(handler, max_retries=0) as client, pytest.raises(BadGatewayError) as raised:
            client.health()
        assert (raised.value.code, raised.value.request_id) == ("http_error", "x9")
        assert raised.value.detail == "upstream exploded"

    def test_an_unreachable_server_is_a_connection_error(self, sleeps: list[float]) -> None:
        def handler(request: httpx.Request) -> httpx.Response:
            raise httpx.ConnectError("refused", request=request)

        with client_for(handler, max_retries=2) as client, pytest.raises(APIConnectionError):
            client.health()
        assert len(sleeps) == 2  # retried twice, then raised


class TestRetries:
    def test_rate_limits_are_retried_after_the_wait_the_server_names(
        self, sleeps: list[float]
    ) -> None:
        answers = iter([envelope(429, "rate_limited", **{"Retry-After": "3"})] * 2)

        def handler(_request: httpx.Request) -> httpx.Response:
            return next(answers, httpx.Response(200, json=USER))

        with client_for(handler) as client:
            assert client.me().username == "ada"
        assert sleeps == [3.0, 3.0]

    def test_retries_are_bounded_and_the_last_error_carries_retry_after(
        self, sleeps: list[float]
    ) -> None:
        def handler(_request: httpx.Request) -> httpx.Response:
            return envelope(429, "rate_limited", **{"Retry-After": "1"})

        with client_for(handler, max_retries=3) as client, pytest.raises(RateLimitError) as raised:
            client.chat("hi")
        assert raised.value.retry_after == 1.0
        assert sleeps == [1.0, 1.0, 1.0]

    @pytest.mark.parametrize(
        ("code", "retry_after"), [("quota_exceeded", "5"), ("rate_limited", "3600")]
    )
    def test_a_daily_quota_or_a_wait_beyond_the_cap_is_raised_at_once(
        self, sleeps: list[float], code: str, retry_after: str
    ) -> None:
        def handler(_request: httpx.Request) -> httpx.Response:
            return envelope(429, code, **{"Retry-After": retry_after})

        with client_for(handler, max_retry_wait=60) as client, pytest.raises(RateLimitError):
            client.me()
        assert sleeps == []

    def test_an_unavailable_backend_is_retried_for_reads_not_for_chat_turns(
        self, sleeps: list[float]
    ) -> None:
        calls: list[str] = []

        def handler(request: httpx.Request) -> httpx.Response:
            calls.append(request.method)
            return envelope(503, "backend_unavailable", **{"Retry-After": "2"})

        with client_for(handler) as client:
            with pytest.raises(ServiceUnavailableError) as raised:
                client.chat("hello")  # the question may already be stored: never sent twice
            assert raised.value.retry_after == 2.0
            assert calls == ["POST"]
            with pytest.raises(ServiceUnavailableError):
                client.list_conversations()
        assert calls == ["POST", "GET", "GET", "GET"]
        assert sleeps == [2.0, 2.0]

    def test_without_retry_after_the_backoff_grows(self, sleeps: list[float]) -> None:
        def handler(_request: httpx.Request) -> httpx.Response:
            return httpx.Response(504, json={"detail": "slow", "code": "backend_timeout"})

        with client_for(handler, max_retries=3) as client, pytest.raises(GatewayTimeoutError):
            client.health()
        assert len(sleeps) == 3
        assert sleeps[0] <= 0.5 < sleeps[2] <= 2.0


class TestAuthentication:
    def test_login_stores_tokens_and_later_calls_send_them(self) -> None:
        seen: list[str | None] = []

        def handler(request: httpx.Request) -> httpx.Response:
            seen.append(request.headers.get("authorization"))
            if request.url.path == "/api/v1/auth/login":
                assert json.loads(request.content) == {"username": "ada", "password": "pw"}
                return httpx.Response(200, json=TOKENS)
            return httpx.Response(200, json=USER)

        with client_for(handler) as client:
            client.login("ada", "pw")
            client.me()
        assert seen == [None, "Bearer access-1"]

    def test_an_api_key_is_the_bearer(self) -> None:
        def handler(request: httpx.Request) -> httpx.Response:
            assert request.headers["authorization"] == "Bearer mg_secret"
            return httpx.Response(200, json=USER)

        with client_for(handler, api_key="mg_secret") as client:
            assert client.me().username == "ada"

    def test_an_expired_token_is_refreshed_once_and_the_call_replayed(self) -> None:
        seen: list[tuple[str, str | None]] = []

        def handler(request: httpx.Request) -> httpx.Response:
            seen.append((request.url.path, request.headers.get("authorization")))
            if request.url.path == "/api/v1/auth/refresh":
                assert json.loads(request.content) == {"refresh_token": "refresh-0"}
                return httpx.Response(200, json=TOKENS)
            if request.headers["authorization"] == "Bearer access-0":
                return envelope(401, "token_expired")
            return httpx.Response(200, json=USER)

        with client_for(handler, access_token="access-0", refresh_token="refresh-0") as client:
            assert client.me().username == "ada"
            assert client.credentials.refresh_token == "refresh-1"
        assert seen == [
            ("/api/v1/user/me", "Bearer access-0"),
            ("/api/v1/auth/refresh", None),
            ("/api/v1/user/me", "Bearer access-1"),
        ]

    def test_a_token_about_to_expire_is_refreshed_before_the_call(self) -> None:
        paths: list[str] = []

        def handler(request: httpx.Request) -> httpx.Response:
            paths.append(request.url.path)
            if request.url.path == "/api/v1/auth/login":
                return httpx.Response(200, json={**TOKENS, "expires_in": 10})
            if request.url.path == "/api/v1/auth/refresh":
                return httpx.Response(200, json=TOKENS)
            return httpx.Response(200, json=USER)

        with client_for(handler) as client:
            client.login("ada", "pw")  # expires within the 30 s margin
            client.me()
            client.me()  # the refreshed token lasts 900 s: no second refresh
        assert paths == [
            "/api/v1/auth/login",
            "/api/v1/auth/refresh",
            "/api/v1/user/me",
            "/api/v1/user/me",
        ]

    def test_a_revoked_token_is_not_refreshed(self) -> None:
        def handler(request: httpx.Request) -> httpx.Response:
            assert request.url.path != "/api/v1/auth/refresh"
            return envelope(401, "token_revoked")

        client = client_for(handler, access_token="a", refresh_token="r")
        with client, pytest.raises(AuthenticationError) as raised:
            client.me()
        assert raised.value.code == "token_revoked"


def history_item(n: int) -> dict[str, Any]:
    return {
        "user_id": USER["id"],
        "query": f"q{n}",
        "response": f"echo: q{n}",
        "timestamp": "2026-01-01T00:00:00Z",
        "id": n,
        "conversation_id": "7d1f0c1e-9a43-4c0e-8a43-2b0f9b1d8c11",
        "response_id": n + 1000,
        "status": "complete",
        "model": "fake",
    }


class TestHistoryPagination:
    def test_the_iterator_follows_link_next_until_it_is_absent(self) -> None:
        requested: list[str] = []

        def handler(request: httpx.Request) -> httpx.Response:
            requested.append(str(request.url))
            before = int(request.url.params.get("before", 6))
            items = [history_item(n) for n in range(before - 1, max(before - 3, 0), -1)]
            headers = {}
            if items and items[-1]["id"] > 1:
                link = f"/api/v1/conversation/history?before={items[-1]['id']}&limit=2"
                headers["Link"] = f'<{link}>; rel="next"'
            return httpx.Response(200, json=items, headers=headers)

        with client_for(handler, api_key="mg_k") as client:
            ids = [item.id for item in client.iter_history(page_size=2)]
        assert ids == [5, 4, 3, 2, 1]
        assert requested == [
            f"{BASE}/api/v1/conversation/history?limit=2",
            f"{BASE}/api/v1/conversation/history?before=4&limit=2",
            f"{BASE}/api/v1/conversation/history?before=2&limit=2",
        ]


def sse(stream_id: str, seq: int, type_: str, data: dict[str, Any]) -> bytes:
    return f"id: {stream_id}:{seq}\nevent: {type_}\ndata: {json.dumps(data)}\n\n".encode()


START = {"stream_id": "s1", "conversation_id": None, "message_id": 2, "model": "fake"}
DONE = {"text": "echo: a b", "model": "fake"}


class Dropping(httpx.SyncByteStream, httpx.AsyncByteStream):
    """A response body that sends ``chunks`` and then fails like a cut connection."""

    def __init__(self, chunks: list[bytes], *, drop: bool) -> None:
        self.chunks = chunks
        self.drop = drop

    def __iter__(self) -> Iterator[bytes]:
        yield from self.chunks
        if self.drop:
            raise httpx.ReadError("connection reset by peer")

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for chunk in self.chunks:
            yield chunk
        if self.drop:
            raise httpx.ReadError("connection reset by peer")


def resuming_server(requests: list[str]) -> Handler:
    """First answer: start and one delta, then the connection drops; the resume sends the
    rest (from the ``after`` it is given)."""
    events = [
        sse("s1", 1, "start", START),
        sse("s1", 2, "delta", {"text": "echo:"}),
        b": keepalive\n\n",
        sse("s1", 3, "delta", {"text": " a"}),
        sse("s1", 4, "delta", {"text": " b"}),
        sse("s1", 5, "done", DONE),
    ]

    def handler(request: httpx.Request) -> httpx.Response:
        requests.append(f"{request.method} {request.url.path}?{request.url.query.decode()}")
        headers = {"content-type": "text/event-stream", "X-Stream-ID": "s1"}
        if request.method == "POST":
            return httpx.Response(200, headers=headers, stream=Dropping(events[:3], drop=True))
        after = int(request.url.params["after"])
        return httpx.Response(
            200, headers=headers, stream=Dropping(events[after + 1 :], drop=False)
        )

    return handler


class TestStreaming:
    def test_the_decoder_follows_the_event_stream_rules(self) -> None:
        decoder = SSEDecoder()
        lines = ["id: s9:7", "event: delta", 'data: {"text":', 'data: "x"}', ": comment", ""]
        events = [decoder.feed(line) for line in lines]
        assert events[:-1] == [None] * 5
        event = events[-1]
        assert event is not None
        assert (event.stream_id, event.seq, event.type, event.text) == ("s9", 7, "delta", "x")

    def test_a_dropped_stream_is_resumed_after_the_last_event(self, sleeps: list[float]) -> None:
        requests: list[str] = []
        with client_for(resuming_server(requests), api_key="mg_k") as client:
            stream = client.chat_stream("a b")
            events = list(stream)
        assert [event.seq for event in events] == [1, 2, 3, 4, 5]
        assert stream.text == "echo: a b"
        assert requests == [
            "POST /api/v1/conversation/chat/stream?",
            "GET /api/v1/streams/s1?after=2",
        ]
        assert len(sleeps) == 1

    def test_a_stream_that_keeps_dropping_gives_up(self, sleeps: list[float]) -> None:
        def handler(request: httpx.Request) -> httpx.Response:
            headers = {"content-type": "text/event-stream", "X-Stream-ID": "s1"}
            return httpx.Response(200, headers=headers, stream=Dropping([], drop=True))

        client = client_for(handler, api_key="k", max_stream_resumes=2)
        with client, pytest.raises(APIConnectionError, match="dropped 3 times"):
            list(client.chat_stream("a"))
        assert len(sleeps) == 2

    async def test_the_async_client_resumes_the_same_way(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        async def no_sleep(_seconds: float) -> None:
            return None

        monkeypatch.setattr("mongars_sdk._async_client.anyio.sleep", no_sleep)
        requests: list[str] = []
        handler = resuming_server(requests)
        transport = httpx.MockTransport(handler)
        client = AsyncClient(BASE, api_key="mg_k", transport=transport)
        async with client, client.chat_stream("a b") as stream:
            seqs = [event.seq async for event in stream]
        assert seqs == [1, 2, 3, 4, 5]
        assert stream.text == "echo: a b"
        assert requests[-1] == "GET /api/v1/streams/s1?after=2"

    async def test_the_async_client_refreshes_an_expired_token(self) -> None:
        def handler(request: httpx.Request) -> httpx.Response:
            if request.url.path == "/api/v1/auth/refresh":
                return httpx.Response(200, json=TOKENS)
            if request.headers["authorization"] == "Bearer old":
                return envelope(401, "token_expired")
            return httpx.Response(200, json=USER)

        transport = httpx.MockTransport(handler)
        async with AsyncClient(
            BASE, access_token="old", refresh_token="r0", transport=transport
        ) as client:
            assert (await client.me()).username == "ada"
            assert client.credentials.access_token == "access-1"


class TestDocuments:
    def test_an_upload_is_multipart_and_a_background_ingest_is_a_job(self, tmp_path: Any) -> None:
        path = tmp_path / "notes.md"
        path.write_bytes(b"# Notes\n\nThe review is on Friday.")
        job = {
            "job_id": "j1",
            "status": "running",
            "filename": "notes.md",
            "collection": "team",
            "chunks_embedded": 0,
            "chunks_total": 3,
            "document_id": None,
            "replaced": False,
            "error": None,
            "created_at": "2026-01-01T00:00:00Z",
            "finished_at": None,
        }

        def handler(request: httpx.Request) -> httpx.Response:
            body = request.content
            assert request.headers["content-type"].startswith("multipart/form-data")
            assert b'name="file"; filename="notes.md"' in body
            assert b"The review is on Friday." in body
            assert b'name="collection"\r\n\r\nteam' in body
            assert b'name="background"\r\n\r\ntrue' in body
            return httpx.Response(202, json=job)

        with client_for(handler, api_key="mg_k") as client:
            answer = client.upload_document(path, collection="team", background=True)
        assert isinstance(answer, mongars_sdk.IngestJob)
        assert (answer.job_id, answer.chunks_total) == ("j1", 3)


class TestModelAdministration:
    def test_switching_a_role_sends_only_what_was_given(self) -> None:
        def handler(request: httpx.Request) -> httpx.Response:
            assert (request.method, request.url.path) == ("PUT", "/api/v1/models/roles/coding")
            assert json.loads(request.content) == {"backend": "ollama", "model": "qwen2.5:7b"}
            return httpx.Response(
                200, json={"active_profile": "settings", "profiles": [], "roles": []}
            )

        with client_for(handler, api_key="mg_admin") as client:
            answer = client.set_model_role("coding", backend="ollama", model="qwen2.5:7b")
        assert answer.active_profile == "settings"

    def test_provisioning_is_a_job_to_poll(self) -> None:
        job = {
            "id": "p1",
            "profile": "settings",
            "force": False,
            "status": "running",
            "created_at": "2026-01-01T00:00:00Z",
            "roles": [
                {
                    "role": "general",
                    "backend": "ollama",
                    "model": "qwen2.5:7b",
                    "status": "running",
                    "phase": "pulling manifest",
                    "completed_bytes": 10,
                    "total_bytes": None,
                    "detail": None,
                    "error": None,
                    "joined": False,
                    "started_at": "2026-01-01T00:00:00Z",
                    "finished_at": None,
                }
            ],
        }

        def handler(request: httpx.Request) -> httpx.Response:
            if request.method == "POST":
                assert json.loads(request.content) == {
                    "roles": ["general"],
                    "profile": None,
                    "force": True,
                }
                return httpx.Response(202, json=job)
            assert request.url.path == "/api/v1/models/jobs/p1"
            return httpx.Response(200, json={**job, "status": "completed"})

        with client_for(handler, api_key="mg_admin") as client:
            started = client.provision_models(roles=["general"], force=True)
            assert started.roles[0].phase == "pulling manifest"
            assert client.get_provision_job(started.id).status == "completed"


class TestWebSocketAddress:
    @pytest.mark.parametrize(
        ("base_url", "expected"),
        [
            ("http://127.0.0.1:8000", "ws://127.0.0.1:8000/ws/chat/?t=T1"),
            ("https://chat.example/mongars/", "wss://chat.example/mongars/ws/chat/?t=T1"),
        ],
    )
    def test_the_socket_follows_the_base_url(self, base_url: str, expected: str) -> None:
        with Client(base_url) as client:
            assert websocket_url(client.base_url, "T1") == expected


class TestSurface:
    def test_the_sync_and_async_clients_have_the_same_public_methods(self) -> None:
        def public(cls: type) -> set[str]:
            return {name for name in vars(cls) if not name.startswith("_")}

        assert public(Client) == public(AsyncClient)
        assert public(mongars_sdk.ChatStream) - {"close"} == public(mongars_sdk.AsyncChatStream) - {
            "aclose"
        }
        assert public(mongars_sdk.WebSocketSession) == public(mongars_sdk.AsyncWebSocketSession)

    def test_every_exported_name_exists(self) -> None:
        for name in mongars_sdk.__all__:
            assert hasattr(mongars_sdk, name), name


def test_a_chat_turn_may_name_its_role() -> None:
    sent: list[dict[str, Any]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        sent.append(json.loads(request.content))
        return httpx.Response(503, json={"detail": "down", "code": "backend_unavailable"})

    with client_for(handler, api_key="mg_x") as client, pytest.raises(ServiceUnavailableError):
        client.chat("Think it through.", role="reasoning")
    assert sent == [{"message": "Think it through.", "role": "reasoning"}]
