"""Mail settings from ``PACSDESK_MAIL_*`` variables: pure parsers whose errors name the variable.

Rules for the SMTP URL (``PACSDESK_MAIL_URL``):

- empty or unset: e-mail is off;
- ``smtp://user:pass@host:587``: STARTTLS is required (port 587 when none is given); a server
  that does not offer it is refused;
- ``smtps://user:pass@host:465``: TLS from the first byte (port 465 when none is given);
- ``smtp://host:25?starttls=false``: an internal relay without TLS. STARTTLS is still used when
  the server offers it; the message goes in plain text only when it does not. Such a URL may
  carry no user or password, because a password is never sent unencrypted.

User and password are percent-decoded (``%40`` for ``@``). ``?timeout=SECONDS`` (1-300,
default 30) bounds every network step. Certificates are verified against the system's trusted
CAs, or only against ``PACSDESK_MAIL_CA_FILE`` when it is set (a hospital CA).

Passwords never appear in ``repr``/``str`` of these objects nor in any error message.
"""

from __future__ import annotations

import ssl
from collections.abc import Mapping
from dataclasses import dataclass, field
from email.errors import HeaderParseError
from email.headerregistry import Address
from email.utils import parseaddr
from enum import StrEnum
from functools import lru_cache
from pathlib import Path
from urllib.parse import parse_qsl, unquote, urlsplit

DEFAULT_TIMEOUT = 30.0
SMTP_PORTS = {"smtp": 587, "smtps": 465}
IMAP_PORTS = {"imap": 143, "imaps": 993}

SETTINGS_HELP: tuple[tuple[str, str, str], ...] = (
    ("PACSDESK_MAIL_URL", "empty (e-mail off)",
     "Outgoing mail server: `smtp://user:pass@host:587` (STARTTLS required), "
     "`smtps://user:pass@host:465`, or `smtp://relay:25?starttls=false` for a relay without TLS "
     "and without a password."),
    ("PACSDESK_MAIL_PASSWORD_FILE", "none",
     "File holding the SMTP password; overrides the password in `PACSDESK_MAIL_URL`."),
    ("PACSDESK_MAIL_FROM", "none (required when e-mail is on)",
     "Sender of every message, `PACS Desk <pacsdesk@hospital.example>`; its domain names "
     "the Message-IDs."),
    ("PACSDESK_BASE_URL", "none (required when e-mail is on)",
     "Address of PACS Desk as users reach it, for links in messages: `https://pacsdesk.hospital.example`."),
    ("PACSDESK_MAIL_IMAP_URL", "empty (no incoming mail)",
     "Mailbox read for tickets and replies: `imaps://user:pass@host:993/INBOX` or "
     "`imap://user:pass@host:143/INBOX` (STARTTLS required)."),
    ("PACSDESK_MAIL_IMAP_PASSWORD_FILE", "none",
     "File holding the IMAP password; overrides the password in `PACSDESK_MAIL_IMAP_URL`."),
    ("PACSDESK_MAIL_PROCESSED_FOLDER", "Processed",
     "Folder that read messages are moved to (created when missing)."),
    ("PACSDESK_MAIL_CA_FILE", "none (the system's CAs)",
     "PEM file of the CA that signed the mail servers' certificates (a hospital CA)."),
)


class MailConfigError(ValueError):
    """A mail setting is invalid; the message names the variable and never holds a password."""

    def __init__(self, variable: str, problem: str) -> None:
        super().__init__(f"{variable}: {problem}")
        self.variable = variable
        self.problem = problem


class SmtpSecurity(StrEnum):
    """How the SMTP connection is protected."""

    STARTTLS = "starttls"
    SMTPS = "smtps"
    STARTTLS_IF_OFFERED = "starttls-if-offered"


@dataclass(frozen=True)
class SmtpSettings:
    """Where and how to send mail."""

    host: str
    port: int
    security: SmtpSecurity = SmtpSecurity.STARTTLS
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    timeout: float = DEFAULT_TIMEOUT
    ca_file: str | None = None
    helo_name: str = "localhost"

    def describe(self) -> str:
        """The server as shown in logs and pages, without the password."""
        scheme = "smtps" if self.security is SmtpSecurity.SMTPS else "smtp"
        user = f"{self.username}@" if self.username else ""
        return f"{scheme}://{user}{self.host}:{self.port} ({self.security.value})"


@dataclass(frozen=True)
class ImapSettings:
    """Which mailbox to read and where read messages go."""

    host: str
    port: int
    username: str
    password: str = field(repr=False)
    implicit_tls: bool = True
    folder: str = "INBOX"
    processed_folder: str = "Processed"
    timeout: float = DEFAULT_TIMEOUT
    ca_file: str | None = None

    def describe(self) -> str:
        """The mailbox as shown in logs and pages, without the password."""
        scheme = "imaps" if self.implicit_tls else "imap"
        return f"{scheme}://{self.username}@{self.host}:{self.port}/{self.folder}"


@dataclass(frozen=True)
class Identity:
    """Who the messages come from and where their links point."""

    address: str
    display_name: str
    base_url: str

    @property
    def domain(self) -> str:
        """Domain of the sender address, used for Message-IDs."""
        return self.address.rpartition("@")[2].lower()


@dataclass(frozen=True)
class MailSettings:
    """All mail settings; ``smtp`` None means e-mail is off, ``imap`` None means no inbound mail."""

    smtp: SmtpSettings | None = None
    identity: Identity | None = None
    imap: ImapSettings | None = None

    @property
    def enabled(self) -> bool:
        """Whether outgoing e-mail is configured."""
        return self.smtp is not None and self.identity is not None


@lru_cache(maxsize=8)
def tls_context(ca_file: str | None) -> ssl.SSLContext:
    """A verifying TLS context (TLS 1.2 or later): the system's CAs, or only ``ca_file`` when given.

    Loading the system's CAs takes about 0.1 s, so one context per CA file is kept for the life
    of the process (a client context is safe to share); a changed CA file is read on restart.
    """
    context = ssl.create_default_context(cafile=ca_file)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context


def _timeout(variable: str, query: dict[str, str]) -> float:
    """The ``timeout`` query parameter in seconds."""
    raw = query.pop("timeout", None)
    if raw is None:
        return DEFAULT_TIMEOUT
    try:
        value = float(raw)
    except ValueError:
        raise MailConfigError(variable, "timeout must be a number of seconds from 1 to 300") from None
    if not 1 <= value <= 300:
        raise MailConfigError(variable, "timeout must be a number of seconds from 1 to 300")
    return value


def _split(variable: str, raw: str, schemes: Mapping[str, int]
           ) -> tuple[str, str, int, str | None, str | None, str, dict[str, str]]:
    """Split a server URL into scheme, host, port, user, password, path and query."""
    try:
        parts = urlsplit(raw.strip())
        port = parts.port
    except ValueError:
        raise MailConfigError(variable, "has an invalid port or address") from None
    scheme = parts.scheme.lower()
    if scheme not in schemes:
        names = " or ".join(f"{name}://" for name in schemes)
        raise MailConfigError(variable, f"must start with {names}")
    host = parts.hostname
    if not host:
        raise MailConfigError(variable, "must name a host, e.g. mail.hospital.example")
    if parts.fragment:
        raise MailConfigError(variable, "cannot have a #fragment")
    query = dict(parse_qsl(parts.query, keep_blank_values=True))
    username = unquote(parts.username) if parts.username else None
    password = unquote(parts.password) if parts.password is not None else None
    if password is not None and not username:
        raise MailConfigError(variable, "has a password but no user")
    for value in (host, username or "", password or ""):
        if any(ord(c) < 32 or ord(c) == 127 for c in value):
            raise MailConfigError(variable, "cannot contain control characters")
    return scheme, host, port or schemes[scheme], username, password, unquote(parts.path), query


def _no_leftovers(variable: str, query: dict[str, str]) -> None:
    """Refuse query parameters nobody reads."""
    if query:
        raise MailConfigError(variable, f"unknown option {sorted(query)[0]!r} "
                                        "(known: starttls, timeout)")


def read_password_file(raw: str, *, variable: str = "PACSDESK_MAIL_PASSWORD_FILE") -> str:
    """The password held in a file (one trailing newline ignored)."""
    path = Path(raw.strip())
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise MailConfigError(variable, f"cannot read {path}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise MailConfigError(variable, f"{path} is not UTF-8 text") from None
    password = text.rstrip("\r\n")
    if not password:
        raise MailConfigError(variable, f"{path} is empty")
    if "\n" in password or "\r" in password:
        raise MailConfigError(variable, f"{path} must hold the password on one line")
    return password


def parse_ca_file(raw: str, *, variable: str = "PACSDESK_MAIL_CA_FILE") -> str | None:
    """Check a PEM CA file loads; empty means the system's CAs."""
    if not raw.strip():
        return None
    path = raw.strip()
    try:
        ssl.create_default_context(cafile=path)
    except FileNotFoundError:
        raise MailConfigError(variable, f"{path} does not exist") from None
    except (ssl.SSLError, OSError, ValueError):
        raise MailConfigError(variable, f"{path} is not a readable PEM certificate file") from None
    return path


def parse_mail_url(raw: str, *, password_file: str = "", ca_file: str | None = None,
                   helo_name: str = "localhost", variable: str = "PACSDESK_MAIL_URL") -> SmtpSettings | None:
    """Parse the outgoing server URL; None when empty (e-mail off)."""
    if not raw.strip():
        return None
    scheme, host, port, username, password, path, query = _split(variable, raw, SMTP_PORTS)
    if path not in ("", "/"):
        raise MailConfigError(variable, "cannot have a path")
    timeout = _timeout(variable, query)
    starttls = query.pop("starttls", "true").strip().lower()
    _no_leftovers(variable, query)
    if starttls not in ("true", "false"):
        raise MailConfigError(variable, "starttls must be true or false")
    if password_file.strip():
        if not username:
            raise MailConfigError("PACSDESK_MAIL_PASSWORD_FILE", "is set but PACSDESK_MAIL_URL names no user")
        password = read_password_file(password_file)
    if username and password is None:
        raise MailConfigError(variable, "names a user but no password (give one in the URL or "
                                        "in PACSDESK_MAIL_PASSWORD_FILE)")
    if scheme == "smtps":
        if starttls == "false":
            raise MailConfigError(variable, "starttls=false makes no sense with smtps://")
        security = SmtpSecurity.SMTPS
    elif starttls == "false":
        if username:
            raise MailConfigError(variable, "starttls=false allows no user or password: a password "
                                            "is never sent unencrypted")
        security = SmtpSecurity.STARTTLS_IF_OFFERED
    else:
        security = SmtpSecurity.STARTTLS
    return SmtpSettings(host=host, port=port, security=security, username=username,
                        password=password, timeout=timeout, ca_file=ca_file, helo_name=helo_name)


def check_folder(raw: str, *, variable: str) -> str:
    """Check an IMAP folder name: printable ASCII, no wildcards."""
    name = raw.strip()
    if not name:
        raise MailConfigError(variable, "the folder name cannot be empty")
    if len(name) > 100 or any(not 32 <= ord(c) < 127 or c in '*%"\\' for c in name):
        raise MailConfigError(variable, "a folder name uses up to 100 printable ASCII characters, "
                                        'without * % " or backslash')
    return name


def parse_imap_url(raw: str, *, password_file: str = "", processed_folder: str = "Processed",
                   ca_file: str | None = None,
                   variable: str = "PACSDESK_MAIL_IMAP_URL") -> ImapSettings | None:
    """Parse the mailbox URL; None when empty (no inbound mail)."""
    if not raw.strip():
        return None
    scheme, host, port, username, password, path, query = _split(variable, raw, IMAP_PORTS)
    timeout = _timeout(variable, query)
    _no_leftovers(variable, query)
    folder = check_folder(path.strip("/") or "INBOX", variable=variable)
    if password_file.strip():
        password = read_password_file(password_file, variable="PACSDESK_MAIL_IMAP_PASSWORD_FILE")
    if not username or password is None:
        raise MailConfigError(variable, "needs a user and a password (the password may come "
                                        "from PACSDESK_MAIL_IMAP_PASSWORD_FILE)")
    processed = check_folder(processed_folder, variable="PACSDESK_MAIL_PROCESSED_FOLDER")
    if processed.lower() == folder.lower():
        raise MailConfigError("PACSDESK_MAIL_PROCESSED_FOLDER", "must differ from the folder read")
    return ImapSettings(host=host, port=port, username=username, password=password,
                        implicit_tls=scheme == "imaps", folder=folder, processed_folder=processed,
                        timeout=timeout, ca_file=ca_file)


def parse_sender(raw: str, *, organization: str = "PACS Desk",
                 variable: str = "PACSDESK_MAIL_FROM") -> tuple[str, str]:
    """Parse ``Name <address>`` or a bare address into (address, display name)."""
    value = raw.strip()
    if not value:
        raise MailConfigError(variable, "is required when e-mail is on")
    if "\r" in value or "\n" in value:
        raise MailConfigError(variable, "cannot contain line breaks")
    name, address = parseaddr(value)
    try:
        parsed = Address(addr_spec=address)
    except (HeaderParseError, ValueError, IndexError):
        raise MailConfigError(variable, "must be an address such as pacsdesk@hospital.example") from None
    if not parsed.username or "." not in parsed.domain:
        raise MailConfigError(variable, "must be an address such as pacsdesk@hospital.example")
    return parsed.addr_spec, (name.strip() or organization.strip() or "PACS Desk")


def parse_base_url(raw: str, *, variable: str = "PACSDESK_BASE_URL") -> str:
    """Check the public address of PACS Desk; returned without a trailing slash."""
    value = raw.strip()
    if not value:
        raise MailConfigError(variable, "is required when e-mail is on (links in messages)")
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 - raises on a bad port
    except ValueError:
        raise MailConfigError(variable, "has an invalid port or address") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise MailConfigError(variable, "must be an http:// or https:// address with a host")
    if parts.query or parts.fragment or parts.username:
        raise MailConfigError(variable, "cannot have a user, ?query or #fragment")
    if any(ord(c) <= 32 or ord(c) == 127 for c in value):
        raise MailConfigError(variable, "cannot contain spaces or control characters")
    return value.rstrip("/")


def load_mail_settings(environ: Mapping[str, str], *, organization: str = "PACS Desk") -> MailSettings:
    """All mail settings from the environment; raise MailConfigError naming the first bad one."""

    def get(name: str, default: str = "") -> str:
        return environ.get(name, default)

    ca_file = parse_ca_file(get("PACSDESK_MAIL_CA_FILE"))
    base_url = get("PACSDESK_BASE_URL")
    helo = "localhost"
    if base_url.strip():
        base_url = parse_base_url(base_url)
        helo = urlsplit(base_url).hostname or helo
    smtp = parse_mail_url(get("PACSDESK_MAIL_URL"), password_file=get("PACSDESK_MAIL_PASSWORD_FILE"),
                          ca_file=ca_file, helo_name=helo)
    imap = parse_imap_url(get("PACSDESK_MAIL_IMAP_URL"),
                          password_file=get("PACSDESK_MAIL_IMAP_PASSWORD_FILE"),
                          processed_folder=get("PACSDESK_MAIL_PROCESSED_FOLDER", "Processed"),
                          ca_file=ca_file)
    identity = None
    if smtp is not None or imap is not None:
        address, name = parse_sender(get("PACSDESK_MAIL_FROM"), organization=organization)
        identity = Identity(address=address, display_name=name, base_url=parse_base_url(base_url))
    return MailSettings(smtp=smtp, identity=identity, imap=imap)
