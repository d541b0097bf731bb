"""PDF reports from the PACS access log: one patient's imaging access, and the period's access audit.

"Patient imaging access" answers a patient's request for an accounting of access: every message
naming the patient, or one of the studies messages tie to the patient, in the period. "PACS
access audit" puts the exceptions first: watched patients, after-hours access, bulk access,
exports and media, broad queries, failed logins and security alerts, silent sources and losses.
Both end with the integrity check of the batches their rows come from.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from flask import current_app
from sqlalchemy import String, and_, cast, distinct, false, func, or_, select, union
from sqlalchemy.sql.elements import ColumnElement

from audit.atna.models import AtnaBatch, AtnaMessage, AtnaMessageRef, AtnaWatch
from audit.atna.search import COLUMNS, access_row, event_label
from audit.atna.verify import batch_digest
from audit.reports.localtime import LocalClock
from audit.reports.registry import Progress, ReportContent, ReportError, ReportKind, ReportRequest
from audit.reports.services import period_bounds, period_text
from audit.trail.chain_verification import last_verification
from audit.trail.models import AuditEvent
from core.auth.permissions import Permission
from core.extensions import db
from core.pdf import Listing, text_columns
from core.timeutil import format_local

M = AtnaMessage
R = AtnaMessageRef
LISTING_LIMIT = 250
SUMMARY_LIMIT = 100
HASH_RECHECK_ROWS = 200_000      # batches re-hashed in a report at most; the nightly verification does all
ACCESS_COLUMNS = (("Local time", 27), ("User", 18), ("Patient", 16), ("Accession", 14), ("What", 34),
                  ("From", 18), ("Outcome", 10))
PATIENT_COLUMNS = (("Local time", 27), ("User", 18), ("Name", 18), ("What", 34), ("Study", 30),
                   ("From", 18), ("Outcome", 10))
STAMP = "%Y-%m-%d %H:%M:%S"


def _when(value: datetime | None) -> str:
    """Local time as printed in the tables."""
    return format_local(value, STAMP)


def _lines(columns: Sequence[tuple[str, int]], rows: Iterable[Sequence[object]]) -> Any:
    """Fixed-width rows, or None when there are none."""
    rows = list(rows)
    return text_columns(columns, rows, per_page=20, first_page=20, page_breaks=False) if rows else None


def _access_lines(where: Sequence[ColumnElement[bool]], limit: int = LISTING_LIMIT) -> Any:
    """The first accesses matching ``where``, oldest first."""
    rows = (access_row(r) for r in db.session.execute(
        select(*COLUMNS).where(*where).order_by(M.event_time, M.id).limit(limit)))
    return _lines(ACCESS_COLUMNS, ((r.when, r.user_id, r.patient_id, r.accession,
                                    r.event + (f" / {r.event_type}" if r.event_type else ""),
                                    r.user_host or r.source, r.outcome) for r in rows))


def _count(where: Sequence[ColumnElement[bool]]) -> int:
    """How many messages match."""
    return db.session.execute(select(func.count()).select_from(M).where(*where)).scalar_one()


@dataclass(frozen=True)
class Integrity:
    """The batch integrity check printed at the end of a report."""

    batches: int
    sealed: int
    open: int
    rehashed: int
    problems: list[str]
    last_run: Any

    @property
    def ok(self) -> bool:
        """No problem found in the batches checked."""
        return not self.problems


def batch_integrity(batch_ids: Iterable[int]) -> Integrity:
    """Check the batches a report's rows come from: counts always, hashes while under HASH_RECHECK_ROWS."""
    wanted = sorted(set(batch_ids))
    batches = {b.id: b for b in db.session.execute(
        select(AtnaBatch).where(AtnaBatch.id.in_(wanted))).scalars()} if wanted else {}
    seals = {}
    for details in db.session.execute(select(AuditEvent.details).where(
            AuditEvent.action == "atna.batch", AuditEvent.object_id.in_([str(i) for i in wanted]))).scalars():
        data = json.loads(details)
        seals[int(data["batch"])] = data
    problems, rehashed, budget = [], 0, HASH_RECHECK_ROWS
    counts = dict(db.session.execute(select(M.batch_id, func.count()).where(M.batch_id.in_(wanted))
                                     .group_by(M.batch_id)).all()) if wanted else {}
    open_ids = {i for i, b in batches.items() if b.sealed_at is None}
    for batch_id in wanted:
        if batch_id in open_ids:
            continue
        seal = seals.get(batch_id)
        if seal is None:
            problems.append(f"batch #{batch_id}: no atna.batch event seals it")
        elif counts.get(batch_id, 0) != seal["count"]:
            problems.append(f"batch #{batch_id}: {counts.get(batch_id, 0)} messages stored, "
                            f"{seal['count']} sealed")
        elif seal["count"] <= budget:
            budget -= seal["count"]
            rehashed += 1
            if batch_digest(db.session.connection(), batch_id)[1] != seal["hash"]:
                problems.append(f"batch #{batch_id}: a stored message was altered (hash differs)")
    return Integrity(len(wanted), len(wanted) - len(open_ids), len(open_ids), rehashed, problems,
                     last_verification())


def _batches_of(where: Sequence[ColumnElement[bool]]) -> list[int]:
    """The batches the matching rows were stored in."""
    return list(db.session.execute(select(M.batch_id).where(*where).distinct()).scalars())


def _period(request: ReportRequest) -> list[ColumnElement[bool]]:
    """The report's period on the events' own time."""
    assert request.start is not None and request.end is not None  # a period report has both dates
    lo, hi = period_bounds(request.start, request.end)
    return [M.event_time >= lo, M.event_time < hi]


# ---------------------------------------------------------------- patient imaging access


def patient_message_ids(patient_id: str, period: Sequence[ColumnElement[bool]]) -> list[int]:
    """Messages in the period naming the patient, or a study that any message ties to the patient.

    Resolved in three indexed steps (patient, then its studies, then messages naming them) rather
    than one OR of subqueries, which the planner can only answer by scanning the whole log.
    """
    named = set(db.session.execute(union(
        select(M.id).where(M.patient_id == patient_id),
        select(R.message_id).where(R.kind == "P", R.value == patient_id))).scalars())
    if not named:
        return []
    studies = set()
    for chunk in _chunks(sorted(named)):
        studies |= set(db.session.execute(union(
            select(M.study_uid).where(M.id.in_(chunk), M.study_uid.is_not(None)),
            select(R.value).where(R.kind == "S", R.message_id.in_(chunk)))).scalars())
    found = set(named)
    for chunk in _chunks(sorted(studies)):
        found |= set(db.session.execute(union(
            select(M.id).where(M.study_uid.in_(chunk)),
            select(R.message_id).where(R.kind == "S", R.value.in_(chunk)))).scalars())
    kept: list[int] = []
    for chunk in _chunks(sorted(found)):
        kept += db.session.execute(select(M.id).where(M.id.in_(chunk), *period)).scalars()
    return sorted(kept)


def _chunks(values: Sequence[Any], size: int = 5000) -> Iterable[Sequence[Any]]:
    """``values`` in slices a database accepts in one IN list."""
    for start in range(0, len(values), size):
        yield values[start:start + size]


def validate_patient_request(request: ReportRequest) -> None:
    """The patient report needs ``patient:ID``."""
    if request.object_type != "patient" or not request.object_id:
        raise ReportError("Give the patient as patient:ID, for example patient:MRN-000417.", "object")


def build_patient_access(request: ReportRequest, progress: Progress) -> ReportContent:
    """Every access to one patient's studies in the period."""
    patient_id = request.object_id or ""
    progress(10, "Finding the patient's studies")
    ids = patient_message_ids(patient_id, _period(request))
    where = [M.id.in_(ids)] if ids else [false()]
    rows = [access_row(r) for r in db.session.execute(
        select(*COLUMNS).where(*where).order_by(M.event_time, M.id).limit(request.appendix_limit))]
    total = _count(where)
    progress(40, "Summarising by user")
    by_user = db.session.execute(
        select(M.user_id, M.user_name, func.count().label("n"), func.min(M.event_time).label("first"),
               func.max(M.event_time).label("last"))
        .where(*where).group_by(M.user_id, M.user_name).order_by(func.count().desc())
        .limit(SUMMARY_LIMIT)).all()
    names = sorted({r.patient_name for r in rows if r.patient_name and r.patient_id == patient_id})
    watched = db.session.execute(select(AtnaWatch).where(AtnaWatch.patient_id == patient_id)
                                 ).scalar_one_or_none()
    progress(60, "Checking the batches")
    integrity = batch_integrity(_batches_of(where))
    listing = Listing(PATIENT_COLUMNS, ((r.when, r.user_id, r.user_name,
                                         r.event + (f" / {r.event_type}" if r.event_type else ""),
                                         r.accession or r.study_uid, r.user_host or r.source, r.outcome)
                                        for r in rows))
    context = {"patient_id": patient_id, "names": names, "total": total, "shown": len(rows),
               "by_user": [(u.user_id or "(none)", u.user_name or "", u.n, _when(u.first), _when(u.last))
                           for u in by_user],
               "studies": sorted({r.study_uid for r in rows if r.study_uid}), "watched": watched,
               "integrity": integrity, "appendix": listing, "when": _when}
    return ReportContent("atna_patient_access.html", context, period_text(request.start, request.end),
                         [("Patient", patient_id)], listing=listing)


# ---------------------------------------------------------------- PACS access audit


def _watched(where: Sequence[ColumnElement[bool]]) -> ColumnElement[bool]:
    """Messages naming a watched patient."""
    watched = select(AtnaWatch.patient_id)
    return or_(M.patient_id.in_(watched),
               M.id.in_(select(R.message_id).where(R.kind == "P", R.value.in_(watched))))


def _by_user(where: Sequence[ColumnElement[bool]]) -> list[tuple[object, ...]]:
    """Counts by PACS user with first and last time."""
    return [(r.user_id or "(none)", r.user_name or "", r.n, _when(r.first), _when(r.last))
            for r in db.session.execute(select(
                M.user_id, M.user_name, func.count().label("n"), func.min(M.event_time).label("first"),
                func.max(M.event_time).label("last"))
        .where(*where).group_by(M.user_id, M.user_name).order_by(func.count().desc(), M.user_id)
        .limit(SUMMARY_LIMIT))]


def _bulk(where: Sequence[ColumnElement[bool]], clock: LocalClock,
          threshold: int) -> list[tuple[object, ...]]:
    """Users who opened more than ``threshold`` distinct patients within one local clock hour."""
    hour = func.substr(cast(clock.local(M.__table__.c.event_time), String), 1, 13).label("hour")
    patients = func.count(distinct(M.patient_id)).label("patients")
    rows = db.session.execute(
        select(M.user_id, hour, patients, func.count().label("n"))
        .where(*where, M.patient_id.is_not(None), M.user_id.is_not(None))
        .group_by(M.user_id, hour).having(patients > threshold)
        .order_by(patients.desc(), M.user_id).limit(SUMMARY_LIMIT)).all()
    return [(r.user_id, f"{r.hour}:00", r.patients, r.n) for r in rows]


def _by_source(where: Sequence[ColumnElement[bool]]) -> list[tuple[object, ...]]:
    """Counts by event and sender."""
    sender = func.coalesce(M.source_id, M.sender_name, M.sender_host)
    return [(event_label(r.event_id), r.sender, r.n, _when(r.first), _when(r.last))
            for r in db.session.execute(select(
                M.event_id, sender.label("sender"), func.count().label("n"),
                func.min(M.event_time).label("first"), func.max(M.event_time).label("last"))
        .where(*where).group_by(M.event_id, sender).order_by(func.count().desc()).limit(SUMMARY_LIMIT))]


def _trail_events(request: ReportRequest, actions: Sequence[str]) -> list[tuple[object, ...]]:
    """PACS Desk's own events about the access log in the period (silences, losses)."""
    assert request.start is not None and request.end is not None  # a period report has both dates
    lo, hi = period_bounds(request.start, request.end)
    rows = db.session.execute(select(AuditEvent.occurred_at, AuditEvent.action, AuditEvent.object_id,
                                     AuditEvent.details)
                              .where(AuditEvent.action.in_(actions), AuditEvent.occurred_at >= lo,
                                     AuditEvent.occurred_at < hi)
                              .order_by(AuditEvent.seq).limit(LISTING_LIMIT))
    found: list[tuple[object, ...]] = []
    for at, action, object_id, details in rows:
        data = json.loads(details)
        text = ", ".join(f"{k}={v}" for k, v in data.items() if k not in ("meaning", "totals") and v)
        found.append((_when(at), action, object_id or "", text[:90]))
    return found


TRAIL_COLUMNS = (("Local time", 26), ("Event", 22), ("Object", 22), ("Details", 85))


def build_access_audit(request: ReportRequest, progress: Progress) -> ReportContent:
    """The period's PACS access, exceptions first."""
    assert request.start is not None and request.end is not None  # a period report has both dates
    lo, hi = period_bounds(request.start, request.end)
    dialect = db.session.get_bind().dialect.name
    clock = LocalClock(dialect, current_app.config["PACSDESK_TIMEZONE"], lo, hi)
    hours = current_app.config["PACSDESK_BUSINESS_HOURS"]
    threshold = current_app.config["PACSDESK_ATNA_BULK_PATIENTS_PER_HOUR"]
    period = _period(request)
    progress(5, "Counting messages")
    total = _count(period)
    sections: dict[str, Any] = {}
    progress(15, "Watched patients")
    watched = [*period, _watched(period)]
    sections["watched_total"] = _count(watched)
    sections["watched"] = _access_lines(watched)
    progress(30, "After-hours access")
    after = [*period, clock.outside_hours(M.__table__.c.event_time, hours), M.user_id.is_not(None)]
    sections["after_total"] = _count(after)
    sections["after_by_user"] = _lines((("User", 22), ("Name", 24), ("Accesses", 10), ("First", 21),
                                        ("Last", 21)), _by_user(after))
    progress(45, "Bulk access")
    sections["bulk"] = _lines((("User", 24), ("Local hour", 20), ("Patients", 10), ("Messages", 10)),
                              _bulk(period, clock, threshold))
    progress(55, "Exports and media")
    exports = [*period, M.event_id == "110106"]
    sections["exports_total"] = _count(exports)
    sections["exports"] = _access_lines(exports)
    progress(62, "Broad queries")
    broad = [*period, M.event_id == "110112", M.patient_id.is_(None)]
    sections["broad_total"] = _count(broad)
    sections["broad"] = _access_lines(broad)
    progress(70, "Failed logins and security alerts")
    alerts = [*period, or_(and_(M.event_id == "110114", M.outcome != 0), M.event_id == "110113")]
    sections["alerts_total"] = _count(alerts)
    sections["alerts"] = _lines((("Event", 26), ("Sender", 30), ("Messages", 10), ("First", 21),
                                 ("Last", 21)), _by_source(alerts))
    sections["silent"] = _lines(TRAIL_COLUMNS, _trail_events(
        request, ("atna.source_silent", "atna.source_back", "atna.messages_lost")))
    progress(78, "Totals")
    sections["totals"] = [(event_label(code), code, n) for code, n in db.session.execute(
        select(M.event_id, func.count()).where(*period).group_by(M.event_id).order_by(func.count().desc()))]
    sections["top_users"] = _lines((("User", 22), ("Name", 24), ("Messages", 10), ("First", 21),
                                    ("Last", 21)), _by_user([*period, M.user_id.is_not(None)])[:20])
    progress(85, "Checking the batches")
    integrity = batch_integrity(_batches_of(period))
    days, start, end = hours
    day_names = ", ".join(("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")[d] for d in sorted(days))
    context = {"total": total, **sections, "integrity": integrity, "when": _when, "threshold": threshold,
               "business_hours": f"{day_names} {start:%H:%M}-{end:%H:%M}",
               "listing_limit": LISTING_LIMIT, "watch_count": db.session.execute(
                   select(func.count()).select_from(AtnaWatch)).scalar_one()}
    return ReportContent("atna_access_audit.html", context, period_text(request.start, request.end))


PATIENT_REPORT = ReportKind(
    key="patient-imaging-access", title="Patient imaging access",
    description="Every access to one patient's images in the period (object patient:ID): the accounting "
                "of access a patient can ask for, from the PACS's own audit messages.",
    permission=Permission.REPORT_COMPLIANCE, build=build_patient_access, order=15, accepts_object=True,
    validate=validate_patient_request)

AUDIT_REPORT = ReportKind(
    key="pacs-access-audit", title="PACS access audit",
    description="The PACS's audit messages for the period, exceptions first: watched patients, after-hours "
                "and bulk access, exports and media, broad queries, failed logins, security alerts, "
                "silent sources; with the integrity check of the stored batches.",
    permission=Permission.REPORT_COMPLIANCE, build=build_access_audit, order=16)
