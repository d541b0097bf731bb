"""Stored report PDFs as retention record classes: old report jobs are destroyed whole.

A purge deletes the job row with its PDF and parameters (an access-audit PDF lists patient
identifiers, and an investigation's parameters name the ticket or user looked into), so
nothing of the report stays behind; the ``report.generate`` and ``report.download`` audit
events keep the fact that it was generated, by whom, of what kind and period.

Most kinds are kept as "report files"; a kind whose ``record_class`` names another class
(certificates of destruction) is kept under that class instead, by default for good.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from sqlalchemy import select

from audit.reports.models import ReportJob
from audit.reports.registry import report_kinds
from audit.retention.described import Condition, Described
from core.auth.models import User

RECORD_CLASS = "report_files"
CERTIFICATE_CLASS = "destruction_certificates"


def _requested_by(username: str) -> Condition:
    """The reports this user asked for."""
    return ReportJob.requested_by_id.in_(select(User.id).where(User.username == username.lower()))


def _kept_under(key: str) -> Callable[[], Sequence[Condition]]:
    """The report jobs whose kind keeps its PDFs under record class ``key``."""

    def belongs() -> Sequence[Condition]:
        if key == RECORD_CLASS:
            elsewhere = [k.key for k in report_kinds() if k.record_class != RECORD_CLASS]
            return [ReportJob.kind.not_in(elsewhere)] if elsewhere else []
        return [ReportJob.kind.in_([k.key for k in report_kinds() if k.record_class == key])]

    return belongs


RETENTION_CLASS = Described(
    key=RECORD_CLASS, object_type="report", label="Stored report files (generated PDFs and their parameters)",
    model=ReportJob, anchors={"created": ReportJob.created_at, "finished": ReportJob.finished_at},
    default_years=1, belongs=_kept_under(RECORD_CLASS), held_by={"user": _requested_by})
# Kept for good by default: its default policy (100 years) is stored not enforced, like every default.
CERTIFICATE_RETENTION_CLASS = Described(
    key=CERTIFICATE_CLASS, object_type="report",
    label="Certificates of destruction (kept permanently unless a policy is enforced)",
    model=ReportJob, anchors={"created": ReportJob.created_at, "finished": ReportJob.finished_at},
    default_years=100, floor_years=6, floor_rule="HIPAA 45 CFR 164.316(b)(2) (documentation kept 6 years)",
    belongs=_kept_under(CERTIFICATE_CLASS), held_by={"user": _requested_by})
