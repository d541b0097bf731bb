"""The C-ECHO state machine and the selector loop that runs many checks at once.

Every check runs on a non-blocking socket driven by one selector loop, with one wall-clock
deadline for the DNS lookup, TCP connect, TLS handshake, association, C-ECHO and release
together, so no peer can stretch a check past its timeout (a byte a second, a PDU that
announces 4 GB, a half-open socket). Each check holds at most one PDU (see ``echo_pdu``).
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
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from enum import Enum, auto
from typing import Any

from pynetdicom.dsutils import decode
from pynetdicom.pdu import A_ASSOCIATE_AC, A_ASSOCIATE_RJ, P_DATA_TF
from pynetdicom.pdu_items import PresentationContextItemAC

from inventory.verification.echo_pdu import (
    A_ABORT,
    A_RELEASE_RQ,
    ABORT_REASONS,
    C_ECHO_RSP_FIELD,
    CONTEXT_ID,
    HELLO_KEPT,
    PDU_NAMES,
    RECV_CHUNK,
    REJECT_REASONS,
    REJECT_RESULTS,
    REJECT_SOURCES,
    RESPONSE_MAX,
    TLS_RECORD_TYPES,
    EchoResult,
    Outcome,
    ac_problem,
    asks_for_certificate,
    associate_rq,
    c_echo_rq,
    elapsed_ms,
    length_problem,
    tls_reason,
)
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


class _Phase(Enum):
    """Where a check is."""

    RESOLVING = auto()
    CONNECTING = auto()
    HANDSHAKING = auto()
    ASSOCIATING = auto()
    ECHOING = auto()
    RELEASING = auto()


@dataclass(frozen=True)
class Spec:
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




class Check:
    """One C-ECHO as a state machine fed by the loop: readiness, lookups, its deadline."""

    def __init__(self, spec: Spec, loop: Loop, key: Any) -> None:
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
            self.send(associate_rq(self.spec.calling_ae, self.spec.called_ae))
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
            self.finish(Outcome.TLS_ERROR, "TLS handshake failed: " + tls_reason(
                exc, self.spec.client_cert, self.received, asks_for_certificate(bytes(self.hello))))
            return
        self.drain_tls()
        self.phase = _Phase.ASSOCIATING
        self.received = 0
        self.send(associate_rq(self.spec.calling_ae, self.spec.called_ae))
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
        reason = tls_reason(exc, self.spec.client_cert, received=1)
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
            problem = length_problem(pdu_type, length)
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
        problem = ac_problem(pdu)
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
        self.send(c_echo_rq())

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
            latency = elapsed_ms(self.started)
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
        self.result = EchoResult(outcome, detail, elapsed_ms(self.started), **fields)
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


class Loop:
    """Runs checks on one selector until all are done, at most ``concurrency`` at once."""

    def __init__(self, emit: Callable[[Any, EchoResult], None]) -> None:
        self.emit = emit
        self.selector = selectors.DefaultSelector()
        self.wake_read, self.wake_write = socket.socketpair()
        self.wake_read.setblocking(False)
        self.wake_write.setblocking(False)
        self.selector.register(self.wake_read, selectors.EVENT_READ, None)
        self.timers: list[tuple[float, int, Check]] = []
        self.order = itertools.count()
        self.active: set[Check] = set()
        self.lookups: queue.SimpleQueue[Check | None] = queue.SimpleQueue()
        self.looked_up: collections.deque[Check] = collections.deque()
        self.lookup_threads = 0
        self.stopping = False

    def watch(self, check: Check, old: int, new: int) -> None:
        """Change which events of ``check``'s socket the selector reports."""
        sock = check.sock
        assert sock is not None  # only a check with an open socket is watched
        if not old:
            self.selector.register(sock, new, check)
        elif new:
            self.selector.modify(sock, new, check)
        else:
            self.selector.unregister(sock)

    def lookup(self, check: Check) -> None:
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

    def finished(self, check: Check) -> None:
        """A check has its result: release its socket and report it."""
        if check.interest and check.sock is not None:
            self.selector.unregister(check.sock)
            check.interest = 0
        check.close()
        self.active.discard(check)
        assert check.result is not None
        self.emit(check.key, check.result)

    def guarded(self, check: Check, step: Callable[[], None]) -> None:
        """Run one step of a check; a bug must end that check, never the loop."""
        try:
            step()
        except Exception as exc:
            log.exception("C-ECHO of %s:%s failed unexpectedly", check.spec.host, check.spec.port)
            check.finish(Outcome.ABORTED, f"Unexpected error during the check: {exc}")

    def run(self, pending: Iterator[tuple[Spec, Any]], concurrency: int) -> None:
        """Run checks from ``pending`` until none is left (or ``stop`` is called)."""
        try:
            while not self.stopping:
                while len(self.active) < concurrency and (item := next(pending, None)) is not None:
                    check = Check(item[0], self, item[1])
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

