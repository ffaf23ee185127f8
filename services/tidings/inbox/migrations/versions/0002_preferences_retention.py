"""Preferences (tenant defaults, user overrides), retention per tenant, an index for retention.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision: str | None = "0001"
branch_labels: str | None = None
depends_on: str | None = None

Stamp = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_index("ix_notifications_stored_at", "notifications", ["stored_at"])
    op.create_table(
        "inbox_preference_defaults",
        sa.Column("tenant", sa.String(64), nullable=False),
        sa.Column("domain", sa.String(32), nullable=False),
        sa.Column("channel", sa.String(16), nullable=False),
        sa.Column("enabled", sa.Boolean, nullable=False),
        sa.Column("updated_at", Stamp, nullable=False),
        sa.PrimaryKeyConstraint("tenant", "domain", "channel", name="pk_inbox_preference_defaults"),
    )
    op.create_table(
        "inbox_preferences",
        sa.Column("tenant", sa.String(64), nullable=False),
        sa.Column("user", sa.String(64), nullable=False),
        sa.Column("domain", sa.String(32), nullable=False),
        sa.Column("channel", sa.String(16), nullable=False),
        sa.Column("enabled", sa.Boolean, nullable=False),
        sa.Column("updated_at", Stamp, nullable=False),
        sa.PrimaryKeyConstraint("tenant", "user", "domain", "channel", name="pk_inbox_preferences"),
    )
    op.create_table(
        "inbox_retention",
        sa.Column("tenant", sa.String(64), nullable=False),
        sa.Column("max_age_days", sa.Integer, nullable=True),
        sa.Column("max_items", sa.Integer, nullable=True),
        sa.Column("updated_at", Stamp, nullable=False),
        sa.PrimaryKeyConstraint("tenant", name="pk_inbox_retention"),
    )


def downgrade() -> None:
    op.drop_table("inbox_retention")
    op.drop_table("inbox_preferences")
    op.drop_table("inbox_preference_defaults")
    op.drop_index("ix_notifications_stored_at", "notifications")
