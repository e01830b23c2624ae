"""Model profiles from a TOML file: loading, the active profile, layering, and bad files."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import SecretStr

from mongars.config import LLMSettings, RoleSettings
from mongars.core.model_profiles import BUILTIN_PROFILE, ProfileError, load_profiles
from mongars.core.model_provisioning import Target, targets_for
from mongars.core.model_roles import ModelRoles

EXAMPLE = Path(__file__).parents[2] / "profiles.example.toml"

PROFILES = """
default = "local"

[profiles.local]
description = "All in-process"
general = { backend = "fake", model = "fake-local" }

[profiles.remote]
description = "An Ollama server"

[profiles.remote.general]
backend = "ollama"
base_url = "http://127.0.0.1:11434"
model = "llama3.2:3b"
temperature = 0.3
top_p = 0.8

[profiles.remote.coding]
backend = "ollama"
base_url = "http://127.0.0.1:11434"
model = "qwen2.5-coder:7b"
max_tokens = 2048

[profiles.remote.embedding]
backend = "ollama"
base_url = "http://127.0.0.1:11434"
model = "nomic-embed-text"
"""


@pytest.fixture
def profiles_file(tmp_path: Path) -> Path:
    path = tmp_path / "profiles.toml"
    path.write_text(PROFILES)
    return path


class TestWithoutAFile:
    def test_the_only_profile_is_the_settings_unchanged(self) -> None:
        llm = LLMSettings(backend="fake", coding=RoleSettings(model="fake-coder"))
        profiles = load_profiles(llm)
        assert profiles.active == BUILTIN_PROFILE
        assert list(profiles.profiles) == [BUILTIN_PROFILE]
        assert profiles.llm is llm

    def test_naming_a_profile_without_a_file_is_refused(self) -> None:
        with pytest.raises(ProfileError, match="'remote' needs MONGARS_LLM__PROFILES_FILE"):
            load_profiles(LLMSettings(profile="remote"))


class TestActiveProfile:
    def test_the_files_default_is_active_unless_the_settings_name_one(
        self, profiles_file: Path
    ) -> None:
        assert load_profiles(LLMSettings(profiles_file=profiles_file)).active == "local"
        chosen = load_profiles(LLMSettings(profiles_file=profiles_file, profile="remote"))
        assert chosen.active == "remote"
        assert list(chosen.profiles) == [BUILTIN_PROFILE, "local", "remote"]
        builtin = LLMSettings(profiles_file=profiles_file, profile=BUILTIN_PROFILE)
        assert load_profiles(builtin).active == BUILTIN_PROFILE

    def test_an_unknown_profile_is_named_with_the_file_and_the_choices(
        self, profiles_file: Path
    ) -> None:
        with pytest.raises(ProfileError) as error:
            load_profiles(LLMSettings(profiles_file=profiles_file, profile="cloud"))
        message = str(error.value)
        assert "'cloud' (MONGARS_LLM__PROFILE)" in message
        assert str(profiles_file) in message
        assert "settings, local, remote" in message

    def test_the_profiles_roles_become_the_settings_roles(self, profiles_file: Path) -> None:
        llm = LLMSettings(backend="fake", profiles_file=profiles_file, profile="remote")
        effective = load_profiles(llm).llm
        assert effective.general.backend == "ollama"
        assert effective.general.model == "llama3.2:3b"
        assert (effective.general.temperature, effective.general.top_p) == (0.3, 0.8)
        assert effective.coding.max_tokens == 2048
        assert effective.embedding.model == "nomic-embed-text"
        assert effective.reasoning == RoleSettings()  # not in the profile: the llm defaults
        roles = ModelRoles.from_settings(effective)
        assert roles.binding("general").params.top_p == 0.8
        assert roles.binding("reasoning").backend.name == "fake"

    def test_a_role_value_set_in_the_settings_wins_over_the_profile(
        self, profiles_file: Path
    ) -> None:
        llm = LLMSettings(
            profiles_file=profiles_file,
            profile="remote",
            general=RoleSettings(model="llama3.1:8b", api_key=SecretStr("k")),
        )
        general = load_profiles(llm).llm.general
        assert general.model == "llama3.1:8b"
        assert general.backend == "ollama"  # the rest still from the profile
        assert general.api_key is not None
        assert general.api_key.get_secret_value() == "k"

    def test_targets_of_another_profile_prepare_a_switch(self, profiles_file: Path) -> None:
        profiles = load_profiles(
            LLMSettings(backend="fake", profiles_file=profiles_file, profile="local")
        )
        roles = ModelRoles.from_settings(profiles.llm)
        current = targets_for(roles, profiles, wanted=["general"])
        assert current == {"general": Target("fake", None, "fake-local")}
        other = targets_for(roles, profiles, wanted=["general", "embedding"], profile="remote")
        assert other["general"] == Target("ollama", "http://127.0.0.1:11434", "llama3.2:3b")
        assert other["embedding"].model == "nomic-embed-text"


class TestBadFiles:
    @pytest.mark.parametrize(
        ("text", "expected"),
        [
            ("[profiles.a\n", "is not valid TOML"),
            (
                "[profiles.a.general]\nbackend = 'llamafile'\n",
                "profiles.a.general.backend: Input should be 'embedded', 'ollama', 'openai' or "
                "'fake'",
            ),
            (
                "[profiles.a.general]\ntemprature = 0.2\n",
                "profiles.a.general.temprature: Extra inputs are not permitted",
            ),
            (
                "[profiles.a.general]\napi_key = 'sk-1'\n",
                "profiles.a.general.api_key: Extra inputs are not permitted",
            ),
            ("[profiles.a.poetry]\nmodel = 'x'\n", "profiles.a.poetry: Extra inputs"),
            (
                "[profiles.a.general]\ntemperature = 9\n",
                "profiles.a.general.temperature: Input should be less than or equal to 2",
            ),
            ("[profiles.settings]\n", "that name is reserved"),
            ("[profiles.'two words']\n", "'two words'"),
        ],
    )
    def test_errors_name_the_file_and_the_field(
        self, tmp_path: Path, text: str, expected: str
    ) -> None:
        path = tmp_path / "profiles.toml"
        path.write_text(text)
        with pytest.raises(ProfileError) as error:
            load_profiles(LLMSettings(profiles_file=path))
        assert str(path) in str(error.value)
        assert expected in str(error.value)

    def test_a_missing_file_is_named(self, tmp_path: Path) -> None:
        missing = tmp_path / "nope.toml"
        with pytest.raises(ProfileError, match=r"Cannot read the profiles file .*nope\.toml"):
            load_profiles(LLMSettings(profiles_file=missing))

    def test_a_default_that_does_not_exist_is_named(self, tmp_path: Path) -> None:
        path = tmp_path / "profiles.toml"
        path.write_text("default = 'gone'\n[profiles.a]\n")
        with pytest.raises(ProfileError, match=r"'gone' \(default in "):
            load_profiles(LLMSettings(profiles_file=path))


class TestShippedExample:
    def test_the_example_file_loads_and_every_profile_resolves(self) -> None:
        profiles = load_profiles(LLMSettings(profiles_file=EXAMPLE))
        assert profiles.active == "local"
        assert set(profiles.profiles) == {BUILTIN_PROFILE, "local", "ollama", "vllm"}
        for name in profiles.profiles:
            llm = profiles.settings_for(name)
            for role in ("general", "coding", "reasoning", "embedding"):
                settings: RoleSettings = getattr(llm, role)
                if settings.backend in ("ollama", "openai"):
                    assert settings.model, (name, role)
                    assert settings.base_url, (name, role)
        assert profiles.settings_for("ollama").reasoning.model == "deepseek-r1:7b"
