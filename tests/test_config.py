from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import BaseModel, ValidationError

from mongars.config import HttpSettings, Settings


class TestDatabaseUrl:
    @pytest.mark.parametrize(
        ("given", "expected"),
        [
            ("postgresql://u@h/db", "postgresql+asyncpg://u@h/db"),
            ("postgres://u@h/db", "postgresql+asyncpg://u@h/db"),
            ("sqlite:////tmp/x.db", "sqlite+aiosqlite:////tmp/x.db"),
        ],
    )
    def test_gets_the_async_driver(self, given: str, expected: str) -> None:
        assert Settings(_env_file=None, database_url=given).sqlalchemy_url == expected  # type: ignore[call-arg]

    def test_unsupported_scheme_is_named(self) -> None:
        with pytest.raises(ValidationError, match="'mysql' is not supported"):
            Settings(_env_file=None, database_url="mysql://u@h/db")  # type: ignore[call-arg]

    def test_default_is_sqlite_in_the_data_dir(self, tmp_path: object) -> None:
        settings = Settings(_env_file=None, data_dir=tmp_path)  # type: ignore[call-arg]
        assert settings.uses_sqlite
        assert settings.sqlalchemy_url.endswith("/mongars.db")


class TestEnvironment:
    def test_nested_settings_read_from_the_environment(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setenv("MONGARS_AUTH__ACCESS_TOKEN_TTL_SECONDS", "120")
        monkeypatch.setenv("MONGARS_REGISTRATION_OPEN", "false")
        settings = Settings(_env_file=None)  # type: ignore[call-arg]
        assert settings.auth.access_token_ttl_seconds == 120
        assert settings.registration_open is False

    def test_docs_are_off_in_production_unless_asked(self) -> None:
        production = {"env": "production", "secret_key": "z" * 40}
        assert Settings(_env_file=None, **production).show_docs is False  # type: ignore[arg-type]
        assert Settings(_env_file=None, docs_enabled=True, **production).show_docs is True  # type: ignore[arg-type]
        assert Settings(_env_file=None).show_docs is True  # type: ignore[call-arg]


PRODUCTION = {"env": "production", "secret_key": "z" * 40}


class TestTrustedProxies:
    def test_default_trusts_no_one(self) -> None:
        assert Settings(_env_file=None).http.trusted_proxies == []  # type: ignore[call-arg]

    def test_addresses_and_networks_read_from_the_environment_as_json(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setenv(
            "MONGARS_HTTP__TRUSTED_PROXIES", '["10.0.0.7", " 172.28.0.0/16", "::1", "fd00::/8"]'
        )
        settings = Settings(_env_file=None)  # type: ignore[call-arg]
        assert settings.http.trusted_proxies == ["10.0.0.7", "172.28.0.0/16", "::1", "fd00::/8"]

    @pytest.mark.parametrize(
        ("entry", "reason"),
        [
            ("proxy.internal", "does not appear to be an IPv4 or IPv6 network"),
            ("10.0.0.300", "does not appear to be an IPv4 or IPv6 network"),
            ("10.0.0.1/8", "has host bits set"),
            ("10.0.0.0/33", "does not appear to be an IPv4 or IPv6 network"),
            ("", "does not appear to be an IPv4 or IPv6 network"),
        ],
    )
    def test_a_bad_entry_is_refused_by_name(self, entry: str, reason: str) -> None:
        with pytest.raises(ValidationError) as refused:
            HttpSettings(trusted_proxies=["127.0.0.1", entry])
        message = str(refused.value)
        assert f"TRUSTED_PROXIES: {entry!r} is not an IP address or a CIDR network" in message
        assert reason in message

    def test_a_star_among_addresses_is_refused(self) -> None:
        with pytest.raises(ValidationError, match='"\\*" must be the only entry'):
            HttpSettings(trusted_proxies=["10.0.0.0/8", "*"])

    def test_a_star_is_allowed_in_development(self) -> None:
        settings = Settings(_env_file=None, http={"trusted_proxies": ["*"]})  # type: ignore[call-arg]
        assert settings.http.trusted_proxies == ["*"]

    def test_a_star_is_refused_in_production(self) -> None:
        with pytest.raises(ValidationError, match="refused when MONGARS_ENV=production") as refused:
            Settings(_env_file=None, http={"trusted_proxies": ["*"]}, **PRODUCTION)  # type: ignore[arg-type]
        assert "forge its address" in str(refused.value)

    def test_named_proxies_are_fine_in_production(self) -> None:
        http = {"trusted_proxies": ["10.244.0.0/16"]}
        settings = Settings(_env_file=None, http=http, **PRODUCTION)  # type: ignore[arg-type]
        assert settings.http.trusted_proxies == ["10.244.0.0/16"]


class TestEnvExample:
    """.env.example is the settings reference: it must load, and name every setting."""

    EXAMPLE = Path(__file__).parent.parent / ".env.example"

    def test_loads_as_an_env_file(self) -> None:
        settings = Settings(_env_file=self.EXAMPLE)  # type: ignore[call-arg]
        assert settings.llm.backend == "embedded"

    def test_documents_every_setting(self) -> None:
        text = self.EXAMPLE.read_text()
        missing = [name for name in _env_names(Settings, "MONGARS_") if name not in text]
        assert missing == []


def _env_names(model: type[BaseModel], prefix: str) -> list[str]:
    names = []
    for field_name, field in model.model_fields.items():
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            names += _env_names(annotation, f"{prefix}{field_name.upper()}__")
        else:
            names.append(f"{prefix}{field_name.upper()}")
    return names
