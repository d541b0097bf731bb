"""The training compliance PDF: overdue courses, new hires, rates by role."""

from __future__ import annotations

import re

import time_machine

from audit.reports import services
from core.extensions import db
from tests.audit.reports.conftest import local, pdf_text


def build(app, tmp_path, date_from: str, date_to: str) -> str:
    """Build the training report and return its text."""
    with app.app_context():
        pdf = services.build_from_cli(services.validate_request("training", date_from, date_to))
        db.session.commit()
    return pdf_text(pdf, tmp_path)


def test_an_overdue_course_shows_as_overdue(app, make_user, tmp_path):
    with time_machine.travel(local("2024-01-15 09:00"), tick=False):
        make_user("technician", "old.hand", full_name="Old Hand", department="PACS team")
    make_user("requester", "new.hire", full_name="New Hire", department="Radiology")
    text = build(app, tmp_path, "2024-01-01", "2024-12-31")
    overdue = text[text.index("Overdue\n"):text.index("New accounts in the period")]
    assert re.search(r"old\.hand\s+Old Hand\s+PACS team", overdue), overdue
    assert "Overdue" in overdue.split("old.hand", 1)[1]
    assert "new.hire" not in overdue
    new_hires = text[text.index("New accounts in the period"):text.index("Completions in the period")]
    assert "old.hand" in new_hires
    assert "Completion by role" in text and "Technician" in text
    roster = text[text.index("Roster: status"):]
    assert "old.hand" in roster and "new.hire" in roster
