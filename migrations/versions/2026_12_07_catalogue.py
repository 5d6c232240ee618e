"""catalogue: item and user attributes, named filters (issue 20)

catalogues: one row per dataset and kind ("items" or "users") with uploaded attributes (its current
version and schema; the columns are in the artifact store). named_filters: filter expressions stored by
name, per tenant.

Revision ID: c20a77b1f002
Revises: 5e19e7e1a001
Create Date: 2026-12-07 04:00:01.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "c20a77b1f002"
down_revision: str | None = "5e19e7e1a001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "catalogues",
        sa.Column("dataset_id", sa.String(length=40), nullable=False),
        sa.Column("kind", sa.String(length=10), server_default="items", nullable=False),
        sa.Column("tenant", sa.String(length=100), server_default="default", nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("attributes", sa.JSON(), nullable=False),
        sa.Column("n_rows", sa.Integer(), nullable=False),
        sa.Column("n_unknown", sa.Integer(), nullable=False),
        sa.Column("artifact_key", sa.String(length=200), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["dataset_id"], ["datasets.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("dataset_id", "kind"),
    )
    with op.batch_alter_table("catalogues", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_catalogues_tenant"), ["tenant"], unique=False)

    op.create_table(
        "named_filters",
        sa.Column("tenant", sa.String(length=100), server_default="default", nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("expression", sa.String(length=4000), nullable=False),
        sa.Column("description", sa.String(length=500), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("tenant", "name"),
    )
    with op.batch_alter_table("named_filters", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_named_filters_tenant"), ["tenant"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("named_filters", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_named_filters_tenant"))
    op.drop_table("named_filters")
    with op.batch_alter_table("catalogues", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_catalogues_tenant"))
    op.drop_table("catalogues")
