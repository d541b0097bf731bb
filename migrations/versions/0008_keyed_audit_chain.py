"""keyed audit chain: each event's key id, sealed purge checkpoints, verification modes and anchors

Events written before this revision were sealed with plain SHA-256; they keep key id 0 and
keep verifying that way. The upgrade then introduces keys: it appends an
``audit.key_rotated`` event sealed with the newest audit key (HMAC-SHA256), naming the last
unkeyed event and the last purge checkpoint, so from there on nobody without the key can
rewrite or extend the trail unnoticed. It runs through ``pacsdesk db upgrade``, which knows
the keys (PACSDESK_AUDIT_KEY, or the key file generated in the instance folder).

Revision ID: 0008
Revises: 0007
"""
import sqlalchemy as sa
from alembic import op
from flask import has_app_context

from audit.trail.guards import install_audit_guards
from audit.trail.keys import keyring
from audit.trail.rotation import seal_legacy_trail

# revision identifiers, used by Alembic.
revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None


def upgrade():
    op.add_column('audit_event', sa.Column('key_id', sa.Integer(), server_default='0', nullable=False))
    op.add_column('audit_checkpoint', sa.Column('from_seq', sa.BigInteger(), nullable=True))
    op.add_column('audit_checkpoint', sa.Column('run_id', sa.Integer(), nullable=True))
    op.add_column('audit_checkpoint', sa.Column('key_id', sa.Integer(), server_default='0', nullable=False))
    op.add_column('audit_checkpoint', sa.Column('mac', sa.String(length=64), nullable=True))
    op.add_column('audit_chain_verification',
                  sa.Column('mode', sa.String(length=12), server_default='full', nullable=False))
    op.add_column('audit_chain_verification', sa.Column('from_seq', sa.BigInteger(), nullable=True))
    op.add_column('audit_chain_verification', sa.Column('walked', sa.BigInteger(), nullable=True))
    op.add_column('audit_chain_verification', sa.Column('anchor_n', sa.BigInteger(), nullable=True))
    op.add_column('audit_chain_verification', sa.Column('anchor_note', sa.Text(), nullable=True))
    install_audit_guards(op.get_bind())
    _introduce_keys()


def _introduce_keys():
    """Seal the unkeyed events with a keyed key introduction (nothing to do on an empty trail)."""
    bind = op.get_bind()
    if bind.execute(sa.text("SELECT 1 FROM audit_event LIMIT 1")).first() is None:
        return
    if not has_app_context():
        raise RuntimeError("the audit trail holds events: run this upgrade with `pacsdesk db "
                           "upgrade`, which has the audit keys to seal them")
    seal_legacy_trail(bind, keyring().newest)


def downgrade():
    bind = op.get_bind()
    keyed = bind.execute(sa.text("SELECT count(*) FROM audit_event WHERE key_id <> 0")).scalar()
    if keyed:
        raise RuntimeError(f"{keyed} audit events are sealed with an audit key and would no longer "
                           "verify with plain SHA-256: this revision cannot be undone on this trail")
    for column in ('anchor_note', 'anchor_n', 'walked', 'from_seq', 'mode'):
        op.drop_column('audit_chain_verification', column)
    for column in ('mac', 'key_id', 'run_id', 'from_seq'):
        op.drop_column('audit_checkpoint', column)
    op.drop_column('audit_event', 'key_id')
    install_audit_guards(bind)
