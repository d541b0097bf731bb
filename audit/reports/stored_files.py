"""Stored report PDFs as a retention record class: old report jobs are destroyed whole.

A purge deletes the job row with its PDF and parameters (an access-audit PDF lists patient
identifiers, and an investigation's parameters name the ticket or user looked into), so
nothing of the report stays behind; the ``report.generate`` and ``report.download`` audit
events keep the fact that it was generated, by whom, of what kind and period.
"""

from __future__ import annotations

from sqlalchemy import select

from audit.reports.models import ReportJob
from audit.retention.described import Condition, Described
from core.auth.models import User

RECORD_CLASS = "report_files"


def _requested_by(username: str) -> Condition:
    """The reports this user asked for."""
    return ReportJob.requested_by_id.in_(select(User.id).where(User.username == username.lower()))


RETENTION_CLASS = Described(
    key=RECORD_CLASS, object_type="report", label="Stored report files (generated PDFs and their parameters)",
    model=ReportJob, anchors={"created": ReportJob.created_at, "finished": ReportJob.finished_at},
    default_years=1, held_by={"user": _requested_by})
