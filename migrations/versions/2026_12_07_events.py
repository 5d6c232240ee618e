"""events: a dataset's event stream and versions, alias retrain policies (issue 19)

Revision ID: 5e19e7e1a001
Revises: 3f9d2b7c8a41
Create Date: 2026-12-07 04:00:00.000000
"""

from collections.abc import Sequence

revision: str = "5e19e7e1a001"
down_revision: str | None = "3f9d2b7c8a41"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
