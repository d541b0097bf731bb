"""A DICOM node's own TLS client certificate, key and CA file

TLS nodes that require a client certificate (dcmtk's storescp +tls does by default) can be
given one per node; empty means the global PACSDESK_DICOM_TLS_CERT/_KEY/_CA_FILE apply.

Revision ID: 0011
Revises: 0010
"""
import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = '0011'
down_revision = '0010'
branch_labels = None
depends_on = None

COLUMNS = ("tls_client_cert", "tls_client_key", "tls_ca_file")


def upgrade():
    with op.batch_alter_table("asset", schema=None) as batch_op:
        for column in COLUMNS:
            batch_op.add_column(sa.Column(column, sa.String(length=500), nullable=True))


def downgrade():
    with op.batch_alter_table("asset", schema=None) as batch_op:
        for column in reversed(COLUMNS):
            batch_op.drop_column(column)
