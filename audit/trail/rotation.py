"""Key rotation and key introduction: each switch of the chain's key is an event in the trail.

A rotation appends ``audit.key_rotated`` sealed with the new key, naming the new and the
previous key ids (never a key). From there on events are sealed with the new key; events
sealed with older keys keep verifying while those keys stay in the keyring, and a key that
leaks after it was retired cannot seal anything verification would accept after the rotation.
The migration that introduced keys recorded the same event with previous key id 0, naming the
last unkeyed event it sealed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.engine import Connection

from audit.trail.chain import append_event, lock_chain, next_link
from audit.trail.keys import LEGACY_KEY_ID, AuditKey, AuditKeyError, add_key_to_file, keyring
from audit.trail.models import AuditCheckpoint, AuditEvent
from audit.trail.sealing import canonical_details
from core.extensions import db

ROTATED = "audit.key_rotated"

# Audit actions recorded here (registered by the package's init_app).
AUDIT_ACTIONS = {
    ROTATED: "Audit chain key rotated",
}


@dataclass(frozen=True)
class Rotation:
    """What a rotation did: the key ids, whether a key was generated, the event's position."""

    previous_key_id: int
    key_id: int
    generated: bool
    seq: int


def rotate_key(user: Any = None) -> Rotation:
    """Switch the chain to a newer key (flushes; the caller commits).

    The keyring's newest key is used when it is newer than the one in force; otherwise, with
    a keyring file, a new key is generated into it first. Keys given in PACSDESK_AUDIT_KEY
    cannot be added here: add the new ``id:key`` there on every process, restart, rotate.
    """
    ring = keyring()
    conn = db.session.connection()
    lock_chain(conn)
    in_force = next_link(conn).key.key_id
    generated = False
    if ring.newest.key_id <= in_force:
        if not ring.from_file:
            raise AuditKeyError(
                f"the keyring in PACSDESK_AUDIT_KEY has no key newer than #{in_force}: add an "
                f"entry #{in_force + 1}:KEY there (pacsdesk audit new-key prints one) on every "
                "process, restart them, then rotate")
        add_key_to_file(ring)
        generated = True
    new = ring.newest
    details = {"key_id": new.key_id, "previous_key_id": in_force, "generated": generated}
    recorded = append_event(
        conn, ROTATED, object_type="audit_key", object_id=str(new.key_id), outcome="success",
        details=canonical_details(details), user_id=getattr(user, "id", None),
        username=getattr(user, "username", None), user_role=getattr(user, "role", None),
        client_address=None, key=new)
    return Rotation(in_force, new.key_id, generated, recorded.seq)


def seal_legacy_trail(conn: Connection, key: AuditKey) -> int | None:
    """Introduce keys: seal the unkeyed events with a keyed ``audit.key_rotated`` event.

    It names the last unkeyed event and the last purge checkpoint made before keys existed
    (whose boundary verification accepts on the strength of this event). Returns the event's
    position, or None when the trail holds no unkeyed event (nothing to seal).
    """
    lock_chain(conn)
    link = next_link(conn)
    tail_key = conn.execute(select(AuditEvent.key_id).order_by(AuditEvent.seq.desc()).limit(1)).scalar()
    if tail_key != LEGACY_KEY_ID:
        return None
    checkpoint = conn.execute(
        select(AuditCheckpoint.purged_through_seq, AuditCheckpoint.last_purged_hash)
        .order_by(AuditCheckpoint.purged_through_seq.desc()).limit(1)).first()
    details = {"key_id": key.key_id, "previous_key_id": LEGACY_KEY_ID,
               "legacy_through_seq": link.seq - 1,
               "purged_through_seq": checkpoint[0] if checkpoint else None,
               "purged_hash": checkpoint[1] if checkpoint else None,
               "reason": "keyed audit chain introduced"}
    recorded = append_event(conn, ROTATED, object_type="audit_key", object_id=str(key.key_id),
                            outcome="success", details=canonical_details(details), user_id=None,
                            username=None, user_role=None, client_address=None, key=key)
    return recorded.seq
