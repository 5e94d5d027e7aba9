"""audit_rows, audit_cursor, audit_decisions (the extraction audit's own tables)

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

TZ = sa.DateTime(timezone=True)
BigId = sa.BigInteger().with_variant(sa.Integer, "sqlite")


def upgrade() -> None:
    op.create_table(
        "audit_rows",
        sa.Column("usage_id", BigId, primary_key=True),
        sa.Column("account_id", sa.Integer, sa.ForeignKey("accounts.id"), nullable=False),
        sa.Column("created_at", TZ, nullable=False),
        sa.Column("embedder", sa.String(64), nullable=False),
        sa.Column("embedding", sa.LargeBinary, nullable=False),
        sa.Column("features", sa.JSON, nullable=False),
    )
    op.create_index("ix_audit_rows_account_created", "audit_rows", ["account_id", "created_at"])
    op.create_table(
        "audit_cursor",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("last_usage_id", BigId, nullable=False),
        sa.Column("updated_at", TZ, nullable=False),
    )
    op.create_table(
        "audit_decisions",
        sa.Column("id", BigId, primary_key=True),
        sa.Column("created_at", TZ, nullable=False),
        sa.Column("account_id", sa.Integer, sa.ForeignKey("accounts.id"), nullable=False),
        sa.Column("action", sa.String(16), nullable=False),
        sa.Column("status_before", sa.String(16), nullable=False),
        sa.Column("status_after", sa.String(16), nullable=False),
        sa.Column("actor", sa.String(64), nullable=False),
        sa.Column("entity", sa.String(160), nullable=False),
        sa.Column("strikes", sa.Integer, nullable=False),
        sa.Column("risk", sa.Float),
        sa.Column("p_value", sa.Float),
        sa.Column("window_start", TZ),
        sa.Column("window_end", TZ),
        sa.Column("window_size", sa.Integer),
        sa.Column("evidence", sa.JSON),
    )
    op.create_index("ix_audit_decisions_account_created", "audit_decisions",
                    ["account_id", "created_at"])


def downgrade() -> None:
    op.drop_index("ix_audit_decisions_account_created", "audit_decisions")
    op.drop_table("audit_decisions")
    op.drop_table("audit_cursor")
    op.drop_index("ix_audit_rows_account_created", "audit_rows")
    op.drop_table("audit_rows")
