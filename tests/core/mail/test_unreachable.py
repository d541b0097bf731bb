"""Unreachable mail servers: a silent one costs one timeout, not a hang; a closed port fails at once."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from email.message import EmailMessage

import pytest

from core.mail.compose import Notice, compose
from core.mail.imap import ImapError, Mailbox
from core.mail.settings import ImapSettings, SmtpSecurity, SmtpSettings
from core.mail.smtp import SendStatus, Stage, send
from tests.core.mail.conftest import IDENTITY
from tests.helpers import OVERRUN, free_port

TIMEOUT = 1.0


def hello() -> EmailMessage:
    """A small message to send."""
    return compose(IDENTITY, "jane.doe@hospital.example", Notice(subject="Hello", paragraphs=("Hi.",)))


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A loopback port whose server accepts connections and never sends a byte."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.1)
        while not stop.is_set():
            try:
                accepted.append(listener.accept()[0])
            except TimeoutError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield listener.getsockname()[1]
    stop.set()
    thread.join(5)
    for connection in accepted:
        connection.close()
    listener.close()


@pytest.mark.parametrize("security", [SmtpSecurity.STARTTLS, SmtpSecurity.SMTPS])
def test_silent_smtp_server_is_a_temporary_failure_after_the_timeout(silent_port, security):
    settings = SmtpSettings(host="127.0.0.1", port=silent_port, security=security, timeout=TIMEOUT)
    started = time.monotonic()
    result = send(settings, hello())
    assert time.monotonic() - started < TIMEOUT + OVERRUN
    assert result.status is SendStatus.TEMPORARY and result.stage is Stage.CONNECT
    assert result.reply == "no answer within 1 s"


@pytest.mark.parametrize("implicit_tls", [True, False])
def test_silent_imap_server_raises_a_temporary_error_after_the_timeout(silent_port, implicit_tls):
    settings = ImapSettings(host="127.0.0.1", port=silent_port, username="desk", password="pw",
                            implicit_tls=implicit_tls, timeout=TIMEOUT)
    started = time.monotonic()
    with pytest.raises(ImapError) as error:
        Mailbox(settings)
    assert time.monotonic() - started < TIMEOUT + OVERRUN
    assert str(error.value) == "connect: no answer within 1 s" and error.value.temporary


def test_closed_smtp_port_is_a_temporary_failure():
    settings = SmtpSettings(host="127.0.0.1", port=free_port(), timeout=2)
    result = send(settings, hello())
    assert result.status is SendStatus.TEMPORARY and result.stage is Stage.CONNECT
    assert result.reply == f"connection refused by 127.0.0.1:{settings.port}"


def test_closed_imap_port_is_a_temporary_error():
    settings = ImapSettings(host="127.0.0.1", port=free_port(), username="desk", password="pw", timeout=5)
    with pytest.raises(ImapError) as error:
        Mailbox(settings)
    assert str(error.value) == f"connect: connection refused by 127.0.0.1:{settings.port}"
    assert error.value.temporary
