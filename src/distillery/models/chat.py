"""Chat formatting: the model's own template, or a documented plain-text fallback.

Base models (Gemma-3-270M) ship no chat template. They get this plain-text one:

    {system}

    User: {user message}
    Assistant: {assistant message}
    User: ...
    Assistant:

and generation stops at PLAIN_STOP ("\\nUser:"), since a base model would otherwise go on to
write the user's next turn itself.

Note: SmolLM2's own template silently adds a default system prompt ("You are a helpful AI
assistant named SmolLM...") when the messages carry none. We keep the model's behaviour.
"""

from __future__ import annotations

from transformers import PreTrainedTokenizerBase

PLAIN_TEMPLATE = (
    "{% for message in messages %}"
    "{% if message['role'] == 'system' %}{{ message['content'] }}\n\n"
    "{% elif message['role'] == 'user' %}User: {{ message['content'] }}\n"
    "{% else %}Assistant: {{ message['content'] }}\n{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}Assistant:{% endif %}"
)
PLAIN_STOP = ["\nUser:"]
ROLES = ("system", "user", "assistant")


def ensure_chat_template(tokenizer: PreTrainedTokenizerBase, has_own: bool) -> None:
    """Give base models the plain-text template (marked so default_stop() can tell)."""
    if not has_own or not tokenizer.chat_template:
        tokenizer.chat_template = PLAIN_TEMPLATE


def uses_plain_template(tokenizer: PreTrainedTokenizerBase) -> bool:
    return tokenizer.chat_template == PLAIN_TEMPLATE


def default_stop(tokenizer: PreTrainedTokenizerBase) -> list[str]:
    return list(PLAIN_STOP) if uses_plain_template(tokenizer) else []


def validate_messages(messages: list[dict]) -> None:
    if not messages:
        raise ValueError("messages is empty: give at least one {'role': 'user', 'content': ...}")
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or m.get("role") not in ROLES:
            raise ValueError(f"messages[{i}] needs a role among {', '.join(ROLES)}")
        if not isinstance(m.get("content"), str):
            raise ValueError(f"messages[{i}].content must be a string")


def format_chat(tokenizer: PreTrainedTokenizerBase, messages: list[dict]) -> str:
    """Messages -> the prompt text the model continues (generation prompt appended)."""
    validate_messages(messages)
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
