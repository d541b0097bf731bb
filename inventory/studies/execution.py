"""Executing an approved study review: re-check each study, delete it through the archive, confirm.

Each approved study is asked for again (C-FIND by its UID, and the patient's other studies so the
last-study and mammography rules see what they count from); it is deleted only if it is still past
retention under the rules in force today, under no hold, and unchanged since the review. The
deletion goes through the archive's own interface (Orthanc's REST API, an IOCM rejection note,
or nobody for "list only"), then a C-FIND confirms the study is gone: a study still there is
reported, never counted as destroyed. Network waits happen outside transactions; outcomes are
committed in batches, each with its audit event. Logs and messages never name a patient.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from sqlalchemy import select

from audit import record
from core.auth.permissions import Permission, has_permission
from core.database import outside_transaction
from core.extensions import db
from core.jobs.queue import enqueue
from core.timeutil import utcnow
from inventory.studies import services
from inventory.studies.dimse import STUDY_ROOT_FIND, Archive, ArchiveError, connect
from inventory.studies.iocm import (
    StudyNotFound,
    build_rejection_note,
    list_study_instances,
    send_rejection_note,
)
from inventory.studies.models import (
    DeletionMethod,
    ItemOutcome,
    ReviewStatus,
    StudyReview,
    StudyReviewItem,
)
from inventory.studies.orthanc import OrthancAuthError, OrthancClient, OrthancError
from inventory.studies.query import study_exists
from inventory.studies.records import StudyRecord, put, raw_text, study_from_identifier, study_identifier
from inventory.studies.review import ReviewExpired, expire_if_due, local_today
from inventory.studies.rules import Hold, Rule, evaluate
from inventory.studies.services import StudyError

log = logging.getLogger(__name__)

EXECUTE_JOB = "studies.execute"
BATCH = 50

# Audit actions recorded here (registered by the package's init_app).
AUDIT_ACTIONS = {
    "studies.execution_started": "Execution of an approved imaging study review started",
    "studies.destroyed": "Imaging studies destroyed on the archive under the retention schedule",
    "studies.execution_finished": "Execution of an imaging study review finished",
}


class StopExecution(Exception):
    """A failure that makes every further deletion on this archive fail the same way (credentials)."""


def request_execution(review_id: int, user: Any, now: datetime | None = None) -> StudyReview:
    """Queue the execution of an approved review (flushes, audits); refuses a lapsed approval."""
    review = db.session.get(StudyReview, review_id)
    if review is None:
        raise StudyError(f"review: there is no study review #{review_id}", "review")
    if not has_permission(user, Permission.ASSET_MANAGE):
        raise StudyError("review: only a technician or an administrator executes a study review", "review")
    if expire_if_due(review, now):
        raise ReviewExpired(f"review: the approval of #{review.id} expired; start and approve a new review",
                            "review")
    if review.status is not ReviewStatus.APPROVED:
        raise StudyError(f"review: #{review.id} is {review.status}; only an approved review can be executed",
                         "review")
    review.status, review.executed_by_id = ReviewStatus.EXECUTING, user.id
    review.executed_at = now or utcnow()
    review.stage, review.progress = "Waiting to delete", 0
    db.session.flush()
    record("studies.execution_started", object_type="study_review", object_id=review.id, user=user,
           details={"method": str(review.method or DeletionMethod.LIST_ONLY)})
    enqueue(EXECUTE_JOB, {"review_id": review.id}, user_id=user.id, dedup_key=f"study-execute:{review.id}",
            title=f"Execute study review #{review.id}")
    return review


@dataclass(frozen=True)
class Target:
    """One approved study as reviewed (plain values, so the network work needs no session)."""

    item_id: int
    study_uid: str
    patient_id: str
    study_date: date
    modalities: str
    instance_count: int | None


def _unchanged(target: Target, now: StudyRecord) -> bool:
    """Whether the archive describes the study as it did at the review."""
    return (now.study_date == target.study_date and now.patient_id == target.patient_id
            and "\\".join(now.modalities) == target.modalities
            and now.instance_count == target.instance_count)


def _patient_studies(archive: Archive, target: Target, today: date) -> list[StudyRecord] | None:
    """The study and the patient's other studies on the archive now; None when the study is gone."""
    with connect(archive, [STUDY_ROOT_FIND]) as connection:
        answer = connection.find(study_identifier(study_uid=target.study_uid))
        found = [study_from_identifier(m, today) for m in answer.matches
                 if raw_text(m, "StudyInstanceUID") == target.study_uid]
        if not found:
            return None
        others: list[StudyRecord] = []
        pid = found[0].patient_id
        if pid and not any(c in pid for c in "\\*?"):
            keys = study_identifier()
            put(keys, "PatientID", pid)
            patient = connection.find(keys)
            if patient.truncated:
                raise StudyError("the archive cut the list of the patient's studies short, so the "
                                 "patient's later studies cannot be taken into account", "review")
            others = [s for s in (study_from_identifier(m, today) for m in patient.matches)
                      if s.study_uid != target.study_uid]
    return [found[0], *others]


def recheck(archive: Archive, target: Target, rules: list[Rule], holds: list[Hold],
            today: date) -> tuple[ItemOutcome | None, str]:
    """Whether the study may still be destroyed: (None, "") or the outcome that spares it, and why."""
    try:
        studies = _patient_studies(archive, target, today)
    except StudyError as error:
        return ItemOutcome.FAILED, str(error)
    if studies is None:
        return ItemOutcome.ALREADY_GONE, "the archive no longer has the study"
    if not _unchanged(target, studies[0]):
        return ItemOutcome.CHANGED, ("the study's date, patient, modalities or instance count changed "
                                     "since the review")
    decision = evaluate(studies, rules, today, holds)[0]
    if decision.held_by:
        return ItemOutcome.NOW_HELD, f"now under {', '.join(decision.held_by)}"
    if not decision.overdue:
        return ItemOutcome.NOT_EXPIRED, f"kept until {decision.keep_until} under the rules in force"
    return None, ""


def delete(archive: Archive, method: DeletionMethod, client: OrthancClient | None, target: Target) -> str:
    """Ask the archive to delete the study; what was done (raises ArchiveError or OrthancError)."""
    if method is DeletionMethod.ORTHANC_REST:
        assert client is not None
        orthanc_id = client.find_study(target.study_uid)
        if orthanc_id is None:
            return "Orthanc had no such study"
        client.delete_study(orthanc_id)
        return "deleted through Orthanc's REST API"
    if method is DeletionMethod.IOCM:
        contents = list_study_instances(archive, target.study_uid)
        note = build_rejection_note(contents, description="Retention period expired: approved study review")
        send_rejection_note(archive, note)
        return f"rejection note sent for {contents.instance_count} instance(s)"
    return "left for the archive's vendor to delete (list only)"


def process(archive: Archive, method: DeletionMethod, client: OrthancClient | None, target: Target,
            rules: list[Rule], holds: list[Hold], today: date) -> tuple[ItemOutcome, str]:
    """Re-check, delete and confirm one study; its outcome and the reason (network, no session)."""
    try:
        spared, why = recheck(archive, target, rules, holds, today)
        vendor_deleted = spared is ItemOutcome.ALREADY_GONE and method is DeletionMethod.LIST_ONLY
        if spared is not None and not vendor_deleted:
            return spared, why
        done = why if spared is not None else delete(archive, method, client, target)
        if study_exists(archive, target.study_uid):
            return ItemOutcome.STILL_PRESENT, f"{done}, but the archive still answers a C-FIND for the study"
        return ItemOutcome.DESTROYED, f"{done}; a C-FIND confirms it is gone"
    except OrthancAuthError as error:
        raise StopExecution(str(error)) from None
    except StudyNotFound:
        return ItemOutcome.ALREADY_GONE, "the archive no longer has the study"
    except (OrthancError, ArchiveError, ValueError) as error:
        return ItemOutcome.FAILED, str(error)


def _save(review_id: int, results: list[tuple[int, ItemOutcome, str]], user: Any) -> None:
    """Store a batch of outcomes with its audit event (commits)."""
    destroyed = []
    for item_id, outcome, detail in results:
        item = db.session.get(StudyReviewItem, item_id)
        assert item is not None
        item.outcome, item.outcome_detail = outcome, detail[:1000]
        if outcome is ItemOutcome.DESTROYED:
            destroyed.append(item.study_uid)
    db.session.flush()
    record("studies.destroyed", object_type="study_review", object_id=review_id, user=user,
           details={"outcomes": dict(Counter(str(o) for _, o, _ in results)),
                    "destroyed_study_uids": destroyed})
    db.session.commit()


def run_execution(review_id: int, report: Callable[[int, str], None] | None = None) -> StudyReview:
    """Execute an approved review: every approved study re-checked, deleted, confirmed (commits)."""
    review = db.session.get(StudyReview, review_id)
    if review is None or review.status is not ReviewStatus.EXECUTING:
        raise StudyError(f"review: #{review_id} is not being executed", "review")
    user = review.executed_by
    settings = services.settings_for(review.asset_id)
    method = settings.method if settings else DeletionMethod.LIST_ONLY
    archive = services.archive_of(review.asset, settings)
    rules, holds = services.rules_in_force(), [h for _, h in services.study_holds()]
    today = local_today()
    targets = [Target(i.id, i.study_uid, i.patient_id, i.study_date, i.modalities, i.instance_count)
               for i in db.session.scalars(select(StudyReviewItem).where(
                   StudyReviewItem.review_id == review_id, StudyReviewItem.approved.is_(True),
                   StudyReviewItem.outcome.is_(None)).order_by(StudyReviewItem.id))]
    error: str | None = None
    try:
        client = services.orthanc_of(settings) if settings and method is DeletionMethod.ORTHANC_REST else None
    except (StudyError, ValueError) as problem:
        client, error = None, f"The Orthanc settings cannot be used: {problem}"
    db.session.commit()
    done = 0
    while error is None and done < len(targets):
        batch = targets[done:done + BATCH]
        results = []
        with outside_transaction():
            for target in batch:
                try:
                    outcome, detail = process(archive, method, client, target, rules, holds, today)
                except StopExecution as stop:
                    error = f"Stopped: {stop}. Studies not yet processed were left as they are."
                    break
                results.append((target.item_id, outcome, detail))
        if results:
            _save(review_id, results, user)
        done += len(batch)
        percent = int(100 * done / max(len(targets), 1))
        if report is not None:
            report(percent, f"{done} of {len(targets)} studies processed")
    review = db.session.get(StudyReview, review_id)
    assert review is not None
    outcomes = Counter(str(i.outcome) for i in db.session.scalars(
        select(StudyReviewItem).where(StudyReviewItem.review_id == review_id,
                                      StudyReviewItem.approved.is_(True))))
    review.status = ReviewStatus.FAILED if error else ReviewStatus.DONE
    review.error, review.finished_at = error, utcnow()
    review.progress, review.stage = 100, "Failed" if error else "Done"
    db.session.flush()
    record("studies.execution_finished", object_type="study_review", object_id=review.id, user=user,
           outcome="failure" if error else "success", details={"outcomes": dict(outcomes), "error": error})
    db.session.commit()
    if error:
        log.warning("study review %s stopped: %s", review_id, error)
    return review
