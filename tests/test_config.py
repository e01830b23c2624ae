from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import BaseModel, ValidationError

from mongars.config import Settings


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
