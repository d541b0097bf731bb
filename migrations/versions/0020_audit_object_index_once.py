"""One object index on the audit trail: the lower-cased id with the type serves exact lookups too

Revision ID: 0020
Revises: 0019
"""

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = "0020"
down_revision = "0019"
branch_labels = None
depends_on = None


def upgrade():
    op.drop_index("ix_audit_event_object_lower", table_name="audit_event")
    op.drop_index("ix_audit_event_object", table_name="audit_event")
    op.create_index("ix_audit_event_object_lower", "audit_event", [sa.text("lower(object_id)"), "object_type"])


def downgrade():
    op.drop_index("ix_audit_event_object_lower", table_name="audit_event")
    op.create_index("ix_audit_event_object", "audit_event", ["object_type", "object_id"])
    op.create_index("ix_audit_event_object_lower", "audit_event", [sa.text("lower(object_id)")])
