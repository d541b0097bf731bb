"""Machine-sent mail is recognised, so PACS Desk never answers a bounce, an auto-reply or a list."""

from __future__ import annotations

import pytest

from core.mail.compose import compose, ticket_notice
from core.mail.inbound import parse
from core.mail.loops import is_automatic
from tests.core.mail.conftest import IDENTITY

PERSON = (b"From: Jane Doe <jane.doe@hospital.example>\r\nReturn-Path: <jane.doe@hospital.example>\r\n"
          b"Subject: Re: [PD-000123] New reply\r\nMessage-ID: <p1@mail.hospital.example>\r\n")


def with_header(extra: bytes, body: bytes = b"\r\nThanks\r\n") -> bytes:
    """A person's reply with one more header line."""
    return PERSON + extra + b"\r\n" + body


@pytest.mark.parametrize(("extra", "reason"), [
    (b"Auto-Submitted: auto-replied", "Auto-Submitted: auto-replied"),
    (b"Auto-Submitted: auto-generated; owner-email=x@hospital.example", "Auto-Submitted: auto-generated"),
    (b"Auto-Submitted: Auto-Notified", "Auto-Submitted: auto-notified"),
    (b"Precedence: bulk", "Precedence: bulk"),
    (b"Precedence: junk", "Precedence: junk"),
    (b"Precedence: list", "Precedence: list"),
    (b"Precedence: auto_reply", "Precedence: auto_reply"),
    (b"X-Autoreply: yes", "X-Autoreply header"),
    (b"X-Autorespond: Out of office", "X-Autorespond header"),
    (b"X-Auto-Response-Suppress: All", "X-Auto-Response-Suppress header"),
    (b"List-Id: Radiology staff <radiology.lists.hospital.example>", "List-Id header"),
])
def test_automatic_headers_are_recognised(extra, reason):
    assert parse(with_header(extra)).automatic == reason


def test_empty_return_path_is_a_bounce():
    raw = PERSON.replace(b"Return-Path: <jane.doe@hospital.example>", b"Return-Path: <>") + b"\r\nHi\r\n"
    assert parse(raw).automatic == "empty return path (a bounce)"


@pytest.mark.parametrize(("sender", "reason"), [
    (b"MAILER-DAEMON@mx.hospital.example", "sent by MAILER-DAEMON"),
    (b"Mail Delivery System <mailer-daemon@x.example>", "sent by MAILER-DAEMON"),
    (b"postmaster@hospital.example", "sent by POSTMASTER"),
])
def test_mailer_daemon_and_postmaster_senders_are_automatic(sender, reason):
    raw = b"From: " + sender + b"\r\nSubject: Undeliverable\r\nMessage-ID: <b1@x.example>\r\n\r\nBounce\r\n"
    assert parse(raw).automatic == reason


def test_delivery_status_notification_is_automatic():
    raw = (b"From: Mail Delivery Subsystem <delivery@hospital.example>\r\nSubject: Delivery Status\r\n"
           b"Content-Type: multipart/report; report-type=delivery-status; boundary=R\r\n\r\n"
           b"--R\r\nContent-Type: text/plain\r\n\r\nCould not deliver.\r\n"
           b"--R\r\nContent-Type: message/delivery-status\r\n\r\n"
           b"Reporting-MTA: dns; mx.hospital.example\r\n\r\n"
           b"Final-Recipient: rfc822; gone@hospital.example\r\nAction: failed\r\nStatus: 5.1.1\r\n\r\n"
           b"--R--\r\n")
    assert parse(raw).automatic == "delivery or read report (multipart/report)"


@pytest.mark.parametrize("extra", [b"Auto-Submitted: no", b"Precedence: first-class", b"X-Mailer: Outlook"])
def test_a_persons_mail_is_not_automatic(extra):
    assert parse(with_header(extra)).automatic is None
    assert parse(PERSON + b"\r\nThanks\r\n").automatic is None


def test_our_own_notices_would_never_be_answered():
    notice = ticket_notice("PD-000123", "Viewer", "New reply")
    message = compose(IDENTITY, "jane.doe@hospital.example", notice)
    assert is_automatic(message) == "Auto-Submitted: auto-generated"
