"""Imaging retention rules, per-archive deletion settings, study review runs and their studies."""

from __future__ import annotations

from datetime import date, datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, Boolean, Date, ForeignKey, Index, Integer, String, Text, UniqueConstraint, text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from core.auditing import AuditSpec
from core.auth.models import User
from core.extensions import Model
from core.timeutil import UTCDateTime, utcnow
from core.types import EnumText
from inventory.models import Asset
from inventory.studies.rules import Anchor, Period, Rule, RuleKind


class ImagingRule(Model):
    """One imaging retention rule as compliance officers set it; ``modality`` "" applies to all."""

    __tablename__ = "imaging_retention_rule"
    __audit__ = AuditSpec("imaging_rule", lambda r: f"{r.kind}:{r.modality or 'ALL'}")

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    kind: Mapped[RuleKind] = mapped_column(EnumText(RuleKind, 20))
    modality: Mapped[str] = mapped_column(String(16), default="")
    period: Mapped[str] = mapped_column(String(20))  # ISO-8601 duration, P7Y
    anchor: Mapped[Anchor] = mapped_column(EnumText(Anchor, 20), default=Anchor.STUDY_DATE)
    majority_age: Mapped[int | None] = mapped_column(Integer)
    source: Mapped[str] = mapped_column(Text, default="")
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_by_id: Mapped[int | None] = mapped_column(ForeignKey("user_account.id"))

    __table_args__ = (UniqueConstraint("kind", "modality", name="uq_imaging_retention_rule_kind_modality"),)

    def as_rule(self) -> Rule:
        """The pure rule this row stands for."""
        return Rule(self.name, self.kind, Period.parse(self.period), self.modality or None, self.anchor,
                    self.majority_age, self.source)


class DeletionMethod(StrEnum):
    """How studies past retention are removed from an archive."""

    ORTHANC_REST = "orthanc_rest"
    IOCM = "iocm"
    LIST_ONLY = "list_only"


DELETION_METHOD_TEXT = {
    DeletionMethod.ORTHANC_REST: "Orthanc REST API (DELETE /studies/{id})",
    DeletionMethod.IOCM: "IHE IOCM rejection note (113039 Data Retention Policy Expired) by C-STORE",
    DeletionMethod.LIST_ONLY: "List only: the vendor deletes, PACS Desk confirms by C-FIND",
}


class ArchiveSettings(Model):
    """How PACS Desk queries and deletes studies on one PACS archive node."""

    __tablename__ = "study_archive_settings"
    __audit__ = AuditSpec("study_archive", lambda s: s.asset_id)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    asset_id: Mapped[int] = mapped_column(ForeignKey("asset.id"), unique=True)
    method: Mapped[DeletionMethod] = mapped_column(EnumText(DeletionMethod, 20),
                                                   default=DeletionMethod.LIST_ONLY)
    orthanc_url: Mapped[str] = mapped_column(String(300), default="")
    orthanc_username: Mapped[str] = mapped_column(String(120), default="")
    password_file: Mapped[str] = mapped_column(String(500), default="")
    find_limit: Mapped[int | None] = mapped_column(Integer)
    timeout: Mapped[int] = mapped_column(Integer, default=30)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_by_id: Mapped[int | None] = mapped_column(ForeignKey("user_account.id"))

    asset: Mapped[Asset] = relationship(Asset)


class ReviewStatus(StrEnum):
    """Where a study review run is."""

    PENDING = "pending"  # listing the archive, then waiting for approval
    APPROVED = "approved"
    EXECUTING = "executing"
    DONE = "done"
    FAILED = "failed"
    EXPIRED = "expired"


ACTIVE_REVIEW = (ReviewStatus.PENDING, ReviewStatus.APPROVED, ReviewStatus.EXECUTING)


class StudyReview(Model):
    """One review of an archive's studies past retention, its approval and its execution."""

    __tablename__ = "study_review"
    __audit__ = AuditSpec("study_review", lambda r: r.id, bookkeeping=frozenset({"progress", "stage"}))

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    asset_id: Mapped[int] = mapped_column(ForeignKey("asset.id"))
    status: Mapped[ReviewStatus] = mapped_column(EnumText(ReviewStatus, 20), default=ReviewStatus.PENDING)
    started_by_id: Mapped[int | None] = mapped_column(ForeignKey("user_account.id"))
    started_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    listed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    as_of: Mapped[date | None] = mapped_column(Date)
    approved_by_id: Mapped[int | None] = mapped_column(ForeignKey("user_account.id"))
    approved_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    executed_by_id: Mapped[int | None] = mapped_column(ForeignKey("user_account.id"))
    executed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    method: Mapped[DeletionMethod | None] = mapped_column(EnumText(DeletionMethod, 20))
    rules: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)  # rules in force
    holds: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)  # holds in force
    studies_seen: Mapped[int] = mapped_column(Integer, default=0)
    flagged: Mapped[dict[str, int]] = mapped_column(JSON, default=dict)  # flag -> studies
    error: Mapped[str | None] = mapped_column(Text)
    progress: Mapped[int] = mapped_column(Integer, default=0)
    stage: Mapped[str] = mapped_column(String(200), default="")

    asset: Mapped[Asset] = relationship(Asset)
    started_by: Mapped[User | None] = relationship(User, foreign_keys=[started_by_id])
    approved_by: Mapped[User | None] = relationship(User, foreign_keys=[approved_by_id])
    executed_by: Mapped[User | None] = relationship(User, foreign_keys=[executed_by_id])

    __table_args__ = (
        # One review in progress per archive, across every replica: the database refuses a second.
        Index("uq_study_review_one_active", "asset_id", unique=True,
              sqlite_where=text("status IN ('pending', 'approved', 'executing')"),
              postgresql_where=text("status IN ('pending', 'approved', 'executing')")),
        Index("ix_study_review_started_at", "started_at"),
    )


class ItemOutcome(StrEnum):
    """What execution did with one study."""

    DESTROYED = "destroyed"  # deleted and confirmed gone by C-FIND
    STILL_PRESENT = "still_present"  # the deletion was sent but the archive still answers for it
    NOW_HELD = "now_held"
    NOT_EXPIRED = "not_expired"
    CHANGED = "changed"  # the study differs from what was reviewed
    ALREADY_GONE = "already_gone"
    FAILED = "failed"


class StudyReviewItem(Model):
    """A study a review found past retention: expired (may be destroyed) or spared by a hold."""

    __tablename__ = "study_review_item"
    __audit__ = AuditSpec("study_review", lambda i: i.review_id)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    review_id: Mapped[int] = mapped_column(ForeignKey("study_review.id"), index=True)
    study_uid: Mapped[str] = mapped_column(String(64))
    patient_id: Mapped[str] = mapped_column(String(200), default="")
    accession_number: Mapped[str] = mapped_column(String(200), default="")
    study_date: Mapped[date] = mapped_column(Date)
    birth_date: Mapped[date | None] = mapped_column(Date)
    modalities: Mapped[str] = mapped_column(String(100), default="")
    instance_count: Mapped[int | None] = mapped_column(Integer)
    rule: Mapped[str] = mapped_column(String(200))
    anchor_date: Mapped[date] = mapped_column(Date)
    keep_until: Mapped[date] = mapped_column(Date)
    age: Mapped[int | None] = mapped_column(Integer)
    held: Mapped[bool] = mapped_column(Boolean, default=False)
    held_by: Mapped[str] = mapped_column(Text, default="")
    flags: Mapped[str] = mapped_column(String(200), default="")
    approved: Mapped[bool] = mapped_column(Boolean, default=False)
    outcome: Mapped[ItemOutcome | None] = mapped_column(EnumText(ItemOutcome, 20))
    outcome_detail: Mapped[str] = mapped_column(Text, default="")

    __table_args__ = (UniqueConstraint("review_id", "study_uid", name="uq_study_review_item_study"),)

    @property
    def modality(self) -> str:
        """The first modality of the study, for counts ("" when none)."""
        return self.modalities.split("\\")[0] if self.modalities else ""
