"""Training completions: recorded with attestation and certificate, kept as history, retained 6 years."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import IO

from flask import current_app
from sqlalchemy import exists, insert, select
from sqlalchemy.orm import aliased

from audit.retention.described import Condition, Described
from audit.trail.chain import record, record_each
from audit.training.models import TrainingAssignment, TrainingCompletion
from audit.training.services import ATTESTATION, OFFICER_ATTESTATION, TrainingError, local_today
from core.auth.models import User
from core.extensions import db
from core.filenames import clean_file_name
from core.timeutil import to_local, utcnow

CERTIFICATE_TYPES = {".pdf": ("application/pdf", b"%PDF-"), ".png": ("image/png", b"\x89PNG\r\n\x1a\n"),
                     ".jpg": ("image/jpeg", b"\xff\xd8\xff"), ".jpeg": ("image/jpeg", b"\xff\xd8\xff")}

# Audit actions recorded here (registered by the package's init_app).
AUDIT_ACTIONS = {"training.completed": "Training completion recorded",
                  "training.certificate_downloaded": "Training certificate downloaded"}


@dataclass(frozen=True)
class Certificate:
    """An uploaded certificate file."""

    filename: str
    stream: IO[bytes]


@dataclass(frozen=True)
class NewCompletion:
    """A completion as entered."""

    assignment_id: int
    completed_on: date | None
    score: int | None
    attested: bool
    certificate: Certificate | None = None


def _read_certificate(cert: Certificate) -> tuple[bytes, str, str]:
    """Check a certificate upload; returns (content, original name, content type)."""
    name = clean_file_name(cert.filename or "", "certificate")
    ext = os.path.splitext(name)[1].lower()
    if ext not in CERTIFICATE_TYPES:
        raise TrainingError("Certificate: a PDF, PNG or JPEG file.", "certificate")
    content_type, magic = CERTIFICATE_TYPES[ext]
    limit = current_app.config["PACSDESK_MAX_UPLOAD_MB"] * 1024 * 1024
    data = cert.stream.read(limit + 1)
    if len(data) > limit:
        raise TrainingError(f"Certificate: larger than {current_app.config['PACSDESK_MAX_UPLOAD_MB']} MB.",
                            "certificate")
    if not data.startswith(magic):
        raise TrainingError(f"Certificate: the file is not a real {ext[1:].upper()} file.", "certificate")
    return data, name[:200], content_type


def record_completion(new: NewCompletion, actor: User, on_behalf_allowed: bool) -> TrainingCompletion:
    """Record a completion for the actor's own assignment, or any with ``on_behalf_allowed``.

    A trainee cannot date their own completion before their account existed; an officer
    recording for someone else may (back-loading training done before the account).
    """
    assignment = db.session.get(TrainingAssignment, new.assignment_id)
    if assignment is None or (assignment.user_id != actor.id and not on_behalf_allowed):
        raise TrainingError("There is no such training assignment.")
    if not new.attested:
        raise TrainingError("Tick the attestation to confirm the training was completed.", "attested")
    if new.completed_on is None:
        raise TrainingError("Give the date the training was completed.", "completed_on")
    check_completion_date(new.completed_on)
    joined = to_local(assignment.user.created_at).date()
    if assignment.user_id == actor.id and new.completed_on < joined:
        raise TrainingError(f"Completion date is before {assignment.user.username}'s account existed "
                            f"({joined.isoformat()}).", "completed_on")
    if new.score is not None and not 0 <= new.score <= 100:
        raise TrainingError("Score: a whole number from 0 to 100.", "score")
    certificate = _read_certificate(new.certificate) if new.certificate is not None else None
    return add_completion(assignment, new.completed_on, actor, score=new.score, certificate=certificate)


def check_completion_date(completed_on: date) -> None:
    """Refuse a completion dated after today (local time)."""
    if completed_on > local_today():
        raise TrainingError("Completion date cannot be in the future.", "completed_on")


def attestation_for(trainee_id: int, actor: User) -> str:
    """The trainee's own words when they record it; the officer's report of them otherwise."""
    return ATTESTATION if trainee_id == actor.id else OFFICER_ATTESTATION


def add_completion(assignment: TrainingAssignment, completed_on: date, actor: User, *,
                   score: int | None = None, certificate: tuple[bytes, str, str] | None = None,
                   session_id: int | None = None, notes: str = "") -> TrainingCompletion:
    """Add one checked completion with its attestation and its audit event (flushes)."""
    [completion] = add_completions([CompletionEntry(assignment, completed_on, notes, score, certificate)],
                                   actor, session_id=session_id)
    return completion


@dataclass(frozen=True)
class CompletionEntry:
    """One checked completion to add: whose assignment, the day, and what came with it."""

    assignment: TrainingAssignment
    completed_on: date
    notes: str = ""
    score: int | None = None
    certificate: tuple[bytes, str, str] | None = None  # content, name as uploaded, content type


def add_completions(entries: Sequence[CompletionEntry], actor: User, *,
                    session_id: int | None = None) -> list[TrainingCompletion]:
    """Add checked completions with their attestations, each with its own audit event, in one insert."""
    if not entries:
        return []
    now = utcnow()
    completions = list(db.session.scalars(
        insert(TrainingCompletion).returning(TrainingCompletion, sort_by_parameter_order=True), [{
            "assignment_id": e.assignment.id, "user_id": e.assignment.user_id,
            "course_id": e.assignment.course_id, "completed_on": e.completed_on, "score": e.score,
            "attestation": attestation_for(e.assignment.user_id, actor), "attested_at": now,
            "certificate_name": e.certificate[1] if e.certificate else None,
            "certificate_type": e.certificate[2] if e.certificate else None,
            "certificate_data": e.certificate[0] if e.certificate else None,
            "certificate_size": len(e.certificate[0]) if e.certificate else None,
            "recorded_by_id": actor.id, "recorded_at": now, "session_id": session_id, "notes": e.notes}
            for e in entries]))
    record_each("training.completed", "training_completion", [
        (completion.id, {"username": e.assignment.user.username, "course": e.assignment.course.title,
                         "completed_on": e.completed_on.isoformat(), "score": e.score,
                         "on_behalf": e.assignment.user_id != actor.id,
                         "certificate": e.certificate[1] if e.certificate else None,
                         "session": session_id, "notes": e.notes or None})
        for completion, e in zip(completions, entries, strict=True)], user=actor)
    return completions


def record_certificate_download(completion: TrainingCompletion) -> None:
    """Audit that the current user downloaded a completion's certificate."""
    record("training.certificate_downloaded", object_type="training_completion", object_id=completion.id,
           details={"certificate": completion.certificate_name, "user_id": completion.user_id})


def completion_history(assignment_id: int) -> list[TrainingCompletion]:
    """Every completion of an assignment, newest first."""
    return list(db.session.execute(
        select(TrainingCompletion).where(TrainingCompletion.assignment_id == assignment_id)
        .order_by(TrainingCompletion.completed_on.desc(), TrainingCompletion.id.desc())).scalars())


def _superseded() -> list[Condition]:
    """Completions a later completion of the same assignment replaced.

    The latest completion is the record still in effect, so it is kept whatever its age
    (164.316(b)(2) counts from "the date when it last was in effect").
    """
    later = aliased(TrainingCompletion)
    return [exists().where(later.assignment_id == TrainingCompletion.assignment_id,
                           later.completed_on > TrainingCompletion.completed_on)]


def _of_user(username: str) -> Condition:
    """The completions of this user."""
    return TrainingCompletion.user_id == select(User.id).where(User.username == username).scalar_subquery()


def _local_date(moment: datetime) -> date:
    """The local calendar day of ``moment``: completions are dated, not timed."""
    return to_local(moment).date()


RETENTION_CLASS = Described(
    key="training_records", object_type="training_completion",
    label="Training records (superseded completions)", model=TrainingCompletion,
    anchors={"completed": TrainingCompletion.completed_on}, default_years=6, floor_years=6,
    floor_rule="45 CFR 164.316(b)(2) (keep documentation 6 years)",
    belongs=_superseded, held_by={"user": _of_user}, as_column_value=_local_date)
