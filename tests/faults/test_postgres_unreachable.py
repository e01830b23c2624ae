"""PostgreSQL unreachable (a cuttable TCP proxy between the replica and the shared server):
requests get 503 ``database_unavailable`` with ``Retry-After``, ``/ready`` fails naming the
database while ``/healthz`` stays up, and once the network is back everything recovers by
itself, with no restart. A turn refused meanwhile leaves no row behind."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from urllib.parse import urlsplit

import httpx
import pytest

from mongars.devtools.cluster import Replica
from tests.cluster.harness import POSTGRES_URL, cluster_env, replicas
from tests.faults.support import ready, sign_up, stored_messages, wait_until
from tests.faults.tcp_proxy import CuttableProxy

RECOVERY_SECONDS = 20


@pytest.fixture(scope="module")
def proxy() -> Iterator[CuttableProxy]:
    target = urlsplit(POSTGRES_URL)
    with CuttableProxy(target.hostname or "127.0.0.1", target.port or 5432) as running:
        yield running


def via_port(url: str, port: int) -> str:
    """``url`` with its host and port replaced by 127.0.0.1:``port`` (credentials kept)."""
    parts = urlsplit(url)
    userinfo = parts.netloc.rpartition("@")[0]
    host = f"127.0.0.1:{port}"
    return parts._replace(netloc=f"{userinfo}@{host}" if userinfo else host).geturl()


@pytest.fixture(scope="module")
def replica(
    tmp_path_factory: pytest.TempPathFactory, cluster_schema: str, proxy: CuttableProxy
) -> Iterator[Replica]:
    tmp_path = tmp_path_factory.mktemp("postgres-fault")
    env = cluster_env(
        tmp_path, cluster_schema, database_url=via_port(POSTGRES_URL, proxy.port), redis_url=None
    )
    with replicas(env, 1, tmp_path) as (only,):
        yield only


def chat(replica: Replica, headers: dict[str, str], message: str) -> httpx.Response:
    return httpx.post(
        f"{replica.base_url}/api/v1/conversation/chat",
        headers=headers,
        json={"message": message},
        timeout=30,
    )


class TestPostgresUnreachable:
    def test_503_and_not_ready_while_cut_then_recovers_by_itself(
        self, replica: Replica, proxy: CuttableProxy, cluster_schema: str
    ) -> None:
        username = f"u{uuid.uuid4().hex[:8]}"
        headers = sign_up(replica, username)
        assert chat(replica, headers, "before").status_code == 200

        proxy.cut()
        try:
            refused = chat(replica, headers, "during")
            assert refused.status_code == 503, refused.text
            assert refused.json()["code"] == "database_unavailable"
            assert int(refused.headers["retry-after"]) >= 1
            not_ready = ready(replica)
            assert not_ready.status_code == 503
            body = not_ready.json()
            assert body["status"] == "not_ready"
            assert body["checks"]["database"]["ok"] is False
            assert body["checks"]["database"]["detail"]
            alive = httpx.get(f"{replica.base_url}/healthz", timeout=5)
            assert alive.status_code == 200  # liveness: do not restart a replica for this
        finally:
            proxy.restore()

        wait_until(
            lambda: ready(replica).status_code == 200, RECOVERY_SECONDS, "/ready after restore"
        )
        after = chat(replica, headers, "after")
        assert after.status_code == 200, after.text
        assert after.json()["response"] == "echo: after"
        assert replica.process.poll() is None  # the same process, never restarted

        rows = stored_messages(cluster_schema, username)
        assert [(r.role, r.status, r.content) for r in rows] == [
            ("user", "complete", "before"),
            ("assistant", "complete", "echo: before"),
            ("user", "complete", "after"),
            ("assistant", "complete", "echo: after"),
        ]
