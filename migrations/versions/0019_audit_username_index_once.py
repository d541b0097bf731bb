"""One username index on the audit trail: the lower-cased one serves every lookup by name

Revision ID: 0019
Revises: 0018
"""

from alembic import op

# revision identifiers, used by Alembic.
revision = "0019"
down_revision = "0018"
branch_labels = None
depends_on = None


def upgrade():
    op.drop_index("ix_audit_event_username_time", table_name="audit_event")


def downgrade():
    op.create_index("ix_audit_event_username_time", "audit_event", ["username", "occurred_at"])
