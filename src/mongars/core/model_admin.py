"""Run-time model roles: what each role runs on, switching a role, and the persisted choices.

A switch names a backend kind and a model, optionally a base URL, and is checked live (the backend
is reachable and has the model) before it replaces the role's binding. A request never brings
credentials: API keys always come from the settings, and a base URL is accepted only when the
settings already name it (so a key is only ever sent to the server it was configured for).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from mongars.config import BackendKind, LLMSettings
from mongars.core.errors import ModelChoiceRefused
from mongars.core.llm import BackendHealth, ChatBackend, GenerationParams
from mongars.core.model_profiles import ModelProfiles
from mongars.core.model_roles import (
    ROLES,
    ModelRoles,
    ResolvedRole,
    Role,
    RoleBinding,
    build_resolved_backend,
    resolve_role,
)
from mongars.db.tables import ModelRoleChoice

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class RoleChoice:
    role: Role
    backend: BackendKind
    model: str | None = None
    base_url: str | None = None
    temperature: float | None = None
    max_tokens: int | None = None


def known_role(name: str) -> Role:
    for role in ROLES:
        if role == name:
            return role
    raise ModelChoiceRefused(
        f"Unknown role {name!r}; the roles are {', '.join(ROLES)}.", code="unknown_role"
    )


def known_profile(profiles: ModelProfiles, name: str) -> str:
    if name not in profiles.profiles:
        raise ModelChoiceRefused(
            f"Unknown model profile {name!r}; the profiles are {', '.join(profiles.profiles)}.",
            code="unknown_profile",
        )
    return name


def _configured_keys(llm: LLMSettings) -> dict[str, str | None]:
    """Each base URL the settings name, with the API key configured for it."""
    keys: dict[str, str | None] = {}
    if llm.base_url:
        keys[llm.base_url] = llm.api_key.get_secret_value() if llm.api_key else None
    for role in ROLES:
        settings = getattr(llm, role)
        if settings.base_url:
            key = settings.api_key or llm.api_key
            keys[settings.base_url] = key.get_secret_value() if key else None
    return keys


def resolve_choice(llm: LLMSettings, choice: RoleChoice) -> ResolvedRole:
    """The role's settings with ``choice`` laid over them; refuses an unconfigured base URL."""
    configured = resolve_role(llm, getattr(llm, choice.role))
    base_url, api_key = configured.base_url, configured.api_key
    if choice.base_url is not None:
        keys = _configured_keys(llm)
        if choice.base_url not in keys:
            raise ModelChoiceRefused(
                "base_url must be one the settings name (MONGARS_LLM__BASE_URL or a role's "
                "BASE_URL).",
                code="base_url_not_configured",
            )
        base_url, api_key = choice.base_url, keys[choice.base_url]
    params = configured.params
    return ResolvedRole(
        backend_kind=choice.backend,
        base_url=base_url,
        model=choice.model or configured.model,
        api_key=api_key,
        params=GenerationParams(
            temperature=choice.temperature
            if choice.temperature is not None
            else params.temperature,
            top_p=params.top_p,
            max_tokens=choice.max_tokens or params.max_tokens,
        ),
    )


def _build(llm: LLMSettings, resolved: ResolvedRole) -> ChatBackend:
    try:
        return build_resolved_backend(llm, resolved)
    except (ValueError, OSError) as exc:  # bad settings, or a model file that is missing
        raise ModelChoiceRefused(str(exc)) from exc


async def switch_role(
    roles: ModelRoles, llm: LLMSettings, db: AsyncSession, choice: RoleChoice
) -> None:
    """Check the chosen backend live, store the choice, then serve the role with it."""
    resolved = resolve_choice(llm, choice)
    backend = roles.shared_backend(resolved.backend_key)
    built = backend is None
    if backend is None:
        backend = _build(llm, resolved)
    try:
        # A new embedded backend is healthy only once loaded: loading it is its check.
        warm_up = getattr(backend, "warm_up", None) if built else None
        if warm_up is not None:
            try:
                await warm_up()
            except Exception as exc:
                raise ModelChoiceRefused(f"The model could not be loaded: {exc}") from exc
        health: BackendHealth = await backend.health()
        if not health.reachable or health.model_present is not True:
            problem = "is unreachable" if not health.reachable else "does not have the model"
            raise ModelChoiceRefused(
                f"The {resolved.backend_kind} backend {problem}: {health.detail}"
            )
        await db.merge(
            ModelRoleChoice(
                role=choice.role,
                backend=choice.backend,
                model=choice.model,
                base_url=choice.base_url,
                temperature=choice.temperature,
                max_tokens=choice.max_tokens,
            )
        )
        await db.flush()
    except BaseException:
        if built:
            await backend.aclose()
        raise
    binding = RoleBinding(role=choice.role, backend=backend, params=resolved.params)
    await roles.replace(binding, resolved.backend_key)


async def apply_persisted_roles(
    roles: ModelRoles, llm: LLMSettings, sessions: async_sessionmaker[AsyncSession]
) -> None:
    """At startup: serve each role as an administrator last chose (no live check: a backend
    that is down now answers 503 per request, as a configured one would)."""
    try:
        async with sessions() as db:
            rows = list((await db.execute(select(ModelRoleChoice))).scalars())
    except (SQLAlchemyError, OSError) as exc:
        logger.warning("Stored model roles not read (%s); the settings' roles apply.", exc)
        return
    for row in rows:
        if row.role not in ROLES or row.backend not in ("embedded", "ollama", "openai", "fake"):
            logger.warning("Ignoring a stored model role that is not understood: %s", row.role)
            continue
        choice = RoleChoice(
            role=row.role,
            backend=row.backend,  # type: ignore[arg-type]
            model=row.model,
            base_url=row.base_url,
            temperature=row.temperature,
            max_tokens=row.max_tokens,
        )
        try:
            resolved = resolve_choice(llm, choice)
            backend = roles.shared_backend(resolved.backend_key) or _build(llm, resolved)
        except ModelChoiceRefused as exc:
            logger.warning("Stored model role %s not applied: %s", row.role, exc.detail)
            continue
        binding = RoleBinding(role=choice.role, backend=backend, params=resolved.params)
        await roles.replace(binding, resolved.backend_key)


__all__ = ["RoleChoice", "apply_persisted_roles", "known_profile", "known_role", "switch_role"]
