"""Which model serves which role, and which role a message needs.

Roles (``general``, ``coding``, ``reasoning``, ``embedding``) map to a backend, a model and
sampling parameters. Chat routing picks ``general`` or ``coding`` per message; ``reasoning`` serves
only callers that ask for it by name, and ``embedding`` is reported and provisioned, never chatted
with. Roles that resolve to the same backend configuration share one backend instance, so the
embedded model is loaded once per process whatever the role mapping says.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal

from mongars.config import LLMSettings, RoleSettings
from mongars.core.llm import ChatBackend, GenerationParams, build_backend

Role = Literal["general", "coding", "reasoning", "embedding"]
ROLES: tuple[Role, ...] = ("general", "coding", "reasoning", "embedding")
ChatRole = Literal["general", "coding"]

# Fenced blocks, or lines that look like source code in the common languages. A heuristic: a
# wrong guess costs only a less specialised model, never a wrong answer format.
_CODE_SIGNS = re.compile(
    r"```"
    r"|^\s*(def|class|import|from\s+\S+\s+import|#include|fn|func|public|private|const|let|var)\b"
    r"|^\s*(SELECT|INSERT|UPDATE|DELETE)\s"
    r"|[;{}]\s*$"
    r"|=>|->\s*\w|\w+\(.*\)\s*[{:]\s*$",
    re.MULTILINE,
)


def role_for_message(text: str) -> ChatRole:
    return "coding" if _CODE_SIGNS.search(text) else "general"


@dataclass(frozen=True, slots=True)
class ResolvedRole:
    backend_kind: str
    base_url: str | None
    model: str | None
    api_key: str | None
    params: GenerationParams

    @property
    def backend_key(self) -> BackendKey:
        return (self.backend_kind, self.base_url, self.model, self.api_key)


# (kind, base URL, model, API key): roles with equal keys share one backend instance.
BackendKey = tuple[str, str | None, str | None, str | None]


def resolve_role(llm: LLMSettings, role: RoleSettings) -> ResolvedRole:
    api_key = role.api_key or llm.api_key
    return ResolvedRole(
        backend_kind=role.backend or llm.backend,
        base_url=role.base_url or llm.base_url,
        model=role.model or llm.model,
        api_key=api_key.get_secret_value() if api_key else None,
        params=GenerationParams(
            temperature=role.temperature if role.temperature is not None else llm.temperature,
            top_p=role.top_p if role.top_p is not None else llm.top_p,
            max_tokens=role.max_tokens or llm.max_tokens,
        ),
    )


def build_resolved_backend(llm: LLMSettings, resolved: ResolvedRole) -> ChatBackend:
    """The backend ``resolved`` describes, with the connection settings of ``llm``."""
    return build_backend(
        resolved.backend_kind,  # type: ignore[arg-type]
        base_url=resolved.base_url,
        model=resolved.model,
        api_key=resolved.api_key,
        model_path=llm.model_path,
        context_window=llm.context_window,
        connect_timeout_seconds=llm.connect_timeout_seconds,
        read_timeout_seconds=llm.read_timeout_seconds,
        max_retries=llm.max_retries,
        breaker_failure_threshold=llm.breaker_failure_threshold,
        breaker_cooldown_seconds=llm.breaker_cooldown_seconds,
        n_threads=llm.threads,
        fake_token_delay_seconds=llm.fake_token_delay_seconds,
    )


@dataclass(frozen=True, slots=True)
class RoleBinding:
    role: Role
    backend: ChatBackend
    params: GenerationParams


class ModelRoles:
    def __init__(
        self, bindings: dict[Role, RoleBinding], keys: dict[Role, BackendKey] | None = None
    ) -> None:
        self._bindings = bindings
        # What each role's backend was built from, when known (not for ``single``).
        self._keys: dict[Role, BackendKey] = dict(keys or {})
        # Backends no role uses any more: closed at shutdown, since a generation started
        # before the switch may still be running on them.
        self._retired: list[ChatBackend] = []

    @classmethod
    def from_settings(cls, llm: LLMSettings) -> ModelRoles:
        shared: dict[BackendKey, ChatBackend] = {}
        bindings: dict[Role, RoleBinding] = {}
        keys: dict[Role, BackendKey] = {}
        for role in ROLES:
            resolved = resolve_role(llm, getattr(llm, role))
            backend = shared.get(resolved.backend_key)
            if backend is None:
                backend = build_resolved_backend(llm, resolved)
                shared[resolved.backend_key] = backend
            bindings[role] = RoleBinding(role=role, backend=backend, params=resolved.params)
            keys[role] = resolved.backend_key
        return cls(bindings, keys)

    @classmethod
    def single(cls, backend: ChatBackend, params: GenerationParams | None = None) -> ModelRoles:
        """Every role served by one backend (embedding monGARS, tests, benchmarks)."""
        params = params or GenerationParams()
        return cls({role: RoleBinding(role=role, backend=backend, params=params) for role in ROLES})

    def binding(self, role: Role) -> RoleBinding:
        return self._bindings[role]

    def key(self, role: Role) -> BackendKey | None:
        """What ``role``'s backend was built from (None for roles given as instances)."""
        return self._keys.get(role)

    def for_message(self, text: str) -> RoleBinding:
        return self._bindings[role_for_message(text)]

    def shared_backend(self, key: BackendKey) -> ChatBackend | None:
        """The backend some role already uses for ``key``, to share it rather than build one."""
        for role, known in self._keys.items():
            if known == key:
                return self._bindings[role].backend
        return None

    async def replace(self, binding: RoleBinding, key: BackendKey | None = None) -> None:
        """Serve ``binding.role`` with ``binding`` from now on (the next message sees it).

        A backend no role uses any more is kept until shutdown, not closed now: answers that
        started before the switch may still be streaming from it.
        """
        old = self._bindings[binding.role].backend
        self._bindings[binding.role] = binding
        if key is None:
            self._keys.pop(binding.role, None)
        else:
            self._keys[binding.role] = key
        if not any(b.backend is old for b in self._bindings.values()):
            self._retired.append(old)

    def backends(self) -> Iterator[ChatBackend]:
        seen: set[int] = set()
        for binding in self._bindings.values():
            if id(binding.backend) not in seen:
                seen.add(id(binding.backend))
                yield binding.backend

    async def warm_up(self) -> None:
        for backend in self.backends():
            warm_up = getattr(backend, "warm_up", None)
            if warm_up is not None:
                await warm_up()

    async def aclose(self) -> None:
        for backend in [*self.backends(), *self._retired]:
            await backend.aclose()
        self._retired.clear()
