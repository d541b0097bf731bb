"""Store what the receiver hands over: one transaction per batch, sealed into the audit chain.

``MessageStore`` is the receiver's ``on_batch``. Each call inserts every message of the batch
(COPY on PostgreSQL, one multi-row statement per table on SQLite), the quarantined ones raw with
their reason, updates the senders, and commits; it raises only when nothing was committed, so
the receiver retries the same batch. Rows join the receiver's open *seal*: a running SHA-256
over their digests. At least once a minute while messages arrive (and on stop) the seal is
closed in the same transaction as the last rows it covers: its ``atna_batch`` row gets the
count, first and last time and hash, and ``audit.record("atna.batch", ...)`` appends them to
the keyed audit chain. ``audit.atna.verify`` recomputes the hash from the stored rows.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import socket
import threading
import time
import zlib
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from flask import Flask
from sqlalchemy import func, insert, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from audit.atna.errors import QuarantineReason
from audit.atna.handover import Received
from audit.atna.message import AuditMessage
from audit.atna.models import (
    MONTHS_AHEAD,
    AtnaBatch,
    AtnaMessage,
    AtnaMessageRef,
    AtnaQuarantine,
    AtnaSource,
    ensure_partitions,
)
from audit.atna.sources import SilentSource, SourceAsset, silence_handlers, source_directory
from audit.trail.chain import record
from core.extensions import db
from core.timeutil import utcnow

log = logging.getLogger(__name__)

SEAL_SECONDS = 60.0
MATCH_TTL = 300.0            # seconds a sender's asset match is trusted before asking again
SOURCES_IN_SEAL = 50         # senders named in one atna.batch event (the rest are summed)

# Audit actions recorded here (registered by the package's init_app).
AUDIT_ACTIONS = {
    "atna.batch": "PACS audit messages stored (batch sealed)",
}

MESSAGE_COLUMNS = ("id", "received_at", "batch_id", "event_time", "event_offset", "event_id",
                   "event_type", "action", "outcome", "source_id", "sender_host", "sender_name",
                   "transport", "asset_id", "user_id", "user_name", "user_host", "patient_id",
                   "patient_name", "study_uid", "accession", "xml_z")
# asset_id is left out of the digest: it is the match to the inventory, made again when assets change.
DIGEST_COLUMNS = tuple(c for c in MESSAGE_COLUMNS if c not in ("id", "asset_id", "xml_z"))
LENGTHS = {column.name: length for column in AtnaMessage.__table__.columns
           if (length := getattr(column.type, "length", None))}


def iso_utc(value: datetime) -> str:
    """A UTC timestamp with microseconds, as the digest spells it."""
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def row_digest(row: Mapping[Any, Any], refs: Iterable[tuple[str, str]] = ()) -> bytes:
    """SHA-256 of one stored message's columns, its extra identifiers and its document."""
    parts: list[Any] = []
    for name in DIGEST_COLUMNS:
        value = row[name]
        parts.append(iso_utc(value) if isinstance(value, datetime) else value)
    parts.append(hashlib.sha256(row["xml_z"]).hexdigest())
    parts.extend(f"{kind}:{value}" for kind, value in sorted(refs))
    return hashlib.sha256(json.dumps(parts, ensure_ascii=False, separators=(",", ":")).encode()).digest()


def _clip(name: str, value: str | None) -> str | None:
    """A text value cut to its column (the whole document stays in the kept XML)."""
    if value is None:
        return None
    value = value.replace("\x00", "")
    limit = LENGTHS.get(name)
    return value[:limit] if limit else value


def patient_number(object_id: str) -> str:
    """The ID of an HL7 CX patient identifier (``MRN-000417^^^HOSP`` -> ``MRN-000417``)."""
    return object_id.split("^", 1)[0].strip() or object_id.strip()


@dataclass(frozen=True)
class Identifiers:
    """The patients, studies and accession numbers one message names, in order."""

    patients: tuple[tuple[str, str | None], ...]
    studies: tuple[str, ...]
    accessions: tuple[str, ...]


def identifiers(message: AuditMessage) -> Identifiers:
    """Patients (with names), studies and accession numbers; a query's PatientID counts as its patient."""
    patients = [(patient_number(obj.object_id), obj.name) for obj in message.patients]
    if not patients:
        for obj in message.objects:
            if obj.query is None:
                continue
            asked = obj.query.key("PatientID")
            if asked and asked.strip() and "*" not in asked and "?" not in asked:
                patients.append((patient_number(asked), obj.query.key("PatientName")))
    unique = list(dict((pid, name) for pid, name in patients if pid).items())
    return Identifiers(tuple(unique), message.study_uids, message.accession_numbers)


def message_row(item: Received, batch_id: int) -> tuple[dict[str, Any], list[tuple[str, str]]]:
    """The atna_message row of a parsed message, and its extra identifiers (kind, value)."""
    message = item.message
    assert message is not None and item.syslog is not None
    found = identifiers(message)
    requestors = message.requestors or message.participants
    user = requestors[0] if requestors else None
    offset = message.event_time_offset
    row = {
        "received_at": item.received_at, "batch_id": batch_id, "event_time": message.event_time,
        "event_offset": int(offset.total_seconds() // 60) if offset is not None else None,
        "event_id": _clip("event_id", message.event_id.code),
        "event_type": _clip("event_type", message.event_types[0].code) if message.event_types else None,
        "action": message.action, "outcome": message.outcome,
        "source_id": _clip("source_id", message.sources[0].source_id) if message.sources else None,
        "sender_host": _clip("sender_host", item.peer_host),
        "sender_name": _clip("sender_name", item.syslog.hostname), "transport": item.transport,
        "asset_id": None,
        "user_id": _clip("user_id", user.user_id) if user else None,
        "user_name": _clip("user_name", (user.user_name or user.alternative_user_id)) if user else None,
        "user_host": _clip("user_host", user.network_access_point_id) if user else None,
        "patient_id": _clip("patient_id", found.patients[0][0]) if found.patients else None,
        "patient_name": _clip("patient_name", found.patients[0][1]) if found.patients else None,
        "study_uid": _clip("study_uid", found.studies[0]) if found.studies else None,
        "accession": _clip("accession", found.accessions[0]) if found.accessions else None,
        "xml_z": zlib.compress(message.xml.encode("utf-8"), 1),  # level 1: a quarter of the CPU of 6
    }
    refs = [("P", pid) for pid, _ in found.patients[1:]] + [("S", uid) for uid in found.studies[1:]] \
        + [("A", number) for number in found.accessions[1:]]
    refs = list(dict.fromkeys((kind, _clip("accession", value) or "") for kind, value in refs if value))
    return row, refs


def source_key(address: str, host_name: str | None, audit_source_id: str | None) -> str:
    """One sender: its address, the host name it gives and its audit source id."""
    return "|".join((address, (host_name or "").lower(), (audit_source_id or "").lower()))[:400]


@dataclass(frozen=True)
class Refusal:
    """A message the receiver refused before reading it whole (too large): kept as a quarantine row."""

    received_at: datetime
    listener: str
    sender_host: str
    sender_port: int
    detail: str


@dataclass
class _Seal:
    """The open batch of this receiver: its row, the running hash and the figures it will seal."""

    id: int
    opened: float
    month: tuple[int, int]
    hasher: Any = field(default_factory=hashlib.sha256)
    count: int = 0
    quarantined: int = 0
    first: datetime | None = None
    last: datetime | None = None
    sources: Counter[str] = field(default_factory=Counter)

    def copy(self) -> _Seal:
        """A copy to go back to when a transaction fails."""
        return _Seal(self.id, self.opened, self.month, self.hasher.copy(), self.count, self.quarantined,
                     self.first, self.last, Counter(self.sources))


@dataclass
class _Sender:
    """What one sender needs per batch: its row id and asset match (refreshed every MATCH_TTL)."""

    id: int
    asset: SourceAsset | None
    matched: float


def seal_batch(batch_id: int, receiver: str, *, count: int, quarantined: int, first: datetime | None,
               last: datetime | None, digest: str, sources: Mapping[str, int],
               recovered: bool = False) -> None:
    """Seal a batch: an ``atna.batch`` event in the chain and the sealed figures on its row (no commit)."""
    top = Counter(sources).most_common(SOURCES_IN_SEAL)
    others = sum(sources.values()) - sum(n for _, n in top)
    details: dict[str, Any] = {
        "batch": batch_id, "receiver": receiver, "count": count, "quarantined": quarantined,
        "first": iso_utc(first) if first else None, "last": iso_utc(last) if last else None, "hash": digest,
        "sources": dict(top, **({"(other senders)": others} if others else {}))}
    if recovered:
        details["recovered"] = True
    recorded = record("atna.batch", object_type="atna_batch", object_id=batch_id, details=details,
                      user=None, client_address=None)
    sealed_at = utcnow()
    db.session.execute(update(AtnaBatch).where(AtnaBatch.id == batch_id).values(
        sealed_at=sealed_at, updated_at=sealed_at, hash=digest, count=count, quarantined=quarantined,
        first_received=first, last_received=last, audit_seq=recorded.seq, recovered=recovered))


def _by_month(batch: Sequence[Received], refusals: Sequence[Refusal]
              ) -> list[tuple[tuple[int, int], list[Received], list[Refusal]]]:
    """The hand-over split by the month (UTC) each message was received in, oldest month first.

    A batch never spans two months, so dropping a month's partition removes whole batches only.
    """
    groups: dict[tuple[int, int], tuple[list[Received], list[Refusal]]] = {}
    for item in batch:
        at = item.received_at.astimezone(UTC)
        groups.setdefault((at.year, at.month), ([], []))[0].append(item)
    for refusal in refusals:
        at = refusal.received_at.astimezone(UTC)
        groups.setdefault((at.year, at.month), ([], []))[1].append(refusal)
    return [(month, items, refused) for month, (items, refused) in sorted(groups.items())]


def receiver_name() -> str:
    """This process as a receiver: host:pid."""
    return f"{socket.gethostname()}:{os.getpid()}"[:120]


class MessageStore:
    """The receiver's ``on_batch``: store, match senders, seal into the audit chain.

    ``bulk`` (the default) inserts a batch with COPY on PostgreSQL and one multi-row statement on
    SQLite; without it every message gets an INSERT of its own (the benchmark's baseline).
    """

    def __init__(self, app: Flask, *, receiver: str | None = None, seal_seconds: float = SEAL_SECONDS,
                 bulk: bool = True) -> None:
        self.app = app
        self.receiver = receiver or receiver_name()
        self.seal_seconds = seal_seconds
        self.bulk = bulk
        self.stored = 0
        self.quarantined = 0
        self._seal: _Seal | None = None
        self._senders: dict[str, _Sender] = {}
        self._months: set[tuple[int, int]] = set()
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ the receiver's callbacks

    def __call__(self, batch: list[Received]) -> None:
        """Store one batch in one transaction; raise (nothing committed) when the database refuses."""
        self.store(batch, [])

    def store(self, batch: Sequence[Received], refusals: Sequence[Refusal]) -> None:
        """Store messages and refusals in one transaction, sealing when the minute is up."""
        if not batch and not refusals:
            return
        with self._lock, self.app.app_context():
            saved = self._seal.copy() if self._seal else None
            senders, months = dict(self._senders), set(self._months)
            try:
                for month, items, refused in _by_month(batch, refusals):
                    self._store(items, refused, month)
                if self._seal is not None and time.monotonic() - self._seal.opened >= self.seal_seconds:
                    self._close_seal()
                db.session.commit()
            except BaseException:
                db.session.rollback()  # the partitions made in it are gone too: make them again next time
                self._seal, self._senders, self._months = saved, senders, months
                raise
            finally:
                db.session.remove()
        self.stored += sum(1 for item in batch if item.message is not None)
        self.quarantined += len(batch) - sum(1 for item in batch if item.message is not None) + len(refusals)

    def seal_if_due(self, force: bool = False) -> bool:
        """Close the open seal when its minute is up (or now, with ``force``); True when one was sealed."""
        with self._lock:
            seal = self._seal
            if seal is None or (not force and time.monotonic() - seal.opened < self.seal_seconds):
                return False
            with self.app.app_context():
                try:
                    self._close_seal()
                    db.session.commit()
                except BaseException:
                    db.session.rollback()
                    self._seal = seal
                    raise
                finally:
                    db.session.remove()
            return True

    # ------------------------------------------------------------------ inside the transaction

    def _store(self, batch: Sequence[Received], refusals: Sequence[Refusal], month: tuple[int, int]) -> None:
        """Insert the rows of one month's messages and update its seal and senders (no commit)."""
        now = utcnow()
        seal = self._open_seal(now, month)
        messages = [item for item in batch if item.message is not None]
        rows: list[dict[str, Any]] = []
        refs: list[list[tuple[str, str]]] = []
        per_sender: dict[str, list[Received]] = {}
        for item in batch:
            per_sender.setdefault(self._key(item), []).append(item)
        for item in messages:
            row, extra = message_row(item, seal.id)
            rows.append(row)
            refs.append(extra)
        senders = {key: self._sender(key, items[0]) for key, items in per_sender.items()}
        for row, item in zip(rows, messages, strict=True):
            asset = senders[self._key(item)].asset
            row["asset_id"] = asset.id if asset is not None else None
        self._ensure_months(rows)
        if rows:
            self._insert(rows, refs)
        quarantine = [self._quarantine_row(item, seal.id) for item in batch if item.message is None]
        quarantine += [{"received_at": r.received_at, "batch_id": seal.id, "listener": r.listener[:80],
                        "sender_host": r.sender_host[:64], "sender_port": r.sender_port,
                        "reason": QuarantineReason.TOO_LARGE, "detail": r.detail[:300], "size": 0,
                        "raw": b""} for r in refusals]
        if quarantine:
            db.session.execute(insert(AtnaQuarantine), quarantine)
        for row, extra in zip(rows, refs, strict=True):
            seal.hasher.update(row_digest(row, extra))
        stamps = [item.received_at for item in batch] + [r.received_at for r in refusals]
        seal.count += len(rows)
        seal.quarantined += len(quarantine)
        seal.first = min([seal.first, *stamps] if seal.first else stamps)
        seal.last = max([seal.last, *stamps] if seal.last else stamps)
        for items in per_sender.values():
            seal.sources[self._label(items[0])] += len(items)
        db.session.execute(update(AtnaBatch).where(AtnaBatch.id == seal.id).values(
            updated_at=now, count=seal.count, quarantined=seal.quarantined, first_received=seal.first,
            last_received=seal.last))
        self._touch_senders(per_sender, senders, now)

    def _open_seal(self, now: datetime, month: tuple[int, int]) -> _Seal:
        """The open seal, opening one (an atna_batch row) when there is none or the month changed."""
        if self._seal is not None and self._seal.month != month:
            self._close_seal()
        if self._seal is None:
            batch = AtnaBatch(receiver=self.receiver, opened_at=now, updated_at=now)
            db.session.add(batch)
            db.session.flush()
            self._seal = _Seal(batch.id, time.monotonic(), month)
        return self._seal

    def _close_seal(self) -> None:
        """Seal the open batch: its figures on the row and an ``atna.batch`` event in the chain."""
        seal = self._seal
        if seal is None:
            return
        self._seal = None
        seal_batch(seal.id, self.receiver, count=seal.count, quarantined=seal.quarantined, first=seal.first,
                   last=seal.last, digest=seal.hasher.hexdigest(), sources=seal.sources)

    def _ensure_months(self, rows: Sequence[Mapping[str, Any]]) -> None:
        """Make sure the months these rows fall in have partitions (PostgreSQL; checked once per month)."""
        months = {(row["received_at"].year, row["received_at"].month) for row in rows} - self._months
        if not months:
            return
        connection = db.session.connection()
        for year, month in sorted(months):
            ensure_partitions(connection, datetime(year, month, 1).date(), MONTHS_AHEAD + 1)
        self._months |= months

    def _insert(self, rows: list[dict[str, Any]], refs: list[list[tuple[str, str]]]) -> None:
        """Give the rows ids in order and insert them (COPY on PostgreSQL when ``bulk``)."""
        connection = db.session.connection()
        postgres = connection.dialect.name == "postgresql"
        if postgres:
            ids = sorted(connection.execute(
                select(func.nextval("atna_message_id_seq")).select_from(func.generate_series(1, len(rows)))
            ).scalars())
        else:
            first = connection.execute(select(func.coalesce(func.max(AtnaMessage.id), 0))).scalar_one() + 1
            ids = list(range(first, first + len(rows)))
        ref_rows = []
        for row, message_id, extra in zip(rows, ids, refs, strict=True):
            row["id"] = message_id
            ref_rows += [{"message_id": message_id, "received_at": row["received_at"], "kind": kind,
                          "value": value} for kind, value in extra]
        if not self.bulk:
            for row in rows:
                connection.execute(insert(AtnaMessage), row)
        elif postgres:
            driver = connection.connection.driver_connection
            assert driver is not None  # a connection in use has its driver connection
            cursor = driver.cursor()
            with cursor.copy(f"COPY atna_message ({', '.join(MESSAGE_COLUMNS)}) FROM STDIN") as copy:
                for row in rows:
                    copy.write_row([row[name] for name in MESSAGE_COLUMNS])
            cursor.close()
        else:
            connection.execute(insert(AtnaMessage), rows)
        if ref_rows:
            connection.execute(insert(AtnaMessageRef), ref_rows)

    @staticmethod
    def _quarantine_row(item: Received, batch_id: int) -> dict[str, Any]:
        """The atna_quarantine row of a message that could not be read."""
        return {"received_at": item.received_at, "batch_id": batch_id, "listener": item.listener[:80],
                "sender_host": item.peer_host[:64], "sender_port": item.peer_port,
                "reason": (item.quarantine or QuarantineReason.PARSER_ERROR).value,
                "detail": (item.quarantine_detail or "")[:300], "size": len(item.raw), "raw": item.raw}

    # ------------------------------------------------------------------ senders

    @staticmethod
    def _names(item: Received) -> tuple[str | None, str | None]:
        """The host name a sender gives (syslog HOSTNAME) and its audit source id."""
        host = item.syslog.hostname if item.syslog is not None else None
        source = item.message.sources[0].source_id if item.message is not None and item.message.sources \
            else None
        return host, source

    def _key(self, item: Received) -> str:
        """The sender key of a received message."""
        return source_key(item.peer_host, *self._names(item))

    def _label(self, item: Received) -> str:
        """How a sender is named in a seal."""
        host, source = self._names(item)
        return (source or host or item.peer_host)[:80]

    def _sender(self, key: str, item: Received) -> _Sender:
        """The sender's row (created on first sight) and its asset match."""
        known = self._senders.get(key)
        if known is not None and time.monotonic() - known.matched < MATCH_TTL:
            return known
        host, source = self._names(item)
        directory = source_directory()
        asset = directory.find(item.peer_host, host, source) if directory is not None else None
        if known is None:
            table = AtnaSource.__table__
            dialect = db.session.get_bind().dialect.name
            maker = pg_insert if dialect == "postgresql" else sqlite_insert
            now = utcnow()
            db.session.execute(maker(table).values(
                key=key, asset_id=asset.id if asset else None, sender_host=item.peer_host[:64],
                sender_name=_clip("sender_name", host), source_id=_clip("source_id", source),
                first_seen=now, last_seen=now, message_count=0, quarantined_count=0,
            ).on_conflict_do_nothing(index_elements=["key"]))
            source_row = db.session.execute(select(AtnaSource.id).where(AtnaSource.key == key)).scalar_one()
        else:
            source_row = known.id
        self._senders[key] = _Sender(source_row, asset, time.monotonic())
        return self._senders[key]

    def _touch_senders(self, per_sender: Mapping[str, list[Received]], senders: Mapping[str, _Sender],
                       now: datetime) -> None:
        """Count each sender's messages, note its last one, and end its silence if it was silent."""
        ids = [sender.id for sender in senders.values()]
        silent = {row.id: row for row in db.session.execute(
            select(AtnaSource).where(AtnaSource.id.in_(ids), AtnaSource.silent_since.is_not(None))).scalars()}
        for key, items in per_sender.items():
            sender = senders[key]
            parsed = [item.message for item in items if item.message is not None]
            values: dict[str, Any] = {
                "last_seen": max(item.received_at for item in items),
                "message_count": AtnaSource.message_count + len(parsed),
                "quarantined_count": AtnaSource.quarantined_count + (len(items) - len(parsed)),
                "asset_id": sender.asset.id if sender.asset else None, "silent_since": None}
            if parsed:
                values["last_event_id"] = _clip("event_id", parsed[-1].event_id.code)
                values["last_event_time"] = parsed[-1].event_time
            db.session.execute(update(AtnaSource).where(AtnaSource.id == sender.id).values(**values))
            was = silent.get(sender.id)
            if was is not None:
                # The update above already cleared ``silent_since`` on the loaded row.
                back = SilentSource(was.id, was.label, was.sender_host, sender.asset, was.last_seen,
                                    was.silent_since)  # type: ignore[arg-type]
                for handler in silence_handlers():
                    handler.source_back(back, now)
