from __future__ import annotations

import pytest

from mongars.config import LLMSettings, RoleSettings
from mongars.core.llm import FakeBackend, GenerationParams
from mongars.core.model_roles import ModelRoles, RoleBinding, role_for_message


class TestRoleForMessage:
    @pytest.mark.parametrize(
        "text",
        [
            "why does this fail?\n```python\nprint(1)\n```",
            "def add(a, b):\n    return a + b",
            "SELECT * FROM users WHERE id = 1",
            "const x = () => 1;",
            "#include <stdio.h>",
        ],
    )
    def test_code_goes_to_the_coding_role(self, text: str) -> None:
        assert role_for_message(text) == "coding"

    @pytest.mark.parametrize(
        "text", ["What is the capital of France?", "Write me a haiku about autumn leaves.", "Hi!"]
    )
    def test_prose_goes_to_the_general_role(self, text: str) -> None:
        assert role_for_message(text) == "general"


class TestFromSettings:
    def test_roles_with_the_same_backend_share_one_instance(self) -> None:
        roles = ModelRoles.from_settings(LLMSettings(backend="fake"))
        assert roles.binding("general").backend is roles.binding("coding").backend
        assert len(list(roles.backends())) == 1

    def test_a_role_override_gets_its_own_backend_and_parameters(self) -> None:
        llm = LLMSettings(
            backend="fake", max_tokens=300, coding=RoleSettings(model="fake-coder", temperature=0.1)
        )
        roles = ModelRoles.from_settings(llm)
        coding, general = roles.binding("coding"), roles.binding("general")
        assert coding.backend.model == "fake-coder"
        assert general.backend.model == "fake-echo"
        assert (coding.params.temperature, coding.params.max_tokens) == (0.1, 300)
        assert roles.for_message("```\ncode\n```").backend is coding.backend


class TestRolesChatNeverPicks:
    def test_reasoning_and_embedding_are_served_only_by_name(self) -> None:
        llm = LLMSettings(
            backend="fake",
            reasoning=RoleSettings(model="fake-thinker", top_p=0.5),
            embedding=RoleSettings(model="fake-embedder"),
        )
        roles = ModelRoles.from_settings(llm)
        assert roles.binding("reasoning").backend.model == "fake-thinker"
        assert roles.binding("reasoning").params.top_p == 0.5
        assert roles.binding("embedding").backend.model == "fake-embedder"
        for text in ("Why is the sky blue? Think step by step.", "def f():\n    return 1"):
            assert roles.for_message(text).backend.model == "fake-echo"
        assert roles.key("reasoning") == ("fake", None, "fake-thinker", None)


class TestReplace:
    async def test_a_backend_still_serving_another_role_stays_open(self) -> None:
        shared, new = FakeBackend(), FakeBackend(model="fake-two")
        roles = ModelRoles.single(shared)
        await roles.replace(RoleBinding(role="general", backend=new, params=GenerationParams()))
        assert roles.binding("general").backend is new
        assert roles.binding("coding").backend is shared
        assert not shared.closed

    async def test_a_backend_no_role_uses_is_kept_until_shutdown_then_closed(self) -> None:
        old = FakeBackend()
        roles = ModelRoles.single(old)
        for role in ("general", "coding"):
            await roles.replace(
                RoleBinding(role=role, backend=FakeBackend(model="b"), params=GenerationParams())
            )
        assert not old.closed  # an answer started before the switch may still stream from it
        await roles.aclose()
        assert old.closed

    async def test_a_key_already_served_is_shared(self) -> None:
        roles = ModelRoles.from_settings(LLMSettings(backend="fake"))
        key = ("fake", None, None, None)
        assert roles.shared_backend(key) is roles.binding("general").backend
        assert roles.shared_backend(("fake", None, "other", None)) is None
        await roles.aclose()
