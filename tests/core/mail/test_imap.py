"""Reading the help desk's mailbox from a real Dovecot: list, fetch, move, exactly-once after a crash."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace

import pytest

from core.mail.imap import ImapError, Mailbox, MessageGone
from core.mail.inbound import InboundLimits, parse, refuse_oversized
from tests.core.mail.conftest import MailCA
from tests.core.mail.dovecot import PLAIN_CAPABILITIES, UTF8_PASSWORD, UTF8_USER, Dovecot, run_dovecot

pytestmark = pytest.mark.integration


def mail(number: int, subject: str = "Viewer slow") -> bytes:
    """A small message from a requester, numbered in its Message-ID."""
    return (f"From: Jane Doe <jane.doe@hospital.example>\r\nTo: pacsdesk@hospital.example\r\n"
            f"Subject: {subject}\r\nMessage-ID: <m{number}@mail.hospital.example>\r\n"
            f"Date: Mon, 02 Mar 2026 09:00:00 +0000\r\n\r\nMessage number {number}.\r\n").encode()


@pytest.fixture
def dovecot(test_ca: MailCA) -> Iterator[Dovecot]:
    """Dovecot as installed: MOVE and UIDPLUS offered."""
    with run_dovecot(test_ca) as server:
        yield server


@pytest.fixture
def old_dovecot(test_ca: MailCA) -> Iterator[Dovecot]:
    """Dovecot advertising neither MOVE nor UIDPLUS, like older servers."""
    with run_dovecot(test_ca, capabilities=PLAIN_CAPABILITIES) as server:
        yield server


def test_lists_waiting_messages_oldest_first_with_sizes_and_fetches_them(dovecot):
    for number in (1, 2, 3):
        dovecot.append(mail(number))
    with Mailbox(dovecot.settings()) as box:
        entries = box.pending()
        assert [e.size for e in entries] == [len(mail(n)) for n in (1, 2, 3)]
        assert [parse(box.fetch(e.uid)).message_id for e in entries] == [
            "<m1@mail.hospital.example>", "<m2@mail.hospital.example>", "<m3@mail.hospital.example>"]
        assert box.pending(limit=2) == entries[:2]
        assert b"Message number" not in box.fetch_header(entries[0].uid)
        assert b"Subject: Viewer slow" in box.fetch_header(entries[0].uid)


def test_starttls_on_the_plain_port_reads_the_same_mailbox(dovecot):
    dovecot.append(mail(1))
    with Mailbox(dovecot.settings(implicit_tls=False)) as box:
        [entry] = box.pending()
        assert parse(box.fetch(entry.uid)).message_id == "<m1@mail.hospital.example>"


@pytest.mark.parametrize("server", ["dovecot", "old_dovecot"])
def test_moved_message_lands_in_a_created_processed_folder(server, request):
    imap: Dovecot = request.getfixturevalue(server)
    imap.append(mail(1))
    imap.append(mail(2))
    assert "Processed" not in imap.folders()
    with Mailbox(imap.settings()) as box:
        assert ("MOVE" in box.capabilities) is (server == "dovecot")
        first = box.pending()[0]
        box.move_to_processed(first.uid)
        assert [e.uid for e in box.pending()] != [first.uid] and len(box.pending()) == 1
        with pytest.raises(MessageGone):
            box.fetch(first.uid)
    assert "Processed" in imap.folders()
    assert imap.message_ids("Processed") == ["<m1@mail.hospital.example>"]
    assert imap.message_ids("INBOX") == ["<m2@mail.hospital.example>"]


def test_message_refetched_after_a_crash_before_moving_is_skipped_by_its_key(dovecot):
    dovecot.append(mail(1, "Printer on reading room 2 jams"))
    processed: set[str] = set()
    filed: list[str] = []

    def run(crash_before_move: bool) -> None:
        """One run of an inbound job: fetch, file unless known, remember, move."""
        with Mailbox(dovecot.settings()) as box:
            for entry in box.pending():
                message = parse(box.fetch(entry.uid))
                if message.key not in processed:
                    filed.append(message.subject)
                    processed.add(message.key)
                if crash_before_move:
                    return
                box.move_to_processed(entry.uid)

    run(crash_before_move=True)
    assert dovecot.message_ids("INBOX") == ["<m1@mail.hospital.example>"]
    run(crash_before_move=False)
    assert filed == ["Printer on reading room 2 jams"]
    assert processed == {"<m1@mail.hospital.example>"}
    assert dovecot.message_ids("INBOX") == []
    assert dovecot.message_ids("Processed") == ["<m1@mail.hospital.example>"]


def test_wrong_password_is_a_permanent_error_without_the_password(dovecot):
    with pytest.raises(ImapError) as refused:
        Mailbox(dovecot.settings(password="wrong-password-7"))
    assert not refused.value.temporary
    assert "log in" in str(refused.value) and "wrong-password-7" not in str(refused.value)


def test_missing_folder_is_a_permanent_error(dovecot):
    with pytest.raises(ImapError, match="open folder Tickets: the server answered NO") as refused:
        Mailbox(replace(dovecot.settings(), folder="Tickets"))
    assert not refused.value.temporary


def test_password_beyond_ascii_logs_in(dovecot):
    with Mailbox(replace(dovecot.settings(), username=UTF8_USER, password=UTF8_PASSWORD)) as box:
        assert box.pending() == []


def test_untrusted_certificate_is_refused(dovecot):
    with pytest.raises(ImapError, match="certificate is not trusted") as refused:
        Mailbox(replace(dovecot.settings(), ca_file=None))
    assert not refused.value.temporary


def test_message_over_the_size_limit_is_refused_from_its_header_and_moved(dovecot):
    big = mail(9).replace(b"\r\n\r\n", b"\r\nContent-Type: text/plain\r\n\r\n", 1) + b"x" * (2 * 1024 * 1024)
    dovecot.append(big)
    limits = InboundLimits(max_message_bytes=1024 * 1024)
    with Mailbox(dovecot.settings()) as box:
        [entry] = box.pending()
        assert entry.size > limits.max_message_bytes
        refused = refuse_oversized(box.fetch_header(entry.uid), limits)
        box.move_to_processed(entry.uid)
    assert refused.reason == "the message is larger than the 1 MB limit"
    assert (refused.key, refused.sender) == ("<m9@mail.hospital.example>", "jane.doe@hospital.example")
    assert dovecot.message_ids("Processed") == ["<m9@mail.hospital.example>"]
