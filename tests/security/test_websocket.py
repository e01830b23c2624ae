"""WebSocket attacks, each refused: ticket replay, expiry, tampering, a ticket outliving its
login, a forbidden Origin or a spoofed Host (refused before the ticket is spent), another
user's stream, oversized frames. Real ``websockets`` client, real uvicorn server."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx
import jwt

from mongars.core.llm import FakeBackend
from mongars.core.security.secret_key import derive_key
from tests.conftest import PASSWORD, Database
from tests.live_server import LiveServer, live_server
from tests.ws_client import close_code, get_ticket, open_socket, receive, send
from tests.ws_fixtures import connected, login


class TestTickets:
    async def test_a_ticket_works_once(self, server: LiveServer) -> None:
        ticket = await get_ticket(server, login(server, "olivia"))
        async with await open_socket(server, ticket) as ws:
            assert (await receive(ws))["type"] == "ws.connected"
        async with await open_socket(server, ticket) as ws:
            assert await close_code(ws) == (4401, "ticket_used")

    async def test_missing_tampered_and_expired_tickets(
        self, server: LiveServer, live_ws: LiveServer
    ) -> None:
        ticket = await get_ticket(server, login(server, "peggy"))
        claims = jwt.decode(ticket, options={"verify_signature": False})
        secret = "test-secret-" + "x" * 40  # tests/conftest.py make_settings
        key = derive_key(secret.encode(), "ws-ticket")
        past = datetime.now(UTC) - timedelta(minutes=5)
        expired = jwt.encode(
            {**claims, "iat": past, "exp": past + timedelta(seconds=30)}, key, "HS256"
        )
        head, payload, signature = ticket.split(".")
        tampered = f"{head}.{payload}.{signature[:-4]}AAAA"
        for candidate, reason in (
            (None, "ticket_missing"),
            (tampered, "ticket_invalid"),
            (expired, "ticket_expired"),
        ):
            async with await open_socket(server, candidate) as ws:
                assert await close_code(ws) == (4401, reason)

    async def test_a_ticket_dies_with_its_login(self, server: LiveServer) -> None:
        headers = login(server, "rupert")
        ticket = await get_ticket(server, headers)
        async with httpx.AsyncClient(base_url=server.base_url) as http:
            assert (await http.post("/api/v1/auth/logout", headers=headers)).status_code == 204
        async with await open_socket(server, ticket) as ws:
            assert await close_code(ws) == (4401, "ticket_revoked")

    async def test_a_forbidden_origin_or_host_is_refused_before_the_ticket_is_spent(
        self, server: LiveServer
    ) -> None:
        ticket = await get_ticket(server, login(server, "sybil"))
        async with await open_socket(server, ticket, origin="https://evil.example") as ws:
            assert await close_code(ws) == (4403, "origin_forbidden")
        async with await open_socket(server, ticket, host_header="attacker.example") as ws:
            assert await close_code(ws) == (4400, "host_forbidden")
        async with await open_socket(server, ticket) as ws:  # still unused
            assert (await receive(ws))["type"] == "ws.connected"

    async def test_tickets_need_a_credential(self, server: LiveServer) -> None:
        async with httpx.AsyncClient(base_url=server.base_url) as http:
            assert (await http.post("/api/v1/auth/ws/ticket")).status_code == 401


class TestRevokedCredentials:
    """An open socket is no older credential: what kills a token or a key closes the socket
    (4401 ``credentials_revoked``) at its next action, and an idle one within the re-check
    interval, so it stops receiving the user's turns from elsewhere."""

    async def test_a_logout_closes_the_socket_at_its_next_action(self, server: LiveServer) -> None:
        headers = login(server, "walter")
        async with await connected(server, headers) as ws:
            async with httpx.AsyncClient(base_url=server.base_url) as http:
                assert (await http.post("/api/v1/auth/logout", headers=headers)).status_code == 204
            await send(ws, "chat.send", {"message": "still me?"}, id_="late")
            assert await close_code(ws) == (4401, "credentials_revoked")
        assert server.fake.requests == []  # nothing was generated, nor stored
        async with httpx.AsyncClient(base_url=server.base_url) as http:
            body = {"username": "walter", "password": PASSWORD}
            again = (await http.post("/api/v1/auth/login", json=body)).json()["access_token"]
            history = await http.get(
                "/api/v1/conversation/history", headers={"Authorization": f"Bearer {again}"}
            )
        assert history.json() == []

    async def test_a_deleted_key_closes_the_socket_and_kills_its_tickets(
        self, server: LiveServer
    ) -> None:
        headers = login(server, "xena")
        async with httpx.AsyncClient(base_url=server.base_url) as http:
            created = (
                await http.post("/api/v1/api-keys", headers=headers, json={"name": "bot"})
            ).json()
            key_headers = {"Authorization": f"Bearer {created['key']}"}
            spare_ticket = await get_ticket(server, key_headers)
            async with await connected(server, key_headers) as ws:
                deleted = await http.delete(f"/api/v1/api-keys/{created['id']}", headers=headers)
                assert deleted.status_code == 204
                await send(ws, "resume", {"stream_id": "x" * 32, "after_seq": 0}, id_="r")
                assert await close_code(ws) == (4401, "credentials_revoked")
        async with await open_socket(server, spare_ticket) as ws:
            assert await close_code(ws) == (4401, "ticket_revoked")

    async def test_an_idle_socket_is_closed_within_the_recheck_interval(
        self, database: Database, server: LiveServer
    ) -> None:
        settings = database.settings.model_copy(update={"ws_recheck_interval_seconds": 0.3})
        with live_server(settings, FakeBackend()) as quick:
            headers = login(quick, "yusuf")
            async with await connected(quick, headers) as ws:
                async with httpx.AsyncClient(base_url=quick.base_url) as http:
                    changed = await http.post(
                        "/api/v1/user/change-password",
                        headers=headers,
                        json={"old_password": PASSWORD, "new_password": "a new one at last"},
                    )
                    assert changed.status_code == 200
                assert await close_code(ws, within=3) == (4401, "credentials_revoked")


class TestHostileFrames:
    async def test_another_users_stream_cannot_be_resumed(self, server: LiveServer) -> None:
        owner, thief = login(server, "ophelia"), login(server, "iago")
        async with await connected(server, owner) as ws:
            await send(ws, "chat.send", {"message": "private"})
            stream_id = (await receive(ws))["data"]["stream_id"]
        async with await connected(server, thief) as ws:
            await send(ws, "resume", {"stream_id": stream_id, "after_seq": 0}, id_="r")
            error = await receive(ws)
        assert (error["type"], error["data"]["code"]) == ("error", "stream_not_found")

    async def test_an_oversized_frame_is_refused_and_the_socket_lives(
        self, server: LiveServer
    ) -> None:
        async with await connected(server, login(server, "goliath")) as ws:
            await ws.send("x" * 1_000_000)
            assert (await receive(ws))["data"]["code"] == "frame_too_large"
            await send(ws, "client.ping", id_="alive")
            assert (await receive(ws))["data"]["ref"] == "alive"
