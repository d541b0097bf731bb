"""The access-audit PDF: sections computed from seeded events, read back from the PDF."""

from __future__ import annotations

import re
from pathlib import Path

import time_machine
from sqlalchemy import func, select

from audit.reports import services
from audit.trail.models import AuditEvent
from core.auth.models import User
from core.auth.services import disable_user
from core.extensions import db
from tests.audit.reports.conftest import local, pdf_text


def section(text: str, heading: str, next_heading: str) -> str:
    """The text between two headings of the report."""
    start = text.index(heading)
    return text[start:text.index(next_heading, start)]


def build(app, tmp_path: Path, date_from: str, date_to: str, **filters) -> str:
    """Build an access-audit report the way the CLI does and return its text."""
    with app.app_context():
        request = services.validate_request("access-audit", date_from, date_to,
                                            filters.get("user"), filters.get("obj"),
                                            include_identifiers=filters.get("identifiers", False))
        pdf = services.build_from_cli(request)
        db.session.commit()
    assert pdf.startswith(b"%PDF-")
    return pdf_text(pdf, tmp_path)


def seed_investigation(make_user, seed_event):
    """Three failed logins, a 23:00 access, a disabled account's activity, daytime work."""
    tech = make_user("technician", "sam.tech")
    leaver = make_user("requester", "leaver.lee")
    for minute in ("09:01", "09:02", "09:03"):
        seed_event(f"2026-03-10 {minute}", "user.login_failed", username="mallory",
                   outcome="failure", client_address="10.9.9.66", details={"reason": "bad password"})
    seed_event("2026-03-10 10:15", "user.login", user=tech, client_address="10.0.0.5")
    seed_event("2026-03-10 23:00", "user.login", user=tech, client_address="10.0.0.5")
    seed_event("2026-03-11 11:00", "user.login", user=leaver, client_address="10.0.0.7")
    return tech, leaver


def test_failed_logins_after_hours_and_disabled_accounts_are_listed(app, make_user, seed_event,
                                                                     tmp_path):
    _, leaver = seed_investigation(make_user, seed_event)
    with app.app_context(), time_machine.travel(local("2026-03-12 08:00"), tick=False):
        disable_user(db.session.get(User, leaver.id))
        db.session.commit()
    seed_event("2026-03-13 09:30", "user.login_failed", user=leaver, outcome="failure",
               client_address="10.0.0.7", object_type="user", object_id=leaver.id)

    text = build(app, tmp_path, "2026-03-01", "2026-03-31")

    failed = section(text, "Failed logins and lockouts", "Access outside business hours")
    assert re.search(r"mallory\s+10\.9\.9\.66\s+3\s+0", failed), failed
    after = section(text, "Access outside business hours", "Activity by disabled accounts")
    assert re.search(r"2026-03-10 23:00:00 EDT\s+sam\.tech", after), after
    assert "2026-03-10 10:15" not in after
    disabled = section(text, "Activity by disabled accounts", "Audit-trail searches")
    assert re.search(r"leaver\.lee\s+2026-03-12 08:00:00 EDT\s+2\s+1\s", disabled), disabled
    assert re.search(r"2026-03-13 09:30:00 EDT\s+leaver\.lee\s+requester\s+user\.login_failed", disabled)
    assert "Period: 1 March 2026 to 31 March 2026" in text
    assert "Riverside General Hospital" in text
    assert re.search(r"Page 1 of \d+", text)


def test_business_hours_follow_local_time_across_the_dst_change(app, make_user, seed_event, tmp_path):
    tech = make_user("technician", "early.bird")
    # US clocks moved forward on Sunday 8 March 2026; Monday 07:30 EDT is business time,
    # Monday 06:30 EDT is not (in UTC both are hours the winter offset would misjudge).
    seed_event("2026-03-09 07:30", "user.login", user=tech)
    seed_event("2026-03-09 06:30", "user.logout", user=tech)
    seed_event("2026-03-06 18:30", "user.login", user=tech)
    text = build(app, tmp_path, "2026-03-01", "2026-03-31")
    after = section(text, "Access outside business hours", "Activity by disabled accounts")
    assert "2026-03-09 06:30:00" in after
    assert "2026-03-09 07:30" not in after
    assert "2026-03-06 18:30" not in after
    assert "1 event fell outside" in after


def test_empty_period_gives_a_valid_pdf_saying_there_was_no_activity(app, tmp_path):
    text = build(app, tmp_path, "2001-01-01", "2001-01-31")
    assert "There was no activity in this period" in text
    assert "Integrity of the audit trail" in text


def test_report_narrowed_to_one_object_lists_who_opened_it(app, make_user, seed_event, tmp_path):
    tech = make_user("technician", "sam.tech")
    other = make_user("technician", "noor.tech")
    seed_event("2026-03-10 10:00", "user.updated", user=tech, object_type="user", object_id="77")
    seed_event("2026-03-10 11:00", "user.updated", user=other, object_type="user", object_id="78")
    text = build(app, tmp_path, "2026-03-01", "2026-03-31", obj="user:77")
    appendix = text[text.index("Appendix: event detail"):]
    assert "sam.tech" in appendix and "User 77" in appendix
    assert "noor.tech" not in appendix
    assert "Object" in text and "user:77" in text


def test_phi_reads_and_audit_searches_have_their_own_sections(app, make_user, seed_event, tmp_path):
    import audit.trail.search  # noqa: F401 - registers the audit search actions
    import helpdesk.services  # noqa: F401 - registers the ticket actions

    tech = make_user("technician", "sam.tech")
    officer = make_user("compliance", "privacy.garcia")
    seed_event("2026-03-10 10:00", "ticket.view", user=tech, object_type="ticket",
               object_id="PD-000123", details={"accession_number": "ACC-778899"})
    seed_event("2026-03-10 10:05", "ticket.view", user=tech, object_type="ticket",
               object_id="PD-000124", details={})
    seed_event("2026-03-11 09:00", "audit.search", user=officer, details={"user": "sam.tech"})
    text = build(app, tmp_path, "2026-03-01", "2026-03-31", identifiers=True)
    phi = section(text, "Reads of patient identifiers (PHI) by user", "Integrity of the audit trail")
    assert re.search(r"sam\.tech\s+technician\s+1\s+1\s+0", phi), phi
    assert re.search(r"sam\.tech\s+Ticket PD-000123\s+ticket\.view\s+1\s+2026-03-10 10:00:00 EDT\s+"
                     r"accession number ACC-778899", phi), phi
    assert "PD-000124" not in phi
    searches = section(text, "Audit-trail searches, reports and exports", "Reads of patient identifiers")
    assert re.search(r"2026-03-11 09:00:00 EDT\s+privacy\.garcia\s+Audit trail searched", searches), searches


def test_phi_reads_list_the_identifiers_of_the_latest_read(app, make_user, seed_event, tmp_path):
    import helpdesk.services  # noqa: F401 - registers the ticket actions

    tech = make_user("technician", "sam.tech")
    seed_event("2026-03-10 10:00", "ticket.view", user=tech, object_type="ticket",
               object_id="PD-000125", details={"accession_number": "ACC-999"})
    seed_event("2026-03-10 11:00", "ticket.view", user=tech, object_type="ticket",
               object_id="PD-000125", details={"accession_number": "ACC-111"})
    phi = section(build(app, tmp_path, "2026-03-01", "2026-03-31", identifiers=True),
                  "Reads of patient identifiers (PHI) by user", "Integrity of the audit trail")
    assert re.search(r"Ticket PD-000125\s+ticket\.view\s+2\s+\S+ 11:00\S*(?: \S+)?\s+"
                     r"accession number ACC-111", phi), phi
    assert "ACC-999" not in phi


def integrity(text: str) -> str:
    """The integrity section, its words joined by single spaces (PDF lines wrap anywhere)."""
    return " ".join(section(text, "Integrity of the audit trail", "Appendix").split())


def test_integrity_section_cites_the_verification_run_it_used(app, make_user, seed_event, tmp_path):
    tech = make_user("technician", "sam.tech")
    seed_event("2026-03-10 10:00", "user.login", user=tech)
    with app.app_context():
        written = db.session.execute(select(func.count()).select_from(AuditEvent)).scalar_one()
    head = written + 1  # and the report's own report.generate event
    first = integrity(build(app, tmp_path, "2026-03-01", "2026-03-31"))
    assert "Intact. Verified at generation by chain verification run #1 (" in first
    assert f"{head} events, head event #{head}" in first and "The run walked every event." in first
    assert "written to the anchor log outside the database as entry #1" in first
    second = integrity(build(app, tmp_path, "2026-03-01", "2026-03-31"))
    assert "chain verification run #2 (" in second, second
    assert f"The run walked the events from #{head}, the head verified before" in second
    assert "the last walk of every event was run #1 (" in second


def test_a_tampered_trail_is_reported_broken_in_the_pdf(app, make_user, seed_event, tmp_path, tamper):
    tech = make_user("technician", "sam.tech")
    seed_event("2026-03-10 10:00", "user.login", user=tech)
    tamper(2)
    text = integrity(build(app, tmp_path, "2026-03-01", "2026-03-31"))
    assert "BROKEN." in text and "Intact." not in text
    assert re.search(r"run #1 \(.*\) failed at event #2: event #2 was altered or forged", text), text


def test_long_appendix_is_complete_and_numbered_on_every_page(app, tmp_path):
    from pypdf import PdfReader

    from audit import record

    with app.app_context(), time_machine.travel(local("2026-03-10 09:00"), tick=True):
        for i in range(300):
            record("user.login_failed", username=f"probe{i:03d}", outcome="failure",
                   client_address="10.66.0.1", details={"reason": "unknown user"})
        db.session.commit()
    with app.app_context():
        pdf = services.build_from_cli(services.validate_request("access-audit", "2026-03-01",
                                                                "2026-03-31"))
        db.session.commit()
    path = tmp_path / "long.pdf"
    path.write_bytes(pdf)
    reader = PdfReader(str(path))
    total = len(reader.pages)
    texts = [page.extract_text() for page in reader.pages]
    for number, text in enumerate(texts, start=1):
        assert f"Page {number} of {total}" in text, (number, text[-300:])
    appendix = "\n".join(texts[texts.index(next(t for t in texts if "Appendix: event detail" in t)):])
    for i in (0, 39, 40, 150, 299):
        assert f"probe{i:03d}" in appendix
    last = reader.pages[-1]
    assert float(last.mediabox.width) > float(last.mediabox.height)  # landscape
    assert "Riverside General Hospital" in texts[-1] and "Local time" in texts[-1]
