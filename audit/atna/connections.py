"""The receiver's live connections: admission within limits, TLS, framing, back-pressure, timeouts.

One ``Connections`` hub per receiver holds what its connections share (counters, slots, paused
senders) and runs on the receiver's event loop; ``StreamConnection`` serves one TCP or TLS
connection and ``DatagramListener`` one UDP socket.
"""

from __future__ import annotations

import array
import asyncio
import contextlib
import fcntl
import logging
import ssl
import termios
import time
from collections import Counter, deque
from typing import Any

from audit.atna.handover import HandOver
from audit.atna.listen import ReceiverSettings
from audit.atna.syslog import FramingError, StreamFramer

log = logging.getLogger(__name__)
LOG_EVERY = 10.0
REFUSALS_KEPT = 10_000
DRAIN_QUIET = 0.2


class QuietLog:
    """Warnings about senders, at most one per kind every ``LOG_EVERY`` seconds."""

    # A flood of bad connections must not become a flood of log lines; the counters keep totals.

    def __init__(self) -> None:
        self._last: dict[str, float] = {}
        self._quiet: Counter[str] = Counter()

    def warning(self, kind: str, message: str, *args: object) -> None:
        """Log ``message`` unless ``kind`` was logged less than ``LOG_EVERY`` seconds ago."""
        now = time.monotonic()
        if now - self._last.get(kind, -LOG_EVERY) < LOG_EVERY:
            self._quiet[kind] += 1
            return
        self._last[kind] = now
        skipped = self._quiet.pop(kind, 0)
        log.warning(message + (f" ({skipped} more like it not logged)" if skipped else ""), *args)


class Connections:
    """What a receiver's connections share, and the policies that act on all of them."""

    def __init__(self, settings: ReceiverSettings, handover: HandOver,
                 loop: asyncio.AbstractEventLoop) -> None:
        self.settings = settings
        self.handover = handover
        self.loop = loop
        self.counts: Counter[str] = Counter()
        self.log = QuietLog()
        self.streams: set[StreamConnection] = set()
        self.per_peer: Counter[str] = Counter()
        self.paused: set[StreamConnection] = set()
        self.tasks: set[asyncio.Future[Any]] = set()
        # Messages refused before being read whole (too large): (time, listener, host, port, reason).
        self.refusals: deque[tuple[float, str, str, int, str]] = deque(maxlen=REFUSALS_KEPT)
        self.udp_last = 0.0
        self.datagram_transports: list[asyncio.BaseTransport] = []

    def admit(self, stream: StreamConnection) -> bool:
        """Take a connection slot for ``stream``, or count a refusal."""
        if len(self.streams) >= self.settings.max_connections or (
                self.per_peer[stream.host] >= self.settings.max_connections_per_peer):
            self.counts["refused_connections"] += 1
            self.log.warning("limit", "ATNA %s: connection from %s refused: connection limit reached",
                             stream.listener, stream.host)
            return False
        stream.admitted = True
        self.counts["accepted_connections"] += 1
        self.streams.add(stream)
        self.per_peer[stream.host] += 1
        return True

    def release(self, stream: StreamConnection) -> None:
        """Give back the slot of a closed connection (once)."""
        if not stream.admitted:
            return
        stream.admitted = False
        self.streams.discard(stream)
        self.paused.discard(stream)
        self.per_peer[stream.host] -= 1
        if self.per_peer[stream.host] <= 0:
            del self.per_peer[stream.host]

    def now(self) -> float:
        """The loop's monotonic clock."""
        return self.loop.time()

    def pause(self, stream: StreamConnection) -> None:
        """Stop reading from a sender until the queue has room again."""
        if not stream.paused and stream.transport is not None:
            stream.transport.pause_reading()
            stream.paused = True
            self.paused.add(stream)
            self.counts["backpressure_pauses"] += 1

    def room(self) -> None:
        """Called from the hand-over thread when the queue has room: resume paused senders."""
        with contextlib.suppress(RuntimeError):  # the loop closed meanwhile: nothing to resume
            self.loop.call_soon_threadsafe(self.resume)

    def resume(self) -> None:
        """Resume every paused connection, restarting its timers (waiting was our doing, not theirs)."""
        now = self.now()
        for stream in list(self.paused):
            stream.paused = False
            stream.last = now
            if stream.started is not None:
                stream.started = now
            if stream.transport is not None and not stream.transport.is_closing():
                stream.transport.resume_reading()
        self.paused.clear()

    async def sweep(self) -> None:
        """Close connections whose message is late or that stayed silent too long."""
        settings = self.settings
        tick = min(1.0, settings.message_timeout / 4, settings.idle_timeout / 4)
        while True:
            await asyncio.sleep(tick)
            now = self.now()
            for stream in list(self.streams):
                if stream.handshaking or stream.paused:
                    continue
                if stream.started is not None and now - stream.started > settings.message_timeout:
                    why = f"message not complete within {settings.message_timeout:g} s"
                elif now - stream.last > settings.idle_timeout:
                    why = f"silent for {settings.idle_timeout:g} s"
                else:
                    continue
                self.counts["timed_out_connections"] += 1
                self.log.warning("timeout", "ATNA %s: connection from %s closed: %s", stream.listener,
                                 stream.host, why)
                stream.close()

    def busy(self) -> bool:
        """Whether a sender sent something within ``DRAIN_QUIET`` seconds, waits for room or is unread."""
        # Quiet is judged by the socket, not only by the clock: a loop thread that got no CPU for a
        # moment has not read what already arrived, though nothing arrived "recently" by its clock.
        now = self.now()
        if self.paused or now - self.udp_last < DRAIN_QUIET:
            return True
        if any(unread(transport) for transport in self.datagram_transports):
            return True
        return any(now - stream.last < DRAIN_QUIET or unread(stream.transport) for stream in self.streams)

    def close_all(self) -> None:
        """Cancel pending handshakes and the sweeper, close every connection at once."""
        for task in list(self.tasks):
            task.cancel()
        for stream in list(self.streams):
            stream.close()


class StreamConnection(asyncio.Protocol):
    """One TCP or TLS connection: admitted or refused, framed, paused, policed."""

    def __init__(self, hub: Connections, listener: str, tls: ssl.SSLContext | None) -> None:
        self.hub = hub
        self.listener = listener
        self.tls = tls
        self.transport: asyncio.Transport | None = None
        self.host, self.port = "", 0
        self.framer = StreamFramer(hub.settings.max_message_bytes)
        self.certificate: str | None = None
        self.admitted = self.paused = False
        self.handshaking = tls is not None
        self.early: list[bytes] = []
        self.last = 0.0
        self.started: float | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """Admit the connection within the limits (else close it at once), then start TLS."""
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        peer = transport.get_extra_info("peername") or ("", 0)
        self.host, self.port = str(peer[0]), int(peer[1])
        if not self.hub.admit(self):
            transport.abort()
            return
        self.last = self.hub.now()
        if self.tls is not None:
            transport.pause_reading()
            self.hub.tasks.add(asyncio.ensure_future(self._upgrade(transport)))

    async def _upgrade(self, raw: Any) -> None:
        """Run the TLS handshake; a failure or a wrong client certificate closes the connection."""
        hub = self.hub
        try:
            upgraded = await hub.loop.start_tls(
                raw, self, self.tls, server_side=True,  # type: ignore[arg-type]
                ssl_handshake_timeout=hub.settings.handshake_timeout)
        except Exception as exc:  # any handshake failure: bad certificate, timeout, reset, garbage
            hub.counts["tls_failures"] += 1
            hub.log.warning("tls", "ATNA %s: TLS handshake from %s refused (%s)", self.listener,
                            self.host, _tls_reason(exc))
            raw.abort()
            hub.release(self)
            return
        finally:
            hub.tasks.discard(asyncio.current_task())
        if upgraded is None:
            hub.release(self)
            return
        self.transport = upgraded
        self.certificate = _subject(upgraded.get_extra_info("peercert"))
        self.handshaking = False
        self.last = hub.now()
        early, self.early = self.early, []
        for data in early:
            if not upgraded.is_closing():
                self.data_received(data)

    def data_received(self, data: bytes) -> None:
        """Frame the bytes, queue complete messages, pause when the queue is full."""
        if self.handshaking:  # TLS data can arrive before _upgrade learns the client certificate
            self.early.append(data)
            return
        hub = self.hub
        now = self.last = hub.now()
        error = None
        try:
            frames = self.framer.feed(data)
        except FramingError as exc:
            frames, error = exc.frames, exc
        if frames:
            at, host, port, cert = time.time(), self.host, self.port, self.certificate
            hub.counts["received"] += len(frames)
            if not hub.handover.push([(at, self.listener, host, port, cert, f) for f in frames]):
                hub.pause(self)
        if error is not None:
            hub.counts["oversized" if error.too_large else "framing_errors"] += 1
            if error.too_large:
                hub.refusals.append((time.time(), self.listener, self.host, self.port,
                                     f"{error.reason}; the connection was closed and the message not kept"))
            hub.log.warning("framing", "ATNA %s: connection from %s closed: %s", self.listener,
                            self.host, error.reason)
            self.close()
            return
        if not self.framer.pending:
            self.started = None
        elif frames or self.started is None:
            self.started = now

    def eof_received(self) -> bool:
        """The sender finished: close our side too."""
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        """Free the connection's slot; a message cut short by the close is counted, not handed over."""
        if self.admitted and self.framer.pending:
            self.hub.counts["incomplete_frames"] += 1
        self.hub.release(self)

    def close(self) -> None:
        """Close the connection at once (nothing is ever written to a sender)."""
        if self.transport is not None:
            self.transport.abort()


class DatagramListener(asyncio.DatagramProtocol):
    """One UDP listener: a datagram is a message (RFC 5426), dropped and counted when the queue is full."""

    def __init__(self, hub: Connections, listener: str) -> None:
        self.hub = hub
        self.listener = listener

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """Let the hub see this socket's unread datagrams when it drains."""
        self.hub.datagram_transports.append(transport)

    def datagram_received(self, data: bytes, addr: Any) -> None:
        """Queue the datagram, or count it as oversized or dropped."""
        hub = self.hub
        if len(data) > hub.settings.max_message_bytes:
            hub.counts["oversized"] += 1
            hub.refusals.append((time.time(), self.listener, str(addr[0]), int(addr[1]),
                                 f"datagram of {len(data)} bytes is over the "
                                 f"{hub.settings.max_message_bytes} byte limit; not kept"))
            return
        hub.udp_last = hub.now()
        if hub.handover.offer((time.time(), self.listener, str(addr[0]), int(addr[1]), None, data)):
            hub.counts["received"] += 1
        else:
            hub.counts["dropped_udp"] += 1

    def error_received(self, exc: Exception) -> None:
        """ICMP errors on a listening socket mean nothing to a receiver."""
        log.debug("ATNA %s: %s", self.listener, type(exc).__name__)


def unread(transport: asyncio.BaseTransport | None) -> int:
    """Bytes waiting in a transport's socket that the loop has not read yet (0 once it is closed)."""
    sock = transport.get_extra_info("socket") if transport is not None else None
    if sock is None or sock.fileno() < 0:
        return 0
    count = array.array("i", [0])
    try:
        fcntl.ioctl(sock.fileno(), termios.FIONREAD, count)
    except OSError:
        return 0
    return count[0]


def _subject(certificate: dict | None) -> str | None:
    """A verified client certificate's subject in RFC 4514 order (``CN=...,O=...``), None without one."""
    if not certificate:
        return None
    short = {"commonName": "CN", "organizationName": "O", "organizationalUnitName": "OU",
             "countryName": "C", "localityName": "L", "stateOrProvinceName": "ST"}
    return ",".join(f"{short.get(key, key)}={value}" for rdn in reversed(certificate.get("subject", ()))
                    for key, value in rdn)


def _tls_reason(exc: BaseException) -> str:
    """A short reason for a failed handshake."""
    if isinstance(exc, ssl.SSLError):
        return exc.reason or type(exc).__name__
    return type(exc).__name__
