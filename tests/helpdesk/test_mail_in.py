"""Mail into the help desk: tickets and replies from known people, nothing from machines, held strangers."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from email.message import EmailMessage
from email.policy import SMTP

import pytest
from sqlalchemy import func, select

from core.extensions import db
from core.notifications.models import InboundMail, InboundOutcome, Notification, OutboxMessage
from helpdesk import mail_in
from helpdesk.models import Ticket, TicketAttachment, TicketComment, TicketStatus
from tests.core.mail.conftest import MailCA, smtp_server, test_ca
from tests.core.mail.dovecot import Dovecot, run_dovecot
from tests.core.notifications.conftest import mail_settings
from tests.helpers import fixture_event

__all__ = ["smtp_server", "test_ca"]

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64
DOMAIN = "hospital.example"


@pytest.fixture
def app_config(app_config, smtp_server):
    """E-mail on (a real aiosmtpd for the answers), so refusals can be mailed back."""
    app_config.update(mail_settings(smtp_server("starttls")))
    return app_config


def mail(sender: str = "Amara Okafor <okafor@hospital.example>", subject: str = "Viewer freezes in RR2",
         body: str = "The viewer freezes after login.\n\n-- \nDr. Okafor\nRadiology", *,
         headers: dict[str, str] | None = None, files: list[tuple[str, str, bytes]] = (),
         html: str | None = None, message_id: str = "<m1@mail.hospital.example>") -> bytes:
    """A message as a mail client would send it."""
    message = EmailMessage()
    message["From"] = sender
    message["To"] = "pacsdesk@hospital.example"
    message["Subject"] = subject
    message["Message-ID"] = message_id
    message["Date"] = "Mon, 02 Mar 2026 09:00:00 +0000"
    for name, value in (headers or {}).items():
        message[name] = value
    message.set_content(body)
    if html is not None:
        message.add_alternative(html, subtype="html")
    for name, kind, data in files:
        maintype, subtype = kind.split("/")
        message.add_attachment(data, maintype=maintype, subtype=subtype, filename=name)
    return message.as_bytes(policy=SMTP)


def count(app, model) -> int:
    """Rows of ``model``."""
    with app.app_context():
        return db.session.execute(select(func.count()).select_from(model)).scalar_one()


def process(app, raw: bytes) -> mail_in.Handled:
    """Handle one message as the job does."""
    with app.app_context():
        return mail_in.process(raw)


def told(app, user_id: int) -> list[str]:
    """What ``user_id`` was told, as notification texts."""
    with app.app_context():
        return [f"{n.subject} {' '.join(n.paragraphs)}" for n in db.session.execute(
            select(Notification).where(Notification.user_id == user_id).order_by(Notification.id)).scalars()]


@pytest.fixture
def okafor(make_user):
    """A requester whose address is stored in other letter cases."""
    return make_user("requester", "dr.okafor", email="Okafor@Hospital.Example")


def test_a_known_persons_message_files_a_ticket_without_signature_and_with_its_files(app, okafor,
                                                                                     audit_events):
    handled = process(app, mail(files=[("screen.png", "image/png", PNG)]))
    assert (handled.outcome, handled.ticket) == (InboundOutcome.FILED, "PD-000001")
    with app.app_context():
        ticket = db.session.get(Ticket, 1)
        assert ticket.title == "Viewer freezes in RR2" and ticket.requester_id == okafor.id
        assert ticket.description == "The viewer freezes after login."
        [attachment] = db.session.execute(select(TicketAttachment)).scalars()
        assert attachment.filename == "screen.png" and attachment.content_type == "image/png"
    [event] = audit_events("mail.received")
    assert event["object_id"] == "PD-000001" and event["user_id"] == okafor.id
    assert event["details"]["outcome"] == "filed" and "freezes" not in str(event["details"])
    assert any("Ticket filed" in text for text in told(app, okafor.id))


def test_a_reply_by_subject_or_thread_adds_a_public_reply_without_the_quoted_history(app, okafor):
    process(app, mail())
    quoted = ("It still freezes on RR2-04.\n\nOn Mon, 2 Mar 2026 at 10:00, PACS Desk wrote:\n"
              "> Which workstation?\n")
    by_subject = process(app, mail(subject="Re: [PD-000001] Which workstation?", body=quoted,
                                   message_id="<m2@mail.hospital.example>"))
    by_thread = process(app, mail(subject="Re: your ticket", body="Rebooted, same.",
                                  headers={"In-Reply-To": f"<ticket-PD-000001.123.abc@{DOMAIN}>",
                                           "References": f"<ticket-PD-000001@{DOMAIN}>"},
                                  message_id="<m3@mail.hospital.example>"))
    assert (by_subject.outcome, by_thread.outcome) == (InboundOutcome.REPLIED, InboundOutcome.REPLIED)
    with app.app_context():
        bodies = list(db.session.execute(select(TicketComment.body).order_by(TicketComment.id)).scalars())
        assert bodies == ["It still freezes on RR2-04.", "Rebooted, same."]
        assert not db.session.execute(select(TicketComment.is_internal)).scalars().first()
        assert db.session.execute(select(func.count()).select_from(Ticket)).scalar_one() == 1


def test_a_reply_to_a_ticket_the_sender_did_not_file_adds_nothing_and_says_so(app, okafor, make_user):
    other = make_user("requester", "dr.lindqvist", email="lindqvist@hospital.example")
    tech = make_user("technician", "pacs.sam", email="sam@hospital.example")
    process(app, mail())
    stranger = process(app, mail(sender="lindqvist@hospital.example", subject="Re: [PD-000001] x",
                                 body="Let me in.", message_id="<m2@mail.hospital.example>"))
    staff = process(app, mail(sender="sam@hospital.example", subject="Re: [PD-000001] x",
                              body="Closing this.", message_id="<m3@mail.hospital.example>"))
    missing = process(app, mail(subject="Re: [PD-000999] x", body="?",
                                message_id="<m4@mail.hospital.example>"))
    assert {stranger.outcome, staff.outcome, missing.outcome} == {InboundOutcome.REFUSED}
    assert count(app, TicketComment) == 0
    assert any("accepted only from the person who filed it" in text for text in told(app, other.id))
    assert any("accepted only from the person who filed it" in text for text in told(app, tech.id)
               if "not filed" in text)


def test_a_forged_from_can_only_add_a_comment_never_change_the_ticket(app, okafor, make_user):
    process(app, mail())
    with app.app_context():
        db.session.get(Ticket, 1).status = TicketStatus.OPEN
        fixture_event("ticket", "PD-000001")
        db.session.commit()
    forged = process(app, mail(subject="Re: [PD-000001] close", body="Please close and resolve this ticket.",
                               headers={"X-Originating-IP": "203.0.113.9"}, message_id="<f@evil.example>"))
    assert forged.outcome is InboundOutcome.REPLIED
    with app.app_context():
        ticket = db.session.get(Ticket, 1)
        assert ticket.status == TicketStatus.OPEN and ticket.assignee_id is None
        assert ticket.priority == "P3"


@pytest.mark.parametrize("headers", [
    {"Auto-Submitted": "auto-replied"}, {"Precedence": "bulk"}, {"Precedence": "junk"},
    {"Precedence": "list"},
    {"List-Id": "<radiology.lists.hospital.example>"}, {"X-Autoreply": "yes"}, {"X-Autorespond": "yes"},
    {"X-Auto-Response-Suppress": "All"}, {"Return-Path": "<>"},
])
def test_machines_messages_are_filed_as_nothing_and_never_answered(app, okafor, headers):
    handled = process(app, mail(subject="Out of office: [PD-000001]", headers=headers))
    assert handled.outcome is InboundOutcome.AUTOMATIC
    assert count(app, Ticket) == 0 and count(app, OutboxMessage) == 0 and count(app, Notification) == 0


@pytest.mark.parametrize("sender", ["MAILER-DAEMON@mail.hospital.example", "postmaster@hospital.example"])
def test_bounces_are_filed_as_nothing(app, sender, make_user):
    make_user("requester", "daemon.owner", email=sender)
    assert process(app, mail(sender=sender)).outcome is InboundOutcome.AUTOMATIC
    assert count(app, Ticket) == 0 and count(app, OutboxMessage) == 0


def test_a_delivery_report_is_filed_as_nothing(app, okafor):
    report = (b"From: okafor@hospital.example\r\nSubject: Delivery Status Notification\r\n"
              b"Message-ID: <dsn1@mail.hospital.example>\r\n"
              b'Content-Type: multipart/report; report-type=delivery-status; boundary="b"\r\n\r\n'
              b"--b\r\nContent-Type: text/plain\r\n\r\nYour message was delivered.\r\n--b--\r\n")
    assert process(app, report).outcome is InboundOutcome.AUTOMATIC
    assert count(app, Ticket) == 0 and count(app, OutboxMessage) == 0


def test_an_unknown_sender_gets_nothing_and_the_message_waits_for_an_admin(app, client, make_user, auth,
                                                                          okafor, audit_events):
    handled = process(app, mail(sender="someone@elsewhere.example", subject="Printer on ward 4"))
    assert handled.outcome is InboundOutcome.HELD
    assert count(app, Ticket) == 0 and count(app, OutboxMessage) == 0
    admin = make_user("admin", "root")
    auth.login(admin.username)
    page = client.get("/admin/mail/held").data.decode()
    assert "someone@elsewhere.example" in page and "Printer on ward 4" in page
    with app.app_context():
        held_id = db.session.execute(select(InboundMail.id)).scalar_one()
    refused = client.post(f"/admin/mail/held/{held_id}/assign", data={"username": "nobody"},
                          follow_redirects=True)
    assert "No active account" in refused.data.decode()
    done = client.post(f"/admin/mail/held/{held_id}/assign", data={"username": "dr.okafor"},
                       follow_redirects=True).data.decode()
    assert "filed as ticket PD-000001" in done
    with app.app_context():
        assert db.session.get(Ticket, 1).requester_id == okafor.id
        assert db.session.get(InboundMail, held_id).raw is None
    assert audit_events("mail.held_assigned")[0]["details"]["filed_as"] == "dr.okafor"
    process(app, mail(sender="other@elsewhere.example", message_id="<m9@elsewhere.example>"))
    with app.app_context():
        second = db.session.execute(select(InboundMail.id).where(InboundMail.outcome == "held")).scalar_one()
    client.post(f"/admin/mail/held/{second}/discard")
    assert "No message is waiting" in client.get("/admin/mail/held").data.decode()
    assert count(app, Ticket) == 1


def test_a_40_mb_message_is_refused_and_its_sender_told_why(app, okafor):
    big = mail(files=[("scan.pdf", "application/pdf", b"%PDF-" + b"0" * (40 * 1024 * 1024))])
    handled = process(app, big)
    assert handled.outcome is InboundOutcome.REFUSED and "25 MB limit" in handled.reason
    assert count(app, Ticket) == 0
    assert any("25 MB limit" in text for text in told(app, okafor.id))


def test_200_attachments_are_refused(app, okafor):
    files = [(f"shot{n}.png", "image/png", PNG) for n in range(200)]
    handled = process(app, mail(files=files))
    assert handled.outcome is InboundOutcome.REFUSED and "more than 10 attachments" in handled.reason
    assert count(app, Ticket) == 0 and count(app, TicketAttachment) == 0


def test_an_executable_attachment_refuses_the_whole_message_without_naming_it(app, okafor, smtp_server):
    handled = process(app, mail(files=[("screen.png", "image/png", PNG),
                                       ("DOE_JANE_tool.exe", "application/octet-stream", b"MZ\x90\x00rest")]))
    assert handled.outcome is InboundOutcome.REFUSED and "attachment is not accepted" in handled.reason
    assert count(app, Ticket) == 0 and count(app, TicketAttachment) == 0
    assert all("DOE_JANE" not in text for text in told(app, okafor.id))


def test_html_with_script_becomes_plain_words(app, okafor):
    html = "<html><head><script>steal()</script></head><body><p>Viewer <b>frozen</b></p>" \
           "<script>alert(1)</script></body></html>"
    message = EmailMessage()
    message["From"], message["Subject"], message["Message-ID"] = "okafor@hospital.example", "Frozen", "<h@x>"
    message.set_content(html, subtype="html")
    process(app, message.as_bytes(policy=SMTP))
    with app.app_context():
        assert db.session.get(Ticket, 1).description == "Viewer frozen"


def test_encoded_and_8bit_headers_are_decoded_and_crlf_cannot_split_the_title(app, okafor):
    encoded = "=?utf-8?b?" + base64.b64encode("Écran noir, salle 2".encode()).decode() + "?="
    raw = (f"From: okafor@hospital.example\r\nSubject: {encoded}\r\nMessage-ID: <e1@x>\r\n"
           "Content-Type: text/plain; charset=iso-8859-1\r\n\r\n").encode() + "Très lent.".encode("latin-1")
    process(app, raw)
    latin = b"From: okafor@hospital.example\r\nSubject: Caf\xe9 PC\r\n =?utf-8?q?Bcc=3A_x=40evil=2Eex?=\r\n" \
            b"Message-ID: <e2@x>\r\n\r\nbody\r\n"
    process(app, latin)
    with app.app_context():
        first, second = db.session.execute(select(Ticket).order_by(Ticket.id)).scalars()
        assert first.title == "Écran noir, salle 2" and first.description == "Très lent."
        assert "\n" not in second.title and "\r" not in second.title and second.title.startswith("Café PC")


def test_the_same_message_read_twice_is_filed_once(app, okafor):
    assert process(app, mail()).outcome is InboundOutcome.FILED
    again = process(app, mail())
    assert again.duplicate and again.ticket == "PD-000001"
    assert count(app, Ticket) == 1


@pytest.fixture
def dovecot(test_ca: MailCA) -> Iterator[Dovecot]:
    """A real Dovecot for the test."""
    with run_dovecot(test_ca) as server:
        yield server


@pytest.fixture
def reading(app, dovecot):
    """The app reads the Dovecot mailbox."""
    mail_settings_now = app.config["PACSDESK_MAIL"]
    app.config["PACSDESK_MAIL"] = type(mail_settings_now)(smtp=mail_settings_now.smtp,
                                                         identity=mail_settings_now.identity,
                                                         imap=dovecot.settings())
    return dovecot


@pytest.mark.integration
def test_the_job_reads_the_mailbox_files_each_message_and_moves_it(app, okafor, reading, queue_job, run_jobs):
    reading.append(mail())
    reading.append(mail(sender="stranger@elsewhere.example", message_id="<s1@elsewhere.example>"))
    reading.append(mail(headers={"Auto-Submitted": "auto-replied"}, message_id="<a1@mail.hospital.example>"))
    queue_job("mail.fetch")
    run_jobs(["mail.fetch"])
    assert count(app, Ticket) == 1
    assert reading.message_ids("INBOX") == []
    assert sorted(reading.message_ids("Processed")) == sorted([
        "<m1@mail.hospital.example>", "<s1@elsewhere.example>", "<a1@mail.hospital.example>"])


@pytest.mark.integration
def test_a_worker_killed_between_filing_and_moving_files_nothing_twice(app, okafor, reading, queue_job,
                                                                      run_jobs):
    reading.append(mail())
    with app.app_context(), mail_in.Mailbox(reading.settings()) as box:
        [entry] = box.pending()
        mail_in.process(box.fetch(entry.uid))  # filed and committed; the worker dies before the move
    assert reading.message_ids("INBOX") == ["<m1@mail.hospital.example>"]
    queue_job("mail.fetch")
    run_jobs(["mail.fetch"])
    assert count(app, Ticket) == 1
    assert reading.message_ids("INBOX") == []
    assert reading.message_ids("Processed") == ["<m1@mail.hospital.example>"]
