"""The PACS access log: received audit messages, quarantine, batches, sources, watchlist, receivers.

Kept apart from PACS Desk's own trail (``audit_event``) but sealed into it: every batch of
stored messages ends with an ``atna.batch`` event carrying the SHA-256 of its rows.

On PostgreSQL ``atna_message`` and ``atna_message_ref`` are partitioned by month of
``received_at`` (declarative RANGE partitioning): ``atna_ensure_partitions(first, months)``
creates the months a receiver or a job is about to need, and retention drops whole months.
On SQLite they are plain tables. A partitioned table's primary key must hold the partition
key, hence ``(id, received_at)``; ids come from a sequence on PostgreSQL and from the
largest id under SQLite's single write lock.
"""

from __future__ import annotations

import re
from datetime import date, datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    PrimaryKeyConstraint,
    Sequence,
    SmallInteger,
    String,
    Text,
    text,
)
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Mapped, mapped_column

from core.extensions import Model
from core.timeutil import UTCDateTime, utcnow

MESSAGE_ID_SEQ = Sequence("atna_message_id_seq")
BIG_ID = BigInteger().with_variant(Integer, "sqlite")
PARTITIONED = "RANGE (received_at)"


class AtnaMessage(Model):
    """One received audit message: who, what, when, which patient and study, from where."""

    __tablename__ = "atna_message"

    id: Mapped[int] = mapped_column(BigInteger, MESSAGE_ID_SEQ)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime())
    batch_id: Mapped[int] = mapped_column(BigInteger)
    event_time: Mapped[datetime] = mapped_column(UTCDateTime())
    event_offset: Mapped[int | None] = mapped_column(SmallInteger)       # sender's UTC offset, minutes
    event_id: Mapped[str] = mapped_column(String(32))
    event_type: Mapped[str | None] = mapped_column(String(32))
    action: Mapped[str | None] = mapped_column(String(1))
    outcome: Mapped[int] = mapped_column(SmallInteger)
    source_id: Mapped[str | None] = mapped_column(String(64))           # AuditSourceID
    sender_host: Mapped[str] = mapped_column(String(64))                # peer IP address
    sender_name: Mapped[str | None] = mapped_column(String(255))        # syslog HOSTNAME
    transport: Mapped[str] = mapped_column(String(4))
    asset_id: Mapped[int | None] = mapped_column(Integer)               # matched inventory asset
    user_id: Mapped[str | None] = mapped_column(String(128))            # the requesting user
    user_name: Mapped[str | None] = mapped_column(String(128))
    user_host: Mapped[str | None] = mapped_column(String(255))          # NetworkAccessPointID
    patient_id: Mapped[str | None] = mapped_column(String(64))
    patient_name: Mapped[str | None] = mapped_column(String(128))
    study_uid: Mapped[str | None] = mapped_column(String(64))
    accession: Mapped[str | None] = mapped_column(String(64))
    xml_z: Mapped[bytes] = mapped_column(LargeBinary)                   # the document, zlib

    __table_args__ = (
        PrimaryKeyConstraint("id", "received_at", name="pk_atna_message"),
        Index("ix_atna_message_patient_time", "patient_id", "event_time"),
        Index("ix_atna_message_user_time", "user_id", "event_time"),
        Index("ix_atna_message_event_time", "event_time"),
        Index("ix_atna_message_study_uid", "study_uid"),
        Index("ix_atna_message_accession", "accession"),
        Index("ix_atna_message_batch", "batch_id", "id"),
        {"postgresql_partition_by": PARTITIONED},
    )


class AtnaMessageRef(Model):
    """A second (third...) patient, study or accession number named by one message."""

    __tablename__ = "atna_message_ref"

    message_id: Mapped[int] = mapped_column(BigInteger)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime())
    kind: Mapped[str] = mapped_column(String(1))                        # P patient, S study, A accession
    value: Mapped[str] = mapped_column(String(64))

    __table_args__ = (
        PrimaryKeyConstraint("message_id", "received_at", "kind", "value", name="pk_atna_message_ref"),
        Index("ix_atna_message_ref_value", "kind", "value"),
        {"postgresql_partition_by": PARTITIONED},
    )


class AtnaQuarantine(Model):
    """A received message that could not be read, kept raw with the reason."""

    __tablename__ = "atna_quarantine"

    id: Mapped[int] = mapped_column(BIG_ID, primary_key=True)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime())
    batch_id: Mapped[int | None] = mapped_column(BigInteger)
    listener: Mapped[str] = mapped_column(String(80))
    sender_host: Mapped[str] = mapped_column(String(64))
    sender_port: Mapped[int] = mapped_column(Integer)
    reason: Mapped[str] = mapped_column(String(24))
    detail: Mapped[str] = mapped_column(String(300))
    size: Mapped[int] = mapped_column(Integer)
    raw: Mapped[bytes] = mapped_column(LargeBinary)

    __table_args__ = (
        Index("ix_atna_quarantine_received_at", "received_at"),
        Index("ix_atna_quarantine_reason", "reason"),
    )


class AtnaBatch(Model):
    """Messages one receiver stored within a minute; sealed by an ``atna.batch`` audit event."""

    __tablename__ = "atna_batch"

    id: Mapped[int] = mapped_column(BIG_ID, primary_key=True)
    receiver: Mapped[str] = mapped_column(String(120))
    opened_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    sealed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    count: Mapped[int] = mapped_column(BigInteger, default=0)
    quarantined: Mapped[int] = mapped_column(BigInteger, default=0)
    first_received: Mapped[datetime | None] = mapped_column(UTCDateTime())
    last_received: Mapped[datetime | None] = mapped_column(UTCDateTime())
    hash: Mapped[str | None] = mapped_column(String(64))
    audit_seq: Mapped[int | None] = mapped_column(BigInteger)
    recovered: Mapped[bool] = mapped_column(Boolean, default=False)

    __table_args__ = (Index("ix_atna_batch_open", "sealed_at", "updated_at"),)


class AtnaSource(Model):
    """A sender of audit messages, matched to an inventory asset when one fits."""

    __tablename__ = "atna_source"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    key: Mapped[str] = mapped_column(String(400), unique=True)
    asset_id: Mapped[int | None] = mapped_column(Integer, index=True)
    sender_host: Mapped[str] = mapped_column(String(64))
    sender_name: Mapped[str | None] = mapped_column(String(255))
    source_id: Mapped[str | None] = mapped_column(String(64))
    first_seen: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    last_seen: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    last_event_id: Mapped[str | None] = mapped_column(String(32))
    last_event_time: Mapped[datetime | None] = mapped_column(UTCDateTime())
    message_count: Mapped[int] = mapped_column(BigInteger, default=0)
    quarantined_count: Mapped[int] = mapped_column(BigInteger, default=0)
    silent_since: Mapped[datetime | None] = mapped_column(UTCDateTime())

    @property
    def label(self) -> str:
        """How the sender names itself: audit source id, host name, or address."""
        return self.source_id or self.sender_name or self.sender_host


class WatchCategory:
    """Why a patient is watched."""

    VIP = "vip"
    EMPLOYEE = "employee"
    OTHER = "other"
    LABELS = {VIP: "VIP", EMPLOYEE: "Employee", OTHER: "Other"}


class AtnaWatch(Model):
    """A patient whose every image access is an exception (VIPs, employees)."""

    __tablename__ = "atna_watch"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    patient_id: Mapped[str] = mapped_column(String(64), unique=True)
    category: Mapped[str] = mapped_column(String(20))
    reason: Mapped[str] = mapped_column(Text)
    added_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    added_by_id: Mapped[int | None] = mapped_column(ForeignKey("user_account.id"))


class AtnaReceiverState(Model):
    """One receiver process's counters, written about every minute; losses are audited."""

    __tablename__ = "atna_receiver"

    id: Mapped[str] = mapped_column(String(120), primary_key=True)     # host:pid
    listeners: Mapped[str] = mapped_column(String(400))
    started_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    stopped_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    received: Mapped[int] = mapped_column(BigInteger, default=0)
    stored: Mapped[int] = mapped_column(BigInteger, default=0)
    quarantined: Mapped[int] = mapped_column(BigInteger, default=0)
    dropped_udp: Mapped[int] = mapped_column(BigInteger, default=0)
    oversized: Mapped[int] = mapped_column(BigInteger, default=0)
    framing_errors: Mapped[int] = mapped_column(BigInteger, default=0)
    refused_connections: Mapped[int] = mapped_column(BigInteger, default=0)
    tls_failures: Mapped[int] = mapped_column(BigInteger, default=0)
    lost: Mapped[int] = mapped_column(BigInteger, default=0)


PARTITION_FUNCTION = """
CREATE OR REPLACE FUNCTION atna_ensure_partitions(first_month date, months integer)
RETURNS integer AS $$
DECLARE
  parent text;
  start_at date;
  made integer := 0;
  i integer;
  part text;
BEGIN
  FOREACH parent IN ARRAY ARRAY['atna_message', 'atna_message_ref'] LOOP
    FOR i IN 0 .. months - 1 LOOP
      start_at := (date_trunc('month', first_month) + make_interval(months => i))::date;
      part := parent || '_' || to_char(start_at, 'YYYYMM');
      IF to_regclass(part) IS NULL THEN
        EXECUTE format('CREATE TABLE %I PARTITION OF %I FOR VALUES FROM (%L) TO (%L)', part, parent,
                       start_at::timestamp AT TIME ZONE 'UTC',
                       (start_at + interval '1 month')::timestamp AT TIME ZONE 'UTC');
        made := made + 1;
      END IF;
    END LOOP;
  END LOOP;
  RETURN made;
END $$ LANGUAGE plpgsql
"""
MONTHS_AHEAD = 3
PARTITION_NAME = re.compile(r"^atna_message(_ref)?_[0-9]{6}$")


def is_partition(table_name: str) -> bool:
    """Whether a table is one month of the access log (made by ``atna_ensure_partitions``, not a model)."""
    return PARTITION_NAME.match(table_name) is not None


def ensure_partitions(connection: Connection, first: date, months: int) -> int:
    """Create the monthly partitions from ``first``'s month on (PostgreSQL); returns how many were new."""
    if connection.dialect.name != "postgresql":
        return 0
    return int(connection.execute(text("SELECT atna_ensure_partitions(:first, :months)"),
                                  {"first": first.replace(day=1), "months": months}).scalar_one())


def install_partitioning(connection: Connection) -> None:
    """Create the partition function and this month's and the next months' partitions."""
    if connection.dialect.name != "postgresql":
        return
    connection.exec_driver_sql(PARTITION_FUNCTION.replace("%", "%%"))  # no parameters: a literal %
    ensure_partitions(connection, utcnow().date(), MONTHS_AHEAD + 1)


def drop_partitioning(connection: Connection) -> None:
    """Remove the partition function (the migration's downgrade; partitions go with their parent)."""
    if connection.dialect.name == "postgresql":
        connection.exec_driver_sql("DROP FUNCTION IF EXISTS atna_ensure_partitions(date, integer)")


def install_after_create(target: Any, connection: Connection, **kw: Any) -> None:
    """Install partitioning whenever the schema is created with ``create_all``."""
    install_partitioning(connection)
