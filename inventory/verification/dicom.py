"""C-ECHO one DICOM node with pynetdicom and classify what happened (no Flask, no database)."""

from __future__ import annotations

import functools
import ipaddress
import logging
import socket
import ssl
import sys
import threading
import time
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from pynetdicom import AE, evt
from pynetdicom.association import Association
from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]
from pynetdicom.transport import AssociationSocket

from core.config import ae_title_problem

# Every failure is classified into an EchoResult; pynetdicom's own error logs (a traceback
# per unreachable node in each sweep) would only bury that. Raise the level to debug it.
logging.getLogger("pynetdicom").setLevel(logging.CRITICAL)


class Outcome(StrEnum):
    """How a verification ended."""

    OK = "ok"
    REFUSED = "refused"
    CONNECT_TIMEOUT = "connect_timeout"
    DNS_ERROR = "dns_error"
    NO_RESPONSE = "no_response"
    REJECTED = "rejected"
    ABORTED = "aborted"
    NO_VERIFICATION_CONTEXT = "no_verification_context"
    ECHO_FAILED = "echo_failed"
    TLS_ERROR = "tls_error"


REJECT_RESULTS = {1: "permanent", 2: "transient"}
REJECT_SOURCES = {1: "service user", 2: "service provider, ACSE", 3: "service provider, presentation"}
REJECT_REASONS = {
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


# State-machine events (PS3.8 table 9-10) that tell what the peer did.
PEER_EVENTS = {"Evt16": "abort_received", "Evt17": "conn_close", "Evt19": "invalid_pdu"}


class _DiagnosingSocket(AssociationSocket):
    """An association socket that keeps why its TCP/TLS connect failed (pynetdicom only logs it)."""

    connect_error: OSError | None = None
    tcp_connected: bool = False

    def _shutdown_socket(self) -> None:
        """Note the exception being handled and whether TCP got through, then close."""
        if not self._is_connected and self.connect_error is None:
            exc = sys.exc_info()[1]
            if isinstance(exc, OSError):
                self.connect_error = exc
                try:
                    self.socket.getpeername()  # type: ignore[union-attr]
                    self.tcp_connected = True
                except OSError:
                    self.tcp_connected = False
        super()._shutdown_socket()


class _EchoAE(AE):
    """An AE whose requestor sockets remember connect failures."""

    def _create_socket(self, assoc: Association, address: Any, tls_args: Any) -> AssociationSocket:
        """Create the association's socket (unconnected), diagnosing failures."""
        sock = _DiagnosingSocket(assoc, address=address)
        sock.tls_args = tls_args
        return sock


def _resolve(host: str, port: int, seconds: float) -> tuple[str | None, str]:
    """Resolve ``host`` to one IP address within ``seconds``: (address, error text)."""
    try:
        ipaddress.ip_address(host)
        return host, ""
    except ValueError:
        pass
    found: dict[str, Any] = {}

    def lookup() -> None:
        try:
            found["info"] = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except (OSError, UnicodeError) as exc:
            found["error"] = exc

    worker = threading.Thread(target=lookup, name=f"dns-{host}", daemon=True)
    worker.start()
    worker.join(seconds)
    if found.get("info"):  # IPv4 first: DICOM devices rarely listen on IPv6
        best = min(found["info"], key=lambda info: info[0] != socket.AF_INET)
        return str(best[4][0]), ""
    if "error" in found:
        exc = found["error"]
        text = exc.strerror if isinstance(exc, socket.gaierror) and exc.strerror else str(exc)
        return None, f"Cannot resolve host name {host!r}: {text}"
    return None, f"Cannot resolve host name {host!r}: no answer within {seconds:.1f} s"


@functools.cache
def _system_trust() -> ssl.SSLContext:
    """Client TLS context trusting the system CAs (or SSL_CERT_FILE/SSL_CERT_DIR), built once."""
    return ssl.create_default_context()


def _ms(start: float) -> float:
    """Milliseconds since ``start`` (a perf_counter value)."""
    return round((time.perf_counter() - start) * 1000, 1)


def echo(host: str, port: int, called_ae: str, calling_ae: str, timeout: float,
         tls: bool = False, ssl_context: ssl.SSLContext | None = None) -> EchoResult:
    """C-ECHO ``called_ae`` at ``host:port`` within ``timeout`` seconds and classify the outcome."""
    validate_target(host, port, called_ae, calling_ae, timeout)
    host, called_ae, calling_ae = host.strip(), called_ae.strip(), calling_ae.strip()
    start = time.perf_counter()
    deadline = start + timeout
    address, problem = _resolve(host, port, timeout)
    if address is None:
        return EchoResult(Outcome.DNS_ERROR, problem, _ms(start))

    def remaining() -> float:
        return max(deadline - time.perf_counter(), 0.05)

    ae = _EchoAE(ae_title=calling_ae)
    ae.add_requested_context(Verification)
    ae.connection_timeout = remaining()
    ae.acse_timeout = timeout
    ae.dimse_timeout = timeout
    ae.network_timeout = timeout
    seen: dict[str, float] = {}

    def on_conn_open(event: evt.Event) -> None:
        seen["conn_open"] = time.perf_counter()
        event.assoc.acse_timeout = remaining()  # the association answer shares the budget

    def on_accepted(event: evt.Event) -> None:
        seen["accepted"] = time.perf_counter()

    def on_transition(event: evt.Event) -> None:
        name = PEER_EVENTS.get(event.fsm_event)
        if name:
            seen.setdefault(name, time.perf_counter())

    handlers = [(evt.EVT_CONN_OPEN, on_conn_open), (evt.EVT_ACCEPTED, on_accepted),
                (evt.EVT_FSM_TRANSITION, on_transition)]
    context = (ssl_context or _system_trust()) if tls else None
    tls_args = (context, host) if context is not None else None
    assoc = ae.associate(address, port, ae_title=called_ae, tls_args=tls_args,
                         evt_handlers=handlers)
    try:
        if assoc.is_established:
            return _echo_established(assoc, start, remaining, seen)
        return _classify_failure(assoc, start, timeout, tls, seen)
    finally:
        if assoc.is_established:
            assoc.abort()
        ae.shutdown()


def _echo_established(assoc: Association, start: float, remaining: Any,
                      seen: dict[str, float]) -> EchoResult:
    """Send the C-ECHO on an established association and release it."""
    assoc.dimse_timeout = remaining()
    sent = time.perf_counter()
    status = assoc.send_c_echo()
    latency = _ms(start)
    code = getattr(status, "Status", None)
    if code is None:
        waited = time.perf_counter() - sent
        if "abort_received" in seen:
            return EchoResult(Outcome.ABORTED, "The peer aborted the association during the C-ECHO",
                              latency)
        if "invalid_pdu" in seen:
            return EchoResult(Outcome.ABORTED, "The peer sent data that is not DICOM during the C-ECHO",
                              latency)
        if "conn_close" in seen and waited < (assoc.dimse_timeout or 0) * 0.9:
            return EchoResult(Outcome.ABORTED,
                              "The peer closed the connection during the C-ECHO", latency)
        return EchoResult(Outcome.ECHO_FAILED,
                          f"No C-ECHO response within {assoc.dimse_timeout:.1f} s", latency)
    if code != 0x0000:
        return EchoResult(Outcome.ECHO_FAILED, f"C-ECHO returned status 0x{code:04X}", latency)
    assoc.acse_timeout = remaining()
    assoc.release()
    return EchoResult(Outcome.OK, f"C-ECHO succeeded in {latency:.0f} ms", latency)


def _connect_failure(sock: Any, start: float, timeout: float, tls: bool) -> EchoResult:
    """Classify a failure before the connection opened (TCP or TLS)."""
    latency = _ms(start)
    error = getattr(sock, "connect_error", None)
    if tls and (isinstance(error, ssl.SSLError) or getattr(sock, "tcp_connected", False)):
        if isinstance(error, ssl.SSLCertVerificationError):
            reason = f"the node's certificate is not trusted ({error.verify_message})"
        elif isinstance(error, TimeoutError):
            reason = f"no TLS answer within {timeout:.1f} s"
        elif isinstance(error, ssl.SSLError) and error.reason:
            reason = error.reason.replace("_", " ").lower()
        else:
            reason = str(error) or "the node closed the connection"
        return EchoResult(Outcome.TLS_ERROR, f"TLS handshake failed: {reason}", latency)
    if isinstance(error, ConnectionRefusedError):
        return EchoResult(Outcome.REFUSED, "TCP connection refused (nothing listening on the port)",
                          latency)
    if isinstance(error, TimeoutError) or (error is None and latency >= timeout * 900):
        return EchoResult(Outcome.CONNECT_TIMEOUT,
                          f"No TCP connection within {timeout:.1f} s (host down or filtered)",
                          latency)
    text = (error.strerror or str(error)) if error is not None else "connection failed"
    return EchoResult(Outcome.REFUSED, f"TCP connection failed: {text}", latency)


def _classify_failure(assoc: Association, start: float, timeout: float, tls: bool,
                      seen: dict[str, float]) -> EchoResult:
    """Tell apart why an association was not established."""
    latency = _ms(start)
    if "conn_open" not in seen:
        return _connect_failure(assoc.dul.socket, start, timeout, tls)
    if assoc.is_rejected:
        primitive = assoc.acceptor.primitive
        result = int(primitive.result)
        source = int(primitive.result_source)
        reason = int(primitive.diagnostic) if primitive.diagnostic is not None else 0
        text = REJECT_REASONS.get((source, reason), f"reason {reason}")
        detail = (f"Association rejected ({REJECT_RESULTS.get(result, result)}, "
                  f"{REJECT_SOURCES.get(source, source)}): {text}")
        return EchoResult(Outcome.REJECTED, detail, latency, result=result, source=source,
                          reason=reason)
    if "accepted" in seen and not assoc.accepted_contexts:
        return EchoResult(Outcome.NO_VERIFICATION_CONTEXT,
                          "Association accepted but the Verification SOP Class was not", latency)
    if "abort_received" in seen:
        return EchoResult(Outcome.ABORTED, "The peer aborted the association request (A-ABORT)",
                          latency)
    if "invalid_pdu" in seen:
        return EchoResult(Outcome.ABORTED, "The peer answered the association request with data "
                          "that is not DICOM", latency)
    answer_budget = (assoc.acse_timeout or 0) * 0.9
    if "conn_close" in seen and seen["conn_close"] - seen["conn_open"] < answer_budget:
        return EchoResult(Outcome.ABORTED, "The peer closed the connection without answering "
                          "the association request", latency)
    return EchoResult(Outcome.NO_RESPONSE,
                      f"TCP connection accepted but no association answer within "
                      f"{assoc.acse_timeout:.1f} s", latency)
