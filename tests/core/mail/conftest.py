"""Mail test fixtures: a test CA and server certificate, and real SMTP servers (aiosmtpd) on loopback."""

from __future__ import annotations

import datetime as dt
import ipaddress
import ssl
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, Envelope, LoginPassword, Session

from core.mail.settings import Identity, SmtpSecurity, SmtpSettings
from tests.helpers import free_port

SMTP_USER = "pacsdesk@hospital.example"
SMTP_PASSWORD = "s3cret:p@ss/word"
IDENTITY = Identity(address="pacsdesk@hospital.example", display_name="St. Example Hospital",
                    base_url="https://pacsdesk.hospital.example")


@dataclass(frozen=True)
class MailCA:
    """A CA made for this run and a server certificate it signed for 127.0.0.1 and localhost."""

    ca_path: Path
    cert_path: Path
    key_path: Path

    def server_context(self) -> ssl.SSLContext:
        """A server context presenting the signed certificate."""
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(self.cert_path, self.key_path)
        return context


@pytest.fixture(scope="session")
def test_ca(tmp_path_factory: pytest.TempPathFactory) -> MailCA:
    """Mint a CA and a server certificate for 127.0.0.1 (read-only for the whole session)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "St. Example Test CA")])
    ca_cert = (
        x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
        .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1)).not_valid_after(now + dt.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                     content_commitment=False, key_encipherment=False,
                                     data_encipherment=False, key_agreement=False,
                                     encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "mail.test")]))
        .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1)).not_valid_after(now + dt.timedelta(days=30))
        .add_extension(x509.SubjectAlternativeName([
            x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
                       critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    folder = tmp_path_factory.mktemp("mail-tls")
    paths = MailCA(folder / "ca.pem", folder / "server.pem", folder / "server.key")
    paths.ca_path.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    paths.cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths.key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                                 serialization.PrivateFormat.PKCS8,
                                                 serialization.NoEncryption()))
    return paths


@dataclass(frozen=True)
class Received:
    """One message as the SMTP server received it."""

    mail_from: str
    rcpt_tos: tuple[str, ...]
    content: bytes
    login: bytes | None
    tls: bool


@dataclass
class Recorder:
    """aiosmtpd handler that keeps what it accepts, or answers RCPT/DATA with a fixed reply."""

    rcpt_replies: dict[str, str] = field(default_factory=dict)
    data_reply: str | None = None
    messages: list[Received] = field(default_factory=list)

    async def handle_RCPT(self, server: Any, session: Session, envelope: Envelope, address: str,
                          rcpt_options: list[str]) -> str:
        """Refuse the recipients given a reply, accept the others."""
        if address in self.rcpt_replies:
            return self.rcpt_replies[address]
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Session, envelope: Envelope) -> str:
        """Store the message, or answer with the configured reply."""
        if self.data_reply:
            return self.data_reply
        login = session.auth_data.login if isinstance(session.auth_data, LoginPassword) else None
        self.messages.append(Received(str(envelope.mail_from), tuple(envelope.rcpt_tos),
                                      bytes(envelope.original_content or b""), login,
                                      server.transport.get_extra_info("ssl_object") is not None))
        return "250 2.0.0 Ok: queued as TEST42"


def authenticate(server: Any, session: Session, envelope: Envelope, mechanism: str,
                 auth_data: Any) -> AuthResult:
    """Accept exactly the test account."""
    ok = (isinstance(auth_data, LoginPassword) and auth_data.login == SMTP_USER.encode()
          and auth_data.password == SMTP_PASSWORD.encode())
    return AuthResult(success=ok, handled=False, auth_data=auth_data if ok else None)


@dataclass
class SmtpServer:
    """A running aiosmtpd server and the settings that reach it."""

    port: int
    recorder: Recorder
    ca_file: str

    @property
    def messages(self) -> list[Received]:
        """Messages received so far."""
        return self.recorder.messages

    def settings(self, security: SmtpSecurity = SmtpSecurity.STARTTLS, *, username: str | None = SMTP_USER,
                 password: str | None = SMTP_PASSWORD, ca_file: str | None = "",
                 timeout: float = 5) -> SmtpSettings:
        """Client settings for this server (trusting the test CA unless ``ca_file`` is given)."""
        return SmtpSettings(host="127.0.0.1", port=self.port, security=security, username=username,
                            password=password, timeout=timeout,
                            ca_file=self.ca_file if ca_file == "" else ca_file, helo_name="pacsdesk.test")


@pytest.fixture
def smtp_server(test_ca: MailCA) -> Iterator[Callable[..., SmtpServer]]:
    """Start aiosmtpd servers: ``smtp_server(mode="starttls"|"smtps"|"plain", data_reply=...)``."""
    controllers: list[Controller] = []

    def start(mode: str = "starttls", *, auth: bool = True, rcpt_replies: dict[str, str] | None = None,
              data_reply: str | None = None, auth_exclude: tuple[str, ...] = ()) -> SmtpServer:
        recorder = Recorder(rcpt_replies=rcpt_replies or {}, data_reply=data_reply)
        port = free_port()
        options: dict[str, Any] = {"server_hostname": "mail.test", "ready_timeout": 10}
        if mode == "starttls":
            options |= {"tls_context": test_ca.server_context(), "require_starttls": True}
        elif mode == "smtps":
            options |= {"ssl_context": test_ca.server_context()}
        if auth:
            # aiosmtpd sees TLS only after STARTTLS; on SMTPS the whole connection is TLS anyway.
            options |= {"authenticator": authenticate, "auth_required": True,
                        "auth_require_tls": mode == "starttls", "auth_exclude_mechanism": auth_exclude}
        controller = Controller(recorder, hostname="127.0.0.1", port=port, **options)
        controller.start()
        controllers.append(controller)
        return SmtpServer(port, recorder, str(test_ca.ca_path))

    yield start
    for controller in controllers:
        controller.stop()
