"""accounts, api_keys, usage

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

TZ = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "accounts",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("name", sa.String(128), nullable=False, unique=True),
        sa.Column("status", sa.String(16), nullable=False, server_default="active"),
        sa.Column("status_reason", sa.Text),
        sa.Column("created_at", TZ, nullable=False),
        sa.Column("updated_at", TZ, nullable=False),
    )
    op.create_table(
        "api_keys",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("account_id", sa.Integer, sa.ForeignKey("accounts.id"), nullable=False),
        sa.Column("key_hash", sa.String(64), nullable=False, unique=True),
        sa.Column("prefix", sa.String(16), nullable=False),
        sa.Column("name", sa.String(128)),
        sa.Column("rpm_limit", sa.Integer),
        sa.Column("tpm_limit", sa.Integer),
        sa.Column("created_at", TZ, nullable=False),
        sa.Column("revoked_at", TZ),
    )
    op.create_index("ix_api_keys_account_id", "api_keys", ["account_id"])
    op.create_table(
        "usage",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True),
        sa.Column("request_id", sa.String(64), nullable=False, unique=True),
        sa.Column("account_id", sa.Integer, sa.ForeignKey("accounts.id")),
        sa.Column("key_id", sa.String(32)),
        sa.Column("created_at", TZ, nullable=False),
        sa.Column("finished_at", TZ, nullable=False),
        sa.Column("method", sa.String(8), nullable=False),
        sa.Column("route", sa.String(64), nullable=False),
        sa.Column("model", sa.String(128)),
        sa.Column("status_code", sa.Integer, nullable=False),
        sa.Column("error_type", sa.String(64)),
        sa.Column("prompt", sa.JSON),
        sa.Column("prompt_sha256", sa.String(64)),
        sa.Column("responses", sa.JSON),
        sa.Column("responses_sha256", sa.String(64)),
        sa.Column("prompt_tokens", sa.Integer, nullable=False),
        sa.Column("completion_tokens", sa.Integer, nullable=False),
        sa.Column("n", sa.Integer),
        sa.Column("max_tokens", sa.Integer),
        sa.Column("temperature", sa.Float),
        sa.Column("top_p", sa.Float),
        sa.Column("seed", sa.BigInteger),
        sa.Column("params", sa.JSON),
        sa.Column("stream", sa.Boolean, nullable=False),
        sa.Column("logprobs", sa.Boolean, nullable=False),
        sa.Column("top_logprobs", sa.Integer),
        sa.Column("watermark_scheme", sa.String(16)),
        sa.Column("watermark_key_id", sa.String(256)),
        sa.Column("latency_ms", sa.Float, nullable=False),
        sa.Column("client_addr", sa.String(64)),
        sa.Column("user_agent", sa.String(256)),
    )
    op.create_index("ix_usage_account_created", "usage", ["account_id", "created_at"])
    op.create_index("ix_usage_created_at", "usage", ["created_at"])


def downgrade() -> None:
    op.drop_table("usage")
    op.drop_table("api_keys")
    op.drop_table("accounts")
