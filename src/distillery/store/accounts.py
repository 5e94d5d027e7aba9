"""Accounts and API keys: create, list, revoke, set status, and look a key up by its hash.

A key is `dk-` + 32 random bytes (urlsafe base64): high entropy, so one sha256 is a safe
stored form (no salt or slow hash needed, as for passwords). The key is returned once, at
creation; only its hash and a short prefix for humans are kept.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Engine, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from distillery.store.models import ACCOUNT_STATUSES, Account, ApiKey, utcnow

KEY_PREFIX = "dk-"
MAX_LIMIT = 2**31 - 1  # rpm_limit and tpm_limit are 32-bit integer columns


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


@dataclass(frozen=True)
class AccountInfo:
    id: int
    name: str
    status: str
    status_reason: str | None
    created_at: datetime


@dataclass(frozen=True)
class KeyInfo:
    id: str
    account: str
    prefix: str
    name: str | None
    rpm_limit: int | None
    tpm_limit: int | None
    created_at: datetime
    revoked: bool


@dataclass(frozen=True)
class NewKey:
    info: KeyInfo
    secret: str  # shown once

    def __repr__(self) -> str:  # never print the secret by accident
        return f"NewKey(info={self.info!r}, secret='***')"


@dataclass(frozen=True)
class KeyIdentity:
    """What authentication needs for a key: its account and limits."""

    key_id: str
    key_hash: str
    account_id: int
    account: str
    status: str
    rpm_limit: int | None
    tpm_limit: int | None


def _account_info(a: Account) -> AccountInfo:
    return AccountInfo(a.id, a.name, a.status, a.status_reason, a.created_at)


def _key_info(k: ApiKey, account: str) -> KeyInfo:
    return KeyInfo(k.id, account, k.prefix, k.name, k.rpm_limit, k.tpm_limit, k.created_at,
                   k.revoked_at is not None)


def _get_account(s: Session, name: str) -> Account:
    a = s.scalar(select(Account).where(Account.name == name))
    if a is None:
        raise KeyError(f"no account named {name!r}: create it with `distillery accounts create`")
    return a


def create_account(engine: Engine, name: str) -> AccountInfo:
    name = name.strip()
    if not name or len(name) > 128:
        raise ValueError("an account name must have 1 to 128 characters")
    with Session(engine) as s:
        a = Account(name=name, status="active")
        s.add(a)
        try:
            s.commit()
        except IntegrityError as e:
            raise ValueError(f"account {name!r} exists already") from e
        return _account_info(a)


def list_accounts(engine: Engine) -> list[AccountInfo]:
    with Session(engine) as s:
        return [_account_info(a) for a in s.scalars(select(Account).order_by(Account.id))]


def get_account(engine: Engine, name: str) -> AccountInfo:
    with Session(engine) as s:
        return _account_info(_get_account(s, name))


def set_status(engine: Engine, name: str, status: str, reason: str | None = None) -> AccountInfo:
    """The audit's lever: active, flagged, throttled or blocked; the gateway enforces it."""
    if status not in ACCOUNT_STATUSES:
        raise ValueError(f"status must be one of {', '.join(ACCOUNT_STATUSES)}, got {status!r}")
    with Session(engine) as s:
        a = _get_account(s, name)
        a.status, a.status_reason, a.updated_at = status, reason, utcnow()
        s.commit()
        return _account_info(a)


def create_key(engine: Engine, account: str, name: str | None = None,
               rpm_limit: int | None = None, tpm_limit: int | None = None) -> NewKey:
    for v, what in ((rpm_limit, "rpm_limit"), (tpm_limit, "tpm_limit")):
        if v is not None and not 0 < v <= MAX_LIMIT:
            raise ValueError(f"{what} must be an integer in [1, {MAX_LIMIT}] (or unset for the "
                             "default)")
    secret = KEY_PREFIX + secrets.token_urlsafe(32)
    with Session(engine) as s:
        a = _get_account(s, account)
        k = ApiKey(id=f"key-{secrets.token_hex(6)}", account_id=a.id, key_hash=hash_key(secret),
                   prefix=secret[:7], name=name, rpm_limit=rpm_limit, tpm_limit=tpm_limit,
                   created_at=utcnow())
        s.add(k)
        s.commit()
        return NewKey(_key_info(k, a.name), secret)


def provision(url: str, accounts: Iterable[str]) -> dict[str, str]:
    """A store at `url`, migrated, with each account and one API key for it -> {account: key
    secret}: the set-up a benchmark or a test does before it starts a gateway on the store."""
    from distillery.store.db import make_engine, migrate

    migrate(url)
    engine = make_engine(url)
    try:
        out = {}
        for name in accounts:
            create_account(engine, name)
            out[name] = create_key(engine, name).secret
        return out
    finally:
        engine.dispose()


def list_keys(engine: Engine, account: str | None = None) -> list[KeyInfo]:
    with Session(engine) as s:
        q = select(ApiKey, Account.name).join(Account, Account.id == ApiKey.account_id)
        if account is not None:
            q = q.where(Account.id == _get_account(s, account).id)
        return [_key_info(k, n) for k, n in s.execute(q.order_by(ApiKey.created_at))]


def revoke_key(engine: Engine, key_id: str) -> KeyInfo:
    with Session(engine) as s:
        row = s.execute(select(ApiKey, Account.name).join(Account)
                        .where(ApiKey.id == key_id)).first()
        if row is None:
            raise KeyError(f"no key with id {key_id!r}: see `distillery keys list`")
        k, acc = row
        if k.revoked_at is None:
            s.execute(update(ApiKey).where(ApiKey.id == key_id).values(revoked_at=utcnow()))
            s.commit()
            s.refresh(k)
        return _key_info(k, acc)


def lookup_key(engine: Engine, key_hash: str) -> KeyIdentity | None:
    """The live (not revoked) key with this hash, with its account's current status."""
    with Session(engine) as s:
        row = s.execute(
            select(ApiKey.id, ApiKey.key_hash, Account.id, Account.name, Account.status,
                   ApiKey.rpm_limit, ApiKey.tpm_limit)
            .join(Account, Account.id == ApiKey.account_id)
            .where(ApiKey.key_hash == key_hash, ApiKey.revoked_at.is_(None))
        ).first()
    if row is None or not secrets.compare_digest(row[1], key_hash):
        return None
    return KeyIdentity(*row)


def list_account_names(url: str | None = None) -> list[str]:
    """Every account name, in creation order (for `watermark detect --all-accounts`)."""
    from distillery.store.db import make_engine

    engine = make_engine(url)
    try:
        with Session(engine) as s:
            return list(s.scalars(select(Account.name).order_by(Account.id)))
    finally:
        engine.dispose()
