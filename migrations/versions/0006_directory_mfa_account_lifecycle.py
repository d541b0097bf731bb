"""directory accounts, multi-factor authentication, forced password change, ended accesses

Accounts get where their password is checked (local or the hospital directory) and their
directory entry, a flag asking for a new password at the next login, a TOTP secret with its
last accepted time step and hashed recovery codes, and when an ended access was first seen and
ended. New tables count failed logins under names no account has (by keyed hash only) and keep
each directory sync run.

Revision ID: 0006
Revises: 0005
"""
import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('user_account', schema=None) as batch_op:
        batch_op.add_column(sa.Column('auth_source', sa.String(length=20), nullable=False,
                                      server_default='local'))
        batch_op.add_column(sa.Column('directory_dn', sa.String(length=1000), nullable=True))
        batch_op.add_column(sa.Column('must_change_password', sa.Boolean(), nullable=False,
                                      server_default=sa.false()))
        batch_op.add_column(sa.Column('mfa_secret', sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column('mfa_enabled_at', sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('mfa_last_step', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('mfa_recovery_hashes', sa.Text(), nullable=True))
        batch_op.add_column(sa.Column('directory_missing_since', sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('access_ended_at', sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('access_end_reason', sa.String(length=200), nullable=True))
    # Accounts disabled before this revision ended their access when they were disabled.
    op.execute("UPDATE user_account SET access_ended_at = disabled_at, "
               "access_end_reason = 'disabled by an administrator' WHERE is_disabled")
    op.create_table('unknown_login_name',
    sa.Column('name_hash', sa.String(length=64), nullable=False),
    sa.Column('failed_login_count', sa.Integer(), nullable=False),
    sa.Column('first_failed_login_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('locked_until', sa.DateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('name_hash', name=op.f('pk_unknown_login_name'))
    )
    op.create_table('directory_sync_run',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('started_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('finished_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('ok', sa.Boolean(), nullable=False),
    sa.Column('listed', sa.Integer(), nullable=False),
    sa.Column('ended', sa.Integer(), nullable=False),
    sa.Column('role_changes', sa.Integer(), nullable=False),
    sa.Column('problem', sa.Text(), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_directory_sync_run'))
    )


def downgrade():
    op.drop_table('directory_sync_run')
    op.drop_table('unknown_login_name')
    with op.batch_alter_table('user_account', schema=None) as batch_op:
        for column in ('access_end_reason', 'access_ended_at', 'directory_missing_since',
                       'mfa_recovery_hashes', 'mfa_last_step', 'mfa_enabled_at', 'mfa_secret',
                       'must_change_password', 'directory_dn', 'auth_source'):
            batch_op.drop_column(column)
