"""studies: a heartbeat of the search process (which host and pid runs it, when it last beat)

A study left `running` by a killed search would look busy forever; a search now touches
`heartbeat_at` every few seconds, so "running" with a recent heartbeat means alive. Additive:
older searches leave the columns empty.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-01 10:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("studies", schema=None) as batch_op:
        batch_op.add_column(sa.Column("heartbeat_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("runner_host", sa.String(length=200), nullable=True))
        batch_op.add_column(sa.Column("runner_pid", sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("studies", schema=None) as batch_op:
        batch_op.drop_column("runner_pid")
        batch_op.drop_column("runner_host")
        batch_op.drop_column("heartbeat_at")
