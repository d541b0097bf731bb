"""Reading incoming mail: charsets, HTML, quoted history, signatures, attachments and limits."""

from __future__ import annotations

import base64
from email.message import EmailMessage

import pytest

from core.mail.inbound import InboundLimits, MessageRefused, parse, refuse_oversized

HEAD = (b"From: Jane Doe <Jane.Doe@Hospital.example>\r\nTo: pacsdesk@hospital.example\r\n"
        b"Message-ID: <r1@mail.hospital.example>\r\nDate: Mon, 02 Mar 2026 09:00:00 +0000\r\n")
NOTICE = ("New reply: ticket PD-000123, Priors missing in viewer.\n\nFor patient privacy this message "
          "holds no ticket text.")
QUOTED = "\n".join("> " + line for line in NOTICE.split("\n"))


def plain(body: str, subject: str = "Re: [PD-000123] New reply", charset: str = "utf-8") -> bytes:
    """A text/plain message with ``body`` in ``charset``."""
    return (HEAD + f"Subject: {subject}\r\nContent-Type: text/plain; charset={charset}\r\n"
            "Content-Transfer-Encoding: 8bit\r\n\r\n".encode() + body.replace("\n", "\r\n").encode(charset))


def html(markup: str, subject: str = "Re: [PD-000123] New reply") -> bytes:
    """An HTML-only message."""
    return (HEAD + f"Subject: {subject}\r\nContent-Type: text/html; charset=utf-8\r\n\r\n".encode()
            + markup.encode())


def with_files(count: int, size: int, *, name: str = "shot.png", content_type: str = "image/png") -> bytes:
    """A message with ``count`` attachments of ``size`` bytes each."""
    message = EmailMessage()
    message["From"] = "jane.doe@hospital.example"
    message["Subject"] = "Screenshots"
    message["Message-ID"] = "<files@mail.hospital.example>"
    message.set_content("See attached.")
    maintype, subtype = content_type.split("/")
    for number in range(count):
        message.add_attachment(b"\x89PNG" + bytes(size - 4), maintype=maintype, subtype=subtype,
                               filename=f"{number}-{name}")
    return message.as_bytes()


@pytest.mark.parametrize(("header", "expected"), [
    (b"=?iso-8859-1?q?Caf=E9_cr=E8me_monitor?=", "Café crème monitor"),
    (b"=?utf-8?b?0J/RgNC40LLQtdGC?=", "Привет"),
    (b"=?shift_jis?b?k/qWe4zq?=", "日本語"),
    (b"=?koi8-r?b?8NLJ18XU?=", "Привет"),
    (b"=?gb2312?b?xOO6ww==?=", "你好"),
    (b"=?windows-1252?q?=93quoted=94_=80?=", "“quoted” €"),
    (b"Caf\xe9 raw latin-1", "Café raw latin-1"),
    (b"\xe2\x82\xac raw UTF-8", "€ raw UTF-8"),
])
def test_subjects_are_decoded_from_any_charset(header, expected):
    raw = HEAD + b"Subject: " + header + b"\r\n\r\nHello\r\n"
    assert parse(raw).subject == expected


def test_subject_in_an_unknown_charset_does_not_stop_the_message():
    message = parse(HEAD + b"Subject: =?x-no-such-charset?q?abc?=\r\n\r\nHello\r\n")
    assert "abc" in message.subject and message.text == "Hello"


def test_encoded_line_breaks_in_the_subject_cannot_inject_headers():
    raw = HEAD + b"Subject: =?utf-8?q?Help=0D=0ABcc:_thief@elsewhere.example?=\r\n\r\nHi\r\n"
    message = parse(raw)
    assert message.subject == "Help Bcc: thief@elsewhere.example"
    assert "\r" not in message.subject and "\n" not in message.subject


@pytest.mark.parametrize(("charset", "declared"), [
    ("iso-8859-1", "iso-8859-1"),
    ("cp1252", "utf-8"),          # declared wrong: the bytes are Windows-1252
    ("utf-8", "x-unknown-charset"),
])
def test_non_utf8_bodies_are_decoded(charset, declared):
    body = "Le poste de lecture ne démarre plus, écran noir."
    raw = (HEAD + f"Subject: Poste\r\nContent-Type: text/plain; charset={declared}\r\n"
           "Content-Transfer-Encoding: 8bit\r\n\r\n".encode() + body.encode(charset))
    assert parse(raw).text == body


def test_html_body_becomes_text_without_scripts_or_styles():
    markup = ("<html><head><title>t</title><style>p {color: red}</style>"
              "<script>alert('stolen')</script></head><body><p>The <b>CT2</b> console&nbsp;froze.</p>"
              "<ul><li>rebooted</li><li>still frozen</li></ul><script>document.cookie</script>"
              "<!-- hidden comment --></body></html>")
    message = parse(html(markup))
    assert message.text == "The CT2 console froze.\n\n- rebooted\n- still frozen"
    for gone in ("alert", "stolen", "color", "cookie", "hidden comment"):
        assert gone not in message.text


def test_plain_part_is_preferred_over_html():
    message = EmailMessage()
    message["From"] = "jane.doe@hospital.example"
    message["Subject"] = "Both"
    message.set_content("Plain words.")
    message.add_alternative("<p>HTML words.</p>", subtype="html")
    assert parse(message.as_bytes()).text == "Plain words."


GMAIL = ("Thanks, it works again.\n\nOn Mon, Mar 2, 2026 at 9:00 AM St. Example Hospital <\n"
         "pacsdesk@hospital.example> wrote:\n\n" + QUOTED)
OUTLOOK = ("Thanks, it works again.\n\n________________________________\nFrom: St. Example Hospital "
           "<pacsdesk@hospital.example>\nSent: Monday, March 2, 2026 9:00 AM\nTo: Jane Doe "
           "<jane.doe@hospital.example>\nSubject: [PD-000123] New reply: Priors missing in viewer\n\n"
           + NOTICE)
APPLE = ("Thanks, it works again.\n\nSent from my iPhone\n\n> On Mar 2, 2026, at 09:00, St. Example "
         "Hospital <pacsdesk@hospital.example> wrote:\n>\n" + QUOTED)
APPLE_DESKTOP = ("Thanks, it works again.\n\n> On 2 Mar 2026, at 09:00, St. Example Hospital "
                 "<pacsdesk@hospital.example> wrote:\n> \n" + QUOTED)
SIGNATURE = "Thanks, it works again.\n\n-- \nJane Doe\nRadiology, St. Example Hospital\next. 4471"
ORIGINAL = ("Thanks, it works again.\n\n-----Original Message-----\nFrom: PACS Desk\n\n" + NOTICE)


@pytest.mark.parametrize("body", [GMAIL, OUTLOOK, APPLE, APPLE_DESKTOP, SIGNATURE, ORIGINAL],
                         ids=["gmail", "outlook", "apple-iphone", "apple-mail", "signature", "original"])
def test_reply_keeps_only_the_new_words(body):
    message = parse(plain(body))
    assert message.reply == "Thanks, it works again."
    assert message.text.startswith("Thanks, it works again.") and len(message.text) > len(message.reply)


def test_gmail_html_reply_drops_the_quote():
    markup = ('<div dir="ltr">Thanks, it works again.</div><br><div class="gmail_quote">'
              '<div dir="ltr" class="gmail_attr">On Mon, Mar 2, 2026 at 9:00 AM St. Example Hospital &lt;'
              'pacsdesk@hospital.example&gt; wrote:<br></div><blockquote class="gmail_quote">'
              "<p>New reply: ticket PD-000123.</p></blockquote></div>")
    assert parse(html(markup)).reply == "Thanks, it works again."


def test_outlook_html_reply_drops_the_quoted_header_block():
    markup = ('<html><head><style>p.MsoNormal {margin: 0}</style></head><body>'
              '<div class="WordSection1"><p class="MsoNormal">Thanks, it works again.</p></div>'
              '<div id="appendonsend"></div><hr style="display:inline-block;width:98%">'
              '<div id="divRplyFwdMsg"><b>From:</b> St. Example Hospital &lt;pacsdesk@hospital.example&gt;'
              "<br><b>Sent:</b> Monday, March 2, 2026 9:00 AM<br><b>To:</b> Jane Doe<br>"
              "<b>Subject:</b> [PD-000123] New reply</div><div><p>New reply: ticket PD-000123.</p></div>"
              "</body></html>")
    assert parse(html(markup)).reply == "Thanks, it works again."


def test_apple_mail_html_reply_drops_the_cited_blockquote():
    markup = ("<html><body>Thanks, it works again.<br><div><br><blockquote type=\"cite\">"
              "<div>On 2 Mar 2026, at 09:00, St. Example Hospital wrote:</div><div>New reply.</div>"
              "</blockquote></div></body></html>")
    assert parse(html(markup)).reply == "Thanks, it works again."


def test_interleaved_quote_lines_are_dropped_but_answers_kept():
    body = "> Is the viewer open?\nYes, on RR-3.\n> Which study?\nThe CT from this morning."
    assert parse(plain(body)).reply == "Yes, on RR-3.\nThe CT from this morning."


def test_header_values_sender_threading_and_ticket():
    raw = (b"From: =?utf-8?q?Jos=C3=A9?= Ruiz <Jose.Ruiz@Hospital.example>\r\n"
           b"Return-Path: <bounces+jose@hospital.example>\r\nSubject: Re: [PD-000123] New reply\r\n"
           b"Message-ID: <abc@mail.hospital.example>\r\n"
           b"In-Reply-To: <ticket-PD-000123.1780000000.aa@hospital.example>\r\n"
           b"References: <ticket-PD-000123@hospital.example>\r\n"
           b" <ticket-PD-000123.1780000000.aa@hospital.example>\r\n\r\nOk\r\n")
    message = parse(raw)
    assert (message.sender, message.sender_name) == ("jose.ruiz@hospital.example", "José Ruiz")
    assert message.return_path == "bounces+jose@hospital.example"
    assert message.message_id == message.key == "<abc@mail.hospital.example>"
    assert message.in_reply_to == "<ticket-PD-000123.1780000000.aa@hospital.example>"
    assert message.references == ("<ticket-PD-000123@hospital.example>",
                                  "<ticket-PD-000123.1780000000.aa@hospital.example>")
    assert message.ticket_number == "PD-000123" and message.automatic is None


def test_ticket_is_found_through_references_when_the_subject_lost_its_tag():
    raw = (HEAD + b"Subject: Re: your message\r\nReferences: <ticket-PD-000777@hospital.example>\r\n"
           b"\r\nStill broken\r\n")
    assert parse(raw, domain="hospital.example").ticket_number == "PD-000777"
    assert parse(raw, domain="other.example").ticket_number is None
    assert parse(plain("Hi", subject="A new problem")).ticket_number is None


def test_message_without_message_id_gets_a_stable_key():
    raw = b"From: jane.doe@hospital.example\r\nSubject: No id\r\n\r\nHello\r\n"
    first, second = parse(raw), parse(raw)
    assert first.message_id is None and first.key == second.key and first.key.startswith("sha256:")


def test_40_mb_message_is_refused_with_its_header_facts():
    raw = HEAD + b"Subject: Huge\r\nContent-Type: text/plain\r\n\r\n" + b"x" * (40 * 1024 * 1024)
    with pytest.raises(MessageRefused) as refused:
        parse(raw)
    assert refused.value.reason == "the message is larger than the 25 MB limit"
    assert refused.value.key == "<r1@mail.hospital.example>"
    assert refused.value.sender == "jane.doe@hospital.example" and refused.value.automatic is None
    header = raw.partition(b"\r\n\r\n")[0] + b"\r\n\r\n"
    from_header = refuse_oversized(header, InboundLimits())
    assert (from_header.reason, from_header.key) == (refused.value.reason, refused.value.key)


def test_200_attachments_are_refused():
    with pytest.raises(MessageRefused, match="more than 50 attachments") as refused:
        parse(with_files(200, 100))
    assert refused.value.key == "<files@mail.hospital.example>"


def test_attachment_over_the_per_file_limit_is_refused_without_naming_the_file():
    limits = InboundLimits(max_attachment_bytes=1024 * 1024)
    with pytest.raises(MessageRefused) as refused:
        parse(with_files(2, 2 * 1024 * 1024, name="MRN4471234.png"), limits)
    assert refused.value.reason == "attachment 1 is larger than the 1 MB limit"


def test_attachments_come_with_name_type_and_exact_bytes():
    message = parse(with_files(3, 1000))
    assert [(a.filename, a.content_type, a.size) for a in message.attachments] == [
        (f"{n}-shot.png", "image/png", 1000) for n in range(3)]
    assert message.text == "See attached."


def test_executable_attachment_is_reported_with_its_type_and_a_safe_name():
    program = b"MZ\x90\x00" + bytes(60) + b"This program cannot be run in DOS mode"
    raw = (HEAD + b"Subject: Driver\r\nMIME-Version: 1.0\r\n"
           b"Content-Type: multipart/mixed; boundary=XX\r\n\r\n--XX\r\nContent-Type: text/plain\r\n\r\n"
           b"Please install this.\r\n--XX\r\nContent-Type: application/x-msdownload\r\n"
           b"Content-Disposition: attachment; filename=\"../../Windows/setup.exe\"\r\n"
           b"Content-Transfer-Encoding: base64\r\n\r\n" + base64.encodebytes(program) + b"--XX--\r\n")
    [attachment] = parse(raw).attachments
    assert attachment.content_type == "application/x-msdownload"
    assert attachment.data == program and attachment.data.startswith(b"MZ")
    assert "/" not in attachment.filename and attachment.filename.endswith("setup.exe")


def test_calendar_invitation_is_an_attachment_not_body_text():
    raw = (HEAD + b"Subject: Meeting\r\nContent-Type: multipart/mixed; boundary=C\r\n\r\n--C\r\n"
           b"Content-Type: text/plain\r\n\r\nSee invitation.\r\n--C\r\nContent-Type: text/calendar\r\n\r\n"
           b"BEGIN:VCALENDAR\r\nEND:VCALENDAR\r\n--C--\r\n")
    message = parse(raw)
    assert message.text == "See invitation."
    assert [(a.filename, a.content_type) for a in message.attachments] == [("attachment-1", "text/calendar")]


def test_attached_email_is_one_attachment():
    inner = plain("Forwarded words", subject="Inner")
    raw = (HEAD + b"Subject: Fwd\r\nContent-Type: multipart/mixed; boundary=B\r\n\r\n--B\r\n"
           b"Content-Type: text/plain\r\n\r\nSee below.\r\n--B\r\nContent-Type: message/rfc822\r\n"
           b"Content-Disposition: attachment; filename=inner.eml\r\n\r\n" + inner + b"\r\n--B--\r\n")
    message = parse(raw)
    assert message.text == "See below."
    [attachment] = message.attachments
    assert (attachment.filename, attachment.content_type) == ("inner.eml", "message/rfc822")
    assert b"Forwarded words" in attachment.data


@pytest.mark.parametrize(("raw", "reason"), [
    (b"", "the message is empty"),
    (b"\r\n\r\n", "the message is empty"),
    (b"just some bytes without any header\r\n", "the message has no sender address"),
    (b"Subject: no sender\r\n\r\nbody\r\n", "the message has no sender address"),
])
def test_malformed_input_is_refused_with_a_reason(raw, reason):
    with pytest.raises(MessageRefused) as refused:
        parse(raw)
    assert refused.value.reason == reason


def test_broken_mime_structure_is_read_not_raised():
    raw = (HEAD + b"Subject: Broken\r\nContent-Type: multipart/mixed\r\n\r\nno boundary at all\r\n")
    message = parse(raw)
    assert message.sender == "jane.doe@hospital.example"
    raw = (HEAD + b"Subject: Bad base64\r\nContent-Type: text/plain\r\nContent-Transfer-Encoding: base64\r\n"
           b"\r\n!!!not base64###\r\n")
    assert parse(raw).subject == "Bad base64"


def test_very_long_text_is_truncated_and_flagged():
    message = parse(plain("word " * 50_000), InboundLimits(max_text_chars=1000))
    assert len(message.text) == 1000 and message.truncated
