"""Retention engine: policies with floors, legal holds, dry runs and batched purges."""

from __future__ import annotations

import calendar
import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import func, or_, select, update
from sqlalchemy.exc import IntegrityError

from audit.chain import purge_through, record, register_actions
from audit.models import AuditEvent
from audit.retention_models import LegalHold, RetentionPolicy, RetentionRun, RunStatus
from audit.retention_registry import RECORD_CLASSES, HoldScope, RecordClass, register_record_class
from core.auth.models import User
from core.extensions import db
from core.timeutil import format_local, utcnow

BATCH_SIZE = 10000
STALE_AFTER = timedelta(minutes=30)
MAX_YEARS = 100
DOCUMENTATION_RULE = "45 CFR 164.316(b)(2) (keep documentation 6 years)"
HOLD_OBJECT_TYPES = ("ticket", "asset", "user")

register_actions({
    "retention.policy_changed": "Retention policy changed",
    "retention.hold_placed": "Legal hold placed",
    "retention.hold_released": "Legal hold released",
    "retention.run_started": "Retention run started",
    "retention.batch_purged": "Records destroyed under the retention schedule",
    "retention.run_completed": "Retention run completed",
    "retention.run_failed": "Retention run failed",
})


class RetentionError(ValueError):
    """A retention operation was refused; ``field`` names the form field at fault."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class RetentionBusy(RetentionError):
    """Another retention run is in progress."""


class RetentionChanged(RetentionError):
    """What a confirmed dry run listed is no longer what a run would destroy."""


# Classes whose hold matching can be answered by one query instead of a scan of candidates.
_SCOPE_MATCHERS: dict[str, Callable[[HoldScope], bool]] = {}


def add_months(day: datetime, months: int) -> datetime:
    """``day`` moved by whole calendar months (the day clamped to the month's end)."""
    total = day.year * 12 + day.month - 1 + months
    year, month = divmod(total, 12)
    last = calendar.monthrange(year, month + 1)[1]
    return day.replace(year=year, month=month + 1, day=min(day.day, last))


def add_months_to_date(day: date, months: int) -> date:
    """A calendar date moved by whole months (clamped to the month's end)."""
    total = day.year * 12 + day.month - 1 + months
    year, month = divmod(total, 12)
    return date(year, month + 1, min(day.day, calendar.monthrange(year, month + 1)[1]))


def cutoff_for(policy: RetentionPolicy, now: datetime) -> datetime:
    """Records whose anchor is before this moment have outlived the policy."""
    return add_months(now, -(policy.years * 12 + policy.months)) - timedelta(days=policy.days)


def period_problem(record_class: RecordClass, years: int, months: int, days: int) -> str | None:
    """Why a period is not acceptable for ``record_class``, or None."""
    if min(years, months, days) < 0:
        return "A retention period cannot be negative."
    if years > MAX_YEARS or months > MAX_YEARS * 12 or days > MAX_YEARS * 366:
        return f"A retention period longer than {MAX_YEARS} years is not accepted; check the value."
    total_months = years * 12 + months
    if total_months * 31 + days > MAX_YEARS * 12 * 31:
        return f"A retention period longer than {MAX_YEARS} years is not accepted; check the value."
    if total_months == 0 and days == 0:
        return "A retention period of zero would destroy records at once; give a period."
    floor_months = record_class.floor_years * 12
    if total_months < floor_months and days < (floor_months - total_months) * 31:
        return (f"{record_class.label} must be kept at least {record_class.floor_years} years "
                f"under {record_class.floor_rule}.")
    return None


def policy_for(key: str) -> RetentionPolicy | None:
    """The stored policy of a record class."""
    return db.session.execute(
        select(RetentionPolicy).where(RetentionPolicy.record_class == key)).scalar_one_or_none()


def ensure_default_policies() -> None:
    """Give every registered class a policy at its default period, disabled until reviewed."""
    for key, rc in RECORD_CLASSES.items():
        if policy_for(key) is None:
            db.session.add(RetentionPolicy(record_class=key, years=max(rc.default_years, rc.floor_years),
                                           months=0, days=0, anchor=rc.anchors[0], enabled=False))
    db.session.flush()


def list_policies() -> list[tuple[RecordClass, RetentionPolicy]]:
    """Every registered class with its policy, creating missing defaults."""
    ensure_default_policies()
    return [(RECORD_CLASSES[key], policy_for(key)) for key in sorted(RECORD_CLASSES)]  # type: ignore[misc]


def update_policy(key: str, years: int, months: int, days: int, anchor: str, enabled: bool,
                  user: Any = None) -> RetentionPolicy:
    """Change a class's policy after checking its floor (flushes and audits)."""
    rc = RECORD_CLASSES.get(key)
    if rc is None:
        raise RetentionError(f"Unknown record class {key!r}.")
    problem = period_problem(rc, years, months, days)
    if problem:
        raise RetentionError(problem, "years")
    if anchor not in rc.anchors:
        raise RetentionError(f"{rc.label} can be counted only from: {', '.join(rc.anchors)}.", "anchor")
    ensure_default_policies()
    policy = policy_for(key)
    assert policy is not None
    old = _policy_state(policy)
    policy.years, policy.months, policy.days = years, months, days
    policy.anchor, policy.enabled = anchor, enabled
    policy.updated_at = utcnow()
    policy.updated_by_id = getattr(user, "id", None)
    db.session.flush()
    record("retention.policy_changed", object_type="retention_policy", object_id=key,
           details={"old": old, "new": _policy_state(policy)})
    return policy


def _policy_state(policy: RetentionPolicy) -> dict[str, Any]:
    """A policy as plain values."""
    return {"years": policy.years, "months": policy.months, "days": policy.days,
            "anchor": policy.anchor, "enabled": policy.enabled, "period": policy.period_text}


# ---------------------------------------------------------------- legal holds


def active_holds() -> list[LegalHold]:
    """Holds not yet released, oldest first."""
    return list(db.session.execute(
        select(LegalHold).where(LegalHold.released_at.is_(None)).order_by(LegalHold.id)).scalars())


def hold_scope(hold: LegalHold) -> HoldScope:
    """A hold in the terms record classes understand."""
    return HoldScope(record_class=hold.record_class, object_type=hold.object_type,
                     object_key=hold.object_key, start=hold.start, end=hold.end)


def describe_scope(hold: LegalHold) -> str:
    """What a hold covers, in words."""
    if hold.object_type:
        return f"{hold.object_type} {hold.object_key}"
    label = RECORD_CLASSES[hold.record_class].label if hold.record_class in RECORD_CLASSES \
        else hold.record_class
    span = f"{format_local(hold.start, '%Y-%m-%d') or 'the beginning'} to " \
           f"{format_local(hold.end, '%Y-%m-%d') or 'now'}"
    return f"{label}, {span}"


def _scan_matches(rc: RecordClass, scope: HoldScope) -> bool:
    """Whether any of ``rc``'s records falls under ``scope`` (scans its candidates in batches)."""
    cutoff = utcnow() + timedelta(days=366 * 200)
    last = None
    while True:
        sub = rc.candidates(cutoff, rc.anchors[0]).subquery()
        id_col = next(iter(sub.c))
        query = select(id_col).order_by(id_col).limit(BATCH_SIZE)
        if last is not None:
            query = query.where(id_col > last)
        ids = list(db.session.execute(query).scalars())
        if not ids:
            return False
        if rc.held(ids, [scope]):
            return True
        last = ids[-1]


def scope_matches(scope: HoldScope) -> bool:
    """Whether a hold's scope covers anything PACS Desk keeps."""
    if scope.object_type and scope.object_key:
        trail = db.session.execute(
            select(AuditEvent.id).where(AuditEvent.object_type == scope.object_type,
                                        AuditEvent.object_id == scope.object_key).limit(1)).first()
        if trail is not None:
            return True
    keys = [scope.record_class] if scope.record_class else sorted(RECORD_CLASSES)
    for key in keys:
        rc = RECORD_CLASSES[key]
        matcher = _SCOPE_MATCHERS.get(key)
        if matcher(scope) if matcher else _scan_matches(rc, scope):
            return True
    return False


@dataclass(frozen=True)
class NewHold:
    """What it takes to place a legal hold."""

    reason: str
    kind: str                    # ticket, asset, user or class
    object_key: str = ""
    record_class: str = ""
    start: datetime | None = None
    end: datetime | None = None


def place_hold(new: NewHold, user: Any) -> LegalHold:
    """Place a legal hold after checking that its scope covers something (flushes and audits)."""
    reason = new.reason.strip()
    if not reason:
        raise RetentionError("Give the reason for the hold (case, investigation or audit).", "reason")
    if new.kind in HOLD_OBJECT_TYPES:
        key = new.object_key.strip()
        if not key:
            raise RetentionError(f"Give the {new.kind} this hold covers.", "object_key")
        if new.kind == "user":
            key = key.lower()
            if db.session.execute(select(User.id).where(User.username == key)).first() is None:
                raise RetentionError(f"There is no user '{key}'.", "object_key")
        scope = HoldScope(object_type=new.kind, object_key=key)
    elif new.kind == "class":
        if new.record_class not in RECORD_CLASSES:
            raise RetentionError("Choose a record class.", "record_class")
        if new.start and new.end and new.start > new.end:
            raise RetentionError("The range starts after it ends.", "start")
        scope = HoldScope(record_class=new.record_class, start=new.start, end=new.end)
    else:
        raise RetentionError("Choose what the hold covers.", "kind")
    if not scope_matches(scope):
        raise RetentionError("This hold's scope matches no record: check the number, tag, user or "
                             "dates.", "object_key" if scope.object_type else "record_class")
    hold = LegalHold(reason=reason, placed_by_id=user.id, placed_at=utcnow(),
                     record_class=scope.record_class, object_type=scope.object_type,
                     object_key=scope.object_key, start=scope.start, end=scope.end)
    db.session.add(hold)
    db.session.flush()
    record("retention.hold_placed", object_type="legal_hold", object_id=hold.id,
           details={"reason": reason, "scope": describe_scope(hold)})
    return hold


def release_hold(hold_id: int, reason: str, user: Any) -> LegalHold:
    """Release a hold once; the release is recorded (flushes and audits)."""
    hold = db.session.get(LegalHold, hold_id)
    if hold is None:
        raise RetentionError(f"There is no legal hold #{hold_id}.")
    if hold.released_at is not None:
        raise RetentionError(f"Legal hold #{hold.id} was already released on "
                             f"{format_local(hold.released_at)}.")
    if not reason.strip():
        raise RetentionError("Give the reason for releasing the hold.", "reason")
    released = db.session.execute(
        update(LegalHold).where(LegalHold.id == hold_id, LegalHold.released_at.is_(None))
        .values(released_at=utcnow(), released_by_id=user.id, release_reason=reason.strip())
    ).rowcount
    if released != 1:
        raise RetentionError(f"Legal hold #{hold_id} was already released.")
    db.session.refresh(hold)
    record("retention.hold_released", object_type="legal_hold", object_id=hold.id,
           details={"reason": reason.strip(), "scope": describe_scope(hold)})
    return hold


# ---------------------------------------------------------------- runs


@dataclass
class ClassResult:
    """What a run (or dry run) found for one record class."""

    key: str
    label: str
    policy: str
    anchor: str
    cutoff: str
    count: int = 0
    held: int = 0
    oldest: str | None = None
    newest: str | None = None
    digest: str = ""


@dataclass
class RunReport:
    """The outcome of a run or dry run."""

    dry_run: bool
    classes: list[ClassResult] = field(default_factory=list)
    digest: str = ""
    run_id: int | None = None

    @property
    def total(self) -> int:
        """Records destroyed (or that would be)."""
        return sum(c.count for c in self.classes)

    def as_dict(self) -> dict[str, Any]:
        """Plain values for JSON."""
        return {"dry_run": self.dry_run, "run_id": self.run_id, "total": self.total,
                "digest": self.digest, "classes": [asdict(c) for c in self.classes]}


def combined_digest(class_digests: dict[str, str]) -> str:
    """SHA-256 over "class:digest" lines sorted by class (the certificate's fingerprint)."""
    text = "".join(f"{key}:{class_digests[key]}\n" for key in sorted(class_digests))
    return hashlib.sha256(text.encode()).hexdigest()


def _iso(value: Any) -> str | None:
    """An anchor value as text."""
    if value is None:
        return None
    return value.isoformat() if hasattr(value, "isoformat") else str(value)


def _walk_class(rc: RecordClass, policy: RetentionPolicy, now: datetime, holds: Sequence[HoldScope],
                purge: Callable[[list[int]], None] | None, batch_size: int) -> ClassResult:
    """Find (and with ``purge``, destroy) a class's expired records batch by batch, in id order."""
    cutoff = cutoff_for(policy, now)
    result = ClassResult(rc.key, rc.label, policy.period_text, policy.anchor, cutoff.isoformat())
    hasher = hashlib.sha256()
    last = None
    while True:
        sub = rc.candidates(cutoff, policy.anchor).subquery()
        id_col, anchor_col = list(sub.c)[:2]
        query = select(id_col, anchor_col).order_by(id_col).limit(batch_size)
        if last is not None:
            query = query.where(id_col > last)
        rows = db.session.execute(query).all()
        if not rows:
            break
        ids = [row[0] for row in rows]
        held = rc.held(ids, holds) if holds else set()
        going = [row for row in rows if row[0] not in held]
        result.held += len(rows) - len(going)
        for row in going:
            hasher.update(f"{row[0]}\n".encode())
            stamp = _iso(row[1])
            if stamp is not None:
                result.oldest = stamp if result.oldest is None else min(result.oldest, stamp)
                result.newest = stamp if result.newest is None else max(result.newest, stamp)
        result.count += len(going)
        last = ids[-1]
        if purge is not None and going:
            purge([row[0] for row in going])
        else:
            db.session.rollback()
    result.digest = hasher.hexdigest()
    return result


def _in_force() -> list[tuple[RecordClass, RetentionPolicy]]:
    """Enabled policies of registered classes."""
    return [(rc, p) for rc, p in list_policies() if p.enabled]


def dry_run(batch_size: int = BATCH_SIZE) -> RunReport:
    """List what a run would destroy now, class by class, without destroying anything."""
    now = utcnow()
    _FIRST_YOUNG.clear()
    policies = _in_force()
    holds = [hold_scope(h) for h in active_holds()]
    report = RunReport(dry_run=True)
    for rc, policy in policies:
        report.classes.append(_walk_class(rc, policy, now, holds, None, batch_size))
    report.digest = combined_digest({c.key: c.digest for c in report.classes})
    db.session.rollback()
    return report


def running_run() -> RetentionRun | None:
    """The run in progress, if any."""
    return db.session.execute(
        select(RetentionRun).where(RetentionRun.status == RunStatus.RUNNING.value)).scalar_one_or_none()


def _busy_message(run: RetentionRun) -> str:
    """Why a second run is refused."""
    return (f"Retention run #{run.id} started {format_local(run.started_at)} by {run.started_by} "
            "is still running; wait for it to finish.")


def _claim_run(started_by: str, user: Any, policies: list[tuple[RecordClass, RetentionPolicy]]
               ) -> RetentionRun:
    """Insert the running run row (committed); the unique partial index refuses a second one."""
    for _attempt in range(2):
        run = RetentionRun(status=RunStatus.RUNNING.value, started_at=utcnow(), heartbeat_at=utcnow(),
                           started_by=started_by, started_by_id=getattr(user, "id", None),
                           policies=json.dumps({rc.key: _policy_state(p) for rc, p in policies},
                                               sort_keys=True))
        db.session.add(run)
        try:
            db.session.flush()
        except IntegrityError:
            db.session.rollback()
            other = running_run()
            if other is None:
                continue
            if utcnow() - other.heartbeat_at > STALE_AFTER:
                other.status = RunStatus.ABANDONED.value
                other.finished_at = utcnow()
                other.error = "no progress for 30 minutes: taken over by a new run"
                db.session.commit()
                continue
            raise RetentionBusy(_busy_message(other)) from None
        record("retention.run_started", object_type="retention_run", object_id=run.id,
               details={"started_by": started_by, "policies": json.loads(run.policies)},
               **({} if user is None else {"user": user}))
        db.session.commit()
        return run
    raise RetentionBusy("Another retention run is starting; try again in a moment.")


def run_retention(started_by: str, user: Any = None, batch_size: int = BATCH_SIZE,
                  expected_digest: str | None = None) -> RunReport:
    """Destroy what has outlived its policy, batch by batch, and record the run (commits).

    With ``expected_digest`` (the dry run a person confirmed), nothing is destroyed unless
    the records due now are still exactly those.
    """
    db.session.rollback()
    if expected_digest is not None and dry_run(batch_size).digest != expected_digest:
        raise RetentionChanged("The records due for destruction changed since the dry run you "
                               "reviewed; review the new dry run and confirm again.")
    policies = _in_force()
    run = _claim_run(started_by, user, policies)
    run_id = run.id
    _FIRST_YOUNG.clear()
    actor = {} if user is None else {"user": user}
    report = RunReport(dry_run=False, run_id=run_id)
    counts: dict[str, int] = {}
    try:
        now = run.started_at
        holds = [hold_scope(h) for h in active_holds()]
        for rc, policy in policies:
            counts[rc.key] = 0

            def purge(ids: list[int], rc: RecordClass = rc) -> None:
                gone = rc.purge(ids)
                counts[rc.key] += gone
                if rc.key != "audit_events":
                    record("retention.batch_purged", object_type=rc.key, object_id=run_id,
                           details={"run_id": run_id, "count": gone, "first_id": ids[0],
                                    "last_id": ids[-1]}, **actor)
                db.session.execute(update(RetentionRun).where(RetentionRun.id == run_id).values(
                    heartbeat_at=utcnow(), counts=json.dumps(counts, sort_keys=True),
                    total=sum(counts.values())))
                db.session.commit()

            report.classes.append(_walk_class(rc, policy, now, holds, purge, batch_size))
        class_digests = {c.key: c.digest for c in report.classes}
        report.digest = combined_digest(class_digests)
        run = db.session.get(RetentionRun, run_id)
        run.status = RunStatus.COMPLETED.value
        run.finished_at = utcnow()
        run.counts = json.dumps({c.key: c.count for c in report.classes}, sort_keys=True)
        run.held_counts = json.dumps({c.key: c.held for c in report.classes}, sort_keys=True)
        run.class_digests = json.dumps(class_digests, sort_keys=True)
        run.classes = json.dumps([asdict(c) for c in report.classes])
        run.digest = report.digest
        run.total = report.total
        record("retention.run_completed", object_type="retention_run", object_id=run_id,
               details={"counts": json.loads(run.counts), "held": json.loads(run.held_counts),
                        "digest": run.digest, "total": run.total}, **actor)
        db.session.commit()
    except Exception as exc:
        db.session.rollback()
        run = db.session.get(RetentionRun, run_id)
        run.status = RunStatus.FAILED.value
        run.finished_at = utcnow()
        run.error = str(exc)[:2000]
        record("retention.run_failed", outcome="failure", object_type="retention_run",
               object_id=run_id, details={"error": str(exc)[:500], "counts": counts}, **actor)
        db.session.commit()
        raise
    return report


def recent_runs(limit: int = 20) -> list[RetentionRun]:
    """The latest retention runs, newest first."""
    return list(db.session.execute(
        select(RetentionRun).order_by(RetentionRun.id.desc()).limit(limit)).scalars())


def last_run() -> RetentionRun | None:
    """The latest finished or running retention run."""
    runs = recent_runs(1)
    return runs[0] if runs else None


# ---------------------------------------------------------------- the audit trail's own class


def _audit_hold_condition(scope: HoldScope) -> Any:
    """SQL condition for the audit events a hold scope covers (None: covers none)."""
    if scope.object_type == "user":
        return AuditEvent.user_id == select(User.id).where(User.username == scope.object_key) \
            .scalar_subquery()
    if scope.object_type:
        return (AuditEvent.object_type == scope.object_type) & (AuditEvent.object_id == scope.object_key)
    if scope.record_class == "audit_events":
        cond = AuditEvent.seq.is_not(None)
        if scope.start:
            cond = cond & (AuditEvent.occurred_at >= scope.start)
        if scope.end:
            cond = cond & (AuditEvent.occurred_at <= scope.end)
        return cond
    return None


# First young event per cutoff, for one walk: later events only append larger positions, so the
# value stays right while a walk runs; it is cleared when a run or dry run begins.
_FIRST_YOUNG: dict[datetime, int | None] = {}


def _audit_candidates(cutoff: datetime, anchor: str) -> Any:
    """Events older than ``cutoff`` that form an unbroken prefix of the chain (by seq)."""
    if cutoff not in _FIRST_YOUNG:
        _FIRST_YOUNG[cutoff] = db.session.execute(
            select(func.min(AuditEvent.seq)).where(AuditEvent.occurred_at >= cutoff)).scalar()
    query = select(AuditEvent.seq, AuditEvent.occurred_at).where(AuditEvent.occurred_at < cutoff)
    if _FIRST_YOUNG[cutoff] is not None:
        query = query.where(AuditEvent.seq < _FIRST_YOUNG[cutoff])
    return query


def _audit_held(ids: Sequence[int], holds: Sequence[HoldScope]) -> set[int]:
    """A held event stops the purge there: only the chain's prefix before it may go."""
    conditions = [c for c in (_audit_hold_condition(s) for s in holds) if c is not None]
    if not conditions or not ids:
        return set()
    first_held = db.session.execute(
        select(func.min(AuditEvent.seq)).where(or_(*conditions))).scalar_one_or_none()
    if first_held is None:
        return set()
    return {i for i in ids if i >= first_held}


def _audit_purge(ids: Sequence[int]) -> int:
    """Purge the chain through the last of ``ids`` (they are its prefix)."""
    return purge_through(max(ids), "retention schedule")


def _audit_matches(scope: HoldScope) -> bool:
    """Whether any audit event falls under ``scope``."""
    condition = _audit_hold_condition(scope)
    return condition is not None and db.session.execute(
        select(AuditEvent.id).where(condition).limit(1)).first() is not None


register_record_class(RecordClass(
    key="audit_events", label="Audit events", anchors=("created",), default_years=6, floor_years=6,
    floor_rule=DOCUMENTATION_RULE, candidates=_audit_candidates, held=_audit_held,
    purge=_audit_purge))
_SCOPE_MATCHERS["audit_events"] = _audit_matches


def register_scope_matcher(key: str, matcher: Callable[[HoldScope], bool]) -> None:
    """Answer "does this scope cover any of class ``key``?" with one query instead of a scan."""
    _SCOPE_MATCHERS[key] = matcher
