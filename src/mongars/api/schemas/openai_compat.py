"""Request and response bodies of the OpenAI-compatible API (``/v1``), in OpenAI's field names.

Only what monGARS can honour is accepted with meaning; fields OpenAI clients commonly send and
that change nothing here (``presence_penalty``, ``seed``, …) are ignored, so existing tools work.
Fields that would change the answer in a way we cannot do (``n`` > 1, tools and functions, a
JSON response format, logprobs, images) are refused with a 400 naming them rather than silently
dropped; they are accepted only with the value that changes nothing. Nothing in a body can
choose a backend URL or key: backends come only from the settings and the admin's role choices.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AliasChoices, BaseModel, Field, field_validator

from mongars.api.schemas.chat import RagCollection
from mongars.api.schemas.common import Text
from mongars.core.chat.results import Citation
from mongars.core.llm import ChatMessage

MAX_STOP_SEQUENCES = 4


class TextPart(BaseModel):
    type: Literal["text"]
    text: Text


class InputMessage(BaseModel):
    # "developer" is OpenAI's newer name for system instructions.
    role: Literal["system", "developer", "user", "assistant"]
    content: Text | list[TextPart] | None = None
    name: Text | None = Field(default=None, max_length=256)

    @field_validator("content", mode="before")
    @classmethod
    def _text_only(cls, value: object) -> object:
        if isinstance(value, list):
            for part in value:
                kind = part.get("type") if isinstance(part, dict) else None
                if kind != "text":
                    raise ValueError(f"only text content parts are supported, not {kind!r}")
        return value

    def text(self) -> str:
        if self.content is None:
            return ""
        if isinstance(self.content, str):
            return self.content
        return "".join(part.text for part in self.content)

    def to_chat_message(self) -> ChatMessage:
        role = "system" if self.role == "developer" else self.role
        return ChatMessage(role=role, content=self.text())


class StreamOptions(BaseModel):
    include_usage: bool = False


class ChatCompletionRequest(BaseModel):
    model: str = Field(min_length=1, max_length=256)
    messages: list[InputMessage] = Field(min_length=1, max_length=1000)
    stream: bool = False
    stream_options: StreamOptions | None = None
    temperature: float | None = Field(default=None, ge=0.0, le=2.0)
    top_p: float | None = Field(default=None, gt=0.0, le=1.0)
    max_tokens: int | None = Field(
        default=None,
        ge=1,
        le=1_000_000,
        validation_alias=AliasChoices("max_tokens", "max_completion_tokens"),
    )
    stop: Text | Annotated[list[Text], Field(max_length=MAX_STOP_SEQUENCES)] | None = None
    n: Literal[1] = Field(default=1, description="Only one choice per request is supported.")
    user: str | None = Field(
        default=None,
        max_length=256,
        description="Accepted for compatibility and not used: the account is the key's owner.",
    )
    store: bool = Field(
        default=True,
        description="Store the turn (the last user message and the answer) as a conversation "
        "in your history. `false` keeps nothing but the usage count.",
    )
    tools: list[object] | None = Field(
        default=None, max_length=0, description="Tool calling is not supported."
    )
    functions: list[object] | None = Field(
        default=None, max_length=0, description="Function calling is not supported."
    )
    tool_choice: Literal["none", "auto"] | None = Field(
        default=None, description="Only `none` or `auto`: no tools can be called."
    )
    function_call: Literal["none", "auto"] | None = Field(
        default=None, description="Only `none` or `auto`: no functions can be called."
    )
    response_format: dict[str, object] | None = Field(
        default=None, description='Only `{"type": "text"}`: JSON modes are not supported.'
    )
    logprobs: Literal[False] | None = Field(
        default=None, description="Token log-probabilities are not returned."
    )
    top_logprobs: Literal[0] | None = Field(
        default=None, description="Token log-probabilities are not returned."
    )
    # monGARS extensions (OpenAI clients send them with extra_body).
    use_rag: bool = Field(
        default=False,
        description="monGARS: ground the answer in your documents (and shared ones); the "
        "passages used come back in `mongars.citations`.",
    )
    collections: list[RagCollection] | None = Field(
        default=None,
        max_length=20,
        description="monGARS: ground the answer in these collections only (implies `use_rag`).",
    )

    @field_validator("response_format")
    @classmethod
    def _text_format_only(cls, value: dict[str, object] | None) -> dict[str, object] | None:
        if value is not None and value.get("type") != "text":
            raise ValueError(f"response format {value.get('type')!r} is not supported; only text")
        return value

    def stop_sequences(self) -> list[str]:
        if self.stop is None:
            return []
        return [self.stop] if isinstance(self.stop, str) else list(self.stop)


class Usage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class AssistantMessage(BaseModel):
    role: Literal["assistant"] = "assistant"
    content: str


class Choice(BaseModel):
    index: int = 0
    message: AssistantMessage
    finish_reason: Literal["stop", "length"]


class MongarsTurn(BaseModel):
    """Where the turn was stored (null ids when the request said ``store: false``)."""

    conversation_id: str | None
    message_id: int | None
    citations: list[Citation] = Field(
        default_factory=list, description="The passages the answer was grounded in (use_rag)."
    )


class ChatCompletion(BaseModel):
    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str
    choices: list[Choice]
    usage: Usage
    mongars: MongarsTurn


class ModelCard(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]


class EmbeddingRequest(BaseModel):
    model: str = Field(min_length=1, max_length=256)
    input: Text | Annotated[list[Text], Field(min_length=1, max_length=256)]
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: int | None = Field(default=None, ge=1)
    user: str | None = Field(default=None, max_length=256)

    def texts(self) -> list[str]:
        return [self.input] if isinstance(self.input, str) else list(self.input)


class Embedding(BaseModel):
    object: Literal["embedding"] = "embedding"
    index: int
    # A list of floats, or (encoding_format "base64") little-endian float32s in base64.
    embedding: list[float] | str


class EmbeddingUsage(BaseModel):
    prompt_tokens: int
    total_tokens: int


class EmbeddingList(BaseModel):
    object: Literal["list"] = "list"
    data: list[Embedding]
    model: str
    usage: EmbeddingUsage
