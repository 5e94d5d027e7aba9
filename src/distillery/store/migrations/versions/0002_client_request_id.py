"""usage.client_request_id: the client's X-Request-ID as data, never the row's identity

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # usage.request_id stays unique, but only the server writes it now: a client's id (two
    # clients may send the same one) had made one batch fail forever and stopped logging
    with op.batch_alter_table("usage") as batch:
        batch.add_column(sa.Column("client_request_id", sa.String(64)))


def downgrade() -> None:
    with op.batch_alter_table("usage") as batch:
        batch.drop_column("client_request_id")
