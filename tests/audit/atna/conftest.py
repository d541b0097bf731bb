"""Fixtures of the ATNA receiver tests: a receiver, a test CA, util-linux logger and rsyslog."""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from audit.atna.receiver import AtnaReceiver, Received, ReceiverSettings, parse_listen
from tests.helpers import free_port, require_binary

SAMPLES = Path(__file__).parent / "samples"
SERVER_NAME = "atna.test"


def compact(xml: str) -> str:
    """A sample on one line (older senders frame messages by newlines)."""
    return re.sub(r">\s+<", "><", re.sub(r"\s*\n\s*", " ", xml.strip()))


def wait_for(condition: Callable[[], bool], seconds: float = 30.0, what: str = "condition",
             state: Callable[[], object] | None = None) -> None:
    """Poll ``condition`` until it holds, failing after ``seconds`` with what ``state`` shows then."""
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"{what} not reached within {seconds} s" + (f": {state()}" if state else "")
                        + receiver_threads())
        time.sleep(0.02)


def receiver_threads() -> str:
    """Where every receiver thread is now: a stalled event loop shows what it waits on."""
    frames = sys._current_frames()
    return "".join(f"\n-- {thread.name}:\n" + "".join(traceback.format_stack(frames[thread.ident]))
                   for thread in threading.enumerate()
                   if thread.name.startswith("atna-") and thread.ident in frames)


TCP_STATES = {"01": "ESTABLISHED", "02": "SYN_SENT", "03": "SYN_RECV", "04": "FIN_WAIT1", "05": "FIN_WAIT2",
              "06": "TIME_WAIT", "07": "CLOSE", "08": "CLOSE_WAIT", "09": "LAST_ACK", "0A": "LISTEN",
              "0B": "CLOSING"}


def sockets_on(port: int) -> list[str]:
    """The system's TCP sockets with ``port`` at either end, as "local > remote STATE queued"."""
    found = []
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        ends = [int(end.split(":")[1], 16) for end in fields[1:3]]
        if port in ends:
            found.append(f"{ends[0]} > {ends[1]} {TCP_STATES.get(fields[3], fields[3])} "
                         f"{int(fields[4].split(':')[1], 16)}")
    return found


class Inbox:
    """Collects what a receiver hands over, batch by batch, from its hand-over thread."""

    def __init__(self) -> None:
        self.batches: list[list[Received]] = []
        self.lock = threading.Lock()

    def __call__(self, batch: list[Received]) -> None:
        with self.lock:
            self.batches.append(batch)

    @property
    def messages(self) -> list[Received]:
        """Everything received so far, in order."""
        with self.lock:
            return [item for batch in self.batches for item in batch]

    def wait(self, count: int, seconds: float = 30.0) -> list[Received]:
        """Wait until ``count`` messages arrived; return them all."""
        wait_for(lambda: len(self.messages) >= count, seconds, f"{count} messages")
        return self.messages


@dataclass
class Running:
    """A started receiver, its inbox and its bound listeners by transport."""

    receiver: AtnaReceiver
    inbox: Inbox

    def port(self, transport: str) -> int:
        """The bound port of the first listener of ``transport``."""
        return next(listen.port for listen in self.receiver.bound if listen.transport == transport)

    def state(self) -> str:
        """The receiver's counters and every TCP socket on its port (the listener's queue too)."""
        return f"{self.receiver.stats()}, sockets on its TCP port: {sockets_on(self.port('tcp'))}"


@pytest.fixture
def start_receiver() -> Iterator[Callable[..., Running]]:
    """Start receivers on loopback (port 0); every one is stopped after the test."""
    started: list[AtnaReceiver] = []

    def start(listen: str = "udp://127.0.0.1:0,tcp://127.0.0.1:0", on_batch=None, **settings) -> Running:
        inbox = Inbox()
        settings.setdefault("batch_ms", 20)
        receiver = AtnaReceiver(parse_listen(listen), on_batch or inbox, ReceiverSettings(**settings))
        receiver.start()
        started.append(receiver)
        return Running(receiver, inbox)

    yield start
    for receiver in started:
        receiver.stop(timeout=5)


def logger_path() -> str:
    """util-linux logger, or skip."""
    return require_binary("logger")


def send_with_logger(port: int, message: str | bytes | None = None, *, transport: str = "tcp",
                     octet_count: bool = True, stdin: bytes | None = None, tag: str = "ARCHIVE1",
                     host: str = "127.0.0.1") -> subprocess.CompletedProcess:
    """Send RFC 5424 syslog with util-linux logger (the message argument, or each line of stdin)."""
    args = [logger_path(), "--rfc5424", f"--{transport}", "--server", host, "--port", str(port),
            "--tag", tag, "--msgid", "IHE+RFC-3881", "--size", str(12 * 1024 * 1024)]
    if transport == "tcp" and octet_count:
        args.append("--octet-count")
    if message is not None:
        args += ["--", message.encode() if isinstance(message, str) else message]
    sent = subprocess.run(args, input=stdin, capture_output=True, timeout=60, check=True)
    # logger exits 0 when its write fails (a reset connection): only its warning tells.
    assert not sent.stderr, f"logger warned: {sent.stderr.decode(errors='replace')}"
    return sent


@dataclass(frozen=True)
class TLSMaterial:
    """A test CA with a server and a client certificate, and a rogue CA's client certificate."""

    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    rogue_cert: Path
    rogue_key: Path


@pytest.fixture(scope="session")
def tls_material(tmp_path_factory: pytest.TempPathFactory) -> TLSMaterial:
    """Mint the test PKI once per run (EC P-256 keys, valid for a month)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    folder = tmp_path_factory.mktemp("atna-pki")
    now = dt.datetime.now(dt.UTC)

    def name(common: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "PACS Desk tests"),
                          x509.NameAttribute(NameOID.COMMON_NAME, common)])

    def write(stem: str, cert: x509.Certificate, key: ec.EllipticCurvePrivateKey) -> tuple[Path, Path]:
        cert_path, key_path = folder / f"{stem}.pem", folder / f"{stem}-key.pem"
        cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                               serialization.PrivateFormat.PKCS8,
                                               serialization.NoEncryption()))
        return cert_path, key_path

    def authority(common: str) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
        key = ec.generate_private_key(ec.SECP256R1())
        cert = (x509.CertificateBuilder().subject_name(name(common)).issuer_name(name(common))
                .public_key(key.public_key()).serial_number(x509.random_serial_number())
                .not_valid_before(now - dt.timedelta(days=1)).not_valid_after(now + dt.timedelta(days=30))
                .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
                .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False),
                               critical=True)
                .sign(key, hashes.SHA256()))
        return cert, key

    def leaf(common: str, issuer: x509.Certificate, issuer_key: ec.EllipticCurvePrivateKey,
             server: bool) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
        key = ec.generate_private_key(ec.SECP256R1())
        builder = (x509.CertificateBuilder().subject_name(name(common)).issuer_name(issuer.subject)
                   .public_key(key.public_key()).serial_number(x509.random_serial_number())
                   .not_valid_before(now - dt.timedelta(days=1)).not_valid_after(now + dt.timedelta(days=30))
                   .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
                   .add_extension(x509.ExtendedKeyUsage(
                       [ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH]),
                       critical=False))
        if server:
            names = [x509.DNSName(SERVER_NAME), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
        return builder.sign(issuer_key, hashes.SHA256()), key

    ca, ca_key = authority("PACS Desk test CA")
    rogue_ca, rogue_ca_key = authority("Somebody else's CA")
    ca_path = folder / "ca.pem"
    ca_path.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    server = write("server", *leaf(SERVER_NAME, ca, ca_key, server=True))
    client = write("client", *leaf("rsyslog-client", ca, ca_key, server=False))
    rogue = write("rogue", *leaf("rsyslog-client", rogue_ca, rogue_ca_key, server=False))
    return TLSMaterial(ca_path, *server, *client, *rogue)


def rsyslogd_path() -> str:
    """rsyslogd (Debian installs it in /usr/sbin, often not on PATH), or skip."""
    found = shutil.which("rsyslogd", path=os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin"]))
    return found or require_binary("rsyslogd")


@dataclass
class Rsyslog:
    """A running rsyslogd: a plain TCP input on loopback, forwarding over TLS."""

    process: subprocess.Popen
    input_port: int
    folder: Path

    def log(self) -> str:
        """What rsyslogd printed so far (for failure messages)."""
        path = self.folder / "rsyslogd.out"
        return path.read_text(errors="replace") if path.exists() else ""


RSYSLOG_CONF = """\
global(workDirectory="{work}" maxMessageSize="64k"
       parser.escapeControlCharactersOnReceive="off"
       defaultNetstreamDriverCAFile="{ca}"
       defaultNetstreamDriverCertFile="{cert}"
       defaultNetstreamDriverKeyFile="{key}")
module(load="imtcp")
input(type="imtcp" address="127.0.0.1" port="{input_port}" ruleset="to-pacsdesk")
ruleset(name="to-pacsdesk") {{
  action(type="omfwd" target="127.0.0.1" port="{target_port}" protocol="tcp"
         StreamDriver="gtls" StreamDriverMode="1" StreamDriverAuthMode="x509/name"
         StreamDriverPermittedPeers="{server_name}" TCP_Framing="octet-counted"
         template="RSYSLOG_SyslogProtocol23Format"
         action.resumeRetryCount="-1" action.resumeInterval="1")
}}
"""


@pytest.fixture
def start_rsyslog(tmp_path: Path, tls_material: TLSMaterial) -> Iterator[Callable[..., Rsyslog]]:
    """Start rsyslogd in the foreground (own config, pid and work folder); stopped after the test."""
    started: list[Rsyslog] = []

    def start(target_port: int, *, rogue: bool = False) -> Rsyslog:
        binary = rsyslogd_path()
        folder = tmp_path / f"rsyslog{len(started)}"
        (folder / "work").mkdir(parents=True)
        input_port = free_port()
        conf = folder / "rsyslog.conf"
        conf.write_text(RSYSLOG_CONF.format(
            work=folder / "work", ca=tls_material.ca, input_port=input_port, target_port=target_port,
            cert=tls_material.rogue_cert if rogue else tls_material.client_cert,
            key=tls_material.rogue_key if rogue else tls_material.client_key, server_name=SERVER_NAME))
        with (folder / "rsyslogd.out").open("wb") as output:  # the child keeps its own descriptor
            process = subprocess.Popen([binary, "-n", "-f", str(conf), "-i", str(folder / "rsyslogd.pid")],
                                       stdout=output, stderr=subprocess.STDOUT)
        running = Rsyslog(process, input_port, folder)
        started.append(running)
        wait_for(lambda: process.poll() is not None or _accepts(input_port), 15, "rsyslogd listening")
        if process.poll() is not None:
            pytest.fail(f"rsyslogd exited with {process.returncode}: {running.log()}")
        return running

    yield start
    for running in started:
        if running.process.poll() is None:
            running.process.send_signal(signal.SIGTERM)
            try:
                running.process.wait(10)
            except subprocess.TimeoutExpired:
                running.process.kill()
                running.process.wait()


def _accepts(port: int) -> bool:
    """Whether something accepts TCP connections on loopback ``port``."""
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
        return True
    except OSError:
        return False




def received(sample: str, *, peer_host: str = "10.1.2.3", at: dt.datetime | None = None,
             replace: dict[str, str] | None = None, hostname: str = "pacs-archive",
             listener: str = "tcp://127.0.0.1:601") -> Received:
    """What the receiver hands over for one sample sent as RFC 5424 syslog (values replaced first)."""
    from audit.atna.handover import decode_frame

    xml = (SAMPLES / sample).read_text() if sample.endswith(".xml") else sample
    for old, new in (replace or {}).items():
        xml = xml.replace(old, new)
    stamp = (at or dt.datetime.now(dt.UTC)).timestamp()
    frame = f"<110>1 2026-01-01T00:00:00Z {hostname} ARCHIVE1 - IHE+RFC-3881 - ".encode() + xml.encode()
    return decode_frame((stamp, listener, peer_host, 40000, None, frame), 64 * 1024)
