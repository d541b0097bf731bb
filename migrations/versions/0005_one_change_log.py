"""one change log: ticket_change and asset_change become object_change, written by the audit hook

Existing history lines are copied across (tickets as object_type 'ticket', assets as 'asset');
the downgrade copies them back.

Revision ID: 0005
Revises: 0004
"""
import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None

COLUMNS = "changed_at, user_id, field, old_value, new_value"


def upgrade():
    op.create_table('object_change',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('object_type', sa.String(length=40), nullable=False),
    sa.Column('object_id', sa.Integer(), nullable=False),
    sa.Column('changed_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('user_id', sa.Integer(), nullable=True),
    sa.Column('field', sa.String(length=40), nullable=False),
    sa.Column('old_value', sa.Text(), nullable=True),
    sa.Column('new_value', sa.Text(), nullable=True),
    sa.ForeignKeyConstraint(['user_id'], ['user_account.id'], name=op.f('fk_object_change_user_id_user_account')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_object_change'))
    )
    with op.batch_alter_table('object_change', schema=None) as batch_op:
        batch_op.create_index('ix_object_change_object', ['object_type', 'object_id', 'changed_at'], unique=False)
    op.execute(f"INSERT INTO object_change (object_type, object_id, {COLUMNS}) "
               f"SELECT 'ticket', ticket_id, {COLUMNS} FROM ticket_change ORDER BY id")
    op.execute(f"INSERT INTO object_change (object_type, object_id, {COLUMNS}) "
               f"SELECT 'asset', asset_id, {COLUMNS} FROM asset_change ORDER BY id")
    with op.batch_alter_table('ticket_change', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_ticket_change_ticket'))
    op.drop_table('ticket_change')
    with op.batch_alter_table('asset_change', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_asset_change_asset_id'))
    op.drop_table('asset_change')


def downgrade():
    op.create_table('asset_change',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('asset_id', sa.Integer(), nullable=False),
    sa.Column('changed_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('user_id', sa.Integer(), nullable=True),
    sa.Column('field', sa.String(length=40), nullable=False),
    sa.Column('old_value', sa.Text(), nullable=True),
    sa.Column('new_value', sa.Text(), nullable=True),
    sa.ForeignKeyConstraint(['asset_id'], ['asset.id'], name=op.f('fk_asset_change_asset_id_asset')),
    sa.ForeignKeyConstraint(['user_id'], ['user_account.id'], name=op.f('fk_asset_change_user_id_user_account')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_asset_change'))
    )
    with op.batch_alter_table('asset_change', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_asset_change_asset_id'), ['asset_id'], unique=False)
    op.create_table('ticket_change',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('ticket_id', sa.Integer(), nullable=False),
    sa.Column('changed_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('user_id', sa.Integer(), nullable=True),
    sa.Column('field', sa.String(length=40), nullable=False),
    sa.Column('old_value', sa.Text(), nullable=True),
    sa.Column('new_value', sa.Text(), nullable=True),
    sa.ForeignKeyConstraint(['ticket_id'], ['ticket.id'], name=op.f('fk_ticket_change_ticket_id_ticket')),
    sa.ForeignKeyConstraint(['user_id'], ['user_account.id'], name=op.f('fk_ticket_change_user_id_user_account')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_ticket_change'))
    )
    with op.batch_alter_table('ticket_change', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_ticket_change_ticket'), ['ticket_id', 'changed_at'], unique=False)
    op.execute(f"INSERT INTO ticket_change (ticket_id, {COLUMNS}) "
               f"SELECT object_id, {COLUMNS} FROM object_change WHERE object_type = 'ticket' ORDER BY id")
    op.execute(f"INSERT INTO asset_change (asset_id, {COLUMNS}) "
               f"SELECT object_id, {COLUMNS} FROM object_change WHERE object_type = 'asset' ORDER BY id")
    with op.batch_alter_table('object_change', schema=None) as batch_op:
        batch_op.drop_index('ix_object_change_object')
    op.drop_table('object_change')
