"""The usage store's tables: accounts, their API keys, and one usage row per request.

Designed for what reads it next:
- forensics re-derives an account's watermark key (by account name) and reads the stored
  responses of that account: `usage.responses` holds every choice's text (or only hashes, when
  the gateway is configured to keep hashes), beside `watermark_scheme` and `watermark_key_id`;
- audit reads an account's rows in time order over millions of rows: index
  (account_id, created_at); and writes `accounts.status` back, which the gateway enforces.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

ACCOUNT_STATUSES = ("active", "flagged", "throttled", "blocked")


def utcnow() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    pass


class Account(Base):
    __tablename__ = "accounts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(128), unique=True, nullable=False)
    # active | flagged (served, watched) | throttled (served at reduced limits) | blocked (403)
    status: Mapped[str] = mapped_column(String(16), nullable=False, default="active")
    status_reason: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class ApiKey(Base):
    __tablename__ = "api_keys"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)  # public id, "key-<12 hex>"
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"), nullable=False, index=True)
    # sha256 hex of the secret key: the key itself is shown once and never stored
    key_hash: Mapped[str] = mapped_column(String(64), unique=True, nullable=False)
    prefix: Mapped[str] = mapped_column(String(16), nullable=False)  # "dk-ab12", for humans
    name: Mapped[str | None] = mapped_column(String(128))
    rpm_limit: Mapped[int | None] = mapped_column(Integer)  # None: the server's default
    tpm_limit: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


BigId = BigInteger().with_variant(Integer, "sqlite")  # SQLite autoincrements INTEGER only


class Usage(Base):
    __tablename__ = "usage"
    __table_args__ = (Index("ix_usage_account_created", "account_id", "created_at"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    # the server's own id for the request (unique; sent back as x-request-id)
    request_id: Mapped[str] = mapped_column(String(64), nullable=False, unique=True)
    # the X-Request-ID the client sent, as data: clients may repeat one (migration 0002)
    client_request_id: Mapped[str | None] = mapped_column(String(64))
    # null when the request failed before authentication (401)
    account_id: Mapped[int | None] = mapped_column(ForeignKey("accounts.id"))
    key_id: Mapped[str | None] = mapped_column(String(32))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False,
                                                 index=True)
    finished_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    method: Mapped[str] = mapped_column(String(8), nullable=False)
    route: Mapped[str] = mapped_column(String(64), nullable=False)
    model: Mapped[str | None] = mapped_column(String(128))
    status_code: Mapped[int] = mapped_column(Integer, nullable=False)
    error_type: Mapped[str | None] = mapped_column(String(64))
    # messages (chat) or prompt text (completions); null when only hashes are kept
    prompt: Mapped[object | None] = mapped_column(JSON(none_as_null=True))
    prompt_sha256: Mapped[str | None] = mapped_column(String(64))
    responses: Mapped[list | None] = mapped_column(JSON(none_as_null=True))  # one text per choice
    responses_sha256: Mapped[str | None] = mapped_column(String(64))
    prompt_tokens: Mapped[int] = mapped_column(Integer, default=0)
    completion_tokens: Mapped[int] = mapped_column(Integer, default=0)
    n: Mapped[int | None] = mapped_column(Integer)
    max_tokens: Mapped[int | None] = mapped_column(Integer)
    temperature: Mapped[float | None] = mapped_column(Float)
    top_p: Mapped[float | None] = mapped_column(Float)
    seed: Mapped[int | None] = mapped_column(BigInteger)
    # everything else that was asked (stop, repetition_penalty, user)
    params: Mapped[dict | None] = mapped_column(JSON(none_as_null=True))
    stream: Mapped[bool] = mapped_column(Boolean, default=False)
    logprobs: Mapped[bool] = mapped_column(Boolean, default=False)
    top_logprobs: Mapped[int | None] = mapped_column(Integer)
    watermark_scheme: Mapped[str | None] = mapped_column(String(16))
    watermark_key_id: Mapped[str | None] = mapped_column(String(256))
    latency_ms: Mapped[float] = mapped_column(Float, nullable=False)
    client_addr: Mapped[str | None] = mapped_column(String(64))
    user_agent: Mapped[str | None] = mapped_column(String(256))
