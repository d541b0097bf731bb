"""training certificates kept in the database instead of the instance folder

Certificates uploaded before this revision are read from the instance folder's
``training_certificates`` directory into the database; a file missing there leaves its
completion without a certificate. The downgrade writes them back out.

Revision ID: 0003
Revises: 0002
"""
import os
import secrets

import sqlalchemy as sa
from alembic import op
from flask import current_app, has_app_context

# revision identifiers, used by Alembic.
revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None

completion = sa.table(
    'training_completion', sa.column('id', sa.Integer()), sa.column('certificate_file', sa.String()),
    sa.column('certificate_name', sa.String()),
    sa.column('certificate_size', sa.Integer()), sa.column('certificate_data', sa.LargeBinary()))


def certificate_dir():
    """The folder certificates were kept in before this revision (None outside the app)."""
    if not has_app_context():
        return None
    return os.path.join(current_app.config['PACSDESK_INSTANCE_PATH'], 'training_certificates')


def upgrade():
    with op.batch_alter_table('training_completion', schema=None) as batch_op:
        batch_op.add_column(sa.Column('certificate_size', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('certificate_data', sa.LargeBinary(), nullable=True))
    folder = certificate_dir()
    bind = op.get_bind()
    rows = bind.execute(sa.select(completion.c.id, completion.c.certificate_file)
                        .where(completion.c.certificate_file.is_not(None))).all()
    for row_id, stored in rows:
        path = os.path.join(folder, os.path.basename(stored)) if folder else None
        if path is None or not os.path.isfile(path):
            continue
        with open(path, 'rb') as handle:
            data = handle.read()
        bind.execute(completion.update().where(completion.c.id == row_id)
                     .values(certificate_data=data, certificate_size=len(data)))
    with op.batch_alter_table('training_completion', schema=None) as batch_op:
        batch_op.drop_column('certificate_file')


def downgrade():
    with op.batch_alter_table('training_completion', schema=None) as batch_op:
        batch_op.add_column(sa.Column('certificate_file', sa.String(length=80), nullable=True))
    folder = certificate_dir()
    bind = op.get_bind()
    c = completion.c
    rows = bind.execute(sa.select(c.id, c.certificate_name, c.certificate_data)
                        .where(completion.c.certificate_size.is_not(None))).all()
    if rows and folder:
        os.makedirs(folder, exist_ok=True)
    for row_id, name, data in rows:
        if not folder:
            break
        stored = secrets.token_hex(16) + os.path.splitext(name or '')[1].lower()
        with open(os.path.join(folder, stored), 'wb') as handle:
            handle.write(data)
        bind.execute(completion.update().where(completion.c.id == row_id)
                     .values(certificate_file=stored))
    with op.batch_alter_table('training_completion', schema=None) as batch_op:
        batch_op.drop_column('certificate_data')
        batch_op.drop_column('certificate_size')
