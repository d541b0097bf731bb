"""Send one message over SMTP and say what happened: sent, try again later, or give up.

Every network step (connect, TLS, each command) is bounded by the settings' timeout. The
result keeps the server's own reply. ``stage`` tells where it ended: a failure at ``connect``,
``tls``, ``auth`` or ``sender`` is the server or the configuration and would hit every message
alike, so a delivery job should keep the message and warn the administrator rather than drop
it; a failure at ``recipients`` or ``data`` belongs to this message (``message_specific``).

A message is best sent to one recipient: when the server takes some recipients and refuses
others, the result is ``sent`` and lists the refused ones. A timeout after the message's data
went out is reported as temporary, so a retry may deliver it twice (SMTP cannot tell).
"""

from __future__ import annotations

import copy
import smtplib
import ssl
from dataclasses import dataclass
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import getaddresses
from enum import StrEnum

from core.mail.compose import check_address, compose, mail_test_notice
from core.mail.settings import Identity, SmtpSecurity, SmtpSettings, tls_context


class SendStatus(StrEnum):
    """What a delivery attempt came to."""

    SENT = "sent"
    TEMPORARY = "temporary"
    PERMANENT = "permanent"


class Stage(StrEnum):
    """The step of the SMTP conversation at which an attempt ended."""

    CONNECT = "connect"
    TLS = "tls"
    AUTH = "auth"
    SENDER = "sender"
    RECIPIENTS = "recipients"
    DATA = "data"
    DONE = "done"


@dataclass(frozen=True)
class RefusedRecipient:
    """A recipient the server refused, with its reply."""

    address: str
    code: int
    reply: str


@dataclass(frozen=True)
class SendResult:
    """The outcome of one attempt, with the server's reply code and text."""

    status: SendStatus
    stage: Stage
    code: int | None
    reply: str
    refused: tuple[RefusedRecipient, ...] = ()

    @property
    def retry(self) -> bool:
        """Whether trying the same message later may succeed."""
        return self.status is SendStatus.TEMPORARY

    @property
    def message_specific(self) -> bool:
        """Whether the failure is about this message rather than the server or the settings."""
        return self.stage in (Stage.RECIPIENTS, Stage.DATA)

    def describe(self) -> str:
        """One line for logs and the Jobs page."""
        code = f"{self.code} " if self.code is not None else ""
        where = "" if self.status is SendStatus.SENT else f" at {self.stage.value}"
        return f"{self.status.value}{where}: {code}{self.reply}".strip()


def _text(reply: bytes | str) -> str:
    """A server reply as one clean line."""
    text = reply.decode("utf-8", "replace") if isinstance(reply, bytes) else reply
    return " ".join(text.split())[:500]


def _by_code(code: int) -> SendStatus:
    """4xx is temporary, 5xx (and anything else unexpected) permanent."""
    return SendStatus.TEMPORARY if 400 <= code < 500 else SendStatus.PERMANENT


def _timed_out(settings: SmtpSettings, stage: Stage) -> SendResult:
    """The result of a step that got no answer in time."""
    return SendResult(SendStatus.TEMPORARY, stage, None, f"no answer within {settings.timeout:g} s")


def _connect(settings: SmtpSettings, context: ssl.SSLContext) -> smtplib.SMTP:
    """Open the connection, TLS first for SMTPS."""
    if settings.security is SmtpSecurity.SMTPS:
        return smtplib.SMTP_SSL(settings.host, settings.port, local_hostname=settings.helo_name,
                                timeout=settings.timeout, context=context)
    return smtplib.SMTP(settings.host, settings.port, local_hostname=settings.helo_name,
                        timeout=settings.timeout)


def _converse(client: smtplib.SMTP, settings: SmtpSettings, context: ssl.SSLContext,
              message: EmailMessage, progress: list[Stage]) -> SendResult:
    """EHLO, STARTTLS, AUTH and the message itself; ``progress`` records the current stage."""
    client.ehlo()
    progress.append(Stage.TLS)
    if settings.security is not SmtpSecurity.SMTPS:
        if client.has_extn("starttls"):
            client.starttls(context=context)
            client.ehlo()
        elif settings.security is SmtpSecurity.STARTTLS:
            return SendResult(SendStatus.PERMANENT, Stage.TLS, None,
                              "the server does not offer STARTTLS; use smtps:// or add ?starttls=false "
                              "for a relay without TLS")
    if settings.username:
        progress.append(Stage.AUTH)
        client.login(settings.username, settings.password or "")
    progress.append(Stage.SENDER)
    sender, recipients = envelope(message)
    code, reply = client.mail(sender)
    if code != 250:
        raise smtplib.SMTPSenderRefused(code, reply, sender)
    progress.append(Stage.RECIPIENTS)
    refused: dict[str, tuple[int, bytes]] = {}
    for recipient in recipients:
        code, reply = client.rcpt(recipient)
        if code not in (250, 251):
            refused[recipient] = (code, reply)
    if len(refused) == len(recipients):
        raise smtplib.SMTPRecipientsRefused(refused)
    progress.append(Stage.DATA)
    code, reply = client.data(_wire_bytes(message))
    if code != 250:
        raise smtplib.SMTPDataError(code, reply)
    return SendResult(SendStatus.SENT, Stage.DONE, code, _text(reply), tuple(
        RefusedRecipient(address, rcode, _text(rtext)) for address, (rcode, rtext) in refused.items()))


def envelope(message: EmailMessage) -> tuple[str, list[str]]:
    """The envelope sender (the From address) and every To, Cc and Bcc recipient."""
    senders = getaddresses(message.get_all("From", []))
    if not senders or not senders[0][1]:
        raise ValueError("the message has no From address")
    fields = [*message.get_all("To", []), *message.get_all("Cc", []), *message.get_all("Bcc", [])]
    recipients = list(dict.fromkeys(address for _, address in getaddresses(fields) if address))
    if not recipients:
        raise ValueError("the message has no recipient")
    return senders[0][1], recipients


def _wire_bytes(message: EmailMessage) -> bytes:
    """The message as sent: CRLF line ends, non-ASCII headers encoded, Bcc left out."""
    outgoing = copy.copy(message)
    del outgoing["Bcc"]
    return outgoing.as_bytes(policy=SMTP)


def send(settings: SmtpSettings, message: EmailMessage) -> SendResult:
    """Deliver ``message`` to its To/Cc/Bcc recipients; ValueError if it has no From or recipient."""
    context = tls_context(settings.ca_file)
    progress = [Stage.CONNECT]
    client: smtplib.SMTP | None = None
    try:
        client = _connect(settings, context)
        return _converse(client, settings, context, message, progress)
    except smtplib.SMTPRecipientsRefused as exc:
        codes = [code for code, _ in exc.recipients.values()]
        status = SendStatus.TEMPORARY if any(400 <= c < 500 for c in codes) else SendStatus.PERMANENT
        refused = tuple(RefusedRecipient(a, c, _text(t)) for a, (c, t) in exc.recipients.items())
        first = refused[0]
        return SendResult(status, Stage.RECIPIENTS, first.code, first.reply, refused)
    except smtplib.SMTPDataError as exc:
        return SendResult(_by_code(exc.smtp_code), Stage.DATA, exc.smtp_code, _text(exc.smtp_error))
    except smtplib.SMTPResponseException as exc:
        return SendResult(_by_code(exc.smtp_code), progress[-1], exc.smtp_code, _text(exc.smtp_error))
    except ssl.SSLCertVerificationError as exc:
        return SendResult(SendStatus.PERMANENT, Stage.TLS, None,
                          f"the server's certificate is not trusted: {exc.verify_message}")
    except ssl.SSLError as exc:
        return SendResult(SendStatus.TEMPORARY, Stage.TLS, None, f"TLS failed: {exc.reason or exc}")
    except smtplib.SMTPNotSupportedError as exc:
        return SendResult(SendStatus.PERMANENT, progress[-1], None, _text(str(exc)))
    except smtplib.SMTPServerDisconnected as exc:
        if isinstance(exc.__context__, TimeoutError):
            return _timed_out(settings, progress[-1])
        return SendResult(SendStatus.TEMPORARY, progress[-1], None,
                          f"the server closed the connection ({_text(str(exc)) or 'no reason'})")
    except TimeoutError:
        return _timed_out(settings, progress[-1])
    except ConnectionRefusedError:
        return SendResult(SendStatus.TEMPORARY, Stage.CONNECT, None,
                          f"connection refused by {settings.host}:{settings.port}")
    except smtplib.SMTPException as exc:  # before OSError, of which it is a kind
        # e.g. "No suitable authentication method found": the settings, not the moment
        status = SendStatus.PERMANENT if progress[-1] is Stage.AUTH else SendStatus.TEMPORARY
        return SendResult(status, progress[-1], None, _text(str(exc)))
    except OSError as exc:
        return SendResult(SendStatus.TEMPORARY, progress[-1], None,
                          f"network error: {exc.strerror or exc.__class__.__name__}")
    finally:
        if client is not None:
            _quit(client)


def _quit(client: smtplib.SMTP) -> None:
    """Say QUIT and close; a failure here cannot undo a delivery, so it is ignored."""
    try:
        client.quit()
    except (smtplib.SMTPException, OSError):
        client.close()


def send_test(settings: SmtpSettings, identity: Identity, address: str) -> SendResult:
    """Send the ``pacsdesk mail test`` message to ``address`` and return the server's answer."""
    message = compose(identity, check_address(address), mail_test_notice())
    return send(settings, message)
