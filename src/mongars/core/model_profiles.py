"""Model profiles: named mappings of roles to backend, model and parameters, from a TOML file.

The file (``MONGARS_LLM__PROFILES_FILE``, see ``profiles.example.toml``) holds ``[profiles.NAME]``
tables, each with a table per role; ``MONGARS_LLM__PROFILE`` (or the file's ``default``) picks
the active one. Without a file the only profile is ``settings``: the ``MONGARS_LLM__*`` roles,
exactly as before profiles existed.

How the layers combine, most specific last: the ``llm`` group's defaults, then the active
profile's role values, then any role value set explicitly in the settings (so a deployment can
pin one value, or keep an API key out of the file), then an administrator's run-time choice
(stored in the database, see ``model_admin``). API keys are refused in the file on purpose:
secrets stay in the environment.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from mongars.config import BackendKind, LLMSettings, RoleSettings
from mongars.core.model_roles import ROLES

BUILTIN_PROFILE = "settings"
_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"


class ProfileError(ValueError):
    """The profiles file, or the profile chosen, cannot be used (the message says where)."""


class ProfileRole(BaseModel):
    model_config = ConfigDict(extra="forbid")

    backend: BackendKind | None = None
    base_url: str | None = Field(default=None, min_length=1, max_length=2048)
    model: str | None = Field(default=None, min_length=1, max_length=256)
    temperature: float | None = Field(default=None, ge=0.0, le=2.0)
    top_p: float | None = Field(default=None, gt=0.0, le=1.0)
    max_tokens: int | None = Field(default=None, ge=1, le=32768)


class Profile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    description: str = Field(default="", max_length=500)
    general: ProfileRole | None = None
    coding: ProfileRole | None = None
    reasoning: ProfileRole | None = None
    embedding: ProfileRole | None = None


class ProfilesFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    default: str | None = Field(default=None, pattern=_NAME_PATTERN)
    profiles: dict[str, Profile] = Field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ModelProfiles:
    """Every profile by name (``settings`` first), the active one, and the settings it gives."""

    profiles: dict[str, Profile]
    active: str
    source: Path | None
    base: LLMSettings

    @property
    def llm(self) -> LLMSettings:
        """The settings with the active profile laid over them."""
        return self.settings_for(self.active)

    def settings_for(self, name: str) -> LLMSettings:
        profile = self.get(name)
        if name == BUILTIN_PROFILE:
            return self.base
        update: dict[str, RoleSettings] = {}
        for role in ROLES:
            from_file: ProfileRole | None = getattr(profile, role)
            explicit: RoleSettings = getattr(self.base, role)
            values = from_file.model_dump(exclude_none=True) if from_file else {}
            values.update({field: getattr(explicit, field) for field in explicit.model_fields_set})
            update[role] = RoleSettings.model_validate(values)
        return self.base.model_copy(update=update)

    def get(self, name: str) -> Profile:
        profile = self.profiles.get(name)
        if profile is None:
            raise ProfileError(
                f"Unknown model profile {name!r}; the profiles are {', '.join(self.profiles)}."
            )
        return profile


_BUILTIN = Profile(description="The roles as the MONGARS_LLM__* settings describe them.")


def _read(path: Path) -> ProfilesFile:
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ProfileError(f"Cannot read the profiles file {path}: {exc.strerror}.") from exc
    except UnicodeDecodeError as exc:
        raise ProfileError(f"The profiles file {path} is not UTF-8 text.") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ProfileError(f"The profiles file {path} is not valid TOML: {exc}.") from exc
    try:
        parsed = ProfilesFile.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(part) for part in error['loc'])}: {error['msg']}"
            for error in exc.errors()
        )
        raise ProfileError(f"The profiles file {path} is invalid: {problems}.") from None
    for name in parsed.profiles:
        if name == BUILTIN_PROFILE:
            raise ProfileError(
                f"The profiles file {path} defines [profiles.{name}]; that name is reserved for "
                "the profile the MONGARS_LLM__* settings describe."
            )
        if re.fullmatch(_NAME_PATTERN, name) is None:
            raise ProfileError(
                f"The profiles file {path} has a profile named {name!r}; names use letters, "
                "digits, '.', '_' and '-' (64 at most)."
            )
    return parsed


def load_profiles(llm: LLMSettings) -> ModelProfiles:
    """The profiles the settings point at, with the active one checked (``ProfileError``)."""
    profiles: dict[str, Profile] = {BUILTIN_PROFILE: _BUILTIN}
    path = llm.profiles_file
    if path is None:
        if llm.profile not in (None, BUILTIN_PROFILE):
            raise ProfileError(
                f"MONGARS_LLM__PROFILE={llm.profile!r} needs MONGARS_LLM__PROFILES_FILE: without "
                f"a profiles file the only profile is {BUILTIN_PROFILE!r}."
            )
        return ModelProfiles(profiles, BUILTIN_PROFILE, None, llm)
    parsed = _read(path)
    profiles.update(parsed.profiles)
    active = llm.profile or parsed.default or BUILTIN_PROFILE
    if active not in profiles:
        origin = "MONGARS_LLM__PROFILE" if llm.profile else f"default in {path}"
        raise ProfileError(
            f"The model profile {active!r} ({origin}) is not in {path}; the profiles are "
            f"{', '.join(profiles)}."
        )
    return ModelProfiles(profiles, active, path, llm)


__all__ = ["BUILTIN_PROFILE", "ModelProfiles", "Profile", "ProfileError", "load_profiles"]
