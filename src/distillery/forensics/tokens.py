"""A suspect's tokens in the teacher's token space, for a suspect with another tokenizer.

The watermark lives in the teacher's tokens: a scored tuple is (teacher window, teacher token).
A suspect of another family (Gemma under a SmolLM2 teacher) predicts its own tokens. Both
tokenizations of one text are laid on its bytes (a token's bytes: byte-level BPE through
GPT-2's byte alphabet, SentencePiece through "▁" = space and <0xHH> byte fallback); a teacher
position t is scored when some suspect token ends exactly where teacher token t starts, and the
suspect's prediction there is mapped to the *first* teacher token of its text.

What is lost (measured in BENCHMARKS.md, Forensics): teacher positions inside a suspect token
(no suspect context ends there), and predictions whose first teacher token differs from the
token the teacher would have emitted (a suspect token that is a prefix of a teacher token maps
to a shorter teacher token). Neither touches validity: under H0 the mapped token is still a
function of the suspect and the text alone, never of the key.
"""

from __future__ import annotations

import re
import weakref
from functools import lru_cache

import numpy as np
from transformers import PreTrainedTokenizerBase

_BYTE_FALLBACK = re.compile(r"^<0x([0-9A-Fa-f]{2})>$")


@lru_cache(maxsize=1)
def _gpt2_byte_decoder() -> dict[str, int]:
    """GPT-2's reversible byte -> printable character alphabet, inverted."""
    bs = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1),
          *range(ord("®"), ord("ÿ") + 1)]
    cs = list(bs)
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {chr(c): b for b, c in zip(bs, cs, strict=True)}


# per tokenizer object, and gone with it (an id() key could be reused by another tokenizer)
_TABLES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def token_bytes(tokenizer: PreTrainedTokenizerBase) -> list[bytes]:
    """id -> the bytes the token stands for in running text (b"" for special tokens)."""
    if tokenizer in _TABLES:
        return _TABLES[tokenizer]
    pieces = tokenizer.convert_ids_to_tokens(list(range(len(tokenizer))))
    special = set(tokenizer.all_special_ids)
    byte_level = "ByteLevel" in type(tokenizer.backend_tokenizer.decoder).__name__
    dec = _gpt2_byte_decoder()
    table = []
    for i, p in enumerate(pieces):
        if i in special or p is None:
            table.append(b"")
        elif byte_level:
            table.append(bytes(dec[c] for c in p) if all(c in dec for c in p) else p.encode())
        elif m := _BYTE_FALLBACK.match(p):
            table.append(bytes([int(m.group(1), 16)]))
        else:
            table.append(p.replace("▁", " ").encode())
    _TABLES[tokenizer] = table
    return table


def boundaries(ids: list[int] | np.ndarray, table: list[bytes], text: bytes) -> np.ndarray | None:
    """(n,) ids -> (n + 1,) byte offset where each token starts (and the end), or None when
    the tokens do not spell `text` byte for byte (normalisation): such a row is not aligned."""
    lens = np.fromiter((len(table[i]) for i in ids), dtype=np.int64, count=len(ids))
    if b"".join(table[i] for i in ids) != text:
        return None
    return np.concatenate([[0], np.cumsum(lens)])


class TokenMap:
    """Suspect token id -> the first teacher token id of its text (-1: none, e.g. a lone
    UTF-8 continuation byte). Filled lazily: a corpus predicts a few thousand distinct ids."""

    def __init__(self, suspect: PreTrainedTokenizerBase, teacher: PreTrainedTokenizerBase):
        self.suspect_bytes = token_bytes(suspect)
        self.teacher = teacher
        self._map: dict[int, int] = {}

    def __call__(self, ids: np.ndarray) -> np.ndarray:
        todo = [int(i) for i in np.unique(ids) if int(i) not in self._map]
        self._map.update(zip(todo, first_ids(self.teacher, [self._text(i) for i in todo]),
                             strict=True))
        return np.array([self._map[int(i)] for i in ids], dtype=np.int64)

    def _text(self, i: int) -> str:
        """The token's text; "" (no teacher token) for a partial UTF-8 sequence."""
        try:
            return self.suspect_bytes[i].decode("utf-8")
        except UnicodeDecodeError:
            return ""


def first_ids(teacher: PreTrainedTokenizerBase, texts: list[str]) -> list[int]:
    """Each text -> the id of the first teacher token of its tokenization (-1 for "")."""
    enc = teacher(texts, add_special_tokens=False)["input_ids"] if texts else []
    return [e[0] if e else -1 for e in enc]


def same_tokenizer(a: PreTrainedTokenizerBase, b: PreTrainedTokenizerBase) -> bool:
    return a is b or (len(a) == len(b) and a.get_vocab() == b.get_vocab())
