"""API key -> account, with the account's status enforced on every request.

The bearer key is hashed (sha256) and looked up by hash; the stored hash is compared with
`secrets.compare_digest`. Lookups are cached for `ttl` seconds, so a revoked key or a status
set by the audit takes effect within that time, and the database sees at most one query per
key per `ttl`.
"""

from __future__ import annotations

import asyncio
import secrets
import time

from sqlalchemy import Engine

from distillery.gateway.errors import APIError
from distillery.store.accounts import KEY_PREFIX, KeyIdentity, hash_key, lookup_key

MAX_CACHE = 100_000


class Authenticator:
    def __init__(self, engine: Engine, ttl: float = 1.0):
        self.engine = engine
        self.ttl = ttl
        self._cache: dict[str, tuple[KeyIdentity | None, float]] = {}

    async def identify(self, authorization: str | None) -> KeyIdentity:
        key = bearer(authorization)
        if key is None:
            raise APIError(401, "missing API key: send 'Authorization: Bearer <key>'",
                           "missing_api_key")
        if not key.startswith(KEY_PREFIX) or len(key) > 256:
            raise APIError(401, "invalid API key", "invalid_api_key")
        digest = hash_key(key)
        now = time.monotonic()
        hit = self._cache.get(digest)
        if hit is not None and hit[1] > now:
            ident = hit[0]
        else:
            ident = await asyncio.to_thread(lookup_key, self.engine, digest)
            if len(self._cache) >= MAX_CACHE:
                self._cache.clear()
            self._cache[digest] = (ident, now + self.ttl)
        if ident is None or not secrets.compare_digest(ident.key_hash, digest):
            raise APIError(401, "invalid API key", "invalid_api_key")
        return ident

    @staticmethod
    def enforce_status(ident: KeyIdentity) -> None:
        """blocked: 403. flagged: served (the audit watches). throttled: lower rate limits."""
        if ident.status == "blocked":
            raise APIError(403, f"account {ident.account!r} is blocked; contact the provider",
                           "account_blocked")

    def invalidate(self) -> None:
        self._cache.clear()


def bearer(authorization: str | None) -> str | None:
    """The credentials of 'Bearer <token>' (the scheme is case-insensitive, RFC 7235)."""
    scheme, _, token = (authorization or "").strip().partition(" ")
    token = token.strip()
    return token if scheme.lower() == "bearer" and token else None


def token_matches(authorization: str | None, *tokens: str | None) -> bool:
    """Whether the bearer token is one of `tokens` (constant-time comparisons, all done)."""
    given = (bearer(authorization) or "").encode()
    hits = [secrets.compare_digest(given, t.encode()) for t in tokens if t is not None]
    return any(hits)


def check_admin(token: str | None, authorization: str | None) -> None:
    if token is None:
        raise APIError(403, "admin routes are disabled: start the server with an admin token "
                       "(DISTILLERY_ADMIN_TOKEN)", "admin_disabled")
    if not token_matches(authorization, token):
        raise APIError(401, "invalid admin token", "invalid_admin_token")
