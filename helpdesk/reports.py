"""The help desk's part of the reports: its PDF report and which audit events read PHI."""

from __future__ import annotations

from sqlalchemy import and_, or_
from sqlalchemy.sql.elements import ColumnElement

from audit.models import AuditEvent
from audit.reports.registry import PhiRule, register_export_actions, register_phi_rule

IDENTIFIER_KEYS = ("accession_number", "patient_id", "study_instance_uid")


def _phi_reads() -> ColumnElement[bool]:
    """Ticket views whose event noted imaging identifiers, and every attachment download."""
    noted = or_(*(AuditEvent.details.like(f'%"{key}":%') for key in IDENTIFIER_KEYS))
    return or_(and_(AuditEvent.action == "ticket.view", noted),
               AuditEvent.action == "attachment.download")


register_phi_rule(PhiRule("Tickets with imaging identifiers, attachment downloads", _phi_reads,
                          IDENTIFIER_KEYS))
register_export_actions({"ticket.export": "Ticket list exported"})
