from __future__ import annotations

import pytest

from mongars.config import HttpSettings, Settings
from mongars.core.origins import host_allowed, origin_allowed

PRODUCTION = {"env": "production", "secret_key": "p" * 40}


def settings(production: bool = False, **http: object) -> Settings:
    values = PRODUCTION if production else {}
    return Settings(_env_file=None, http=HttpSettings(**http), **values)  # type: ignore[arg-type, call-arg]


class TestHosts:
    @pytest.mark.parametrize("host", ["localhost:8000", "127.0.0.1", "[::1]:8000", "LOCALHOST"])
    def test_loopback_is_trusted_in_development(self, host: str) -> None:
        assert host_allowed(host, settings())

    @pytest.mark.parametrize("host", ["localhost:8000", "evil.example", "", None])
    def test_production_trusts_only_the_listed_hosts(self, host: str | None) -> None:
        assert not host_allowed(host, settings(True, allowed_hosts=["chat.example.com"]))
        assert host_allowed(
            "chat.example.com:443", settings(True, allowed_hosts=["chat.example.com"])
        )

    def test_a_rebinding_name_is_refused_even_in_development(self) -> None:
        assert not host_allowed("attacker.example:8000", settings())


class TestOrigins:
    def test_same_origin_is_allowed(self) -> None:
        assert origin_allowed("https://chat.example.com", "chat.example.com", settings(True))

    def test_listed_origins_are_matched_exactly(self) -> None:
        s = settings(True, allowed_origins=["https://app.example.com"])
        assert origin_allowed("https://app.example.com/", "api.example.com", s)
        assert not origin_allowed("https://app.example.com.evil.net", "api.example.com", s)
        assert not origin_allowed("http://app.example.com", "api.example.com", s)

    def test_localhost_origins_only_in_development(self) -> None:
        assert origin_allowed("http://localhost:5173", "127.0.0.1:8000", settings())
        assert not origin_allowed("http://localhost:5173", "127.0.0.1:8000", settings(True))

    @pytest.mark.parametrize("origin", [None, "", "null", "file://", "https://evil.example"])
    def test_everything_else_is_refused(self, origin: str | None) -> None:
        assert not origin_allowed(origin, "127.0.0.1:8000", settings())
