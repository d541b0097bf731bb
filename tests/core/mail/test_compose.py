"""Composing messages: escaped HTML, threading ids, stable ids for retries, refusals that name the part."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from core.mail.compose import (
    Notice,
    UnsafeMessage,
    compose,
    new_message_id,
    thread_root,
    ticket_notice,
)
from tests.core.mail.conftest import IDENTITY

TO = "jane.doe@hospital.example"


def parts(message) -> tuple[str, str]:
    """The plain-text and HTML parts."""
    return message.get_body(("plain",)).get_content(), message.get_body(("html",)).get_content()


def test_markup_in_a_title_is_escaped_in_html_and_plain_in_text():
    notice = ticket_notice("PD-000042", "<script>alert(1)</script> & viewer", "New reply")
    message = compose(IDENTITY, TO, notice)
    text, html = parts(message)
    assert "&lt;script&gt;alert(1)&lt;/script&gt; &amp; viewer" in html and "<script>" not in html
    assert "<script>alert(1)</script> & viewer" in text


def test_notice_without_ticket_has_no_thread_headers_and_an_absolute_link():
    notice = Notice(subject="Node CT1 is down", paragraphs=("CT1 (10.1.2.3:104) stopped answering C-ECHO.",),
                    link_path="/inventory/assets/7", reason="You are on the PACS team.")
    message = compose(IDENTITY, TO, notice, now=datetime(2026, 3, 2, 9, 0, tzinfo=UTC))
    assert message["In-Reply-To"] is None and message["References"] is None
    assert message["Subject"] == "Node CT1 is down"
    assert message["Date"] == "Mon, 02 Mar 2026 09:00:00 +0000"
    assert message["Message-ID"].startswith("<pacsdesk.")
    assert message["Message-ID"].endswith("@hospital.example>")
    text, html = parts(message)
    assert "https://pacsdesk.hospital.example/inventory/assets/7" in text
    assert "You are on the PACS team." in text and "You are on the PACS team." in html


def test_a_retried_message_can_keep_its_message_id():
    message_id = new_message_id("hospital.example", "PD-000123")
    first = compose(IDENTITY, TO, ticket_notice("PD-000123", "Viewer", "New reply"), message_id=message_id)
    again = compose(IDENTITY, TO, ticket_notice("PD-000123", "Viewer", "New reply"), message_id=message_id)
    assert first["Message-ID"] == again["Message-ID"] == message_id
    assert thread_root("pd-000123", "hospital.example") == "<ticket-PD-000123@hospital.example>"


def test_ticket_notice_never_holds_more_than_number_safe_title_and_words_of_our_own():
    notice = ticket_notice("PD-000123", "pt Smith CT 1.2.840.1.2.3.4 missing", "Status changed to Resolved",
                           details=("Status: Resolved",))
    assert notice.subject == "Status changed to Resolved"
    assert notice.paragraphs[:2] == ("Status changed to Resolved: ticket PD-000123.", "Status: Resolved")
    assert "Smith" not in " ".join(notice.paragraphs)


@pytest.mark.parametrize(("kwargs", "words"), [
    ({"to": "jane.doe@hospital.example\r\nBcc: thief@elsewhere.example"},
     "recipient: an address cannot contain"),
    ({"to": "not an address"}, "recipient: not an e-mail address"),
    ({"to": "jöse@hospital.example"}, "recipient: only addresses in ASCII"),
    ({"to": []}, "recipient: at least one address"),
    ({"notice": Notice(subject="x", paragraphs=(), ticket="123")}, "ticket: must be a ticket number"),
    ({"notice": Notice(subject="MRN 4471234", paragraphs=())}, "subject looks like it carries"),
    ({"notice": Notice(subject="x", paragraphs=("ok", "DOB: 1960-03-12"))}, "paragraph 2 looks like"),
    ({"notice": Notice(subject="x", paragraphs=(), link_path="https://elsewhere.example/")}, "link path"),
    ({"message_id": "<a@b>\r\nBcc: x@y"}, "message id"),
    ({"reply_to": "nobody"}, "reply-to: not an e-mail address"),
])
def test_bad_parts_are_refused_naming_the_part(kwargs, words):
    arguments = {"to": TO, "notice": Notice(subject="Hello", paragraphs=("Hi.",))} | kwargs
    to, notice = arguments.pop("to"), arguments.pop("notice")
    with pytest.raises(UnsafeMessage, match=words) as refused:
        compose(IDENTITY, to, notice, **arguments)
    assert "4471234" not in str(refused.value) and "1960" not in str(refused.value)


def test_display_name_with_line_breaks_cannot_add_headers():
    from dataclasses import replace

    identity = replace(IDENTITY, display_name="St. Example\r\nBcc: thief@elsewhere.example")
    message = compose(identity, TO, Notice(subject="Hello", paragraphs=("Hi.",)))
    assert message["Bcc"] is None
    assert message["From"] == '"St. Example Bcc: thief@elsewhere.example" <pacsdesk@hospital.example>'
    assert "\r\nBcc:" not in message.as_string()
