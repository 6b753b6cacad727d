"""Approval requests of trash / restore / purge, and admin overrides of the archive guard.

Revision ID: 0002_approvals
Revises: 0001
Create Date: 2024-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002_approvals"
down_revision = "0001"
branch_labels = None
depends_on = None


def _when(name: str, nullable: bool = False) -> sa.Column:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "deletion_overrides",
        sa.Column("id", sa.String(32), primary_key=True),
        _when("at"),
        sa.Column("admin", sa.String(200), nullable=False),
        sa.Column("room_id", sa.String(200), nullable=False, index=True),
        sa.Column("room_name", sa.String(1000), nullable=False),
        sa.Column("room_etag", sa.String(200), nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("guard_problem", sa.Text, nullable=True),
    )
    op.create_table(
        "approval_requests",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("action", sa.String(16), nullable=False),
        sa.Column("room_id", sa.String(200), nullable=False, index=True),
        sa.Column("room_name", sa.String(1000), nullable=False),
        sa.Column("room_etag", sa.String(200), nullable=False),
        sa.Column("requested_by", sa.String(200), nullable=False),
        _when("requested_at"),
        _when("expires_at"),
        sa.Column("state", sa.String(16), nullable=False, index=True),
        sa.Column("decided_by", sa.String(200), nullable=True),
        _when("decided_at", nullable=True),
        sa.Column("job_id", sa.String(32), nullable=True),
        sa.Column("override_id", sa.String(32), sa.ForeignKey("deletion_overrides.id"),
                  nullable=True),
        sa.Column("origin", sa.JSON, nullable=True),
        sa.Column("facts", sa.JSON, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("approval_requests")
    op.drop_table("deletion_overrides")
