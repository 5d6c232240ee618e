"""catalogue: item and user attributes, named filters (issue 20)

Revision ID: c20a77b1f002
Revises: 5e19e7e1a001
Create Date: 2026-12-07 04:00:01.000000
"""

from collections.abc import Sequence

revision: str = "c20a77b1f002"
down_revision: str | None = "5e19e7e1a001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
