"""Request schemas mirroring OpenAI's (the subset served), pydantic v2.

Responses are built as plain dicts in `service.py` (same shapes as OpenAI's): validating our
own output on every request would only cost latency.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from distillery.engine.params import MAX_N, MAX_STOP, MAX_TOP_LOGPROBS

Stop = str | Annotated[list[str], Field(max_length=MAX_STOP)] | None
SEED_RANGE = (-(2**63), 2**63 - 1)


class TextPart(BaseModel):
    type: Literal["text"]
    text: str


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="ignore")

    role: Literal["system", "developer", "user", "assistant"]
    content: str | Annotated[list[TextPart], Field(min_length=1)]
    name: str | None = None

    def text(self) -> str:
        if isinstance(self.content, str):
            return self.content
        return "".join(p.text for p in self.content)


class StreamOptions(BaseModel):
    # false: no usage chunk before [DONE]. Without stream_options this server sends one
    # (an extension: OpenAI sends it only when asked)
    include_usage: bool = True


UNSUPPORTED = ("tools", "tool_choice", "functions", "function_call", "response_format")


class _Sampling(BaseModel):
    model_config = ConfigDict(extra="ignore")

    model: str = Field(min_length=1, max_length=256)
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, gt=0, le=1)
    stop: Stop = None
    seed: int | None = Field(None, ge=SEED_RANGE[0], le=SEED_RANGE[1])
    n: int = Field(1, ge=1, le=MAX_N)
    stream: bool = False
    stream_options: StreamOptions | None = None
    repetition_penalty: float | None = Field(None, gt=0, le=10)  # extension, as vLLM
    user: str | None = Field(None, max_length=256)
    # accepted only to be refused: silently ignoring them would answer another question
    tools: list | None = None
    tool_choice: str | dict | None = None
    functions: list | None = None
    function_call: str | dict | None = None
    response_format: dict | None = None

    @field_validator(*UNSUPPORTED)
    @classmethod
    def _unsupported(cls, v: object) -> None:
        if v is not None:
            raise ValueError("not supported by this server yet; send the request without it")
        return None

    @property
    def include_usage(self) -> bool:
        return self.stream_options is None or self.stream_options.include_usage

    @field_validator("stop")
    @classmethod
    def _stop_not_empty(cls, v: Stop) -> Stop:
        items = [v] if isinstance(v, str) else (v or [])
        if any(not s for s in items):
            raise ValueError("stop strings must not be empty")
        return v


class ChatCompletionRequest(_Sampling):
    messages: Annotated[list[ChatMessage], Field(min_length=1)]
    max_tokens: int | None = Field(None, ge=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    logprobs: bool = False
    top_logprobs: int | None = Field(None, ge=0, le=MAX_TOP_LOGPROBS)


TokenIds = Annotated[list[Annotated[int, Field(ge=0)]], Field(min_length=1)]


class CompletionRequest(_Sampling):
    prompt: str | Annotated[list[str], Field(min_length=1, max_length=16)] | TokenIds | \
        Annotated[list[TokenIds], Field(min_length=1, max_length=16)]
    max_tokens: int | None = Field(16, ge=1)
    logprobs: int | None = Field(None, ge=0, le=MAX_TOP_LOGPROBS)
    echo: bool = False
