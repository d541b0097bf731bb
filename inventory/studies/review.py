"""Study review runs: list an archive's studies past retention, approve them, expire approvals.

A review is started by one person and listed by a job (the archive is walked outside any
transaction); a compliance officer who did not start it approves all or some of its studies;
the approval lapses after ``PACSDESK_STUDY_RETENTION_APPROVAL_DAYS``. Nothing is deleted here
(see ``inventory.studies.execution``). Messages and logs never name a patient.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

from flask import current_app
from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError

from audit import record
from core.auth.permissions import Permission, has_permission
from core.database import outside_transaction
from core.extensions import db
from core.jobs.models import ACTIVE as ACTIVE_JOB
from core.jobs.models import Job
from core.jobs.queue import enqueue
from core.timeutil import to_local, utcnow
from inventory.models import Asset
from inventory.studies import services
from inventory.studies.dimse import ArchiveError
from inventory.studies.models import (
    ACTIVE_REVIEW,
    ReviewStatus,
    StudyReview,
    StudyReviewItem,
)
from inventory.studies.query import WalkInterrupted, walk_studies
from inventory.studies.records import StudyRecord
from inventory.studies.rules import Decision, Rule, evaluate
from inventory.studies.services import StudyError

log = logging.getLogger(__name__)

REVIEW_JOB = "studies.review"
WALK_FROM = date(1980, 1, 1)
BATCH = 500

# Audit actions recorded here (registered by the package's init_app).
AUDIT_ACTIONS = {
    "studies.review_started": "Imaging study review started",
    "studies.review_listed": "Imaging studies past retention listed",
    "studies.review_failed": "Imaging study review failed",
    "studies.review_approved": "Imaging study review approved",
    "studies.review_expired": "Imaging study review approval expired",
}


def local_today() -> date:
    """Today in the configured time zone."""
    local = to_local(utcnow())
    assert local is not None
    return local.date()


def active_review(asset_id: int) -> StudyReview | None:
    """The archive's review that is pending, approved or executing, if any."""
    return db.session.execute(select(StudyReview).where(StudyReview.asset_id == asset_id,
                                                        StudyReview.status.in_(ACTIVE_REVIEW))
                              ).scalar_one_or_none()


def _busy(review: StudyReview) -> StudyError:
    """The refusal of a second review of one archive."""
    return StudyError(f"archive: review #{review.id} of this archive is {review.status}; finish, "
                      "execute or let it expire before starting another", "archive")


def _orphaned(review: StudyReview) -> bool:
    """Whether a pending review was never listed and no job is left to list it."""
    if review.status is not ReviewStatus.PENDING or review.listed_at is not None:
        return False
    return db.session.execute(select(Job.id).where(Job.dedup_key == _dedup_key(review.id),
                                                   Job.status.in_(ACTIVE_JOB))).first() is None


def _dedup_key(review_id: int) -> str:
    """The listing job's deduplication key."""
    return f"study-review:{review_id}"


def start_review(asset_id: int, user: Any, as_of: date | None = None) -> StudyReview:
    """Open a review of the archive and queue its listing job (flushes, audits); one at a time."""
    asset = db.session.get(Asset, asset_id)
    if asset is None:
        raise StudyError(f"archive: there is no asset #{asset_id}", "archive")
    services.check_archive(asset)
    busy = active_review(asset_id)
    if busy is not None and _orphaned(busy):
        fail_review(busy.id, "The listing job ended without listing the archive (the worker stopped); "
                             "nothing was listed for approval.")
        busy = None
    if busy is not None:
        raise _busy(busy)
    settings = services.settings_for(asset_id)
    review = StudyReview(asset_id=asset_id, status=ReviewStatus.PENDING,
                         started_by_id=getattr(user, "id", None), started_at=utcnow(),
                         as_of=as_of or local_today(),
                         method=settings.method if settings else None, stage="Waiting to list the archive",
                         rules=[services.rule_state(r) for r in services.rules_in_force()],
                         holds=[services.hold_state(h) for h, _ in services.study_holds()])
    db.session.add(review)
    try:
        db.session.flush()
    except IntegrityError:
        db.session.rollback()  # another replica started one between the check and the insert
        busy = active_review(asset_id)
        raise (_busy(busy) if busy else StudyError("archive: another review was just started", "archive")
               ) from None
    record("studies.review_started", object_type="study_review", object_id=review.id, user=user,
           details={"archive": asset.asset_tag, "as_of": review.as_of.isoformat() if review.as_of else None,
                    "rules": len(review.rules), "holds": len(review.holds)})
    enqueue(REVIEW_JOB, {"review_id": review.id}, user_id=getattr(user, "id", None),
            dedup_key=_dedup_key(review.id), title=f"Study review #{review.id} of {asset.asset_tag}")
    return review


@dataclass(frozen=True)
class Listing:
    """What the rules say about an archive's studies: every decision and what the walk saw."""

    decisions: list[Decision]
    studies_seen: int
    complete: bool

    @property
    def overdue(self) -> list[Decision]:
        """Decisions past retention, held or not."""
        return [d for d in self.decisions if d.overdue]

    @property
    def flagged(self) -> dict[str, int]:
        """How many studies carry each flag."""
        return dict(Counter(str(f) for d in self.decisions for f in d.flags))


def list_past_retention(asset: Asset, today: date, progress: Callable[[float], None] | None = None,
                        rules: list[Rule] | None = None) -> Listing:
    """Walk the archive and decide every study under ``rules`` (default: those in force) and the holds."""
    archive = services.archive_of(asset, services.settings_for(asset.id))
    rules = services.rules_in_force() if rules is None else rules
    holds = [h for _, h in services.study_holds()]
    with outside_transaction():
        result = walk_studies(archive, WALK_FROM, max(today, WALK_FROM), today=today, on_progress=progress)
    decisions = evaluate(result.studies, rules, today, holds)
    return Listing(decisions, len(result.studies), result.complete)


def _item(review_id: int, decision: Decision) -> StudyReviewItem:
    """The stored line of one overdue study."""
    study: StudyRecord = decision.study
    assert study.study_date is not None and decision.rule is not None
    assert decision.anchor_date is not None and decision.keep_until is not None
    return StudyReviewItem(
        review_id=review_id, study_uid=study.study_uid, patient_id=study.patient_id,
        accession_number=study.accession_number, study_date=study.study_date, birth_date=study.birth_date,
        modalities="\\".join(study.modalities), instance_count=study.instance_count,
        rule=decision.rule.name, anchor_date=decision.anchor_date, keep_until=decision.keep_until,
        age=decision.age, held=bool(decision.held_by), held_by=", ".join(decision.held_by),
        flags=",".join(str(f) for f in decision.flags))


def _set_progress(review_id: int, percent: int, stage: str) -> None:
    """Write a review's progress in a short transaction of its own (bookkeeping, no event)."""
    with db.engine.begin() as connection:
        connection.execute(update(StudyReview).where(StudyReview.id == review_id)
                           .values(progress=percent, stage=stage))


def fail_review(review_id: int, message: str) -> None:
    """Mark a review failed with the reason (flushes, audits)."""
    review = db.session.get(StudyReview, review_id)
    assert review is not None
    review.status, review.error, review.finished_at = ReviewStatus.FAILED, message, utcnow()
    review.stage = "Failed"
    db.session.flush()
    record("studies.review_failed", object_type="study_review", object_id=review.id, user=None,
           outcome="failure", details={"error": message})


def run_listing(review_id: int, report: Callable[[int, str], None] | None = None) -> StudyReview:
    """List the review's archive and store its studies past retention (commits; network outside)."""
    review = db.session.get(StudyReview, review_id)
    if review is None or review.status is not ReviewStatus.PENDING or review.listed_at is not None:
        raise StudyError(f"review: #{review_id} is not waiting to be listed", "review")
    asset = review.asset
    today = review.as_of or local_today()
    rules = [services.rule_from_state(state) for state in review.rules]  # those shown when it started

    def progress(fraction: float) -> None:
        percent = int(5 + 85 * fraction)
        _set_progress(review_id, percent, "Listing the archive's studies")
        if report is not None:
            report(percent, "Listing the archive's studies")

    db.session.commit()
    try:
        listing = list_past_retention(asset, today, progress, rules)
    except WalkInterrupted as error:
        db.session.rollback()
        log.warning("study review %s: archive listing interrupted at %.0f%%", review_id, error.fraction * 100)
        fail_review(review_id, f"The archive stopped answering half-way, so nothing was listed for approval: "
                               f"{error}. Start a new review when the archive answers again.")
        db.session.commit()
        raise
    except ArchiveError as error:
        db.session.rollback()
        fail_review(review_id, f"The archive could not be listed: {error}")
        db.session.commit()
        raise
    review = db.session.get(StudyReview, review_id)
    assert review is not None
    if not listing.complete:
        fail_review(review_id, "The archive cut some answers short even for one second of studies, so the "
                               "list would be incomplete; raise its query limit for PACS Desk.")
        db.session.commit()
        return review
    overdue = listing.overdue
    for start in range(0, len(overdue), BATCH):
        db.session.add_all(_item(review_id, d) for d in overdue[start:start + BATCH])
        db.session.flush()
    review.listed_at, review.studies_seen, review.flagged = utcnow(), listing.studies_seen, listing.flagged
    review.holds = [services.hold_state(h) for h, _ in services.study_holds()]  # those applied
    review.progress, review.stage = 100, "Waiting for approval"
    db.session.flush()
    held = sum(1 for d in overdue if d.held_by)
    record("studies.review_listed", object_type="study_review", object_id=review_id, user=None,
           details={"archive": asset.asset_tag, "studies": listing.studies_seen,
                    "past_retention": len(overdue) - held, "held": held, "flagged": listing.flagged})
    db.session.commit()
    return review


def items(review_id: int) -> list[StudyReviewItem]:
    """A review's studies, oldest first."""
    return list(db.session.scalars(select(StudyReviewItem).where(StudyReviewItem.review_id == review_id)
                                   .order_by(StudyReviewItem.study_date, StudyReviewItem.id)))


def counts_by_modality_year(rows: Sequence[StudyReviewItem]) -> list[tuple[str, int, int]]:
    """(modality, study year, studies), sorted."""
    counted = Counter((row.modality or "-", row.study_date.year) for row in rows)
    return sorted((modality, year, n) for (modality, year), n in counted.items())


class ReviewExpired(StudyError):
    """The review's approval lapsed; the review was marked expired (commit to keep that)."""


def expire_if_due(review: StudyReview, now: datetime | None = None) -> bool:
    """Mark an approved review expired once its approval lapsed (flushes, audits); whether it did."""
    moment = now or utcnow()
    lapsed = review.expires_at is not None and moment > review.expires_at
    if review.status is ReviewStatus.APPROVED and lapsed:
        review.status, review.finished_at, review.stage = ReviewStatus.EXPIRED, moment, "Approval expired"
        db.session.flush()
        record("studies.review_expired", object_type="study_review", object_id=review.id, user=None,
               details={"approved_at": review.approved_at.isoformat() if review.approved_at else None,
                        "expired_at": review.expires_at.isoformat() if review.expires_at else None})
        return True
    return False


def approve_review(review_id: int, user: Any, study_uids: Collection[str] | None = None,
                   now: datetime | None = None) -> StudyReview:
    """Approve the destruction of all (``study_uids`` None) or some listed studies (flushes, audits)."""
    review = db.session.get(StudyReview, review_id)
    if review is None:
        raise StudyError(f"review: there is no study review #{review_id}", "review")
    if not has_permission(user, Permission.RETENTION_MANAGE):
        raise StudyError("review: only a compliance officer approves a study review", "review")
    if review.status is not ReviewStatus.PENDING or review.listed_at is None:
        raise StudyError(f"review: #{review.id} is {review.status}"
                         f"{'' if review.listed_at else ' and not listed yet'}; only a listed, pending "
                         "review can be approved", "review")
    if review.started_by_id is not None and review.started_by_id == getattr(user, "id", None):
        raise StudyError("review: the person who started a review cannot approve it; ask another "
                         "compliance officer", "review")
    candidates = {row.study_uid: row for row in items(review_id) if not row.held}
    chosen = set(candidates) if study_uids is None else {uid.strip() for uid in study_uids}
    unknown = chosen - set(candidates)
    if unknown:
        raise StudyError(f"studies: {len(unknown)} of the chosen studies are not in this review's list "
                         "(or are held)", "studies")
    if not chosen:
        raise StudyError("studies: choose at least one study to approve", "studies")
    for uid in chosen:
        candidates[uid].approved = True
    moment = now or utcnow()
    days = current_app.config["PACSDESK_STUDY_RETENTION_APPROVAL_DAYS"]
    review.status, review.approved_by_id, review.approved_at = ReviewStatus.APPROVED, user.id, moment
    review.expires_at, review.stage = moment + timedelta(days=days), "Approved, waiting for execution"
    db.session.flush()
    record("studies.review_approved", object_type="study_review", object_id=review.id, user=user,
           details={"approved": len(chosen), "listed": len(candidates), "valid_days": days,
                    "expires_at": review.expires_at.isoformat()})
    return review


def recent_reviews(limit: int = 50) -> list[StudyReview]:
    """The latest reviews, newest first."""
    return list(db.session.scalars(select(StudyReview).order_by(StudyReview.id.desc()).limit(limit)))
