"""Sending through a real SMTP server (aiosmtpd on loopback): TLS, AUTH, and every kind of failure."""

from __future__ import annotations

from email import message_from_bytes
from email.message import EmailMessage
from email.policy import default

import pytest

from core.mail.compose import Notice, compose, ticket_notice
from core.mail.settings import SmtpSecurity
from core.mail.smtp import SendStatus, Stage, send, send_test
from tests.core.mail.conftest import IDENTITY, SMTP_PASSWORD, SMTP_USER

REQUESTER = "jane.doe@hospital.example"


def ticket_message(to: str | list[str] = REQUESTER, title: str = "Priors missing in viewer") -> EmailMessage:
    """A reply notice on ticket PD-000123."""
    return compose(IDENTITY, to, ticket_notice("PD-000123", title, "New reply"))


def received(raw: bytes) -> EmailMessage:
    """Parse a message as the server stored it."""
    message = message_from_bytes(raw, policy=default)
    assert isinstance(message, EmailMessage)
    return message


def test_starttls_with_auth_delivers_threaded_message_with_both_parts(smtp_server):
    server = smtp_server("starttls")
    result = send(server.settings(), ticket_message())
    assert result.status is SendStatus.SENT, result.describe()
    assert result.code == 250 and "queued as TEST42" in result.reply

    [stored] = server.messages
    assert stored.tls and stored.login == SMTP_USER.encode()
    assert stored.mail_from == "pacsdesk@hospital.example"
    assert stored.rcpt_tos == (REQUESTER,)
    message = received(stored.content)
    assert message["Message-ID"].startswith("<ticket-PD-000123.")
    assert message["Message-ID"].endswith("@hospital.example>")
    assert message["In-Reply-To"] == "<ticket-PD-000123@hospital.example>"
    assert message["References"] == "<ticket-PD-000123@hospital.example>"
    assert message["Auto-Submitted"] == "auto-generated"
    assert message["X-Auto-Response-Suppress"] == "All"
    assert message["Subject"] == "[PD-000123] New reply: Priors missing in viewer"
    assert message["From"] == '"St. Example Hospital" <pacsdesk@hospital.example>'
    text = message.get_body(("plain",)).get_content()
    html = message.get_body(("html",)).get_content()
    assert "https://pacsdesk.hospital.example/tickets/PD-000123" in text
    assert 'href="https://pacsdesk.hospital.example/tickets/PD-000123"' in html
    assert "Priors missing in viewer" in text and "Priors missing in viewer" in html


def test_two_messages_on_one_ticket_share_the_thread_root_but_not_the_message_id(smtp_server):
    server = smtp_server("starttls")
    for _ in range(2):
        assert send(server.settings(), ticket_message()).status is SendStatus.SENT
    first, second = (received(m.content) for m in server.messages)
    assert first["References"] == second["References"] == "<ticket-PD-000123@hospital.example>"
    assert first["Message-ID"] != second["Message-ID"]


def test_injected_header_in_title_stays_in_the_subject_line(smtp_server):
    server = smtp_server("starttls")
    title = "Viewer slow\r\nBcc: thief@elsewhere.example\r\nX-Evil: 1"
    assert send(server.settings(), ticket_message(title=title)).status is SendStatus.SENT
    [stored] = server.messages
    assert stored.rcpt_tos == (REQUESTER,)
    message = received(stored.content)
    assert message["Bcc"] is None and message["X-Evil"] is None
    assert "\n" not in message["Subject"] and "thief@elsewhere.example" in message["Subject"]


def test_title_with_patient_identifiers_never_reaches_the_server(smtp_server):
    server = smtp_server("starttls")
    title = "MRN 4471234 DOE^JANE acc A20260301 study 1.2.840.113619.2.55.3.604688"
    assert send(server.settings(), ticket_message(title=title)).status is SendStatus.SENT
    [stored] = server.messages
    for secret in (b"4471234", b"DOE", b"A20260301", b"1.2.840.113619"):
        assert secret not in stored.content
    assert received(stored.content)["Subject"] == "[PD-000123] New reply"


# aiosmtpd cannot tell that an SMTPS connection is TLS, so it warns about AUTH without TLS.
@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")
def test_smtps_delivers_with_tls_from_the_first_byte(smtp_server):
    server = smtp_server("smtps")
    result = send(server.settings(SmtpSecurity.SMTPS), ticket_message())
    assert result.status is SendStatus.SENT, result.describe()
    [stored] = server.messages
    assert stored.tls and stored.login == SMTP_USER.encode()


def test_wrong_password_is_refused_at_auth_and_blames_the_settings(smtp_server):
    server = smtp_server("starttls")
    result = send(server.settings(password="not-the-password"), ticket_message())
    assert result.status is SendStatus.PERMANENT
    assert result.stage is Stage.AUTH and result.code == 535
    assert not result.message_specific and not result.retry
    assert "not-the-password" not in result.describe() and server.messages == []


def test_server_without_a_usable_auth_mechanism_is_a_settings_problem(smtp_server):
    server = smtp_server("starttls", auth_exclude=("LOGIN", "PLAIN"))
    result = send(server.settings(), ticket_message())
    assert result.status is SendStatus.PERMANENT and result.stage is Stage.AUTH
    assert result.reply == "No suitable authentication method found."
    assert not result.message_specific and server.messages == []


def test_server_answering_451_to_data_means_try_again_later(smtp_server):
    server = smtp_server("starttls", data_reply="451 4.3.0 Mail system busy, try later")
    result = send(server.settings(), ticket_message())
    assert result.status is SendStatus.TEMPORARY and result.retry
    assert result.stage is Stage.DATA and result.code == 451
    assert "try later" in result.reply


def test_recipient_refused_with_550_is_a_permanent_failure_of_this_message(smtp_server):
    server = smtp_server("starttls", rcpt_replies={REQUESTER: "550 5.1.1 No such user here"})
    result = send(server.settings(), ticket_message())
    assert result.status is SendStatus.PERMANENT and result.message_specific
    assert result.stage is Stage.RECIPIENTS and result.code == 550
    assert result.reply == "5.1.1 No such user here"
    assert server.messages == []


def test_one_refused_recipient_among_two_still_delivers_to_the_other(smtp_server):
    gone = "left.hospital@hospital.example"
    server = smtp_server("starttls", rcpt_replies={gone: "550 5.1.1 No such user here"})
    result = send(server.settings(), ticket_message(to=[REQUESTER, gone]))
    assert result.status is SendStatus.SENT
    assert [(r.address, r.code) for r in result.refused] == [(gone, 550)]
    assert server.messages[0].rcpt_tos == (REQUESTER,)


def test_server_without_starttls_is_refused_unless_the_url_allows_plain(smtp_server):
    server = smtp_server("plain", auth=False)
    refused = send(server.settings(username=None, password=None), ticket_message())
    assert refused.status is SendStatus.PERMANENT and refused.stage is Stage.TLS
    assert "STARTTLS" in refused.reply and server.messages == []

    plain = server.settings(SmtpSecurity.STARTTLS_IF_OFFERED, username=None, password=None)
    assert send(plain, ticket_message()).status is SendStatus.SENT
    assert not server.messages[0].tls


def test_starttls_is_still_used_when_plain_is_allowed_but_offered(smtp_server):
    server = smtp_server("starttls", auth=False)
    settings = server.settings(SmtpSecurity.STARTTLS_IF_OFFERED, username=None, password=None)
    assert send(settings, ticket_message()).status is SendStatus.SENT
    assert server.messages[0].tls


def test_certificate_from_an_unknown_ca_is_refused(smtp_server):
    server = smtp_server("starttls")
    result = send(server.settings(ca_file=None), ticket_message())
    assert result.status is SendStatus.PERMANENT and result.stage is Stage.TLS
    assert "not trusted" in result.reply and server.messages == []
    assert SMTP_PASSWORD not in result.describe()


def test_mail_test_command_reports_the_servers_answer(smtp_server):
    server = smtp_server("starttls")
    result = send_test(server.settings(), IDENTITY, "admin@hospital.example")
    assert result.status is SendStatus.SENT
    assert result.describe() == "sent: 250 2.0.0 Ok: queued as TEST42"
    message = received(server.messages[0].content)
    assert message["To"] == "admin@hospital.example"
    assert message["Subject"] == "Test message" and message["In-Reply-To"] is None


def test_message_text_with_an_identifier_is_not_built():
    from core.mail.compose import UnsafeMessage

    notice = Notice(subject="Report ready", paragraphs=("Study UID 1.2.840.10008.5.1.4.1.1.2 was exported.",))
    with pytest.raises(UnsafeMessage, match="paragraph 1 looks like it carries a patient identifier"):
        compose(IDENTITY, REQUESTER, notice)
