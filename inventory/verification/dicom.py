"""C-ECHO DICOM nodes and classify what happened (no Flask, no database).

Every check runs on non-blocking sockets driven by one selector loop, with one wall-clock
deadline for the DNS lookup, TCP connect, TLS handshake, association, C-ECHO and release
together, so no peer can stretch a check past its timeout (a byte a second, a PDU that
announces 4 GB, a half-open socket). PDUs are built and decoded with pynetdicom's PDU classes;
a PDU is read only when its announced length is within the limits below. ``echo`` checks one
node in the calling thread; ``echo_many`` runs many checks at once in one loop thread and yields
results as they finish.
"""

from __future__ import annotations

import collections
import contextlib
import errno
import functools
import heapq
import io
import itertools
import logging
import os
import queue
import selectors
import socket
import ssl
import struct
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from enum import Enum, StrEnum, auto
from typing import Any, Protocol, TypeVar

from pydicom.uid import UID
from pynetdicom import PYNETDICOM_IMPLEMENTATION_UID, PYNETDICOM_IMPLEMENTATION_VERSION
from pynetdicom.dimse_messages import C_ECHO_RQ
from pynetdicom.dimse_primitives import C_ECHO
from pynetdicom.dsutils import decode
from pynetdicom.pdu import A_ASSOCIATE_AC, A_ASSOCIATE_RJ, A_ASSOCIATE_RQ, P_DATA_TF
from pynetdicom.pdu_items import PresentationContextItemAC
from pynetdicom.pdu_primitives import (
    A_ASSOCIATE,
    ImplementationClassUIDNotification,
    ImplementationVersionNameNotification,
    MaximumLengthNotification,
)
from pynetdicom.presentation import build_context

# pynetdicom creates its SOP classes at import time; its type information does not list them
from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]

from core.config import ae_title_problem
from inventory.verification.netpolicy import (
    IPAddress,
    IPNetwork,
    NotAllowed,
    Resolver,
    check_destination,
    resolve,
)

log = logging.getLogger(__name__)

# pynetdicom logs a PDU it cannot decode; here every such PDU becomes a classified result.
logging.getLogger("pynetdicom").setLevel(logging.CRITICAL)


class Outcome(StrEnum):
    """How a verification ended."""

    OK = "ok"
    REFUSED = "refused"
    CONNECT_TIMEOUT = "connect_timeout"
    DNS_ERROR = "dns_error"
    NOT_ALLOWED = "not_allowed"
    NO_RESPONSE = "no_response"
    TOO_SLOW = "too_slow"
    REJECTED = "rejected"
    BUSY = "busy"
    ABORTED = "aborted"
    INVALID_PDU = "invalid_pdu"
    NO_VERIFICATION_CONTEXT = "no_verification_context"
    ECHO_FAILED = "echo_failed"
    TLS_ERROR = "tls_error"


REJECT_RESULTS = {1: "permanent", 2: "transient"}
REJECT_SOURCES = {1: "service user", 2: "service provider, ACSE", 3: "service provider, presentation"}
REJECT_REASONS = {  # the (source, reason) pairs PS3.8 table 9-21 defines
    (1, 1): "no reason given",
    (1, 2): "application context name not supported",
    (1, 3): "calling AE title not recognised",
    (1, 7): "called AE title not recognised",
    (2, 1): "no reason given",
    (2, 2): "protocol version not supported",
    (3, 0): "reserved",
    (3, 1): "temporary congestion",
    (3, 2): "local limit exceeded",
}
ABORT_REASONS = {0: "reason not specified", 1: "unrecognised PDU", 2: "unexpected PDU",
                 4: "unrecognised PDU parameter", 5: "unexpected PDU parameter",
                 6: "invalid PDU parameter value"}
PDU_NAMES = {1: "A-ASSOCIATE-RQ", 2: "A-ASSOCIATE-AC", 3: "A-ASSOCIATE-RJ", 4: "P-DATA-TF",
             5: "A-RELEASE-RQ", 6: "A-RELEASE-RP", 7: "A-ABORT"}

# Limits on what a peer may make a check read (each check holds at most one PDU).
MAX_PDU_RECEIVE = 16384          # announced to the peer: the largest P-DATA-TF it may send
ASSOCIATE_PDU_MAX = 64 * 1024    # an A-ASSOCIATE-AC for one context takes a few hundred bytes
FIXED_PDU_LENGTH = 4             # A-ASSOCIATE-RJ, A-RELEASE-RQ/RP and A-ABORT bodies (PS3.8 9.3)
RESPONSE_MAX = 64 * 1024         # the C-ECHO response's PDV bytes (its command set takes ~100)
RECV_CHUNK = 65536
HELLO_KEPT = 65536               # of the server's TLS hello, to see whether it asks for a certificate
CONTEXT_ID = 1
A_RELEASE_RQ = b"\x05\x00\x00\x00\x00\x04\x00\x00\x00\x00"
A_ABORT = b"\x07\x00\x00\x00\x00\x04\x00\x00\x00\x00"
TLS_RECORD_TYPES = range(0x14, 0x18)  # change cipher spec, alert, handshake, application data
C_ECHO_RSP_FIELD = 0x8030
AC_ITEMS_OFFSET = 74             # PDU header and the A-ASSOCIATE-AC's fixed fields
AC_ITEM_TYPES = (0x10, 0x21, 0x50)  # application context, presentation context, user information


@dataclass(frozen=True)
class EchoResult:
    """What one C-ECHO check found; ``result``/``source``/``reason`` only for rejections."""

    outcome: Outcome
    detail: str
    latency_ms: float
    result: int | None = None
    source: int | None = None
    reason: int | None = None

    @property
    def ok(self) -> bool:
        """Whether the node answered the C-ECHO with success."""
        return self.outcome is Outcome.OK


class TargetLike(Protocol):
    """What ``echo_many`` needs of a target; client certificate fields are optional attributes."""

    @property
    def host(self) -> str:
        """Host name or IP address."""

    @property
    def port(self) -> int:
        """TCP port."""

    @property
    def ae_title(self) -> str:
        """Called AE title."""

    @property
    def tls(self) -> bool:
        """Whether the node speaks DICOM over TLS."""


@dataclass(frozen=True)
class Target:
    """One node for ``echo_many``: address, called AE title and TLS settings."""

    host: str
    port: int
    ae_title: str
    tls: bool = False
    client_cert: str | None = None
    client_key: str | None = None
    ca_file: str | None = None


T = TypeVar("T", bound=TargetLike)


def validate_target(host: str, port: int, called_ae: str, calling_ae: str, timeout: float) -> None:
    """Raise ValueError naming the bad argument when an echo target cannot be valid."""
    if not isinstance(host, str) or not host.strip() or any(c.isspace() for c in host.strip()):
        raise ValueError(f"host must be a hostname or IP address without spaces, not {host!r}")
    if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
        raise ValueError(f"port must be a whole number from 1 to 65535, not {port!r}")
    for name, value in (("called AE title", called_ae), ("calling AE title", calling_ae)):
        problem = ae_title_problem(value) if isinstance(value, str) else "it must be text"
        if problem:
            raise ValueError(f"{name} {value!r} is invalid: {problem}")
    if not timeout > 0:
        raise ValueError(f"timeout must be a positive number of seconds, not {timeout!r}")


# ---------------------------------------------------------------- TLS contexts


@functools.cache
def _system_trust() -> ssl.SSLContext:
    """Client TLS context trusting the system CAs (or SSL_CERT_FILE/SSL_CERT_DIR), built once."""
    return ssl.create_default_context()


def _no_password() -> bytes:
    """Refuse an encrypted key instead of prompting on the terminal."""
    raise ValueError("the key is encrypted; give an unencrypted key file")


@functools.lru_cache(maxsize=64)
def _loaded_context(ca_file: str | None, client_cert: str | None, client_key: str | None,
                    _stamps: tuple[float, ...]) -> ssl.SSLContext:
    """A client context trusting ``ca_file`` (or the system) and presenting the certificate."""
    try:
        context = ssl.create_default_context(cafile=ca_file)
    except ssl.SSLError as exc:
        raise ValueError(f"ca_file {ca_file!r} holds no usable CA certificate "
                         f"({exc.reason or exc})") from None
    if client_cert:
        try:
            context.load_cert_chain(client_cert, client_key, password=_no_password)
        except ssl.SSLError as exc:
            raise ValueError(f"client_cert {client_cert!r} and client_key {client_key!r} are not a "
                             f"certificate and its private key ({exc.reason or exc})") from None
        except ValueError as exc:
            raise ValueError(f"client_key {client_key or client_cert!r}: {exc}") from None
    return context


def tls_context(ssl_context: ssl.SSLContext | None = None, *, ca_file: str | None = None,
                client_cert: str | None = None, client_key: str | None = None) -> ssl.SSLContext:
    """The client TLS context for a check; ValueError naming the file that cannot be used.

    A context built from files is cached and rebuilt when one of them changes.
    """
    if ssl_context is not None:
        if ca_file or client_cert or client_key:
            raise ValueError("ssl_context already says whom to trust and which certificate to "
                             "present: do not also give ca_file, client_cert or client_key")
        return ssl_context
    if client_key and not client_cert:
        raise ValueError("client_key needs the client_cert it belongs to")
    if not (ca_file or client_cert):
        return _system_trust()
    stamps = []
    for name, path in (("ca_file", ca_file), ("client_cert", client_cert), ("client_key", client_key)):
        if path:
            try:
                stamps.append(os.stat(path).st_mtime)
            except OSError as exc:
                raise ValueError(f"{name} {path!r} cannot be read: {exc.strerror}") from None
    return _loaded_context(ca_file, client_cert, client_key, tuple(stamps))


def _asks_for_certificate(hello: bytes) -> bool:
    """Whether the server's plaintext handshake (TLS 1.2 and older) includes a CertificateRequest."""
    messages = bytearray()
    offset = 0
    while offset + 5 <= len(hello) and hello[offset] == 0x16:  # handshake records only
        length = struct.unpack_from(">H", hello, offset + 3)[0]
        messages += hello[offset + 5:offset + 5 + length]
        offset += 5 + length
    offset = 0
    while offset + 4 <= len(messages):
        if messages[offset] == 13:  # certificate_request
            return True
        offset += 4 + int.from_bytes(messages[offset + 1:offset + 4], "big")
    return False


def _tls_reason(exc: ssl.SSLError, client_cert: bool | None, received: int,
                asked_for_certificate: bool = False) -> str:
    """Say in words why a TLS handshake (or the first read after it) failed.

    ``client_cert``: whether a client certificate was presented (None: unknown, the caller's
    own ssl_context); ``asked_for_certificate``: the server's TLS 1.2 hello asked for one.
    """
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"the node's certificate is not trusted ({exc.verify_message})"
    reason = (exc.reason or "").upper()
    if reason in {"WRONG_VERSION_NUMBER", "RECORD_LAYER_FAILURE", "PACKET_LENGTH_TOO_LONG",
                  "HTTP_REQUEST", "UNKNOWN_PROTOCOL"}:
        return "the peer does not speak TLS"
    if reason == "TLSV13_ALERT_CERTIFICATE_REQUIRED":
        return "the peer requires a client certificate"
    certificate_alerts = {"SSLV3_ALERT_BAD_CERTIFICATE", "SSLV3_ALERT_CERTIFICATE_UNKNOWN",
                          "TLSV1_ALERT_UNKNOWN_CA", "SSLV3_ALERT_CERTIFICATE_EXPIRED",
                          "SSLV3_ALERT_CERTIFICATE_REVOKED", "TLSV1_ALERT_ACCESS_DENIED"}
    text = (exc.reason or str(exc)).replace("_", " ").lower()
    if reason in certificate_alerts:
        if client_cert:
            return f"the peer did not accept the client certificate ({text})"
        if client_cert is None:
            return f"the peer refused the client certificate or requires one ({text})"
        return "the peer requires a client certificate"
    if reason == "SSLV3_ALERT_HANDSHAKE_FAILURE" and asked_for_certificate and client_cert is False:
        return "the peer requires a client certificate"
    if isinstance(exc, ssl.SSLEOFError) or "EOF" in reason:
        if not received:
            return "the peer does not speak TLS (it closed the connection at the TLS hello)"
        return "the peer closed the connection during the TLS handshake"
    return text


# ---------------------------------------------------------------- PDUs


@functools.lru_cache(maxsize=4096)
def _associate_rq(calling_ae: str, called_ae: str) -> bytes:
    """The A-ASSOCIATE-RQ proposing Verification, as bytes."""
    primitive = A_ASSOCIATE()
    primitive.application_context_name = UID("1.2.840.10008.3.1.1.1")
    primitive.calling_ae_title = calling_ae
    primitive.called_ae_title = called_ae
    context = build_context(Verification)
    context.context_id = CONTEXT_ID
    primitive.presentation_context_definition_list = [context]
    max_length = MaximumLengthNotification()
    max_length.maximum_length_received = MAX_PDU_RECEIVE
    class_uid = ImplementationClassUIDNotification()
    class_uid.implementation_class_uid = PYNETDICOM_IMPLEMENTATION_UID
    version = ImplementationVersionNameNotification()
    version.implementation_version_name = PYNETDICOM_IMPLEMENTATION_VERSION
    primitive.user_information = [max_length, class_uid, version]
    return bytes(A_ASSOCIATE_RQ(primitive).encode())


@functools.cache
def _c_echo_rq() -> bytes:
    """The P-DATA-TF carrying a C-ECHO-RQ (message 1) on the Verification context."""
    primitive = C_ECHO()
    primitive.MessageID = 1
    primitive.AffectedSOPClassUID = Verification
    message = C_ECHO_RQ()
    message.primitive_to_message(primitive)
    return b"".join(bytes(P_DATA_TF(p).encode()) for p in message.encode_msg(CONTEXT_ID, MAX_PDU_RECEIVE))


def _length_problem(pdu_type: int, length: int) -> str | None:
    """Why a PDU announcing ``length`` bytes must not be read, or None."""
    name = PDU_NAMES[pdu_type]
    if pdu_type in (3, 5, 6, 7) and length != FIXED_PDU_LENGTH:
        return (f"The peer sent an {name} PDU announcing {length:,} bytes "
                f"(the standard fixes it at {FIXED_PDU_LENGTH})")
    limit = MAX_PDU_RECEIVE if pdu_type == 4 else ASSOCIATE_PDU_MAX
    if length > limit:
        return (f"The peer sent an {name} PDU announcing {length:,} bytes (at most {limit:,} "
                f"accepted); refused without reading it")
    return None


def _ac_problem(pdu: bytes) -> str | None:
    """What makes an A-ASSOCIATE-AC malformed: fixed fields cut short, items not filling it exactly."""
    if len(pdu) < AC_ITEMS_OFFSET:
        return f"{len(pdu) - 6} bytes, shorter than its fixed fields"
    offset = AC_ITEMS_OFFSET
    while offset < len(pdu):
        if offset + 4 > len(pdu):
            return "an item is cut short"
        if pdu[offset] not in AC_ITEM_TYPES:
            return f"unknown item type 0x{pdu[offset]:02X}"
        offset += 4 + struct.unpack_from(">H", pdu, offset + 2)[0]
    if offset != len(pdu):
        return "an item runs past the end of the PDU"
    return None


def _ms(start: float) -> float:
    """Milliseconds since ``start`` (a perf_counter value)."""
    return round((time.perf_counter() - start) * 1000, 1)


# ---------------------------------------------------------------- one check


class _Phase(Enum):
    """Where a check is."""

    RESOLVING = auto()
    CONNECTING = auto()
    HANDSHAKING = auto()
    ASSOCIATING = auto()
    ECHOING = auto()
    RELEASING = auto()


@dataclass(frozen=True)
class _Spec:
    """A validated check: what to connect to and how."""

    host: str
    port: int
    called_ae: str
    calling_ae: str
    timeout: float
    context: ssl.SSLContext | None        # None: plain TCP
    client_cert: bool | None              # None: unknown (the caller's own ssl_context)
    allowed: tuple[IPNetwork, ...] | None
    resolver: Resolver | None


def _make_spec(host: str, port: int, called_ae: str, calling_ae: str, timeout: float, tls: bool,
               ssl_context: ssl.SSLContext | None, client_cert: str | None,
               client_key: str | None, ca_file: str | None,
               allowed: Sequence[IPNetwork] | None, resolver: Resolver | None) -> _Spec:
    """Validate a check's arguments (ValueError naming the bad one) into a spec."""
    validate_target(host, port, called_ae, calling_ae, timeout)
    context = tls_context(ssl_context, ca_file=ca_file, client_cert=client_cert,
                          client_key=client_key) if tls else None
    return _Spec(host.strip(), port, called_ae.strip(), calling_ae.strip(), float(timeout), context,
                 None if ssl_context is not None else bool(client_cert),
                 None if allowed is None else tuple(allowed), resolver)


class _Check:
    """One C-ECHO as a state machine fed by the loop: readiness, lookups, its deadline."""

    def __init__(self, spec: _Spec, loop: _Loop, key: Any) -> None:
        self.spec, self.loop, self.key = spec, loop, key
        self.started = time.perf_counter()
        self.deadline = self.started + spec.timeout
        self.phase = _Phase.RESOLVING
        self.sock: socket.socket | None = None
        self.tls: ssl.SSLObject | None = None
        self.incoming = ssl.MemoryBIO()
        self.outgoing = ssl.MemoryBIO()
        self.out = bytearray()
        self.inbuf = bytearray()
        self.received = 0              # bytes the peer sent in this phase
        self.hello = bytearray()       # the server's first TLS bytes (up to HELLO_KEPT)
        self.expected: int | None = None
        self.response = bytearray()
        self.response_bytes = 0
        self.established = False
        self.success: EchoResult | None = None
        self.result: EchoResult | None = None
        self.lookup: tuple[list[IPAddress] | None, Exception | None] = (None, None)
        self.interest = 0

    # -- start, lookup, connect

    def start(self) -> None:
        """Resolve (in a lookup thread unless the host is an address) and connect."""
        try:
            addresses = resolve(self.spec.host, self.spec.port, _no_lookup)
        except OSError:
            self.loop.lookup(self)
            return
        self.lookup = (addresses, None)
        if self.spec.allowed is not None:
            try:
                check_destination(self.spec.host, self.spec.port, self.spec.allowed, _no_lookup)
            except NotAllowed as exc:
                self.lookup = (None, exc)
        self.resolved()

    def run_lookup(self) -> None:
        """Resolve the host name and apply the network policy (in a lookup thread)."""
        spec = self.spec
        try:
            if spec.allowed is None:
                self.lookup = (resolve(spec.host, spec.port, spec.resolver), None)
            else:
                self.lookup = (check_destination(spec.host, spec.port, spec.allowed, spec.resolver),
                               None)
        except (OSError, UnicodeError, ValueError) as exc:
            self.lookup = (None, exc)

    def resolved(self) -> None:
        """Act on the lookup's answer: refuse, report a DNS error, or connect."""
        addresses, error = self.lookup
        if isinstance(error, NotAllowed):
            self.finish(Outcome.NOT_ALLOWED, f"Not checked: {error}")
        elif error is not None or not addresses:
            text = error.strerror if isinstance(error, socket.gaierror) and error.strerror \
                else str(error or "no address")
            self.finish(Outcome.DNS_ERROR, f"Cannot resolve host name {self.spec.host!r}: {text}")
        else:
            self.connect(addresses[0])

    def connect(self, address: IPAddress) -> None:
        """Start a non-blocking TCP connect to the checked address."""
        family = socket.AF_INET6 if address.version == 6 else socket.AF_INET
        self.sock = socket.socket(family, socket.SOCK_STREAM)
        self.sock.setblocking(False)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.phase = _Phase.CONNECTING
        code = self.sock.connect_ex((str(address), self.spec.port))
        if code not in (0, errno.EINPROGRESS, errno.EWOULDBLOCK):
            self.connect_failed(code)
            return
        self.update_interest()

    def connect_failed(self, code: int) -> None:
        """Classify a failed TCP connect by its errno."""
        if code == errno.ECONNREFUSED:
            self.finish(Outcome.REFUSED, "TCP connection refused (nothing listening on the port)")
        elif code == errno.ETIMEDOUT:
            self.connection_timed_out()
        else:
            self.finish(Outcome.REFUSED, f"TCP connection failed: {os.strerror(code)}")

    def connection_timed_out(self) -> None:
        """No TCP connection before the deadline."""
        self.finish(Outcome.CONNECT_TIMEOUT,
                    f"No TCP connection within {self.spec.timeout:.1f} s (host down or filtered)")

    def connected(self) -> None:
        """TCP is up: start TLS, or send the association request."""
        self.received = 0
        if self.spec.context is None:
            self.phase = _Phase.ASSOCIATING
            self.send(_associate_rq(self.spec.calling_ae, self.spec.called_ae))
            return
        self.phase = _Phase.HANDSHAKING
        self.tls = self.spec.context.wrap_bio(self.incoming, self.outgoing, server_side=False,
                                             server_hostname=self.spec.host)
        self.handshake()

    # -- socket events

    def ready(self, mask: int) -> None:
        """The socket is readable and/or writable."""
        assert self.sock is not None
        if self.phase is _Phase.CONNECTING:
            code = self.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if code:
                self.connect_failed(code)
            elif mask & selectors.EVENT_WRITE:
                self.connected()
            return
        if mask & selectors.EVENT_WRITE:
            self.flush()
        if self.result is None and mask & selectors.EVENT_READ:
            self.read()

    def read(self) -> None:
        """Read what the peer sent (at most one chunk) and act on it."""
        assert self.sock is not None
        try:
            raw = self.sock.recv(RECV_CHUNK)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            raw = b""  # a reset is a close
        if self.tls is None:
            if raw:
                self.received_data(raw)
            else:
                self.closed()
            return
        if self.phase is _Phase.HANDSHAKING and raw and not self.received \
                and raw[0] not in TLS_RECORD_TYPES:
            what = f"a DICOM {PDU_NAMES[raw[0]]}" if raw[0] in PDU_NAMES else "bytes that are not TLS"
            self.finish(Outcome.TLS_ERROR,
                        f"TLS handshake failed: the peer does not speak TLS (it answered with {what})")
            return
        if self.phase is _Phase.HANDSHAKING:
            self.received += len(raw)
            self.hello += raw[:max(0, HELLO_KEPT - len(self.hello))]
        if raw:
            self.incoming.write(raw)
        else:
            self.incoming.write_eof()
        if self.phase is _Phase.HANDSHAKING:
            self.handshake()
        else:
            self.read_tls()

    def handshake(self) -> None:
        """Advance the TLS handshake; send the association request once it is done."""
        assert self.tls is not None
        try:
            self.tls.do_handshake()
        except ssl.SSLWantReadError:
            self.drain_tls()
            return
        except ssl.SSLError as exc:
            self.finish(Outcome.TLS_ERROR, "TLS handshake failed: " + _tls_reason(
                exc, self.spec.client_cert, self.received, _asks_for_certificate(bytes(self.hello))))
            return
        self.drain_tls()
        self.phase = _Phase.ASSOCIATING
        self.received = 0
        self.send(_associate_rq(self.spec.calling_ae, self.spec.called_ae))
        if self.result is None and self.incoming.pending:
            self.read_tls()

    def read_tls(self) -> None:
        """Decrypt what arrived and act on it; TLS alerts after the handshake end the check."""
        assert self.tls is not None
        data = bytearray()
        eof = False
        while self.result is None:
            try:
                chunk = self.tls.read(RECV_CHUNK)
            except ssl.SSLWantReadError:
                break
            except (ssl.SSLZeroReturnError, ssl.SSLEOFError):
                eof = True
                break
            except ssl.SSLError as exc:
                if data:
                    self.received_data(bytes(data))
                if self.result is None:
                    self.tls_failed(exc)
                return
            if not chunk:
                eof = True
                break
            data += chunk
        if data and self.result is None:
            self.received_data(bytes(data))
        if eof and self.result is None:
            self.closed()

    def tls_failed(self, exc: ssl.SSLError) -> None:
        """A TLS error after our side of the handshake ended.

        Before any answer to the association request it belongs to the handshake: a TLS 1.3
        server judges the client's certificate only after the client has finished.
        """
        if self.phase is _Phase.RELEASING:
            self.finish_released()
            return
        reason = _tls_reason(exc, self.spec.client_cert, received=1)
        if self.phase is _Phase.ASSOCIATING and not self.received:
            self.finish(Outcome.TLS_ERROR, f"TLS handshake failed: {reason}")
        elif self.phase is _Phase.ECHOING:
            self.finish(Outcome.TLS_ERROR, f"TLS error during the C-ECHO: {reason}")
        else:
            self.finish(Outcome.TLS_ERROR, f"TLS error during the association: {reason}")

    def send(self, data: bytes) -> None:
        """Queue ``data`` for the peer (encrypted when TLS) and send what the socket takes."""
        if self.tls is not None:
            self.tls.write(data)
            self.drain_tls()
        else:
            self.out += data
            self.flush()

    def drain_tls(self) -> None:
        """Move TLS output to the send buffer and send it."""
        pending = self.outgoing.read()
        if pending:
            self.out += pending
        self.flush()

    def flush(self) -> None:
        """Send queued bytes without blocking."""
        assert self.sock is not None
        while self.out:
            try:
                sent = self.sock.send(self.out)
            except (BlockingIOError, InterruptedError):
                break
            except OSError:
                self.out.clear()  # the peer is gone; what it sent before (an alert) is still to read
                self.update_interest()
                self.read()
                return
            del self.out[:sent]
        self.update_interest()

    def update_interest(self) -> None:
        """Tell the loop which socket events this check waits for."""
        if self.result is not None or self.sock is None:
            return
        events = selectors.EVENT_WRITE if self.phase is _Phase.CONNECTING or self.out else 0
        if self.phase is not _Phase.CONNECTING:
            events |= selectors.EVENT_READ
        if events != self.interest:
            self.loop.watch(self, self.interest, events)
            self.interest = events

    # -- PDUs

    def received_data(self, data: bytes) -> None:
        """Take in the peer's bytes and handle each PDU as soon as it is complete."""
        if self.phase is _Phase.RELEASING:
            self.finish_released()  # the release answer, or anything else: the echo succeeded
            return
        self.received += len(data)
        self.inbuf += data
        while self.result is None and self.inbuf:
            pdu_type = self.inbuf[0]
            if pdu_type not in PDU_NAMES:
                self.not_dicom(pdu_type)
                return
            if len(self.inbuf) < 6:
                return
            (length,) = struct.unpack_from(">I", self.inbuf, 2)
            problem = _length_problem(pdu_type, length)
            if problem:
                self.finish(Outcome.INVALID_PDU, problem)
                return
            self.expected = 6 + length
            if len(self.inbuf) < self.expected:
                return
            pdu = bytes(self.inbuf[:self.expected])
            del self.inbuf[:self.expected]
            self.expected = None
            self.handle(pdu_type, pdu)

    def not_dicom(self, first: int) -> None:
        """The peer sent something that is not a DICOM PDU."""
        if self.phase is _Phase.RELEASING:
            self.finish_released()
        elif self.phase is _Phase.ECHOING:
            self.finish(Outcome.ABORTED, "The peer sent data that is not DICOM during the C-ECHO")
        elif first in TLS_RECORD_TYPES and self.tls is None:
            self.finish(Outcome.ABORTED, "The peer answered the association request with a TLS "
                        "record, data that is not DICOM: the peer may require TLS")
        else:
            self.finish(Outcome.ABORTED, "The peer answered the association request with data "
                        "that is not DICOM")

    def handle(self, pdu_type: int, pdu: bytes) -> None:
        """Act on one complete PDU according to the phase."""
        name = PDU_NAMES[pdu_type]
        if self.phase is _Phase.RELEASING:
            self.finish_released()
        elif pdu_type == 7:
            self.aborted(pdu)
        elif self.phase is _Phase.ASSOCIATING and pdu_type == 2:
            self.accepted(pdu)
        elif self.phase is _Phase.ASSOCIATING and pdu_type == 3:
            self.rejected(pdu)
        elif self.phase is _Phase.ECHOING and pdu_type == 4:
            self.p_data(pdu)
        elif self.phase is _Phase.ASSOCIATING:
            self.finish(Outcome.INVALID_PDU,
                        f"The peer answered the association request with an {name} PDU")
        else:
            self.finish(Outcome.INVALID_PDU, f"The peer sent an unexpected {name} PDU during the C-ECHO")

    def aborted(self, pdu: bytes) -> None:
        """The peer sent an A-ABORT."""
        self.established = False
        source, reason = pdu[8], pdu[9]
        why = f", {ABORT_REASONS.get(reason, f'reason {reason}')}" if source == 2 else ""
        if self.phase is _Phase.ECHOING:
            self.finish(Outcome.ABORTED, f"The peer aborted the association during the C-ECHO{why}")
        else:
            self.finish(Outcome.ABORTED, f"The peer aborted the association request (A-ABORT{why})")

    def accepted(self, pdu: bytes) -> None:
        """An A-ASSOCIATE-AC: send the C-ECHO if Verification was accepted."""
        self.established = True
        problem = _ac_problem(pdu)
        if problem:
            self.finish(Outcome.INVALID_PDU, f"The peer's A-ASSOCIATE-AC could not be decoded ({problem})")
            return
        answer = A_ASSOCIATE_AC()
        try:
            answer.decode(pdu)
            contexts = [item for item in answer.variable_items
                        if isinstance(item, PresentationContextItemAC)]
            ok = any(c.presentation_context_id == CONTEXT_ID and c.result_reason == 0
                     for c in contexts)
        except Exception:  # any decoding failure of the peer's bytes
            self.finish(Outcome.INVALID_PDU, "The peer's A-ASSOCIATE-AC could not be decoded")
            return
        if not ok:
            self.finish(Outcome.NO_VERIFICATION_CONTEXT,
                        "Association accepted but the Verification SOP Class was not")
            return
        self.phase = _Phase.ECHOING
        self.received = 0
        self.send(_c_echo_rq())

    def rejected(self, pdu: bytes) -> None:
        """An A-ASSOCIATE-RJ: rejected, busy (transient), or invalid when its fields are not defined."""
        answer = A_ASSOCIATE_RJ()
        answer.decode(pdu)
        result, source, reason = answer.result, answer.source, answer.reason_diagnostic
        if result not in REJECT_RESULTS or (source, reason) not in REJECT_REASONS:
            self.finish(Outcome.INVALID_PDU, f"The peer sent an A-ASSOCIATE-RJ with out-of-range "
                        f"fields: result {result}, source {source}, reason {reason}")
            return
        assert result is not None and source is not None and reason is not None
        detail = (f"Association rejected ({REJECT_RESULTS[result]}, {REJECT_SOURCES[source]}): "
                  f"{REJECT_REASONS[(source, reason)]}")
        outcome = Outcome.BUSY if result == 2 else Outcome.REJECTED
        self.finish(outcome, detail, result=result, source=source, reason=reason)

    def p_data(self, pdu: bytes) -> None:
        """Collect the C-ECHO response's command fragments; decide once the last one arrives."""
        message = P_DATA_TF()
        try:
            message.decode(pdu)
            items = [(i.presentation_context_id, bytes(i.presentation_data_value or b""))
                     for i in message.presentation_data_value_items]
        except Exception:  # any decoding failure of the peer's bytes
            self.finish(Outcome.INVALID_PDU, "The peer's P-DATA-TF PDU could not be decoded")
            return
        for context_id, value in items:
            self.response_bytes += len(value)
            if context_id != CONTEXT_ID or not value:
                self.finish(Outcome.INVALID_PDU, f"The peer sent a malformed C-ECHO response "
                            f"(presentation context {context_id}, {len(value)} bytes)")
                return
            if self.response_bytes > RESPONSE_MAX:
                self.finish(Outcome.INVALID_PDU, f"The peer's C-ECHO response passed "
                            f"{RESPONSE_MAX:,} bytes; a C-ECHO response takes about 100")
                return
            if value[0] & 1:
                self.response += value[1:]
                if value[0] & 2:
                    self.echo_response(bytes(self.response))
                    return

    def echo_response(self, command: bytes) -> None:
        """Read the C-ECHO-RSP status; release the association on success."""
        try:
            dataset = decode(io.BytesIO(command), True, True)
            field = int(dataset.CommandField)
            status = int(dataset.Status)
        except Exception:  # any decoding failure of the peer's bytes
            self.finish(Outcome.INVALID_PDU, "The peer's C-ECHO response could not be decoded")
            return
        if field != C_ECHO_RSP_FIELD:
            self.finish(Outcome.INVALID_PDU,
                        f"The peer answered the C-ECHO with command 0x{field:04X}, not a response")
        elif status != 0x0000:
            self.finish(Outcome.ECHO_FAILED, f"C-ECHO returned status 0x{status:04X}")
        else:
            latency = _ms(self.started)
            self.success = EchoResult(Outcome.OK, f"C-ECHO succeeded in {latency:.0f} ms", latency)
            self.phase = _Phase.RELEASING
            self.send(A_RELEASE_RQ)

    # -- endings

    def closed(self) -> None:
        """The peer closed (or reset) the connection."""
        if self.phase is _Phase.RELEASING:
            self.finish_released()
        elif self.phase is _Phase.HANDSHAKING:
            what = ("does not speak TLS (it closed the connection at the TLS hello)" if not self.received
                    else "closed the connection during the TLS handshake")
            self.finish(Outcome.TLS_ERROR, f"TLS handshake failed: the peer {what}")
        elif self.phase is _Phase.ECHOING:
            self.finish(Outcome.ABORTED, "The peer closed the connection during the C-ECHO")
        elif self.received:
            self.finish(Outcome.ABORTED, "The peer closed the connection in the middle of its "
                        "answer to the association request")
        else:
            hint = " (the peer may require TLS)" if self.tls is None else ""
            self.finish(Outcome.ABORTED, "The peer closed the connection without answering the "
                        f"association request{hint}")

    def expired(self) -> None:
        """The deadline passed: say how far the peer got."""
        timeout = self.spec.timeout
        sent = self.received
        of = f" of {self.expected:,}" if self.expected and self.expected >= sent else ""
        if self.phase is _Phase.RESOLVING:
            self.finish(Outcome.DNS_ERROR, f"Cannot resolve host name {self.spec.host!r}: no answer "
                        f"within {timeout:.1f} s")
        elif self.phase is _Phase.CONNECTING:
            self.connection_timed_out()
        elif self.phase is _Phase.RELEASING:
            self.finish_released()
        elif self.phase is _Phase.HANDSHAKING and not sent:
            self.finish(Outcome.TLS_ERROR, f"TLS handshake failed: no TLS answer within {timeout:.1f} s")
        elif self.phase is _Phase.HANDSHAKING:
            self.finish(Outcome.TOO_SLOW, f"The peer was still in the TLS handshake after "
                        f"{timeout:.1f} s ({sent:,} bytes received)")
        elif self.phase is _Phase.ASSOCIATING and not sent:
            self.finish(Outcome.NO_RESPONSE, f"TCP connection accepted but no association answer "
                        f"within {timeout:.1f} s")
        elif self.phase is _Phase.ASSOCIATING:
            self.finish(Outcome.TOO_SLOW, f"The peer was still sending its association answer after "
                        f"{timeout:.1f} s ({sent:,}{of} bytes received)")
        elif not sent:
            self.finish(Outcome.ECHO_FAILED, f"No C-ECHO response within {timeout:.1f} s")
        else:
            self.finish(Outcome.TOO_SLOW, f"The peer was still sending its C-ECHO response after "
                        f"{timeout:.1f} s ({sent:,}{of} bytes received)")

    def finish_released(self) -> None:
        """The release ended (answered, or not in time): the C-ECHO's success stands."""
        if self.result is not None:
            return
        assert self.success is not None
        self.established = False
        self.result = self.success
        self.loop.finished(self)

    def finish(self, outcome: Outcome, detail: str, **fields: int) -> None:
        """End the check with a result."""
        if self.result is not None:
            return
        self.result = EchoResult(outcome, detail, _ms(self.started), **fields)
        self.loop.finished(self)

    def close(self) -> None:
        """Abort an association still open and close the socket."""
        if self.sock is None:
            return
        if self.established:
            try:
                if self.tls is not None:
                    self.tls.write(A_ABORT)
                    self.sock.send(self.outgoing.read())
                else:
                    self.sock.send(A_ABORT)
            except (OSError, ssl.SSLError):
                pass  # best effort: the peer may be gone
        self.sock.close()
        self.sock = None


def _no_lookup(host: str, *_args: Any, **_kwargs: Any) -> list[tuple[Any, ...]]:
    """A resolver that never queries DNS: names fail, so only addresses pass."""
    raise socket.gaierror(socket.EAI_NONAME, f"{host} is not an address")


# ---------------------------------------------------------------- the loop


LOOKUP_THREADS = 8


class _Loop:
    """Runs checks on one selector until all are done, at most ``concurrency`` at once."""

    def __init__(self, emit: Callable[[Any, EchoResult], None]) -> None:
        self.emit = emit
        self.selector = selectors.DefaultSelector()
        self.wake_read, self.wake_write = socket.socketpair()
        self.wake_read.setblocking(False)
        self.wake_write.setblocking(False)
        self.selector.register(self.wake_read, selectors.EVENT_READ, None)
        self.timers: list[tuple[float, int, _Check]] = []
        self.order = itertools.count()
        self.active: set[_Check] = set()
        self.lookups: queue.SimpleQueue[_Check | None] = queue.SimpleQueue()
        self.looked_up: collections.deque[_Check] = collections.deque()
        self.lookup_threads = 0
        self.stopping = False

    def watch(self, check: _Check, old: int, new: int) -> None:
        """Change which events of ``check``'s socket the selector reports."""
        if not old:
            self.selector.register(check.sock, new, check)  # type: ignore[arg-type]
        elif new:
            self.selector.modify(check.sock, new, check)  # type: ignore[arg-type]
        else:
            self.selector.unregister(check.sock)  # type: ignore[arg-type]

    def lookup(self, check: _Check) -> None:
        """Resolve ``check``'s host in a lookup thread (a few per loop, started on demand)."""
        self.lookups.put(check)
        if self.lookup_threads < LOOKUP_THREADS:
            self.lookup_threads += 1
            threading.Thread(target=self._lookup_worker, name="echo-dns", daemon=True).start()

    def _lookup_worker(self) -> None:
        """Resolve queued checks and wake the loop for each (a lookup thread)."""
        while (check := self.lookups.get()) is not None:
            if check.result is None:
                check.run_lookup()
                self.looked_up.append(check)
                with contextlib.suppress(OSError):  # the loop has ended or is already awake
                    self.wake_write.send(b"\0")

    def stop(self) -> None:
        """Ask the loop (running in another thread) to end its checks without results."""
        self.stopping = True
        with contextlib.suppress(OSError):
            self.wake_write.send(b"\0")

    def finished(self, check: _Check) -> None:
        """A check has its result: release its socket and report it."""
        if check.interest and check.sock is not None:
            self.selector.unregister(check.sock)
            check.interest = 0
        check.close()
        self.active.discard(check)
        assert check.result is not None
        self.emit(check.key, check.result)

    def guarded(self, check: _Check, step: Callable[[], None]) -> None:
        """Run one step of a check; a bug must end that check, never the loop."""
        try:
            step()
        except Exception as exc:
            log.exception("C-ECHO of %s:%s failed unexpectedly", check.spec.host, check.spec.port)
            check.finish(Outcome.ABORTED, f"Unexpected error during the check: {exc}")

    def run(self, pending: Iterator[tuple[_Spec, Any]], concurrency: int) -> None:
        """Run checks from ``pending`` until none is left (or ``stop`` is called)."""
        try:
            while not self.stopping:
                while len(self.active) < concurrency and (item := next(pending, None)) is not None:
                    check = _Check(item[0], self, item[1])
                    self.active.add(check)
                    heapq.heappush(self.timers, (check.deadline, next(self.order), check))
                    self.guarded(check, check.start)
                if not self.active:
                    return
                self.turn()
        finally:
            self.close()

    def turn(self) -> None:
        """Wait for the next events or deadline and act on them."""
        while self.timers and self.timers[0][2].result is not None:
            heapq.heappop(self.timers)
        wait = max(0.0, self.timers[0][0] - time.perf_counter()) if self.timers else None
        for key, mask in self.selector.select(wait):
            check = key.data
            if check is None:
                try:
                    while self.wake_read.recv(4096):
                        pass
                except (BlockingIOError, InterruptedError):
                    pass
            elif check.result is None:
                self.guarded(check, functools.partial(check.ready, mask))
        while self.looked_up:
            check = self.looked_up.popleft()
            if check.result is None:
                self.guarded(check, check.resolved)
        now = time.perf_counter()
        while self.timers and self.timers[0][0] <= now:
            _, _, check = heapq.heappop(self.timers)
            if check.result is None:
                self.guarded(check, check.expired)

    def close(self) -> None:
        """Close every socket the loop still holds and end its lookup threads."""
        for check in list(self.active):
            if check.interest and check.sock is not None:
                self.selector.unregister(check.sock)
            check.close()
        self.active.clear()
        for _ in range(self.lookup_threads):
            self.lookups.put(None)
        self.selector.close()
        self.wake_read.close()
        self.wake_write.close()


# ---------------------------------------------------------------- public API


def echo(host: str, port: int, called_ae: str, calling_ae: str, timeout: float,
         tls: bool = False, ssl_context: ssl.SSLContext | None = None, *,
         client_cert: str | None = None, client_key: str | None = None, ca_file: str | None = None,
         allowed_networks: Sequence[IPNetwork] | None = None,
         resolver: Resolver | None = None) -> EchoResult:
    """C-ECHO ``called_ae`` at ``host:port`` within ``timeout`` seconds and classify the outcome.

    With ``tls``, the node's certificate is verified for ``host`` against ``ssl_context`` (or
    ``ca_file``, or the system's CAs) and ``client_cert``/``client_key`` (PEM files) are
    presented when given. With ``allowed_networks``, a destination outside them (see
    ``netpolicy``) is ``not_allowed`` and no socket is opened. ValueError names a bad argument.
    """
    spec = _make_spec(host, port, called_ae, calling_ae, timeout, tls, ssl_context, client_cert,
                      client_key, ca_file, allowed_networks, resolver)
    results: list[EchoResult] = []
    _Loop(lambda _key, result: results.append(result)).run(iter([(spec, None)]), 1)
    return results[0]


_DONE = object()


def echo_many(targets: Iterable[T], calling_ae: str, timeout: float, concurrency: int, *,
              ssl_context: ssl.SSLContext | None = None,
              allowed_networks: Sequence[IPNetwork] | None = None,
              resolver: Resolver | None = None) -> Iterator[tuple[T, EchoResult]]:
    """Echo ``targets``, at most ``concurrency`` at once, yielding (target, result) as each ends.

    Each target gives ``host``, ``port``, ``ae_title`` (called) and ``tls``, and may give
    ``client_cert``, ``client_key`` and ``ca_file``. The checks run in one loop thread, so a
    slow consumer never delays them. A target that cannot be checked (bad port, unreadable
    certificate) yields an ``echo_failed`` result naming why; a bad ``calling_ae``, ``timeout``
    or ``concurrency`` raises ValueError at once.
    """
    problem = ae_title_problem(calling_ae) if isinstance(calling_ae, str) else "it must be text"
    if problem:
        raise ValueError(f"calling AE title {calling_ae!r} is invalid: {problem}")
    if not timeout > 0:
        raise ValueError(f"timeout must be a positive number of seconds, not {timeout!r}")
    if isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1:
        raise ValueError(f"concurrency must be a whole number of at least 1, not {concurrency!r}")
    items = list(targets)
    if not items:
        return
    results: queue.SimpleQueue[Any] = queue.SimpleQueue()

    def specs() -> Iterator[tuple[_Spec, T]]:
        for target in items:
            try:
                yield _make_spec(target.host, target.port, target.ae_title, calling_ae, timeout,
                                 bool(target.tls), ssl_context, getattr(target, "client_cert", None),
                                 getattr(target, "client_key", None), getattr(target, "ca_file", None),
                                 allowed_networks, resolver), target
            except ValueError as exc:
                results.put((target, EchoResult(Outcome.ECHO_FAILED, f"Cannot check this node: {exc}",
                                                0.0)))

    loop = _Loop(lambda target, result: results.put((target, result)))

    def run() -> None:
        try:
            loop.run(specs(), concurrency)
        except BaseException as exc:  # handed to the consumer, which raises it
            results.put(exc)
        finally:
            results.put(_DONE)

    worker = threading.Thread(target=run, name="echo-loop", daemon=True)
    worker.start()
    try:
        while (item := results.get()) is not _DONE:
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        loop.stop()
        worker.join()
