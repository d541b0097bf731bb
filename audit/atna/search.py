"""Search the PACS access log: who opened which patient's images, when and from where.

Every search, export and message view is itself an audit event in PACS Desk's own trail
(``atna.search``, ``atna.export``, ``atna.view``) with its criteria. A patient, study or
accession number is found whether the message names it first (a column with an index) or
among several (``atna_message_ref``).
"""

from __future__ import annotations

import csv
import io
import zlib
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from datetime import date, datetime
from typing import Any

from sqlalchemy import Select, and_, func, or_, select, union_all
from sqlalchemy.sql.elements import ColumnElement

from audit.atna.message import ACTIONS, EVENT_IDS, EVENT_TYPES, OUTCOMES
from audit.atna.models import AtnaMessage, AtnaMessageRef, AtnaWatch
from audit.atna.sources import source_directory
from audit.trail.chain import record
from core.extensions import db
from core.timeutil import local_day_bounds, to_local

M = AtnaMessage
R = AtnaMessageRef
PAGE_SIZE = 50
MAX_OFFSET = 100_000

# Audit actions recorded here (registered by the package's init_app).
AUDIT_ACTIONS = {
    "atna.search": "PACS access log searched",
    "atna.export": "PACS access log exported (CSV)",
    "atna.view": "PACS audit message viewed",
}

CSV_HEADER = ("event_time_local", "event_time_utc", "event_id", "event", "event_type", "action", "outcome",
              "user_id", "user_name", "user_host", "patient_id", "patient_name", "study_uid", "accession",
              "audit_source", "sender_host", "sender_name", "asset", "received_at_utc", "message_id")


@dataclass(frozen=True)
class AccessFilter:
    """Search criteria; empty strings and None mean "any"."""

    patient_id: str = ""
    patient_name: str = ""
    accession: str = ""
    study_uid: str = ""
    user: str = ""
    source: str = ""
    event_id: str = ""
    outcome: str = ""          # "", "success" or "failure"
    date_from: date | None = None
    date_to: date | None = None

    def criteria(self) -> dict[str, str]:
        """The criteria given, as the audit event records them."""
        return {key: (value.isoformat() if isinstance(value, date) else value)
                for key, value in asdict(self).items() if value not in ("", None)}


@dataclass(frozen=True)
class AccessRow:
    """One access as the page, the CSV and the reports show it."""

    id: int
    when: str
    event_time: datetime
    event: str
    event_id: str
    event_type: str
    action: str
    outcome: str
    failed: bool
    user_id: str
    user_name: str
    user_host: str
    patient_id: str
    patient_name: str
    study_uid: str
    accession: str
    source: str
    sender_host: str
    sender_name: str
    asset_id: int | None
    received_at: datetime


def event_label(code: str | None) -> str:
    """The DCM label of an event id or event type code (the code itself when unknown)."""
    if not code:
        return ""
    return EVENT_IDS.get(code) or EVENT_TYPES.get(code) or code


def local_with_offset(moment: datetime) -> str:
    """Local time with its UTC offset: ``2026-03-14 10:31:07 -05:00``."""
    local = to_local(moment)
    assert local is not None
    offset = local.strftime("%z")
    return local.strftime("%Y-%m-%d %H:%M:%S ") + f"{offset[:3]}:{offset[3:]}"


COLUMNS = (M.id, M.event_time, M.event_id, M.event_type, M.action, M.outcome, M.user_id, M.user_name,
           M.user_host, M.patient_id, M.patient_name, M.study_uid, M.accession, M.source_id, M.sender_host,
           M.sender_name, M.asset_id, M.received_at)


def access_row(row: Any) -> AccessRow:
    """A result row as an AccessRow."""
    return AccessRow(
        id=row.id, when=local_with_offset(row.event_time), event_time=row.event_time,
        event=event_label(row.event_id), event_id=row.event_id, event_type=event_label(row.event_type),
        action=ACTIONS.get(row.action or "", row.action or ""),
        outcome=OUTCOMES.get(row.outcome, str(row.outcome)),
        failed=row.outcome != 0, user_id=row.user_id or "", user_name=row.user_name or "",
        user_host=row.user_host or "", patient_id=row.patient_id or "", patient_name=row.patient_name or "",
        study_uid=row.study_uid or "", accession=row.accession or "", source=row.source_id or "",
        sender_host=row.sender_host, sender_name=row.sender_name or "", asset_id=row.asset_id,
        received_at=row.received_at)


def identifier_condition(kind: str, column: Any, value: str) -> ColumnElement[bool]:
    """Messages naming ``value`` first (indexed column) or among several (``atna_message_ref``)."""
    ids = union_all(select(M.id).where(column == value),
                    select(R.message_id).where(R.kind == kind, R.value == value))
    return M.id.in_(ids)


def conditions(flt: AccessFilter) -> list[ColumnElement[bool]]:
    """SQL conditions for a filter."""
    found: list[ColumnElement[bool]] = []
    if flt.patient_id.strip():
        found.append(identifier_condition("P", M.patient_id, flt.patient_id.strip()))
    if flt.patient_name.strip():
        found.append(func.lower(M.patient_name).like(flt.patient_name.strip().lower() + "%"))
    if flt.accession.strip():
        found.append(identifier_condition("A", M.accession, flt.accession.strip()))
    if flt.study_uid.strip():
        found.append(identifier_condition("S", M.study_uid, flt.study_uid.strip()))
    if flt.user.strip():
        found.append(M.user_id == flt.user.strip())
    if flt.source.strip():
        name = flt.source.strip()
        found.append(or_(M.source_id == name, M.sender_name == name, M.sender_host == name))
    if flt.event_id.strip():
        found.append(M.event_id == flt.event_id.strip())
    if flt.outcome == "success":
        found.append(M.outcome == 0)
    elif flt.outcome == "failure":
        found.append(M.outcome != 0)
    lower, upper = local_day_bounds(flt.date_from, flt.date_to)
    if lower is not None:
        found.append(M.event_time >= lower)
    if upper is not None:
        found.append(M.event_time < upper)
    return found


def access_query(flt: AccessFilter) -> Select:
    """The filtered accesses, newest first."""
    return select(*COLUMNS).where(and_(*conditions(flt))).order_by(M.event_time.desc(), M.id.desc())


@dataclass(frozen=True)
class AccessPage:
    """One page of results."""

    rows: list[AccessRow]
    page: int
    has_more: bool
    watched: set[str]


def watched_patients(patient_ids: set[str]) -> set[str]:
    """Which of these patient ids are on the watchlist."""
    if not patient_ids:
        return set()
    return set(db.session.execute(select(AtnaWatch.patient_id).where(
        AtnaWatch.patient_id.in_(sorted(patient_ids)))).scalars())


def search_access(flt: AccessFilter, page: int = 1, source: str = "web") -> AccessPage:
    """One page of accesses matching ``flt``; the search is audited (flushes)."""
    page = max(1, min(page, MAX_OFFSET // PAGE_SIZE))
    rows = [access_row(r) for r in db.session.execute(
        access_query(flt).limit(PAGE_SIZE + 1).offset((page - 1) * PAGE_SIZE))]
    record("atna.search", object_type="atna_message",
           details={"criteria": flt.criteria(), "page": page, "results_on_page": min(len(rows), PAGE_SIZE),
                    "source": source})
    shown = rows[:PAGE_SIZE]
    return AccessPage(shown, page, len(rows) > PAGE_SIZE, watched_patients({r.patient_id for r in shown}))


def asset_tags(ids: set[int]) -> dict[int, str]:
    """Inventory tags of matched assets."""
    directory = source_directory()
    if directory is None or not ids:
        return {}
    return {asset_id: asset.tag for asset_id, asset in directory.by_ids(ids).items()}


def _cell(value: Any) -> str:
    """A CSV cell that spreadsheets do not run as a formula."""
    text = "" if value is None else str(value)
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


def record_export(flt: AccessFilter, source: str = "web") -> None:
    """Audit a CSV export before its first row is sent (flushes)."""
    record("atna.export", object_type="atna_message", details={"criteria": flt.criteria(), "source": source})


def export_rows(flt: AccessFilter, chunk: int = 2000) -> Iterator[str]:
    """The CSV text of every access matching ``flt``, a chunk of rows at a time."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(CSV_HEADER)
    tags: dict[int, str] = {}
    for n, row in enumerate(db.session.execute(access_query(flt).execution_options(yield_per=chunk)), 1):
        item = access_row(row)
        if item.asset_id is not None and item.asset_id not in tags:
            tags.update(asset_tags({item.asset_id}))
        writer.writerow([_cell(v) for v in (
            item.when, item.event_time.isoformat(), item.event_id, item.event, item.event_type, item.action,
            item.outcome, item.user_id, item.user_name, item.user_host, item.patient_id, item.patient_name,
            item.study_uid, item.accession, item.source, item.sender_host, item.sender_name,
            tags.get(item.asset_id or 0, ""), item.received_at.isoformat(), item.id)])
        if n % chunk == 0:
            yield buffer.getvalue()
            buffer.seek(0)
            buffer.truncate()
    yield buffer.getvalue()


@dataclass(frozen=True)
class MessageView:
    """One stored message with its document."""

    row: AccessRow
    xml: str
    refs: list[tuple[str, str]]


def view_message(message_id: int) -> MessageView | None:
    """A stored message and its XML; the view is audited (flushes)."""
    found = db.session.execute(select(*COLUMNS, M.xml_z).where(M.id == message_id)).first()
    if found is None:
        return None
    refs = [(kind, value) for kind, value in db.session.execute(
        select(R.kind, R.value).where(R.message_id == message_id).order_by(R.kind, R.value))]
    record("atna.view", object_type="atna_message", object_id=message_id,
           details={"patient_id": found.patient_id, "event_id": found.event_id})
    return MessageView(access_row(found), zlib.decompress(found.xml_z).decode("utf-8"), refs)

