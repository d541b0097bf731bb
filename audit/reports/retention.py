"""The certificate of destruction for one retention run."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import func, or_, select

from audit.reports.registry import (
    Progress,
    ReportContent,
    ReportError,
    ReportKind,
    ReportRequest,
)
from audit.retention.destroyed_ids import destroyed_items, digest_of, expand, lines
from audit.retention.engine import describe_scope
from audit.retention.models import LegalHold, RetentionRun, RunStatus
from audit.retention.registry import record_classes
from audit.trail.models import AuditEvent
from core.auth.models import User
from core.auth.permissions import Permission
from core.extensions import db
from core.pdf import Listing
from core.timeutil import format_local

STAMP = "%Y-%m-%d %H:%M %Z"
ID_COLUMNS = (("Record class", 28), ("Ids destroyed, in the order hashed", 150))


def _run(run_id: int | None) -> RetentionRun:
    """The run, or a clear error."""
    run = db.session.get(RetentionRun, run_id) if run_id is not None else None
    if run is None:
        raise ReportError(f"There is no retention run #{run_id}.", "run_id")
    return run


def validate_run(request: ReportRequest) -> None:
    """Refuse unknown runs, and runs still in progress (nothing final to certify yet)."""
    run = _run(request.run_id)
    if run.status == RunStatus.RUNNING:
        raise ReportError(f"Retention run #{run.id} is still running; its certificate can be "
                          "issued when it ends.", "run_id")



def _holds_in_force(started: datetime, finished: datetime) -> list[LegalHold]:
    """Holds placed before the run ended and not released before it started."""
    return list(db.session.scalars(
        select(LegalHold).where(LegalHold.placed_at <= finished,
                                or_(LegalHold.released_at.is_(None), LegalHold.released_at > started))
        .order_by(LegalHold.id)))


def _person(user_id: int | None, fallback: str) -> str:
    """'Full Name (username)' for an account id, else the fallback text."""
    user = db.session.get(User, user_id) if user_id else None
    return f"{user.display_name} ({user.username})" if user else fallback


def build_certificate(request: ReportRequest, progress: Progress) -> ReportContent:
    """What the run destroyed, under which policies and holds, fingerprinted by its digests."""
    run = _run(request.run_id)
    progress(20, "Retention run")
    policies, counts = run.policies or {}, run.counts or {}
    held, digests = run.held_counts or {}, run.class_digests or {}
    progress(30, "Ids destroyed")
    destroyed = destroyed_items(run.id)
    classes, id_lines = [], []
    for key in sorted(set(policies) | set(counts)):
        record_class = record_classes().get(key)
        policy = policies.get(key, {})
        items = destroyed.get(key, [])
        count = int(counts.get(key, 0))
        if items:
            check = "match" if digest_of(expand(items)) == digests.get(key) else "mismatch"
            packed = lines(items, ID_COLUMNS[1][1])
            id_lines += [(key if i == 0 else "", line) for i, line in enumerate(packed)]
        else:
            check = "none" if not count else "unrecorded"
            id_lines.append((key, "none" if not count else "not recorded (the run predates lists of ids)"))
        classes.append({"key": key, "label": record_class.label if record_class else key,
                        "period": policy.get("period", ""), "anchor": policy.get("anchor", ""),
                        "count": count, "held": int(held.get(key, 0)),
                        "digest": digests.get(key, ""), "ids": check})
    finished = run.finished_at or run.heartbeat_at
    holds = [{"hold": h, "scope": describe_scope(h), "placed_by": _person(h.placed_by_id, "")}
             for h in _holds_in_force(run.started_at, finished)]
    progress(50, "Audit trail of the run")
    trail = list(db.session.execute(
        select(AuditEvent.seq, AuditEvent.occurred_at, AuditEvent.action, AuditEvent.username,
               AuditEvent.hash)
        .where(AuditEvent.about("retention_run", str(run.id)))
        .order_by(AuditEvent.seq).limit(20)))
    batches = db.session.execute(
        select(func.count()).where(AuditEvent.action == "retention.batch_purged",
                                   AuditEvent.object_id == str(run.id))).scalar_one()
    context = {
        "run": run, "classes": classes, "holds": holds, "trail": trail, "batches": batches,
        "total": sum(c["count"] for c in classes), "held_total": sum(c["held"] for c in classes),
        "performed_by": _person(run.started_by_id, run.started_by),
        "started": format_local(run.started_at, STAMP), "finished": format_local(run.finished_at, STAMP),
        "completed": run.status == RunStatus.COMPLETED,
        "when": lambda v: format_local(v, "%Y-%m-%d %H:%M:%S"),
    }
    listing = Listing(ID_COLUMNS, id_lines)
    context.update(id_listing=listing, id_line_count=len(id_lines))
    period = f"Retention run #{run.id}, {format_local(run.started_at, '%d %B %Y')}"
    return ReportContent("retention_certificate.html", context, period,
                         [("Retention run", f"#{run.id} ({run.status})")], listing=listing)


REPORT_KIND = ReportKind(
    key="retention", title="Certificate of destruction",
    description="For one retention run: the record classes and how many records were destroyed, "
                "the policies and legal holds in force, the ids destroyed with their digests, and "
                "signature lines.",
    permission=Permission.REPORT_COMPLIANCE, build=build_certificate, order=30,
    needs_period=False, needs_run=True, validate=validate_run, record_class="destruction_certificates",
)
