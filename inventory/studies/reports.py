"""The certificate of destruction of an executed study review (a report kind)."""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Iterable
from typing import Any

from audit.reports.registry import Progress, ReportContent, ReportError, ReportKind, ReportRequest
from core.auth.models import User
from core.auth.permissions import Permission
from core.extensions import db
from core.timeutil import format_local
from inventory.studies.models import (
    DELETION_METHOD_TEXT,
    DeletionMethod,
    ItemOutcome,
    ReviewStatus,
    StudyReview,
)
from inventory.studies.review import counts_by_modality_year, items
from inventory.studies.services import mask

CERTIFICATE_KIND = "study_destruction"
STAMP = "%Y-%m-%d %H:%M %Z"


def uid_digest(uids: Iterable[str]) -> str:
    """SHA-256 (hex) of the Study Instance UIDs sorted, one per line, each line ending in a newline."""
    digest = hashlib.sha256()
    for uid in sorted(uids):
        digest.update(uid.encode("ascii") + b"\n")
    return digest.hexdigest()


def _review(run_id: int | None) -> StudyReview:
    """The review, or a clear error."""
    found = db.session.get(StudyReview, run_id) if run_id is not None else None
    if found is None:
        raise ReportError(f"There is no study review #{run_id}.", "run_id")
    return found


def validate_review(request: ReportRequest) -> None:
    """Refuse a review that was not executed (nothing was destroyed to certify)."""
    found = _review(request.run_id)
    if found.executed_at is None or found.status not in (ReviewStatus.DONE, ReviewStatus.FAILED):
        raise ReportError(f"Study review #{found.id} is {found.status} and was not executed; its certificate "
                          "can be issued once its execution ends.", "run_id")


def _person(user: User | None) -> str:
    """'Full Name (username)', or 'not recorded'."""
    return f"{user.display_name} ({user.username})" if user else "not recorded"


def build_certificate(request: ReportRequest, progress: Progress) -> ReportContent:
    """The destroyed studies, the rules and holds in force, the people, and the digest over the list."""
    found = _review(request.run_id)
    progress(20, "Study review")
    rows = items(found.id)
    destroyed = [r for r in rows if r.outcome is ItemOutcome.DESTROYED]
    reported = [r for r in rows if r.approved and r.outcome is not ItemOutcome.DESTROYED]
    progress(50, "Studies destroyed")
    listing: list[dict[str, Any]] = [
        {"uid": r.study_uid, "patient": mask(r.patient_id), "date": r.study_date.isoformat(),
         "modality": r.modalities.replace("\\", "/"), "rule": r.rule, "keep_until": r.keep_until.isoformat()}
        for r in destroyed]
    dates = sorted(r.study_date for r in destroyed)
    context = {
        # Plain values only: the layout runs after the read transaction ended.
        "review": {"id": found.id, "status": str(found.status), "error": found.error or ""},
        "archive": {"asset_tag": found.asset.asset_tag, "name": found.asset.name,
                    "ae_title": found.asset.ae_title or ""},
        "rules": list(found.rules or []), "holds": list(found.holds or []),
        "destroyed": listing, "total": len(destroyed), "digest": uid_digest(r.study_uid for r in destroyed),
        "counts": counts_by_modality_year(destroyed),
        "reported": [{"uid": r.study_uid, "outcome": str(r.outcome or "not processed").replace("_", " "),
                      "detail": r.outcome_detail} for r in reported],
        "held_total": sum(1 for r in rows if r.held),
        "outcomes": dict(Counter(str(r.outcome) for r in rows if r.outcome is not None)),
        "first_date": dates[0].isoformat() if dates else None,
        "last_date": dates[-1].isoformat() if dates else None,
        "method": DELETION_METHOD_TEXT[found.method or DeletionMethod.LIST_ONLY],
        "started_by": _person(found.started_by), "approved_by": _person(found.approved_by),
        "executed_by": _person(found.executed_by), "started": format_local(found.started_at, STAMP),
        "approved": format_local(found.approved_at, STAMP),
        "executed": format_local(found.executed_at, STAMP),
        "finished": format_local(found.finished_at, STAMP), "completed": found.status is ReviewStatus.DONE,
    }
    ended = format_local(found.finished_at, "%d %B %Y")
    period = f"Study review #{found.id} of {found.asset.asset_tag}, {ended}"
    return ReportContent("study_destruction.html", context, period,
                         [("Study review", f"#{found.id} ({found.status})")])


REPORT_KIND = ReportKind(
    key=CERTIFICATE_KIND, title="Certificate of destruction of imaging studies",
    description="For one executed study review: the archive, the rules and legal holds in force, who "
                "started, approved and executed it, counts by modality and year, and the Study Instance "
                "UIDs destroyed (patient IDs masked) with the SHA-256 digest of the list.",
    permission=Permission.REPORT_COMPLIANCE, build=build_certificate, order=31,
    needs_period=False, needs_run=True, validate=validate_review, record_class="destruction_certificates",
)
