"""Report requests: validate parameters, queue a job, build the PDF in the background."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import date, datetime
from typing import Any

from flask import current_app
from sqlalchemy import select, update

from audit import record
from audit.reports.models import ReportJob, ReportStatus, new_report_id
from audit.reports.registry import (
    Progress,
    ReportContent,
    ReportError,
    ReportKind,
    ReportRequest,
    report_kind,
    report_kinds,
)
from audit.trail.chain import chain_head
from audit.trail.chain_verification import ChainVerificationRun, run_verification
from core.auth.models import User
from core.database import SNAPSHOT_OPTION
from core.extensions import db
from core.jobs.queue import enqueue, queued_count
from core.jobs.registry import JobContext
from core.jobs.worker import Fail
from core.mail.compose import Notice
from core.notifications import notify
from core.pdf import PageFrame, render_pdf
from core.timeutil import DateOutOfRange, check_day, format_local, local_day_bounds, utcnow

# Audit actions recorded here (registered by the package's init_app).
AUDIT_ACTIONS = {
    "report.generate": "Report generated",
    "report.download": "Report downloaded",
}

MAX_PERIOD_YEARS = 10


def _parse_day(value: date | str | None, field: str, label: str) -> date | None:
    """A date from the form (date) or the command line (YYYY-MM-DD text)."""
    if value is None or value == "":
        return None
    if isinstance(value, date):
        day = value
    else:
        try:
            day = date.fromisoformat(value.strip())
        except ValueError:
            raise ReportError(f"{label}: '{value}' is not a date; write it as YYYY-MM-DD.", field) from None
    try:
        return check_day(day, field, label)
    except DateOutOfRange as error:
        raise ReportError(str(error), field) from None


def _years_later(day: date, years: int) -> date:
    """The same calendar day ``years`` later (28 February for 29 February)."""
    try:
        return day.replace(year=day.year + years)
    except ValueError:
        return day.replace(year=day.year + years, day=28)


def check_period(start: date | None, end: date | None, required: bool) -> None:
    """Refuse a missing, reversed or over-long period, with the reason."""
    if start is None or end is None:
        if required:
            missing = "date_from" if start is None else "date_to"
            raise ReportError("This report needs a period: give both the From and To dates.", missing)
        if start is None and end is None:
            return
        raise ReportError("Give both the From and To dates, or neither.",
                          "date_from" if start is None else "date_to")
    if end < start:
        raise ReportError(f"The period ends ({end.isoformat()}) before it starts "
                          f"({start.isoformat()}).", "date_to")
    if end >= _years_later(start, MAX_PERIOD_YEARS):
        years = (end - start).days / 365.25
        raise ReportError(f"The period is {years:.0f} years long ({start.isoformat()} to "
                          f"{end.isoformat()}); a report covers at most {MAX_PERIOD_YEARS} years. "
                          "Choose a shorter period.", "date_from")


def parse_object(text: str | None) -> tuple[str | None, str | None]:
    """``TYPE:ID`` (ticket:PD-000123, asset:WS-0042, user:12) into its two parts."""
    if not text or not text.strip():
        return None, None
    kind, sep, ident = text.strip().partition(":")
    if not sep or not kind.strip() or not ident.strip() or len(ident) > 120 or len(kind) > 40:
        raise ReportError(f"Object '{text.strip()[:60]}' must look like TYPE:ID, "
                          "for example ticket:PD-000123.", "object")
    return kind.strip().lower(), ident.strip()


def find_kind(key: str | None) -> ReportKind:
    """The report kind called ``key``, or a clear error listing the real ones."""
    kind = report_kind((key or "").strip())
    if kind is None:
        names = ", ".join(k.key for k in report_kinds())
        raise ReportError(f"There is no report kind '{(key or '').strip()[:40]}'. "
                          f"Choose one of: {names}.", "kind")
    return kind


def validate_request(kind: str | None, date_from: date | str | None, date_to: date | str | None,
                     username: str | None = None, obj: str | None = None,
                     run_id: int | str | None = None, requested_by: str = "command line",
                     report_id: str | None = None, include_identifiers: bool = False) -> ReportRequest:
    """Check every parameter and return the request, or raise ReportError naming the field."""
    found = find_kind(kind)
    start = _parse_day(date_from, "date_from", "From")
    end = _parse_day(date_to, "date_to", "To")
    check_period(start, end, found.needs_period)
    name = (username or "").strip().lower() or None
    if name is not None:
        if not found.accepts_user:
            raise ReportError(f"The {found.title.lower()} has no user filter.", "user")
        if db.session.execute(select(User.id).where(User.username == name)).first() is None:
            raise ReportError(f"There is no user named '{name[:64]}'.", "user")
    object_type, object_id = parse_object(obj)
    if object_type is not None and not found.accepts_object:
        raise ReportError(f"The {found.title.lower()} has no object filter.", "object")
    run: int | None = None
    if run_id not in (None, ""):
        if not found.needs_run:
            raise ReportError(f"The {found.title.lower()} does not take a retention run.", "run_id")
        try:
            run = int(str(run_id).strip())
        except ValueError:
            raise ReportError(f"Retention run '{str(run_id)[:20]}' is not a number.", "run_id") from None
    elif found.needs_run:
        raise ReportError("This report needs the number of a retention run.", "run_id")
    if include_identifiers and not found.accepts_identifiers:
        raise ReportError(f"The {found.title.lower()} has no patient identifiers to include.",
                          "include_identifiers")
    request = ReportRequest(kind=found.key, report_id=report_id or new_report_id(), start=start,
                            end=end, username=name, object_type=object_type, object_id=object_id,
                            run_id=run, requested_by=requested_by,
                            include_identifiers=include_identifiers if found.accepts_identifiers else None)
    if found.validate is not None:
        found.validate(request)
    return request


@dataclass(frozen=True)
class VerificationCitation:
    """The chain verification a report relies on: the run, when, how, and what it found."""

    run_id: int
    when: str
    mode: str
    ok: bool
    head_seq: int
    head_hash: str
    count: int
    from_seq: int | None
    first_bad_seq: int | None
    problem: str | None
    anchor_n: int | None
    full_run_id: int | None
    full_when: str | None


@dataclass(frozen=True)
class ReportMeta:
    """The shared layout's facts: who, when, which report, the head read and its verification."""

    organization: str
    title: str
    period_text: str
    generated_at: str
    timezone: str
    generated_by: str
    report_id: str
    head_seq: int
    head_hash: str
    event_count: int
    filters: list[tuple[str, str]]
    verification: VerificationCitation


def period_text(start: date | None, end: date | None) -> str:
    """'1 March 2026 to 31 March 2026' (local calendar days, both included)."""
    if start is None or end is None:
        return ""
    return f"{start.day} {start:%B %Y} to {end.day} {end:%B %Y} (both days included)"


def period_bounds(start: date, end: date) -> tuple[datetime, datetime]:
    """UTC instants [start of the first local day, start of the day after the last)."""
    lower, upper = local_day_bounds(start, end)
    assert lower is not None and upper is not None
    return lower, upper


def _last_full_walk() -> ChainVerificationRun | None:
    """The latest intact full verification (the nightly one), if any."""
    return db.session.execute(
        select(ChainVerificationRun).where(ChainVerificationRun.mode == "full",
                                           ChainVerificationRun.ok.is_(True))
        .order_by(ChainVerificationRun.id.desc()).limit(1)).scalar_one_or_none()


def verify_for_report() -> VerificationCitation:
    """Verify the trail since its last verified head, anchor it and cite that run (commits)."""
    run = run_verification("report")
    full = run if run.mode == "full" else _last_full_walk()
    stamp = "%Y-%m-%d %H:%M:%S %Z"
    citation = VerificationCitation(
        run_id=run.id, when=format_local(run.finished_at, stamp), mode=run.mode, ok=run.ok,
        head_seq=run.head_seq, head_hash=run.head_hash, count=run.count, from_seq=run.from_seq,
        first_bad_seq=run.first_bad_seq, problem=run.problem, anchor_n=run.anchor_n,
        full_run_id=full.id if full else None,
        full_when=format_local(full.finished_at, stamp) if full else None)
    db.session.commit()
    return citation


def build_pdf(request: ReportRequest, progress: Progress | None = None) -> bytes:
    """Build the report's PDF: verify and anchor the chain, then read its head, as of generation."""
    step = progress or (lambda pct, stage: None)
    kind = find_kind(request.kind)
    db.session.commit()
    step(2, "Verifying the audit trail")
    verification = verify_for_report()
    # Every query of the report reads one snapshot, which on SQLite never holds the write lock.
    db.session.connection(execution_options={SNAPSHOT_OPTION: True})
    head_seq, head_hash, count = chain_head()
    content: ReportContent = kind.build(request, step)
    meta = ReportMeta(
        organization=current_app.config["PACSDESK_ORGANIZATION"], title=kind.title,
        period_text=content.period_text or period_text(request.start, request.end),
        generated_at=format_local(utcnow(), "%Y-%m-%d %H:%M:%S %Z"),
        timezone=current_app.config["PACSDESK_TIMEZONE"], generated_by=request.requested_by,
        report_id=request.report_id, head_seq=head_seq, head_hash=head_hash, event_count=count,
        filters=content.filters, verification=verification,
    )
    # End the read transaction before the long layout (SQLite would keep its lock).
    db.session.commit()
    step(80, "Laying out the PDF")
    frame = PageFrame(meta.organization, meta.title,
                      f"Report {meta.report_id} · audit chain head {meta.head_hash}")
    return render_pdf(content.template, listing=content.listing, frame=frame, meta=meta,
                      **content.context)


def request_report(request: ReportRequest, user: User) -> ReportJob:
    """Queue a report's build for ``user`` and audit the request (flushes; the caller commits)."""
    check_queue_room(user)
    job = ReportJob(id=request.report_id, kind=request.kind,
                    params=request.params(), requested_by_id=user.id)
    db.session.add(job)
    db.session.flush()
    record("report.generate", object_type="report", object_id=job.id,
           details={"kind": request.kind, "report_id": job.id, **request.params()})
    enqueue(BUILD_JOB, {"report_id": job.id}, user_id=user.id, dedup_key=f"report:{job.id}",
            title=f"Report {job.id}")
    return job


def record_download(job: ReportJob) -> None:
    """Audit that the current user downloaded a report's PDF."""
    record("report.download", object_type="report", object_id=job.id,
           details={"kind": job.kind, "report_id": job.id, **job.parameters})


def _request_from_job(job: ReportJob) -> ReportRequest:
    """Rebuild the validated request a job was queued with."""
    params = job.parameters
    who = job.requested_by
    return ReportRequest(
        kind=job.kind, report_id=job.id,
        start=date.fromisoformat(params["from"]) if params.get("from") else None,
        end=date.fromisoformat(params["to"]) if params.get("to") else None,
        username=params.get("user"),
        object_type=(params.get("object") or "").partition(":")[0] or None,
        object_id=(params.get("object") or "").partition(":")[2] or None,
        run_id=params.get("run"),
        requested_by=f"{who.display_name} ({who.username})" if who else "unknown",
        include_identifiers=params.get("identifiers"),
    )


def _set_job(job_id: str, **values: Any) -> None:
    """Update a job row in a short transaction of its own, so the waiting page sees it at once."""
    with db.engine.begin() as connection:
        connection.execute(update(ReportJob).where(ReportJob.id == job_id).values(**values))


BUILD_JOB = "reports.build"
MAX_QUEUED_PER_USER = 3
MAX_BUILD_ATTEMPTS = 2


def check_queue_room(user: User) -> None:
    """Refuse a new report while the user already has MAX_QUEUED_PER_USER waiting or building."""
    if queued_count(BUILD_JOB, user.id) >= MAX_QUEUED_PER_USER:
        raise ReportError(f"You already have {MAX_QUEUED_PER_USER} reports waiting or being built; "
                          "wait for one to finish, then ask again.", "kind")


def build_job(ctx: JobContext) -> dict[str, Any]:
    """Build a queued report's PDF (a job: it writes the report's state in short transactions)."""
    report_id = str(ctx.params["report_id"])
    job = db.session.get(ReportJob, report_id)
    if job is None or job.status not in (ReportStatus.QUEUED, ReportStatus.RUNNING):
        return {"skipped": "the report is no longer waiting"}
    request = _request_from_job(job)
    db.session.commit()  # release the session before the report row is written apart

    def progress(percent: int, stage: str) -> None:
        _set_job(report_id, progress=percent, stage=stage)
        ctx.progress(percent, stage)

    _set_job(report_id, status=ReportStatus.RUNNING, started_at=utcnow(), progress=1, stage="Starting")
    try:
        pdf = build_pdf(request, progress)
    except ReportError as exc:
        db.session.rollback()
        _set_job(report_id, status=ReportStatus.FAILED, error=str(exc), finished_at=utcnow())
        raise Fail(str(exc)) from None
    except Exception:
        db.session.rollback()
        if ctx.attempt >= MAX_BUILD_ATTEMPTS:
            _set_job(report_id, status=ReportStatus.FAILED, finished_at=utcnow(),
                     error="The report could not be generated. The error was logged; "
                           "try again or contact the administrator.")
        else:
            _set_job(report_id, status=ReportStatus.QUEUED, stage="Waiting to try again")
        raise
    _set_job(report_id, status=ReportStatus.DONE, progress=100, stage="Ready", pdf=pdf,
             pdf_size=len(pdf), finished_at=utcnow())
    notify("audit.report_ready", [db.session.get(User, ctx.user_id) if ctx.user_id else None], Notice(
        subject=f"Your {find_kind(request.kind).title} report is ready",
        paragraphs=("The report you asked for is ready to download.",),
        link_path=f"/reports/{report_id}", link_label="Open the report"))
    db.session.commit()
    return {"report_id": report_id, "bytes": len(pdf)}


def build_from_cli(request: ReportRequest) -> bytes:
    """Audit and build a report for the command line (commits the audit event first)."""
    record("report.generate", object_type="report", object_id=request.report_id,
           details={"kind": request.kind, "report_id": request.report_id, "source": "cli",
                    **request.params()})
    db.session.commit()
    return build_pdf(replace(request, requested_by="command line (pacsdesk reports build)"))
