from __future__ import annotations

import stat
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from pydantic import ValidationError

from mongars.config import Settings
from mongars.core.security.secret_key import derive_key, load_master_secret


def settings(**values: object) -> Settings:
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


class TestGeneratedSecret:
    def test_is_created_once_private_and_reused(self, tmp_path: Path) -> None:
        first = load_master_secret(settings(data_dir=tmp_path))
        path = tmp_path / "secret_key"
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert load_master_secret(settings(data_dir=tmp_path)) == first
        assert len(first) >= 48

    def test_concurrent_workers_agree(self, tmp_path: Path) -> None:
        with ThreadPoolExecutor(8) as pool:
            secrets = set(
                pool.map(lambda _: load_master_secret(settings(data_dir=tmp_path)), range(16))
            )
        assert len(secrets) == 1
        assert [p.name for p in tmp_path.iterdir()] == ["secret_key"]

    def test_an_explicit_secret_wins(self, tmp_path: Path) -> None:
        assert load_master_secret(settings(data_dir=tmp_path, secret_key="explicit")) == b"explicit"
        assert not (tmp_path / "secret_key").exists()


class TestProductionSecret:
    @pytest.mark.parametrize("secret", [None, "changeme", "secret", "short-but-not-placeholder"])
    def test_is_required_and_real(self, secret: str | None) -> None:
        with pytest.raises(ValidationError, match="MONGARS_SECRET_KEY"):
            settings(env="production", secret_key=secret)

    def test_a_long_random_secret_is_accepted(self) -> None:
        assert settings(env="production", secret_key="k" * 20 + "Q9" * 10).is_production


class TestDerivedKeys:
    def test_differ_by_purpose(self) -> None:
        assert derive_key(b"m", "jwt") != derive_key(b"m", "api-key")
        assert derive_key(b"m", "jwt") == derive_key(b"m", "jwt")
