"""saved CSV import mappings, one per file header

Revision ID: 0017
Revises: 0016
"""
import sqlalchemy as sa
from alembic import op


# revision identifiers, used by Alembic.
revision = '0017'
down_revision = '0016'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('asset_import_mapping',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('header_key', sa.String(length=64), nullable=False),
    sa.Column('header', sa.JSON(), nullable=False),
    sa.Column('mapping', sa.JSON(), nullable=False),
    sa.Column('saved_by_id', sa.Integer(), nullable=True),
    sa.Column('saved_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['saved_by_id'], ['user_account.id'], name=op.f('fk_asset_import_mapping_saved_by_id_user_account')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_asset_import_mapping')),
    sa.UniqueConstraint('header_key', name=op.f('uq_asset_import_mapping_header_key'))
    )


def downgrade():
    op.drop_table('asset_import_mapping')
