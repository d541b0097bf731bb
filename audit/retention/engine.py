"""Retention engine: policies with floors, dry runs, and batched purges that respect legal holds."""

from __future__ import annotations

import calendar
import hashlib
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from audit.retention.destroyed_ids import record_batch
from audit.retention.holds import (
    NewHold,
    RetentionError,
    active_holds,
    describe_scope,
    hold_scope,
    place_hold,
    release_hold,
)
from audit.retention.models import RetentionPolicy, RetentionRun, RunStatus
from audit.retention.registry import HoldScope, RecordClass, record_classes
from audit.trail import retention as retention_audit_events
from audit.trail.chain import record
from core.auth.models import Role
from core.extensions import db
from core.mail.compose import Notice
from core.notifications import notify, users_with_roles
from core.timeutil import format_local, utcnow

# The retention API domains and reports use (holds live in audit.retention.holds).
__all__ = ["NewHold", "RetentionBusy", "RetentionChanged", "RetentionError", "describe_scope",
           "dry_run", "ensure_default_policies", "last_run", "list_policies", "place_hold",
           "policy_for", "recent_runs", "release_hold", "run_retention",
           "running_run", "update_policy"]

BATCH_SIZE = 10000
STALE_AFTER = timedelta(minutes=30)
CONFIRMATION_VALID = timedelta(hours=24)
MAX_YEARS = 100

# Audit actions recorded here (registered by the package's init_app).
AUDIT_ACTIONS = {
    "retention.policy_created": "Retention policy stored at its default period (not enforced until reviewed)",
    "retention.policy_changed": "Retention policy changed",
    "retention.run_abandoned": "Retention run with no progress for 30 minutes marked abandoned",
    "retention.run_started": "Retention run started",
    "retention.batch_purged": "Records destroyed under the retention schedule",
    "retention.run_completed": "Retention run completed",
    "retention.run_failed": "Retention run failed",
}


class RetentionBusy(RetentionError):
    """Another retention run is in progress."""


class RetentionChanged(RetentionError):
    """What a confirmed dry run listed is no longer what a run would destroy."""


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


def _default_policy(rc: RecordClass) -> RetentionPolicy:
    """A class's policy at its default period, not enforced until someone reviews it."""
    return RetentionPolicy(record_class=rc.key, years=max(rc.default_years, rc.floor_years), months=0,
                           days=0, anchor=rc.anchors[0], enabled=False)


def ensure_default_policies() -> None:
    """Store a default policy for every class that has none (``pacsdesk setup``; flushes, audited)."""
    for key, rc in record_classes().items():
        if policy_for(key) is None:
            policy = _default_policy(rc)
            db.session.add(policy)
            db.session.flush()
            record("retention.policy_created", object_type="retention_policy", object_id=key,
                   user=None, details=_policy_state(policy))


def list_policies() -> list[tuple[RecordClass, RetentionPolicy]]:
    """Every registered class with its policy; one not stored yet shows its default (nothing is written)."""
    return [(rc, policy_for(key) or _default_policy(rc)) for key, rc in sorted(record_classes().items())]


def update_policy(key: str, years: int, months: int, days: int, anchor: str, enabled: bool,
                  user: Any = None) -> RetentionPolicy:
    """Change a class's policy after checking its floor (flushes and audits)."""
    rc = record_classes().get(key)
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
    as_of: str = ""          # the moment cutoffs were counted from (ISO, UTC)

    @property
    def total(self) -> int:
        """Records destroyed (or that would be)."""
        return sum(c.count for c in self.classes)

    def as_dict(self) -> dict[str, Any]:
        """Plain values for JSON."""
        return {"dry_run": self.dry_run, "run_id": self.run_id, "total": self.total,
                "digest": self.digest, "as_of": self.as_of, "classes": [asdict(c) for c in self.classes]}


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


def dry_run(batch_size: int = BATCH_SIZE, as_of: datetime | None = None) -> RunReport:
    """List what a run counted from ``as_of`` (default now) would destroy, destroying nothing."""
    now = as_of or utcnow()
    retention_audit_events.begin_walk()
    policies = _in_force()
    holds = [hold_scope(h) for h in active_holds()]
    report = RunReport(dry_run=True, as_of=now.isoformat())
    for rc, policy in policies:
        report.classes.append(_walk_class(rc, policy, now, holds, None, batch_size))
    report.digest = combined_digest({c.key: c.digest for c in report.classes})
    db.session.rollback()
    return report


def running_run() -> RetentionRun | None:
    """The run in progress, if any."""
    return db.session.execute(
        select(RetentionRun).where(RetentionRun.status == RunStatus.RUNNING)).scalar_one_or_none()


def _busy_message(run: RetentionRun) -> str:
    """Why a second run is refused."""
    return (f"Retention run #{run.id} started {format_local(run.started_at)} by {run.started_by} "
            "is still running; wait for it to finish.")


def _claim_run(started_by: str, user: Any, policies: list[tuple[RecordClass, RetentionPolicy]]
               ) -> RetentionRun:
    """Insert the running run row (committed); the unique partial index refuses a second one."""
    for _attempt in range(2):
        run = RetentionRun(status=RunStatus.RUNNING, started_at=utcnow(), heartbeat_at=utcnow(),
                           started_by=started_by, started_by_id=getattr(user, "id", None),
                           policies={rc.key: _policy_state(p) for rc, p in policies})
        db.session.add(run)
        try:
            db.session.flush()
        except IntegrityError:
            db.session.rollback()
            other = running_run()
            if other is None:
                continue
            if utcnow() - other.heartbeat_at > STALE_AFTER:
                other.status = RunStatus.ABANDONED
                other.finished_at = utcnow()
                other.error = "no progress for 30 minutes: taken over by a new run"
                record("retention.run_abandoned", outcome="failure", object_type="retention_run",
                       object_id=other.id, details={"last_progress": other.heartbeat_at.isoformat(),
                                                    "taken_over_by": started_by},
                       **({} if user is None else {"user": user}))
                db.session.commit()
                continue
            raise RetentionBusy(_busy_message(other)) from None
        record("retention.run_started", object_type="retention_run", object_id=run.id,
               details={"started_by": started_by, "policies": run.policies,
                        "holds": [f"#{h.id} {describe_scope(h)}" for h in active_holds()]},
               **({} if user is None else {"user": user}))
        db.session.commit()
        return run
    raise RetentionBusy("Another retention run is starting; try again in a moment.")


def confirmed_moment(as_of: str | None) -> datetime | None:
    """The moment of a dry run a person confirmed, checked: not in the future, not stale."""
    if not as_of:
        return None
    try:
        moment = datetime.fromisoformat(as_of)
    except ValueError:
        raise RetentionChanged("The dry run you confirmed could not be read; review it again.") from None
    if moment.tzinfo is None or moment > utcnow() + timedelta(minutes=1) \
            or utcnow() - moment > CONFIRMATION_VALID:
        raise RetentionChanged("The dry run you confirmed is too old; review the new dry run and "
                               "confirm again.")
    return moment


def run_retention(started_by: str, user: Any = None, batch_size: int = BATCH_SIZE,
                  expected_digest: str | None = None, as_of: datetime | None = None) -> RunReport:
    """Destroy what has outlived its policy, batch by batch, and record the run (commits).

    With ``expected_digest`` and ``as_of`` (the dry run a person confirmed), cutoffs are
    counted from the dry run's moment, and nothing is destroyed unless the records due then
    are still exactly those: records that aged since are left for the next run, never
    destroyed unseen.
    """
    db.session.rollback()
    if expected_digest is not None and dry_run(batch_size, as_of).digest != expected_digest:
        raise RetentionChanged("The records due for destruction changed since the dry run you "
                               "reviewed; review the new dry run and confirm again.")
    policies = _in_force()
    run = _claim_run(started_by, user, policies)
    run_id = run.id
    retention_audit_events.begin_walk()
    actor = {} if user is None else {"user": user}
    counts: dict[str, int] = {}
    now = as_of or run.started_at
    report = RunReport(dry_run=False, run_id=run_id, as_of=now.isoformat())
    try:
        holds = [hold_scope(h) for h in active_holds()]
        for rc, policy in policies:
            counts[rc.key] = 0

            def purge(ids: list[int], rc: RecordClass = rc) -> None:
                gone = rc.purge(ids)
                record_batch(run_id, rc.key, ids)
                counts[rc.key] += gone
                if rc.key != "audit_events":
                    record("retention.batch_purged", object_type=rc.object_type or rc.key,
                           details={"run_id": run_id, "record_class": rc.key, "count": gone,
                                    "first_id": ids[0], "last_id": ids[-1]}, **actor)
                running = db.session.get(RetentionRun, run_id)
                assert running is not None
                running.heartbeat_at, running.total = utcnow(), sum(counts.values())
                running.counts = dict(counts)
                db.session.commit()

            report.classes.append(_walk_class(rc, policy, now, holds, purge, batch_size))
        class_digests = {c.key: c.digest for c in report.classes}
        report.digest = combined_digest(class_digests)
        run = db.session.get_one(RetentionRun, run_id)
        run.status = RunStatus.COMPLETED
        run.finished_at = utcnow()
        run.counts = {c.key: c.count for c in report.classes}
        run.held_counts = {c.key: c.held for c in report.classes}
        run.class_digests = class_digests
        run.classes = [asdict(c) for c in report.classes]
        run.digest = report.digest
        run.total = report.total
        record("retention.run_completed", object_type="retention_run", object_id=run_id,
               details={"counts": run.counts, "held": run.held_counts,
                        "digest": run.digest, "total": run.total}, **actor)
        notify("audit.retention_run", users_with_roles(Role.COMPLIANCE), Notice(
            subject=f"Retention run #{run_id} finished",
            paragraphs=(f"Retention run #{run_id}, started by {started_by}, finished: {run.total} record(s) "
                        "destroyed under the policies in force.",),
            link_path=f"/retention/runs/{run_id}", link_label="Open the run and its certificate"))
        db.session.commit()
    except Exception as exc:
        db.session.rollback()
        run = db.session.get_one(RetentionRun, run_id)
        run.status = RunStatus.FAILED
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


