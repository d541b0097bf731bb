"""The append-only audit trail, the checkpoints that let old events be purged, verification runs."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    BigInteger,
    Boolean,
    ColumnElement,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    and_,
    cast,
    func,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from core.extensions import Model
from core.timeutil import UTCDateTime, utcnow

GENESIS_HASH = "0" * 64


class AuditEvent(Model):
    """One audited action; ``seq`` is its chain position and ``hash`` seals it to the last.

    ``key_id`` names the audit key whose HMAC ``hash`` is; 0 marks an event written before
    keys existed, sealed with plain SHA-256.
    """

    __tablename__ = "audit_event"

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    seq: Mapped[int] = mapped_column(BigInteger, unique=True)
    occurred_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    user_id: Mapped[int | None] = mapped_column(Integer)
    username: Mapped[str | None] = mapped_column(String(64))
    user_role: Mapped[str | None] = mapped_column(String(20))
    client_address: Mapped[str | None] = mapped_column(String(64))
    action: Mapped[str] = mapped_column(String(64))
    object_type: Mapped[str | None] = mapped_column(String(40))
    object_id: Mapped[str | None] = mapped_column(String(120))
    outcome: Mapped[str] = mapped_column(String(10), default="success")
    details: Mapped[str] = mapped_column(Text, default="{}")
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))
    key_id: Mapped[int] = mapped_column(Integer, server_default="0")

    __table_args__ = (
        Index("ix_audit_event_occurred_at", "occurred_at"),
        Index("ix_audit_event_user_time", "user_id", "occurred_at"),
        Index("ix_audit_event_action_time", "action", "occurred_at"),
        # Ids and names are matched in any case: the search (``audit.trail.search``), a report's user;
        # an exact object goes through the same index (``AuditEvent.about``).
        Index("ix_audit_event_object_lower", text("lower(object_id)"), "object_type"),
        Index("ix_audit_event_username_lower", text("lower(username)"), "occurred_at"),
    )

    @classmethod
    def about(cls, object_type: str, object_id: str | None) -> ColumnElement[bool]:
        """Events about exactly this object, found through the index on the lower-cased id and type."""
        if object_id is None:
            return and_(cls.object_type == object_type, cls.object_id.is_(None))
        # The exact match is a cast: SQLite folds a bare ``object_id = ?`` into lower(object_id),
        # which then no longer matches the index's expression.
        return and_(func.lower(cls.object_id) == func.lower(object_id), cls.object_type == object_type,
                    cast(cls.object_id, String) == object_id)


class AuditCheckpoint(Model):
    """Where a retention purge cut the chain: the range purged, the boundary's hash, the run.

    ``mac`` is the keyed hash of those facts (``sealing.checkpoint_payload``) with key
    ``key_id``; checkpoints from before keys existed have key id 0 and no mac.
    """

    __tablename__ = "audit_checkpoint"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    purged_through_seq: Mapped[int] = mapped_column(BigInteger, unique=True)
    last_purged_hash: Mapped[str] = mapped_column(String(64))
    purged_count: Mapped[int] = mapped_column(BigInteger)
    from_seq: Mapped[int | None] = mapped_column(BigInteger)
    run_id: Mapped[int | None] = mapped_column(Integer)
    key_id: Mapped[int] = mapped_column(Integer, server_default="0")
    mac: Mapped[str | None] = mapped_column(String(64))


class AuditPurgePermit(Model):
    """Present only inside a retention purge's transaction; the delete trigger checks it.

    It names the last chain position the purge may remove, so even with a permit in place
    nothing newer (the recent tail of the trail) can be deleted.
    """

    __tablename__ = "audit_purge_permit"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    through_seq: Mapped[int] = mapped_column(BigInteger)


class ObjectChange(Model):
    """One line of an object's history (a ticket's or an asset's timeline): which field, old and new.

    Written only by the audit session hook (``audit.trail.enforcement``) from the changes of
    audited models, in the same transaction as the audit event that covers them.
    """

    __tablename__ = "object_change"

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    object_type: Mapped[str] = mapped_column(String(40))
    object_id: Mapped[int] = mapped_column(Integer)
    changed_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    user_id: Mapped[int | None] = mapped_column(ForeignKey("user_account.id"))
    field: Mapped[str] = mapped_column(String(40))
    old_value: Mapped[str | None] = mapped_column(Text)
    new_value: Mapped[str | None] = mapped_column(Text)

    user = relationship("User")

    __table_args__ = (Index("ix_object_change_object", "object_type", "object_id", "changed_at"),)


class ChainVerificationRun(Model):
    """One verification of the audit trail: when, how, how many events, intact or where broken.

    ``mode`` is ``full`` (every event from the start) or ``incremental`` (from ``from_seq``,
    the last verified head); ``anchor_n`` is the anchor log entry written for the verified
    head, ``anchor_note`` why an anchor could not be written.
    """

    __tablename__ = "audit_chain_verification"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, index=True)
    finished_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    source: Mapped[str] = mapped_column(String(20))            # web, cli, scheduler or report
    started_by_id: Mapped[int | None] = mapped_column(ForeignKey("user_account.id"))
    count: Mapped[int] = mapped_column(BigInteger)
    ok: Mapped[bool] = mapped_column(Boolean)
    head_seq: Mapped[int] = mapped_column(BigInteger)
    head_hash: Mapped[str] = mapped_column(String(64))
    first_bad_seq: Mapped[int | None] = mapped_column(BigInteger)
    problem: Mapped[str | None] = mapped_column(Text)
    acknowledged_by_id: Mapped[int | None] = mapped_column(ForeignKey("user_account.id"))
    acknowledged_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    mode: Mapped[str] = mapped_column(String(12), server_default="full")
    from_seq: Mapped[int | None] = mapped_column(BigInteger)
    walked: Mapped[int | None] = mapped_column(BigInteger)
    anchor_n: Mapped[int | None] = mapped_column(BigInteger)
    anchor_note: Mapped[str | None] = mapped_column(Text)
