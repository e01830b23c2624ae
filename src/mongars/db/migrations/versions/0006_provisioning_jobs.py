"""Model provisioning jobs and their tasks, readable from every replica.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-28
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TIMESTAMP = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "provisioning_jobs",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("profile", sa.String(length=64), nullable=False),
        sa.Column("force", sa.Boolean(), nullable=False),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_provisioning_jobs"),
    )
    op.create_table(
        "provisioning_tasks",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("backend", sa.String(length=16), nullable=False),
        sa.Column("model", sa.Text(), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("phase", sa.Text(), nullable=False),
        sa.Column("completed_bytes", sa.BigInteger(), nullable=False),
        sa.Column("total_bytes", sa.BigInteger(), nullable=True),
        sa.Column("detail", sa.Text(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("replica", sa.String(length=300), nullable=False),
        sa.Column("started_at", TIMESTAMP, nullable=False),
        sa.Column("finished_at", TIMESTAMP, nullable=True),
        sa.Column("updated_at", TIMESTAMP, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_provisioning_tasks"),
    )
    op.create_table(
        "provisioning_job_roles",
        sa.Column("job_id", sa.Uuid(), nullable=False),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("task_id", sa.Uuid(), nullable=False),
        sa.Column("joined", sa.Boolean(), nullable=False),
        sa.ForeignKeyConstraint(
            ["job_id"],
            ["provisioning_jobs.id"],
            name="fk_provisioning_job_roles_job_id_provisioning_jobs",
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["task_id"],
            ["provisioning_tasks.id"],
            name="fk_provisioning_job_roles_task_id_provisioning_tasks",
        ),
        sa.PrimaryKeyConstraint("job_id", "role", name="pk_provisioning_job_roles"),
    )
    op.create_index("ix_provisioning_job_roles_task_id", "provisioning_job_roles", ["task_id"])


def downgrade() -> None:
    op.drop_table("provisioning_job_roles")
    op.drop_table("provisioning_tasks")
    op.drop_table("provisioning_jobs")
