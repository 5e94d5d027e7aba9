"""The audit's own tables: per-row features (with the prompt embedding), a cursor, decisions.

Designed for what reads it next:
- `audit_rows`: one row per scored usage row, keyed by the usage id, written once (the
  embedding is computed once per request, never again); the scorer reads an account's last
  rows in time order: index (account_id, created_at). `embedder` names the model, so a change
  of embedder is visible instead of mixing spaces.
- `audit_cursor`: the last usage id each named pass has consumed; a pass reads only
  `usage.id > last_usage_id` (the incremental watermark).
- `audit_decisions`: every policy action with its evidence (scores, features, window, cluster),
  newest first for `distillery audit decisions`: index (account_id, created_at).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, DateTime, Float, ForeignKey, Index, Integer, LargeBinary, String
from sqlalchemy.orm import Mapped, mapped_column

from distillery.store.models import Base, BigId, utcnow


class AuditRow(Base):
    __tablename__ = "audit_rows"
    __table_args__ = (Index("ix_audit_rows_account_created", "account_id", "created_at"),)

    usage_id: Mapped[int] = mapped_column(BigId, primary_key=True)  # = usage.id
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"), nullable=False)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    embedder: Mapped[str] = mapped_column(String(64), nullable=False)
    embedding: Mapped[bytes] = mapped_column(LargeBinary, nullable=False)  # float32 (d,)
    # the per-request features of audit/features.py (RowFeatures.as_dict)
    features: Mapped[dict] = mapped_column(JSON, nullable=False)


class AuditCursor(Base):
    __tablename__ = "audit_cursor"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    last_usage_id: Mapped[int] = mapped_column(BigId, nullable=False, default=0)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class AuditDecision(Base):
    __tablename__ = "audit_decisions"
    __table_args__ = (Index("ix_audit_decisions_account_created", "account_id", "created_at"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"), nullable=False)
    # flag | throttle | block | override | clear
    action: Mapped[str] = mapped_column(String(16), nullable=False)
    status_before: Mapped[str] = mapped_column(String(16), nullable=False)
    status_after: Mapped[str] = mapped_column(String(16), nullable=False)
    actor: Mapped[str] = mapped_column(String(64), nullable=False)  # "auditor" | "operator"
    entity: Mapped[str] = mapped_column(String(160), nullable=False)  # account:x | cluster:...
    strikes: Mapped[int] = mapped_column(Integer, default=0)
    risk: Mapped[float | None] = mapped_column(Float)  # combined statistic
    p_value: Mapped[float | None] = mapped_column(Float)  # combined, calibrated on benign
    window_start: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    window_end: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    window_size: Mapped[int | None] = mapped_column(Integer)
    # {"scores": {...}, "features": {...}, "cluster": [...members], "reason": "..."}
    evidence: Mapped[dict | None] = mapped_column(JSON(none_as_null=True))
