"""tenants: api_keys, and a tenant on datasets, jobs, models, aliases and tuning runs

Existing rows belong to the tenant "default" (the server default fills them in). Alias names
become unique per tenant: the primary key of aliases goes from (name) to (tenant, name).

Revision ID: 7a3c0e5d1b20
Revises: 26c15d440f72
Create Date: 2026-11-29 04:30:00.000000
"""

from collections.abc import Sequence
from typing import Literal

import sqlalchemy as sa
from alembic import op

revision: str = "7a3c0e5d1b20"
down_revision: str | None = "26c15d440f72"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TENANT_TABLES = ("datasets", "jobs", "models", "tuning_runs")


def _tenant() -> sa.Column[str]:
    return sa.Column("tenant", sa.String(length=100), server_default="default", nullable=False)


def _recreate() -> Literal["always", "auto"]:
    return "always" if op.get_bind().dialect.name == "sqlite" else "auto"


def _aliases(*, tenant: bool) -> sa.Table:
    """The aliases table before (tenant=False) or after this revision, with its key named."""
    key = ["tenant", "name"] if tenant else ["name"]
    return sa.Table(
        "aliases",
        sa.MetaData(),
        *([_tenant()] if tenant else []),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("model_id", sa.String(length=40), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["model_id"], ["models.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint(*key, name="aliases_pkey"),
        *([sa.Index("ix_aliases_tenant", "tenant")] if tenant else []),
    )


def upgrade() -> None:
    op.create_table(
        "api_keys",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("tenant", sa.String(length=100), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=True),
        sa.Column("key_hash", sa.String(length=64), nullable=False),
        sa.Column("prefix", sa.String(length=16), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_used_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("key_hash"),
    )
    with op.batch_alter_table("api_keys", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_api_keys_tenant"), ["tenant"], unique=False)

    for table in TENANT_TABLES:
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.add_column(_tenant())
            batch_op.create_index(batch_op.f(f"ix_{table}_tenant"), ["tenant"], unique=False)

    # The alias primary key grows a tenant. SQLite rebuilds the table (batch "recreate") from the
    # shape given here, whose key has a name it can drop; PostgreSQL alters it in place.
    with op.batch_alter_table("aliases", recreate=_recreate(), copy_from=_aliases(tenant=False)) as batch_op:
        batch_op.add_column(_tenant())
        batch_op.drop_constraint("aliases_pkey", type_="primary")
        batch_op.create_primary_key("aliases_pkey", ["tenant", "name"])
        batch_op.create_index(batch_op.f("ix_aliases_tenant"), ["tenant"], unique=False)


def downgrade() -> None:
    # Lossy: tenants disappear, and aliases of other tenants than "default" are dropped, since
    # names alone must be unique again.
    op.execute(sa.text("DELETE FROM aliases WHERE tenant <> 'default'"))
    with op.batch_alter_table("aliases", recreate=_recreate(), copy_from=_aliases(tenant=True)) as batch_op:
        batch_op.drop_index(batch_op.f("ix_aliases_tenant"))
        batch_op.drop_constraint("aliases_pkey", type_="primary")
        batch_op.create_primary_key("aliases_pkey", ["name"])
        batch_op.drop_column("tenant")

    # Plain ALTER TABLE ... DROP COLUMN (SQLite >= 3.35), never a batch rebuild: rebuilding models
    # would DROP it, and with foreign keys on, SQLite's implicit DELETE would cascade to aliases.
    for table in reversed(TENANT_TABLES):
        with op.batch_alter_table(table, recreate="never") as batch_op:
            batch_op.drop_index(batch_op.f(f"ix_{table}_tenant"))
            batch_op.drop_column("tenant")

    with op.batch_alter_table("api_keys", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_api_keys_tenant"))
    op.drop_table("api_keys")
