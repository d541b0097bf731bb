"""Patient identifiers in the access-audit report: masked unless the officer asks, and the choice audited."""

from __future__ import annotations

import json

from sqlalchemy import select

from audit.reports.models import ReportJob
from audit.trail.models import AuditEvent
from core.extensions import db
from tests.audit.reports.conftest import pdf_text
from tests.audit.reports.test_access_audit import build, section

ACCESSION, PATIENT, UID = "ACC-55501", "MRN-8675309", "1.2.840.99.7.42"


def seed_reads(make_user, seed_event) -> None:
    """A ticket read noting three imaging identifiers, and a PACS message read naming a patient."""
    import audit.atna.search  # noqa: F401 - registers the PACS audit actions
    import helpdesk.services  # noqa: F401 - registers the ticket actions

    tech = make_user("technician", "sam.tech")
    seed_event("2026-03-10 10:00", "ticket.view", user=tech, object_type="ticket", object_id="PD-000123",
               details={"accession_number": ACCESSION, "patient_id": PATIENT, "study_instance_uid": UID})
    seed_event("2026-03-10 10:05", "atna.view", user=tech, object_type="atna_message", object_id="17",
               details={"patient_id": PATIENT, "event_id": "110110"})


def test_identifiers_are_omitted_by_default_and_the_report_says_so(app, make_user, seed_event, tmp_path):
    seed_reads(make_user, seed_event)
    text = build(app, tmp_path, "2026-03-01", "2026-03-31")
    for identifier in (ACCESSION, PATIENT, UID):
        assert identifier not in text
    words = " ".join(text.split())
    assert "Patient identifiers omitted" in words
    # 4 in the appendix, 3 in the table of PHI reads, 1 in the list of PACS log reads (an export action)
    assert "(8 in this report)" in words
    phi = section(text, "Reads of patient identifiers (PHI) by user", "Integrity of the audit trail")
    assert "3 (omitted)" in phi
    appendix = text[text.index("Appendix: event detail"):]
    assert "Accession number: (omitted)" in appendix and "Patient id: (omitted)" in appendix
    assert "Patient identifiers omitted" in " ".join(appendix.split())


def test_identifiers_are_printed_when_asked_and_the_report_names_who_asked(app, make_user, seed_event,
                                                                         tmp_path):
    seed_reads(make_user, seed_event)
    text = build(app, tmp_path, "2026-03-01", "2026-03-31", identifiers=True)
    appendix = text[text.index("Appendix: event detail"):]
    assert ACCESSION in appendix and PATIENT in appendix
    assert "(omitted)" not in text
    assert "Patient identifiers included at the request of command line" in " ".join(text.split())


def test_an_object_filter_naming_a_patient_is_masked_in_the_header(app, tmp_path):
    text = build(app, tmp_path, "2026-03-01", "2026-03-31", obj=f"patient:{PATIENT}")
    assert PATIENT not in text and "patient:(omitted)" in text


def test_the_form_offers_the_choice_off_and_the_request_event_records_it(app, client, login_as, run_jobs,
                                                                         make_user, seed_event, tmp_path):
    seed_reads(make_user, seed_event)
    login_as("compliance", "privacy.garcia", full_name="Elena Garcia")
    page = client.get("/reports").data.decode()
    assert "Include patient identifiers" in page
    checkbox = page[page.index('name="include_identifiers"'):]
    assert "checked" not in checkbox[:checkbox.index(">")]
    masked = client.post("/reports", data={"kind": "access-audit", "date_from": "2026-03-01",
                                           "date_to": "2026-03-31"})
    shown = client.post("/reports", data={"kind": "access-audit", "date_from": "2026-03-01",
                                          "date_to": "2026-03-31", "include_identifiers": "y"})
    assert masked.status_code == shown.status_code == 302
    run_jobs()
    with app.app_context():
        requested = {e.object_id: json.loads(e.details)["identifiers"] for e in db.session.scalars(
            select(AuditEvent).where(AuditEvent.action == "report.generate"))}
        jobs = {job.id: job for job in db.session.scalars(select(ReportJob))}
        masked_id = masked.headers["Location"].rsplit("/", 1)[1]
        shown_id = shown.headers["Location"].rsplit("/", 1)[1]
        assert requested == {masked_id: False, shown_id: True}
        masked_text = pdf_text(jobs[masked_id].pdf or b"", tmp_path)
        shown_text = pdf_text(jobs[shown_id].pdf or b"", tmp_path)
    assert PATIENT not in masked_text and "Patient identifiers omitted" in masked_text
    assert PATIENT in shown_text
    assert "Patient identifiers included at the request of Elena Garcia (privacy.garcia)" in \
        " ".join(shown_text.split())
    listing = client.get("/reports").data.decode()
    assert listing.count("patient identifiers included") == 1
    client.get(f"/reports/{shown_id}/download")
    with app.app_context():
        download = db.session.scalars(select(AuditEvent).where(AuditEvent.action == "report.download")).one()
        assert json.loads(download.details)["identifiers"] is True


def test_other_kinds_refuse_the_identifiers_option(app, runner, tmp_path):
    out = tmp_path / "x.pdf"
    result = runner.invoke(args=["reports", "build", "training", "--from", "2026-03-01", "--to",
                                 "2026-03-31", "--include-identifiers", "-o", str(out)])
    assert result.exit_code == 2 and "--include-identifiers" in result.output
    assert "no patient identifiers to include" in result.output and not out.exists()
