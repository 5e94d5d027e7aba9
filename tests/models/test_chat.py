import pytest

from distillery.models import default_stop, format_chat, load_tokenizer
from distillery.models.chat import PLAIN_TEMPLATE, ensure_chat_template


@pytest.fixture(scope="module")
def smol():
    return load_tokenizer("smollm2-135m-instruct")


def test_smollm2_keeps_its_own_template(smol):
    text = format_chat(smol, [{"role": "user", "content": "Hi"}])
    assert text.endswith("<|im_start|>assistant\n")
    assert "<|im_start|>user\nHi<|im_end|>" in text
    assert default_stop(smol) == []


def test_base_model_gets_plain_template(smol):
    tok = load_tokenizer("smollm2-135m-instruct")
    ensure_chat_template(tok, has_own=False)
    assert tok.chat_template == PLAIN_TEMPLATE
    text = format_chat(tok, [{"role": "system", "content": "Be brief."},
                             {"role": "user", "content": "Hi"},
                             {"role": "assistant", "content": "Hello."},
                             {"role": "user", "content": "Name a colour."}])
    assert text == "Be brief.\n\nUser: Hi\nAssistant: Hello.\nUser: Name a colour.\nAssistant:"
    assert default_stop(tok) == ["\nUser:"]


@pytest.mark.parametrize("messages, match", [
    ([], "empty"),
    ([{"role": "robot", "content": "x"}], "role"),
    ([{"role": "user", "content": None}], "string"),
])
def test_bad_messages(smol, messages, match):
    with pytest.raises(ValueError, match=match):
        format_chat(smol, messages)
