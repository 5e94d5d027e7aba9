"""The keyed integer hash of the `hash` constructions: numpy (detection), torch (generation).

Everything is SplitMix64's output function (Steele, Lea & Flood 2014, "Fast splittable
pseudorandom number generators"; Stafford's "Mix13" constants) applied to 64-bit words. numpy
works on uint64; torch has no full uint64 arithmetic, so the torch twin works on int64 with the
same bits: xor, wrapping multiplication and addition agree bit for bit, and a logical right shift
is an arithmetic one with the sign bits masked off. tests/watermark/test_prf.py checks the twins
agree.

Not a cryptographic PRF: like every KGW-style hash it resists casual key recovery, not a
determined cryptanalyst with millions of outputs. The secrets it mixes in come from HMAC-SHA256
(see keys.py), so leaking one account's key says nothing about another's.

Values:
  token_hash(v)            a fixed, keyless scramble of a token id
  window_hash(w tokens)    keyless fold over a context window, oldest token first
  keyed(h, seed)           mix64(h ^ seed): the window's value under one key
  combine(c, t)            (c | 1) * t: one (context, token) value
  unit(h)                  the top 53 bits as a float in (0, 1), never 0 or 1
  below(h, frac)           h, read as a signed int64, < -2^63 + frac * 2^64: Bernoulli(frac)

`combine` is the only operation done for every vocabulary entry at every generation step, so
it is one multiplication: multiply-shift hashing (Dietzfelbinger et al. 1997), whose high bits
are near-uniform and pairwise independent over the random odd multiplier (c | 1) that the keyed
context gives; `below` and `unit` read only high bits. A full mix there cost ~14 (b, V) int64
ops per step, 15% of the teacher's step at batch 16; this costs two.
"""

from __future__ import annotations

import numpy as np
import torch

M64 = (1 << 64) - 1
C1, C2 = 0xBF58476D1CE4E5B9, 0x94D049BB133111EB
GOLDEN = 0x9E3779B97F4A7C15  # 2^64 / golden ratio, SplitMix64's increment
WINDOW_START = 0x2545F4914F6CDD1D  # arbitrary odd constant: the hash of an empty window
TWO53 = float(1 << 53)


def _signed(c: int) -> int:
    """A uint64 constant as the int64 with the same bits (torch rejects ints >= 2^63)."""
    return c - (1 << 64) if c >= 1 << 63 else c


_C1s, _C2s, _GOLDENs, _STARTs = (_signed(c) for c in (C1, C2, GOLDEN, WINDOW_START))


# ---- numpy (uint64) ----------------------------------------------------------------------

_U30, _U27, _U31, _U1, _U11 = (np.uint64(k) for k in (30, 27, 31, 1, 11))
_UC1, _UC2, _UGOLDEN = np.uint64(C1), np.uint64(C2), np.uint64(GOLDEN)


def mix64(x: np.ndarray) -> np.ndarray:
    """SplitMix64 finaliser over a uint64 array (array arithmetic wraps silently)."""
    x = np.asarray(x, dtype=np.uint64)
    x = (x ^ (x >> _U30)) * _UC1
    x = (x ^ (x >> _U27)) * _UC2
    return x ^ (x >> _U31)


def token_hash(tokens: np.ndarray) -> np.ndarray:
    t = np.asarray(tokens).astype(np.uint64)
    return mix64(t * _UGOLDEN + _U1)


def window_hash(windows: np.ndarray) -> np.ndarray:
    """windows: (..., w) token ids -> (...,) uint64; w may be 0 (a constant)."""
    windows = np.asarray(windows)
    h = np.full(windows.shape[:-1], WINDOW_START, dtype=np.uint64)
    for j in range(windows.shape[-1]):
        h = mix64(h ^ token_hash(windows[..., j]))
    return h


def keyed(h: np.ndarray, seed: np.ndarray | int) -> np.ndarray:
    return mix64(np.asarray(h, dtype=np.uint64) ^ np.asarray(seed, dtype=np.uint64))


def combine(c: np.ndarray, t: np.ndarray) -> np.ndarray:
    return (np.asarray(c, dtype=np.uint64) | _U1) * np.asarray(t, dtype=np.uint64)


def unit(h: np.ndarray) -> np.ndarray:
    """Top 53 bits -> float64 in (0, 1): (k + 0.5) / 2^53."""
    return ((h >> _U11).astype(np.float64) + 0.5) / TWO53


def threshold(frac: float) -> int:
    """The signed int64 below which a uniform 64-bit value falls with probability frac."""
    return min(-(1 << 63) + round(frac * 2.0**64), (1 << 63) - 1)


def below(h: np.ndarray, frac: float) -> np.ndarray:
    return np.asarray(h, dtype=np.uint64).view(np.int64) < threshold(frac)


# ---- torch (int64 holding the same bits) -------------------------------------------------

def _shr(x: torch.Tensor, k: int) -> torch.Tensor:
    """Logical right shift of int64 bits."""
    return (x >> k) & ((1 << (64 - k)) - 1)


def mix64_t(x: torch.Tensor) -> torch.Tensor:
    x = (x ^ _shr(x, 30)) * _C1s
    x = (x ^ _shr(x, 27)) * _C2s
    return x ^ _shr(x, 31)


def token_hash_t(tokens: torch.Tensor) -> torch.Tensor:
    return mix64_t(tokens.long() * _GOLDENs + 1)


def window_hash_t(windows: torch.Tensor) -> torch.Tensor:
    """windows: (..., w) -> (...,) int64."""
    h = torch.full(windows.shape[:-1], _STARTs, dtype=torch.long, device=windows.device)
    for j in range(windows.shape[-1]):
        h = mix64_t(h ^ token_hash_t(windows[..., j]))
    return h


def keyed_t(h: torch.Tensor, seed: torch.Tensor | int) -> torch.Tensor:
    if isinstance(seed, int):
        seed = _signed(seed)
    return mix64_t(h ^ seed)


def combine_t(c: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    return (c | 1) * t


def unit_t(h: torch.Tensor) -> torch.Tensor:
    return (_shr(h, 11).double() + 0.5) / TWO53


def below_t(h: torch.Tensor, frac: float) -> torch.Tensor:
    return h < threshold(frac)


def as_int64(seed: int) -> int:
    """A uint64 seed as the int64 torch needs."""
    return _signed(seed & M64)
