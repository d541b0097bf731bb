"""Real DICOM peers for the verification tests: pynetdicom SCPs and misbehaving sockets."""

from __future__ import annotations

import contextlib
import datetime as dt
import ipaddress
import socket
import ssl
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from pynetdicom import AE
from pynetdicom.sop_class import CTImageStorage, Verification  # type: ignore[attr-defined]

from tests.helpers import fixture_event, free_port

PEER_AET = "TESTSCP"


@pytest.fixture
def verification_scp() -> Iterator[Callable[..., int]]:
    """Start in-process pynetdicom SCPs on free loopback ports: ``port = verification_scp(...)``."""
    servers = []

    def start(*, require_called_aet: bool = False, verification: bool = True,
              handlers: list | None = None, ssl_context: ssl.SSLContext | None = None,
              ae_title: str = PEER_AET) -> int:
        ae = AE(ae_title=ae_title)
        ae.add_supported_context(Verification if verification else CTImageStorage)
        ae.require_called_aet = require_called_aet
        server = ae.start_server(("127.0.0.1", 0), block=False, evt_handlers=handlers or [],
                                 ssl_context=ssl_context)
        servers.append(server)
        return server.server_address[1]

    yield start
    for server in servers:
        server.shutdown()


@pytest.fixture
def closed_port() -> int:
    """A loopback port that refuses connections."""
    return free_port()


class RawPeer:
    """A TCP listener that treats each connection with ``behaviour(conn)`` in a thread."""

    def __init__(self, behaviour: Callable[[socket.socket], None]) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.behaviour = behaviour
        self.connections: list[socket.socket] = []
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            self.connections.append(conn)
            threading.Thread(target=self._handle, args=(conn,), daemon=True).start()

    def _handle(self, conn: socket.socket) -> None:
        with contextlib.suppress(OSError):
            self.behaviour(conn)

    def close(self) -> None:
        """Stop listening and drop every connection."""
        self.listener.close()
        for conn in self.connections:
            conn.close()


@pytest.fixture
def raw_peer() -> Iterator[Callable[[Callable[[socket.socket], None]], int]]:
    """Start raw TCP peers: ``port = raw_peer(behaviour)``."""
    peers: list[RawPeer] = []

    def start(behaviour: Callable[[socket.socket], None]) -> int:
        peer = RawPeer(behaviour)
        peers.append(peer)
        return peer.port

    yield start
    for peer in peers:
        peer.close()


def stay_silent(conn: socket.socket) -> None:
    """Accept and never speak (until the client goes away)."""
    while conn.recv(65536):
        pass


def send_garbage(conn: socket.socket) -> None:
    """Read the association request and answer with bytes that are not DICOM."""
    conn.recv(65536)
    conn.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n" * 4)
    stay_silent(conn)


def close_after_request(conn: socket.socket) -> None:
    """Read the association request, then hang up without a word."""
    conn.recv(65536)
    conn.close()


@pytest.fixture
def unresolvable(monkeypatch: pytest.MonkeyPatch) -> Callable[..., list[str]]:
    """Make host names fail to resolve without asking a DNS server: ``lookups = unresolvable(name)``.

    Patches ``socket.getaddrinfo`` as looked up by inventory.verification.dicom and pynetdicom's transport;
    other names still resolve. The returned list collects the lookups of the patched names.
    """
    names: set[str] = set()
    lookups: list[str] = []
    real_getaddrinfo = socket.getaddrinfo

    def getaddrinfo(host, *args, **kwargs):
        name = host.decode() if isinstance(host, bytes) else host
        if name in names:
            lookups.append(name)
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return real_getaddrinfo(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)

    def add(*hosts: str) -> list[str]:
        names.update(hosts)
        return lookups

    return add


@pytest.fixture
def full_backlog_port() -> Iterator[int]:
    """A port whose listen queue is full: new connections get no SYN-ACK, so connect times out."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    port = listener.getsockname()[1]
    filler = socket.create_connection(("127.0.0.1", port))
    yield port
    filler.close()
    listener.close()


@dataclass(frozen=True)
class SelfSignedTLS:
    """A self-signed certificate for 127.0.0.1/localhost and contexts using it."""

    cert_path: Path
    key_path: Path

    def server_context(self) -> ssl.SSLContext:
        """A server context presenting the certificate."""
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(self.cert_path, self.key_path)
        return context

    def trusting_client_context(self) -> ssl.SSLContext:
        """A client context that trusts exactly this certificate."""
        return ssl.create_default_context(cafile=str(self.cert_path))


@pytest.fixture(scope="session")
def self_signed_tls(tmp_path_factory: pytest.TempPathFactory) -> SelfSignedTLS:
    """Mint a self-signed certificate (valid for 127.0.0.1 and localhost) for this test run."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test-scp.local")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=30))
        .add_extension(x509.SubjectAlternativeName([
            x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    folder = tmp_path_factory.mktemp("tls")
    cert_path, key_path = folder / "scp.crt", folder / "scp.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return SelfSignedTLS(cert_path, key_path)


@pytest.fixture
def make_node(app):
    """Insert a DICOM node that the verification checks: ``asset_id = make_node("CT-01", port)``."""

    def create(tag: str, port: int, *, host: str = "127.0.0.1", ae_title: str = PEER_AET,
               **fields) -> int:
        from core.extensions import db
        from inventory.models import Asset

        values = {"asset_tag": tag, "name": f"Node {tag}", "kind": "dicom_node",
                  "ip_address": host, "port": port, "ae_title": ae_title,
                  "location": "Imaging L1"} | fields
        with app.app_context():
            asset = Asset(**values)
            db.session.add(asset)
            db.session.flush()
            fixture_event("asset", asset.asset_tag)
            db.session.commit()
            return asset.id

    return create


@pytest.fixture
def fast_verification(app_config: dict) -> dict:
    """C-ECHO timeouts that a loaded machine still meets, and the default state thresholds."""
    app_config.update({"PACSDESK_VERIFY_TIMEOUT": 5.0, "PACSDESK_DOWN_AFTER_FAILURES": 2,
                       "PACSDESK_DEGRADED_LATENCY_MS": 1000, "PACSDESK_VERIFY_CONCURRENCY": 16,
                       "PACSDESK_AUTO_RESOLVE": True})
    return app_config


def record_at_once(app, asset_id: int, result, workers: int = 2) -> None:
    """Record ``result`` for one node from several threads released together; fail on any error."""
    from core.extensions import db
    from inventory.models import Asset
    from inventory.verification.services import record_check

    barrier = threading.Barrier(workers)
    errors: list[Exception] = []

    def record_one() -> None:
        try:
            with app.app_context():
                barrier.wait(30)  # before any query: on SQLite a transaction takes the write lock
                record_check(db.session.get(Asset, asset_id), result, "schedule", audit_each=False)
                db.session.commit()
        except Exception as exc:  # collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=record_one) for _ in range(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert errors == []


@dataclass(frozen=True)
class MiniPKI:
    """A test CA, a server certificate signed by it and client certificates (PEM files).

    The server certificate is valid for localhost, 127.0.0.1 and pacs.hospital.test; the
    stranger's client certificate is signed by another CA that the server does not trust.
    """

    ca_cert: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    stranger_cert: Path
    stranger_key: Path

    def server_context(self, *, require_client_cert: bool = False,
                       maximum_version: ssl.TLSVersion | None = None) -> ssl.SSLContext:
        """A server context presenting the server certificate, optionally requiring a client's."""
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(self.server_cert, self.server_key)
        if require_client_cert:
            context.load_verify_locations(cafile=str(self.ca_cert))
            context.verify_mode = ssl.CERT_REQUIRED
        if maximum_version is not None:
            context.maximum_version = maximum_version
        return context


@pytest.fixture(scope="session")
def mini_pki(tmp_path_factory: pytest.TempPathFactory) -> MiniPKI:
    """Mint a CA, a server certificate and client certificates for this test run."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    folder = tmp_path_factory.mktemp("pki")
    now = dt.datetime.now(dt.UTC)

    def save(stem: str, key: ec.EllipticCurvePrivateKey, cert: x509.Certificate) -> tuple[Path, Path]:
        cert_path, key_path = folder / f"{stem}.crt", folder / f"{stem}.key"
        cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                               serialization.PrivateFormat.PKCS8,
                                               serialization.NoEncryption()))
        return cert_path, key_path

    def certificate(subject: str, key: ec.EllipticCurvePrivateKey, issuer: str,
                    issuer_key: ec.EllipticCurvePrivateKey, *, ca: bool,
                    extensions: tuple[x509.ExtensionType, ...] = ()) -> x509.Certificate:
        builder = (x509.CertificateBuilder()
                   .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
                   .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer)]))
                   .public_key(key.public_key())
                   .serial_number(x509.random_serial_number())
                   .not_valid_before(now - dt.timedelta(days=1))
                   .not_valid_after(now + dt.timedelta(days=30))
                   .add_extension(x509.BasicConstraints(ca=ca, path_length=0 if ca else None),
                                  critical=True))
        if ca:
            builder = builder.add_extension(x509.KeyUsage(
                digital_signature=True, key_cert_sign=True, crl_sign=True, content_commitment=False,
                key_encipherment=False, data_encipherment=False, key_agreement=False,
                encipher_only=False, decipher_only=False), critical=True)
        for extension in extensions:
            builder = builder.add_extension(extension, critical=False)
        return builder.sign(issuer_key, hashes.SHA256())

    ca_key, other_ca_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca_cert, _ = save("ca", ca_key, certificate("PACS Desk test CA", ca_key, "PACS Desk test CA",
                                                ca_key, ca=True))
    server_key = ec.generate_private_key(ec.SECP256R1())
    server_cert, server_key_path = save("server", server_key, certificate(
        "pacs.hospital.test", server_key, "PACS Desk test CA", ca_key, ca=False, extensions=(
            x509.SubjectAlternativeName([x509.DNSName("localhost"), x509.DNSName("pacs.hospital.test"),
                                         x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]))))
    client_key = ec.generate_private_key(ec.SECP256R1())
    client_cert, client_key_path = save("client", client_key, certificate(
        "PACSDESK", client_key, "PACS Desk test CA", ca_key, ca=False,
        extensions=(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]),)))
    stranger_key = ec.generate_private_key(ec.SECP256R1())
    stranger_cert, stranger_key_path = save("stranger", stranger_key, certificate(
        "STRANGER", stranger_key, "Another CA", other_ca_key, ca=False,
        extensions=(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]),)))
    return MiniPKI(ca_cert, server_cert, server_key_path, client_cert, client_key_path,
                   stranger_cert, stranger_key_path)


class FakeDNS:
    """A resolver with the ``socket.getaddrinfo`` signature answering from a table, never from DNS."""

    def __init__(self, hosts: dict[str, list[str]]) -> None:
        self.hosts = hosts
        self.lookups: list[str] = []

    def __call__(self, host: str, port: int, *_args: object, **_kwargs: object) -> list[tuple]:
        """Answer ``host`` from the table, or fail as an unknown name does."""
        self.lookups.append(host)
        if host not in self.hosts:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return [(socket.AF_INET6 if ":" in address else socket.AF_INET, socket.SOCK_STREAM,
                 socket.IPPROTO_TCP, "", (address, port)) for address in self.hosts[host]]


@pytest.fixture
def fake_dns() -> Callable[[dict[str, list[str]]], FakeDNS]:
    """Build resolvers answering from a table: ``resolver = fake_dns({"pacs.test": ["10.0.0.5"]})``."""
    return FakeDNS
