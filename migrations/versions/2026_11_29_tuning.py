"""tuning runs: a tuning_runs table, its trials, and jobs that know their kind and run

Revision ID: 26c15d440f72
Revises: e4880fabbea9
Create Date: 2026-11-29 02:18:59.071923
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "26c15d440f72"
down_revision: str | None = "e4880fabbea9"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Existing jobs are ordinary training jobs: the server default fills their kind.
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("kind", sa.String(length=16), server_default="train", nullable=False))
        batch_op.add_column(sa.Column("tuning_id", sa.String(length=40), nullable=True))
        batch_op.create_index(batch_op.f("ix_jobs_tuning_id"), ["tuning_id"], unique=False)

    op.create_table(
        "tuning_runs",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("dataset_id", sa.String(length=40), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("spec", sa.JSON(), nullable=False),
        sa.Column("search", sa.JSON(), nullable=False),
        sa.Column("metric", sa.String(length=32), nullable=False),
        sa.Column("trials_total", sa.Integer(), nullable=False),
        sa.Column("best_job_id", sa.String(length=40), nullable=True),
        sa.Column("final_job_id", sa.String(length=40), nullable=True),
        sa.Column("model_id", sa.String(length=40), nullable=True),
        sa.Column("error", sa.JSON(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("tuning_runs", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_tuning_runs_dataset_id"), ["dataset_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_tuning_runs_status"), ["status"], unique=False)

    op.create_table(
        "tuning_trials",
        sa.Column("job_id", sa.String(length=40), nullable=False),
        sa.Column("tuning_id", sa.String(length=40), nullable=False),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("params", sa.JSON(), nullable=False),
        sa.Column("metrics", sa.JSON(), nullable=True),
        sa.Column("value", sa.Float(), nullable=True),
        sa.ForeignKeyConstraint(["job_id"], ["jobs.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["tuning_id"], ["tuning_runs.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("job_id"),
    )
    with op.batch_alter_table("tuning_trials", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_tuning_trials_tuning_id"), ["tuning_id"], unique=False)


def downgrade() -> None:
    # Trials first: they reference jobs, whose table SQLite rebuilds to drop the columns.
    with op.batch_alter_table("tuning_trials", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_tuning_trials_tuning_id"))
    op.drop_table("tuning_trials")

    with op.batch_alter_table("tuning_runs", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_tuning_runs_status"))
        batch_op.drop_index(batch_op.f("ix_tuning_runs_dataset_id"))
    op.drop_table("tuning_runs")

    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_jobs_tuning_id"))
        batch_op.drop_column("tuning_id")
        batch_op.drop_column("kind")
