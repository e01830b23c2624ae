"""The TypeScript SDK's own tests (`node --test`, sdks/typescript/test) against a live server."""

from __future__ import annotations

from tests.conftest import PASSWORD
from tests.live_server import LiveServer, register_and_login
from tests.sdk.dropping_proxy import dropping_proxy
from tests.sdk.node import TS_SDK, run_node


class TestTypeScriptSdk:
    async def test_node_test_passes_against_the_live_server(
        self, server: LiveServer, username: str
    ) -> None:
        register_and_login(server.base_url, username, PASSWORD)
        server.fake.token_delay_seconds = 0.03
        with (
            dropping_proxy(server.base_url) as sse_drop,
            dropping_proxy(server.base_url) as ws_drop,
        ):
            sse_drop.cut_after(b"event: delta", 3)
            ws_drop.cut_after(b"chat.delta", 2)
            env = {
                "MONGARS_URL": server.base_url,
                "MONGARS_SSE_DROP_URL": sse_drop.base_url,
                "MONGARS_WS_DROP_URL": ws_drop.base_url,
                "MONGARS_USERNAME": username,
                "MONGARS_PASSWORD": PASSWORD,
            }
            result = await run_node(["--test", "test/"], env=env, cwd=TS_SDK)
        assert result.returncode == 0, (sse_drop.cuts, ws_drop.cuts, result.stdout + result.stderr)
        assert "# fail 0" in result.stdout
        assert (sse_drop.cuts, ws_drop.cuts) == (1, 1)
