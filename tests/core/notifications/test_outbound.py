"""E-mail out: what each event sends, to whom, threaded, without patient data, through a real SMTP server."""

from __future__ import annotations

import io
import re

import pytest
from sqlalchemy import select

from audit.trail.models import AuditEvent
from core.extensions import db
from core.jobs.models import Job, JobStatus
from helpdesk.models import Category, Ticket
from tests.core.notifications.conftest import body_text

PHI_TITLE = "MRN 4455667 CT head DOE^JANE"
TITLE = "Viewer freezes on reading room 2"


def test_filing_mails_a_confirmation_to_the_requester_and_a_notice_to_each_technician(
        client, switch_to, make_user, file_ticket, run_jobs, delivered, mail_server):
    tech = make_user("technician", "pacs.sam", email="sam@hospital.example")
    make_user("technician", "pacs.noor", email="Noor@Hospital.example")
    make_user("technician", "no.address")
    switch_to("requester", "dr.okafor", email="okafor@hospital.example")
    response, number = file_ticket(title=PHI_TITLE, description="Patient DOE^JANE, accession A77001122",
                                   accession_number="A77001122", patient_id="P-99881",
                                   study_instance_uid="1.2.840.113619.2.55.3.604688")
    page = client.get(response.headers["Location"]).data.decode()
    assert "A confirmation was sent to okafor@hospital.example." in page
    run_jobs(["mail.deliver"])
    messages = delivered()
    assert sorted(tuple(m.rcpt_tos) for m in mail_server.messages) == [
        ("Noor@Hospital.example",), ("okafor@hospital.example",), ("sam@hospital.example",)]
    assert all(m.login == b"pacsdesk@hospital.example" and m.tls for m in mail_server.messages)
    root = f"<ticket-{number}@hospital.example>"
    for message in messages:
        assert message["In-Reply-To"] == root and message["References"] == root
        assert message["Auto-Submitted"] == "auto-generated"
        assert re.fullmatch(rf"<ticket-{number}\.[^@]+@hospital\.example>", message["Message-ID"])
        assert message["Subject"].strip().startswith(f"[{number}] ")
        assert message.get_body(("plain",)) is not None and message.get_body(("html",)) is not None
        text = body_text(message)
        assert "St. Example Hospital" in text
        assert f"https://pacsdesk.hospital.example/tickets/{number}" in text
        for secret in ("4455667", "DOE", "JANE", "A77001122", "P-99881", "1.2.840.113619", "freezes"):
            assert secret not in text and secret not in str(message["Subject"])
    assert len({m["Message-ID"] for m in messages}) == 3
    confirmation = next(m for m in messages if m["To"] == "okafor@hospital.example")
    assert confirmation["Subject"].strip() == f"[{number}] Ticket filed"
    assert "ticket " + number in body_text(confirmation)
    assert tech.id  # the technician without an address got the notice in the app only


@pytest.mark.mail_off
def test_the_flash_says_nothing_about_a_confirmation_when_mail_is_off(client, switch_to, file_ticket,
                                                                        outbox, notifications_of):
    user = switch_to("requester", "dr.okafor", email="okafor@hospital.example")
    response, number = file_ticket()
    page = client.get(response.headers["Location"]).data.decode()
    assert f"Ticket {number} filed." in page and "confirmation" not in page
    assert outbox() == []
    assert [n.subject for n in notifications_of(user.id)] == [f"Ticket filed: {TITLE}"]


def test_without_an_address_the_flash_promises_no_confirmation(client, switch_to, file_ticket, outbox):
    switch_to("requester", "dr.okafor")
    response, _number = file_ticket()
    assert "confirmation" not in client.get(response.headers["Location"]).data.decode()
    assert outbox() == []


def test_replies_and_status_changes_reach_the_right_people(client, switch_to, login, make_user, file_ticket,
                                                           run_jobs, delivered, app):
    tech = make_user("technician", "pacs.sam", email="sam@hospital.example")
    other = make_user("technician", "pacs.noor", email="noor@hospital.example")
    requester = switch_to("requester", "dr.okafor", email="okafor@hospital.example")
    _, number = file_ticket()
    run_jobs(["mail.deliver"])
    before = len(delivered())

    with app.app_context():
        category = str(db.session.get(Ticket, 1).category_id)

    def update(status: str) -> None:
        response = client.post(f"/tickets/{number}/update", data={
            "assignee_id": str(tech.id), "status": status, "priority": "P3", "category_id": category})
        assert response.status_code == 302

    login(tech)
    update("open")
    client.post(f"/tickets/{number}/reply", data={"body": "Which workstation? Patient DOE^JANE?"})
    update("waiting")
    run_jobs(["mail.deliver"])
    new = delivered()[before:]
    assert [(m["To"], m["Subject"].strip()) for m in new] == [
        ("okafor@hospital.example", f"[{number}] New reply from the PACS team: {TITLE}"),
        ("okafor@hospital.example", f"[{number}] Waiting for your answer: {TITLE}")]
    assert all("DOE" not in body_text(m) and "Which workstation" not in body_text(m) for m in new)

    login(requester)
    client.post(f"/tickets/{number}/reply", data={"body": "Workstation RR2-04"})
    run_jobs(["mail.deliver"])
    answer = delivered()[before + 2:]
    assert [(m["To"], m["Subject"].strip()) for m in answer] == [
        ("sam@hospital.example", f"[{number}] The requester answered: {TITLE}")]
    assert "noor@hospital.example" not in {m["To"] for m in answer} and other.email

    login(tech)
    update("resolved")
    run_jobs(["mail.deliver"])
    resolved = delivered()[-1]
    assert resolved["To"] == "okafor@hospital.example"
    assert resolved["Subject"].strip() == f"[{number}] Your ticket was resolved: {TITLE}"
    assert "choose Reopen before" in body_text(resolved)
    with app.app_context():
        assert db.session.get(Ticket, 1).status == "resolved"


def test_internal_notes_tell_nobody(client, switch_to, login, make_user, file_ticket, run_jobs, delivered):
    tech = make_user("technician", "pacs.sam", email="sam@hospital.example")
    switch_to("requester", "dr.okafor", email="okafor@hospital.example")
    _, number = file_ticket()
    run_jobs(["mail.deliver"])
    count = len(delivered())
    login(tech)
    client.post(f"/tickets/{number}/reply", data={"body": "internal only", "internal": "y"})
    run_jobs(["mail.deliver"])
    assert len(delivered()) == count


def test_a_change_that_rolls_back_queues_nothing(client, switch_to, make_user, app, outbox, run_jobs,
                                                 delivered, notifications_of):
    tech = make_user("technician", "pacs.sam", email="sam@hospital.example")
    switch_to("requester", "dr.okafor", email="okafor@hospital.example")
    with app.app_context():
        category = db.session.execute(select(Category.id).where(Category.code == "other")).scalar_one()
    refused = client.post("/tickets/new", data={
        "title": "t", "description": "d", "category_id": str(category), "impact": "one", "urgency": "hours",
        "attachments": [(io.BytesIO(b"MZ\x90\x00 a program"), "tool.exe")]},
        content_type="multipart/form-data")
    assert refused.status_code == 400
    run_jobs(["mail.deliver"])
    assert outbox() == [] and delivered() == [] and notifications_of(tech.id) == []


def test_a_header_injection_in_a_title_stays_inside_the_subject(switch_to, make_user, file_ticket, run_jobs,
                                                                mail_server, delivered):
    make_user("technician", "pacs.sam", email="sam@hospital.example")
    switch_to("requester", "dr.okafor", email="okafor@hospital.example")
    file_ticket(title="Printer\r\nBcc: victim@evil.example\r\nX-Injected: yes")
    run_jobs(["mail.deliver"])
    for raw, message in zip(mail_server.messages, delivered(), strict=True):
        assert "victim@evil.example" not in raw.rcpt_tos
        assert message["Bcc"] is None and message["X-Injected"] is None
        header = raw.content.split(b"\r\n\r\n", 1)[0]
        assert b"\r\nBcc:" not in header and b"\r\nX-Injected:" not in header


def test_every_sent_message_is_an_audit_event_without_its_body(switch_to, file_ticket, run_jobs, app):
    user = switch_to("requester", "dr.okafor", email="okafor@hospital.example")
    _, number = file_ticket(description="secret words of the ticket")
    run_jobs(["mail.deliver"])
    with app.app_context():
        events = list(db.session.execute(
            select(AuditEvent).where(AuditEvent.action == "mail.sent")).scalars())
    assert [(e.object_type, e.object_id) for e in events] == [("ticket", number)]
    assert '"template":"helpdesk.ticket_filed"' in events[0].details.replace(" ", "")
    assert '"to_user":"dr.okafor"' in events[0].details.replace(" ", "") and user.id
    assert "secret words" not in events[0].details


def test_jobs_page_lists_the_delivery(switch_to, file_ticket, run_jobs, app):
    switch_to("requester", "dr.okafor", email="okafor@hospital.example")
    file_ticket()
    run_jobs(["mail.deliver"])
    with app.app_context():
        jobs = list(db.session.execute(select(Job).where(Job.kind == "mail.deliver")).scalars())
    assert [(j.status, j.result["sent"]) for j in jobs] == [(JobStatus.DONE, 1)]
