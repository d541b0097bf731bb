"""A real Dovecot IMAP server for one test: generated configuration, Maildir and users in a tmp folder."""

from __future__ import annotations

import grp
import imaplib
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from core.mail.settings import ImapSettings
from tests.core.mail.conftest import MailCA
from tests.helpers import free_port, require

IMAP_USER = "helpdesk"
IMAP_PASSWORD = "imap-secret-42"
# A second account whose password is not ASCII.
UTF8_USER, UTF8_PASSWORD = "radiologie", "Grüße-aus-Köln-7"
# What Dovecot advertises when MOVE and UIDPLUS are hidden, to exercise the COPY fallback.
PLAIN_CAPABILITIES = "IMAP4rev1 LITERAL+ SASL-IR ID ENABLE IDLE"


def dovecot_binary() -> str:
    """Path of Dovecot's master binary (in /usr/sbin, often not on a user's PATH), or skip."""
    path = shutil.which("dovecot") or shutil.which("dovecot", path="/usr/sbin")
    require(path is not None, "dovecot is not installed", "PACSDESK_REQUIRE_INTEGRATION")
    assert path
    return path


@dataclass(frozen=True)
class Dovecot:
    """A running Dovecot: its ports and the CA file that trusts its certificate."""

    imap_port: int
    imaps_port: int
    ca_file: str

    def settings(self, *, implicit_tls: bool = True, password: str = IMAP_PASSWORD,
                 processed_folder: str = "Processed", timeout: float = 5) -> ImapSettings:
        """Client settings for the test user's INBOX."""
        return ImapSettings(host="127.0.0.1", port=self.imaps_port if implicit_tls else self.imap_port,
                            username=IMAP_USER, password=password, implicit_tls=implicit_tls,
                            processed_folder=processed_folder, timeout=timeout, ca_file=self.ca_file)

    @contextmanager
    def client(self) -> Iterator[imaplib.IMAP4_SSL]:
        """The test's own IMAP connection, for putting messages in and looking at folders."""
        import ssl

        context = ssl.create_default_context(cafile=self.ca_file)
        client = imaplib.IMAP4_SSL("127.0.0.1", self.imaps_port, ssl_context=context, timeout=10)
        try:
            client.login(IMAP_USER, IMAP_PASSWORD)
            yield client
        finally:
            client.logout()

    def append(self, raw: bytes, folder: str = "INBOX") -> None:
        """Put a message into ``folder`` with IMAP APPEND."""
        with self.client() as client:
            typ, data = client.append(folder, None, None, raw)
            assert typ == "OK", data

    def message_ids(self, folder: str) -> list[str]:
        """Message-IDs of the undeleted messages in ``folder`` (empty if it does not exist)."""
        with self.client() as client:
            typ, _ = client.select(f'"{folder}"', readonly=True)
            if typ != "OK":
                return []
            _, data = client.uid("SEARCH", "UNDELETED")
            ids = []
            for uid in data[0].split():
                _, fetched = client.uid("FETCH", uid, "(BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)])")
                header = bytes(fetched[0][1]).decode().strip()
                ids.append(header.partition(":")[2].strip())
            return ids

    def folders(self) -> list[str]:
        """Names of the user's folders."""
        with self.client() as client:
            _, data = client.list()
            return [line.decode().rsplit(" ", 1)[1].strip('"') for line in data if isinstance(line, bytes)]


def _config(folder: Path, ca: MailCA, imap_port: int, imaps_port: int, capabilities: str | None) -> str:
    """dovecot.conf for one test: loopback only, passwd-file user, Maildir under ``folder``."""
    if os.geteuid() == 0:
        # Dovecot refuses to run its login processes or mail access as root: use its own users.
        internal, login = "dovecot", "dovenull"
    else:
        internal = login = pwd.getpwuid(os.geteuid()).pw_name
    mail_user = pwd.getpwnam(internal)
    extra = f"protocol imap {{\n  imap_capability = {capabilities}\n}}\n" if capabilities else ""
    return f"""
base_dir = {folder}/run
state_dir = {folder}/state
log_path = {folder}/dovecot.log
protocols = imap
listen = 127.0.0.1
ssl = required
ssl_cert = <{ca.cert_path}
ssl_key = <{ca.key_path}
default_internal_user = {internal}
default_internal_group = {grp.getgrgid(mail_user.pw_gid).gr_name}
default_login_user = {login}
first_valid_uid = {mail_user.pw_uid}
auth_mechanisms = plain login
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {folder}/passwd
}}
userdb {{
  driver = static
  args = uid={mail_user.pw_uid} gid={mail_user.pw_gid} home={folder}/home/%u
}}
mail_location = maildir:~/Maildir
service imap-login {{
  chroot =
  inet_listener imap {{
    address = 127.0.0.1
    port = {imap_port}
  }}
  inet_listener imaps {{
    address = 127.0.0.1
    port = {imaps_port}
    ssl = yes
  }}
}}
service anvil {{
  chroot =
}}
{extra}"""


def wait_until_listening(port: int, process: subprocess.Popen, log: Path, seconds: float = 30) -> None:
    """Wait for ``port`` to accept connections, or fail with Dovecot's log."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"dovecot exited with {process.returncode}: "
                        f"{log.read_text()[-2000:] if log.exists() else ''}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    pytest.fail(f"dovecot did not listen on {port} within {seconds} s")


@contextmanager
def run_dovecot(ca: MailCA, *, capabilities: str | None = None) -> Iterator[Dovecot]:
    """Start Dovecot in the foreground (-F) for one test and stop it afterwards."""
    binary = dovecot_binary()
    # Not pytest's tmp_path: its parents are private to the user, and Dovecot's own users
    # (when the tests run as root) must reach the sockets and the Maildir.
    folder = Path(tempfile.mkdtemp(prefix="pacsdesk-dovecot-"))
    try:
        home = folder / "home"
        home.mkdir()
        (folder / "passwd").write_text(f"{IMAP_USER}:{{PLAIN}}{IMAP_PASSWORD}::::\n"
                                       f"{UTF8_USER}:{{PLAIN}}{UTF8_PASSWORD}::::\n", encoding="utf-8")
        if os.geteuid() == 0:
            folder.chmod(0o755)
            (folder / "passwd").chmod(0o644)
            dovecot_user = pwd.getpwnam("dovecot")
            os.chown(home, dovecot_user.pw_uid, dovecot_user.pw_gid)
        imap_port, imaps_port = free_port(), free_port()
        config = folder / "dovecot.conf"
        config.write_text(_config(folder, ca, imap_port, imaps_port, capabilities))
        process = subprocess.Popen([binary, "-F", "-c", str(config)], stdout=subprocess.DEVNULL,
                                   stderr=subprocess.DEVNULL)
        try:
            wait_until_listening(imaps_port, process, folder / "dovecot.log")
            yield Dovecot(imap_port, imaps_port, str(ca.ca_path))
        finally:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
