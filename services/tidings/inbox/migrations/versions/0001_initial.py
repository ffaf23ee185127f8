"""The inbox: notifications (once, with their audience), per-user state and marks, dead letters.

Revision ID: 0001
Revises:
Create Date: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision: str | None = None
branch_labels: str | None = None
depends_on: str | None = None

Pk = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
Stamp = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "notifications",
        sa.Column("pk", Pk, primary_key=True, autoincrement=True),
        sa.Column("epoch", sa.String(16), nullable=False),
        sa.Column("seq", sa.BigInteger, nullable=False),
        sa.Column("id", sa.String(64), nullable=False),
        sa.Column("tenant", sa.String(64), nullable=False),
        sa.Column("audience_kind", sa.String(9), nullable=False),
        sa.Column("audience_name", sa.String(64), nullable=False),
        sa.Column("event", sa.String(65), nullable=False),
        sa.Column("domain", sa.String(32), nullable=False),
        sa.Column("time", Stamp, nullable=False),
        sa.Column("source", sa.String(128), nullable=False),
        sa.Column("title", sa.String(200), nullable=False),
        sa.Column("message", sa.Text, nullable=False),
        sa.Column("severity", sa.String(8), nullable=False),
        sa.Column("data", sa.Text, nullable=False),
        sa.Column("stored_at", Stamp, nullable=False),
        sa.PrimaryKeyConstraint("pk", name="pk_notifications"),
        sa.UniqueConstraint("epoch", "seq", name="uq_notifications_epoch_seq"),
        sa.UniqueConstraint("id", name="uq_notifications_id"),
    )
    op.create_index(
        "ix_notifications_tenant_audience_kind_audience_name_pk",
        "notifications",
        ["tenant", "audience_kind", "audience_name", "pk"],
    )
    op.create_table(
        "inbox_state",
        sa.Column("tenant", sa.String(64), nullable=False),
        sa.Column("user", sa.String(64), nullable=False),
        sa.Column("notification", Pk, nullable=False),
        sa.Column("read", sa.Boolean, nullable=True),
        sa.Column("seen", sa.Boolean, nullable=True),
        sa.Column("archived", sa.Boolean, nullable=False),
        sa.Column("updated_at", Stamp, nullable=False),
        sa.PrimaryKeyConstraint("tenant", "user", "notification", name="pk_inbox_state"),
        sa.ForeignKeyConstraint(
            ["notification"],
            ["notifications.pk"],
            name="fk_inbox_state_notification",
            ondelete="CASCADE",
        ),
    )
    op.create_index("ix_inbox_state_notification", "inbox_state", ["notification"])
    op.create_table(
        "inbox_marks",
        sa.Column("tenant", sa.String(64), nullable=False),
        sa.Column("user", sa.String(64), nullable=False),
        sa.Column("read_upto", sa.BigInteger, nullable=False),
        sa.Column("seen_upto", sa.BigInteger, nullable=False),
        sa.Column("updated_at", Stamp, nullable=False),
        sa.PrimaryKeyConstraint("tenant", "user", name="pk_inbox_marks"),
    )
    op.create_table(
        "dead_letters",
        sa.Column("pk", Pk, primary_key=True, autoincrement=True),
        sa.Column("epoch", sa.String(16), nullable=False),
        sa.Column("seq", sa.BigInteger, nullable=False),
        sa.Column("subject", sa.String(512), nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("payload", sa.LargeBinary, nullable=False),
        sa.Column("received_at", Stamp, nullable=False),
        sa.PrimaryKeyConstraint("pk", name="pk_dead_letters"),
        sa.UniqueConstraint("epoch", "seq", name="uq_dead_letters_epoch_seq"),
    )


def downgrade() -> None:
    op.drop_table("dead_letters")
    op.drop_table("inbox_marks")
    op.drop_index("ix_inbox_state_notification", "inbox_state")
    op.drop_table("inbox_state")
    op.drop_index("ix_notifications_tenant_audience_kind_audience_name_pk", "notifications")
    op.drop_table("notifications")
