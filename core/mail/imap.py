"""Read the help desk's mailbox over IMAP: list waiting messages, fetch one, move it away.

Exactly-once processing is the caller's, with a table of processed message keys
(``InboundMessage.key``: the Message-ID, or a digest of the message when it has none)::

    with Mailbox(settings) as box:
        for entry in box.pending():
            raw = box.fetch(entry.uid)
            key = ...parse(raw) or message_key(raw)...
            if key is not in the table:
                file it and remember the key, in one transaction
            box.move_to_processed(entry.uid)

A crash after the commit and before the move leaves the message in the folder; the next run
fetches it again, finds its key and only moves it. Messages are moved with MOVE when the
server offers it, otherwise COPY, ``\\Deleted`` and (UID) EXPUNGE; a crash inside that
fallback can leave a second copy in the processed folder, never a lost message. The
processed folder is created (and subscribed) when missing. Every network step is bounded
by the settings' timeout; every failure is an ``ImapError`` whose text never holds the
password.
"""

from __future__ import annotations

import imaplib
import re
import ssl
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from types import TracebackType

from core.mail.settings import ImapSettings, tls_context

FETCH_ITEM = re.compile(rb"UID (\d+)|RFC822\.SIZE (\d+)")


class ImapError(Exception):
    """The mailbox could not be read or changed; ``temporary`` says whether a retry may help."""

    def __init__(self, message: str, *, temporary: bool = True) -> None:
        super().__init__(message)
        self.temporary = temporary


class MessageGone(ImapError):
    """The message is no longer in the folder (another reader moved or deleted it)."""


@dataclass(frozen=True)
class MailboxEntry:
    """A waiting message: its UID in the folder and its size in bytes."""

    uid: int
    size: int


def _quote(name: str) -> str:
    """A folder name as an IMAP quoted string."""
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _words(data: list) -> str:
    """A server's response text as one line."""
    parts = [item.decode("utf-8", "replace") if isinstance(item, bytes) else str(item)
             for item in data if item is not None and not isinstance(item, tuple)]
    return " ".join(" ".join(parts).split())[:300]


class Mailbox:
    """A logged-in IMAP connection with the settings' folder selected."""

    capabilities: frozenset[str]

    def __init__(self, settings: ImapSettings) -> None:
        """Connect (IMAPS or STARTTLS), log in and select the folder; raise ImapError on failure."""
        self.settings = settings
        self._folder_ready = False
        self._client: imaplib.IMAP4 | None = None
        with self._step("connect"):
            self._client = self._connect()
        try:
            with self._step("log in"):
                self._log_in()
                self.capabilities = self._capabilities()
            with self._step(f"open folder {settings.folder}"):
                self._ok(self._client.select(_quote(settings.folder)), f"open folder {settings.folder}",
                         temporary=False)
        except BaseException:
            self.close()
            raise

    def _connect(self) -> imaplib.IMAP4:
        """Open the connection and secure it."""
        settings = self.settings
        context = tls_context(settings.ca_file)
        if settings.implicit_tls:
            return imaplib.IMAP4_SSL(settings.host, settings.port, ssl_context=context,
                                     timeout=settings.timeout)
        client = imaplib.IMAP4(settings.host, settings.port, timeout=settings.timeout)
        if "STARTTLS" not in client.capabilities:
            client.shutdown()
            raise ImapError("connect: the server does not offer STARTTLS; use imaps://", temporary=False)
        try:
            client.starttls(ssl_context=context)
        except BaseException:
            client.shutdown()
            raise
        return client

    def _log_in(self) -> None:
        """LOGIN, or AUTHENTICATE PLAIN in UTF-8 for a name or password beyond ASCII."""
        user, password = self.settings.username, self.settings.password
        if (user + password).isascii():
            self.client.login(user, password)
        else:
            self.client.authenticate("PLAIN", lambda _: f"\0{user}\0{password}".encode())

    @property
    def client(self) -> imaplib.IMAP4:
        """The open connection."""
        if self._client is None:
            raise ImapError("the mailbox is closed", temporary=False)
        return self._client

    def _capabilities(self) -> frozenset[str]:
        """What the server offers once logged in (MOVE and UIDPLUS appear only then)."""
        _typ, data = self.client.capability()
        words = b" ".join(item for item in data if isinstance(item, bytes)).decode("ascii", "replace")
        return frozenset(word.upper() for word in words.split())

    @contextmanager
    def _step(self, step: str) -> Iterator[None]:
        """Turn what imaplib and the network raise during ``step`` into ImapError."""
        try:
            yield
        except ImapError:
            raise
        except imaplib.IMAP4.abort as exc:
            raise ImapError(f"{step}: the connection broke ({exc})") from None
        except imaplib.IMAP4.error as exc:
            text = str(exc)
            # A refused LOGIN is the credentials, unless the server says it is unavailable (RFC 5530).
            permanent = step == "log in" and "UNAVAILABLE" not in text.upper()
            raise ImapError(f"{step}: the server refused ({text})", temporary=not permanent) from None
        except ssl.SSLCertVerificationError as exc:
            raise ImapError(f"{step}: the server's certificate is not trusted: {exc.verify_message}",
                            temporary=False) from None
        except TimeoutError:
            raise ImapError(f"{step}: no answer within {self.settings.timeout:g} s") from None
        except ConnectionRefusedError:
            raise ImapError(f"{step}: connection refused by {self.settings.host}:{self.settings.port}") \
                from None
        except (OSError, ssl.SSLError) as exc:
            raise ImapError(f"{step}: network error ({exc.strerror or exc.__class__.__name__})") from None

    @staticmethod
    def _ok(response: tuple[str, list], step: str, *, temporary: bool = True) -> list:
        """The data of an OK response; ImapError with the server's words otherwise."""
        typ, data = response
        if typ != "OK":
            raise ImapError(f"{step}: the server answered {typ} {_words(data)}".strip(),
                            temporary=temporary)
        return data

    def pending(self, limit: int = 100) -> list[MailboxEntry]:
        """Up to ``limit`` messages waiting in the folder, oldest first, with their sizes."""
        with self._step("list messages"):
            data = self._ok(self.client.uid("SEARCH", "UNDELETED"), "list messages")
            uids = [int(uid) for uid in b" ".join(data).split()][:limit]
            if not uids:
                return []
            data = self._ok(self.client.uid("FETCH", ",".join(map(str, uids)), "(RFC822.SIZE)"),
                            "list messages")
        sizes: dict[int, int] = {}
        for item in data:
            line = item[0] if isinstance(item, tuple) else item
            if not isinstance(line, bytes):
                continue
            uid = size = None
            for found_uid, found_size in FETCH_ITEM.findall(line):
                uid = int(found_uid) if found_uid else uid
                size = int(found_size) if found_size else size
            if uid is not None and size is not None:
                sizes[uid] = size
        return [MailboxEntry(uid, sizes[uid]) for uid in uids if uid in sizes]

    def _fetch(self, uid: int, section: str) -> bytes:
        """One body section of message ``uid``; MessageGone when it is not there."""
        step = f"fetch message {uid}"
        with self._step(step):
            data = self._ok(self.client.uid("FETCH", str(uid), f"(BODY.PEEK[{section}])"), step)
        for item in data:
            if isinstance(item, tuple) and len(item) == 2 and isinstance(item[1], bytes):
                return item[1]
        raise MessageGone(f"{step}: the message is no longer in {self.settings.folder}")

    def fetch(self, uid: int) -> bytes:
        """The whole raw message ``uid``, without marking it read."""
        return self._fetch(uid, "")

    def fetch_header(self, uid: int) -> bytes:
        """Only the header of message ``uid`` (to check a too-large message without downloading it)."""
        return self._fetch(uid, "HEADER")

    def _ensure_processed_folder(self) -> None:
        """Create and subscribe the processed folder when it does not exist."""
        if self._folder_ready:
            return
        folder = _quote(self.settings.processed_folder)
        step = f"create folder {self.settings.processed_folder}"
        with self._step(step):
            data = self._ok(self.client.list('""', folder), step)
            if not any(item for item in data):
                self._ok(self.client.create(folder), step)
                self.client.subscribe(folder)
        self._folder_ready = True

    def move_to_processed(self, uid: int) -> None:
        """Move message ``uid`` to the processed folder (MOVE, or COPY + \\Deleted + EXPUNGE)."""
        self._ensure_processed_folder()
        folder = _quote(self.settings.processed_folder)
        step = f"move message {uid} to {self.settings.processed_folder}"
        with self._step(step):
            if "MOVE" in self.capabilities:
                self._ok(self.client.uid("MOVE", str(uid), folder), step)
                return
            self._ok(self.client.uid("COPY", str(uid), folder), step)
            self._ok(self.client.uid("STORE", str(uid), "+FLAGS.SILENT", r"(\Deleted)"), step)
            if "UIDPLUS" in self.capabilities:
                self._ok(self.client.uid("EXPUNGE", str(uid)), step)
            else:
                self._ok(self.client.expunge(), step)

    def close(self) -> None:
        """Log out and close the connection; errors while closing are ignored."""
        client, self._client = self._client, None
        if client is None:
            return
        with suppress(OSError):
            client.logout()

    def __enter__(self) -> Mailbox:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self.close()
