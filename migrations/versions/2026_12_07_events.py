"""events: a dataset's event stream and versions, alias retrain policies (issue 19)

Revision ID: 5e19e7e1a001
Revises: 3f9d2b7c8a41
Create Date: 2026-12-07 04:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "5e19e7e1a001"
down_revision: str | None = "3f9d2b7c8a41"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


SEQ = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "events",
        sa.Column("seq", SEQ, autoincrement=True, nullable=False),
        sa.Column("tenant", sa.String(length=100), server_default="default", nullable=False),
        sa.Column("dataset_id", sa.String(length=40), nullable=False),
        sa.Column("event_id", sa.String(length=200), nullable=True),
        sa.Column("user", sa.String(length=500), nullable=False),
        sa.Column("item", sa.String(length=500), nullable=False),
        sa.Column("weight", sa.Float(), nullable=False),
        sa.Column("timestamp", sa.BigInteger(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["dataset_id"], ["datasets.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("seq"),
        sa.UniqueConstraint("dataset_id", "event_id", name="uq_events_dataset_event_id"),
    )
    op.create_index("ix_events_dataset_seq", "events", ["dataset_id", "seq"], unique=False)
    op.create_index(op.f("ix_events_tenant"), "events", ["tenant"], unique=False)
    op.create_table(
        "dataset_versions",
        sa.Column("dataset_id", sa.String(length=40), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("tenant", sa.String(length=100), server_default="default", nullable=False),
        sa.Column("artifact_key", sa.String(length=200), nullable=False),
        sa.Column("events_through", SEQ, nullable=False),
        sa.Column("n_events", sa.Integer(), nullable=False),
        sa.Column("n_users", sa.Integer(), nullable=False),
        sa.Column("n_items", sa.Integer(), nullable=False),
        sa.Column("n_interactions", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["dataset_id"], ["datasets.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("dataset_id", "version"),
    )
    op.create_index(op.f("ix_dataset_versions_tenant"), "dataset_versions", ["tenant"], unique=False)
    op.create_table(
        "retrain_policies",
        sa.Column("tenant", sa.String(length=100), nullable=False),
        sa.Column("alias", sa.String(length=100), nullable=False),
        sa.Column("every_minutes", sa.Integer(), nullable=True),
        sa.Column("after_events", sa.Integer(), nullable=True),
        sa.Column("metric", sa.String(length=32), nullable=False),
        sa.Column("tolerance", sa.Float(), nullable=False),
        sa.Column("warm_start", sa.Boolean(), nullable=False),
        sa.Column("spec", sa.JSON(), nullable=False),
        sa.Column("events_through", SEQ, nullable=True),
        sa.Column("last_retrain_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["tenant", "alias"], ["aliases.tenant", "aliases.name"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("tenant", "alias"),
    )
    op.create_table(
        "retrains",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("tenant", sa.String(length=100), nullable=False),
        sa.Column("alias", sa.String(length=100), nullable=False),
        sa.Column("trigger", sa.String(length=16), nullable=False),
        sa.Column("outcome", sa.String(length=16), nullable=False),
        sa.Column("reason", sa.String(length=2000), nullable=True),
        sa.Column("job_id", sa.String(length=40), nullable=True),
        sa.Column("dataset_id", sa.String(length=40), nullable=False),
        sa.Column("dataset_version", sa.Integer(), nullable=True),
        sa.Column("current_model_id", sa.String(length=40), nullable=False),
        sa.Column("new_model_id", sa.String(length=40), nullable=True),
        sa.Column("metric", sa.String(length=32), nullable=False),
        sa.Column("tolerance", sa.Float(), nullable=False),
        sa.Column("current_value", sa.Float(), nullable=True),
        sa.Column("new_value", sa.Float(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("decided_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["tenant", "alias"], ["aliases.tenant", "aliases.name"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_retrains_alias", "retrains", ["tenant", "alias", "id"], unique=False)
    op.create_index(op.f("ix_retrains_outcome"), "retrains", ["outcome"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_retrains_outcome"), table_name="retrains")
    op.drop_index("ix_retrains_alias", table_name="retrains")
    op.drop_table("retrains")
    op.drop_table("retrain_policies")
    op.drop_index(op.f("ix_dataset_versions_tenant"), table_name="dataset_versions")
    op.drop_table("dataset_versions")
    op.drop_index(op.f("ix_events_tenant"), table_name="events")
    op.drop_index("ix_events_dataset_seq", table_name="events")
    op.drop_table("events")
