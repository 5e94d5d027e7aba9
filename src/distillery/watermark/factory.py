"""Public scheme names -> scheme objects built from the key ring (lm-watermarking's presets).

    make_scheme("kgw", ring, account="alice", delta=2.0)        KGW, hash construction
    make_scheme("kgw", ring, construction="transformers", vocab_size=V, account="alice")
    make_scheme("gumbel", ring, account="alice")
    make_schemes("kgw", ring, ["alice", "bob"])                  one per account, for scan()

The gateway builds one scheme per account and calls `scheme.apply(params)` per request, and
records `scheme.key_ids` in the usage row.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from distillery.watermark.gumbel import Gumbel
from distillery.watermark.keys import KeyRing
from distillery.watermark.kgw import KGW
from distillery.watermark.kgw_transformers import TransformersKGW
from distillery.watermark.scheme import WatermarkScheme


def _kgw(ring: KeyRing, account: str | None, version: int | None, construction: str = "hash",
         **params) -> WatermarkScheme:
    acct = ring.account_key(account, version) if account is not None else None
    if construction == "hash":
        return KGW(ring.global_key(version), acct, **params)
    if construction == "transformers":
        if "hashing_key" in params:
            return TransformersKGW(**params)
        return TransformersKGW(key=acct or ring.global_key(version), **params)
    raise ValueError(f"unknown KGW construction {construction!r}: use hash or transformers")


def _gumbel(ring: KeyRing, account: str | None, version: int | None, **params) -> WatermarkScheme:
    acct = ring.account_key(account, version) if account is not None else None
    return Gumbel(ring.global_key(version), acct, **params)


SCHEMES: dict[str, Callable[..., WatermarkScheme]] = {"kgw": _kgw, "gumbel": _gumbel}


def make_scheme(name: str, ring: KeyRing, account: str | None = None,
                version: int | None = None, **params) -> WatermarkScheme:
    """A scheme keyed for `account` (None: the global key alone), master version `version`."""
    if name not in SCHEMES:
        raise ValueError(f"unknown watermark scheme {name!r}: use one of {', '.join(SCHEMES)}")
    try:
        return SCHEMES[name](ring, account, version, **params)
    except TypeError as e:  # an unknown parameter name
        raise ValueError(f"bad parameters for the {name} scheme: {e}") from None


def make_schemes(name: str, ring: KeyRing, accounts: Iterable[str],
                 version: int | None = None, **params) -> list[WatermarkScheme]:
    return [make_scheme(name, ring, a, version, **params) for a in accounts]
