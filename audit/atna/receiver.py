"""Listen for ATNA syslog on UDP, TCP and TLS and hand what arrives to the storage in batches.

Why asyncio rather than selectors: one event-loop thread serves every listener and connection,
TLS handshakes run without blocking anyone (``loop.start_tls`` with a handshake timeout, after
the connection has been admitted and counted), ``pause_reading``/``resume_reading`` give TCP
back-pressure for free, and timers police slow senders. With selectors the non-blocking TLS
state machine (want-read/want-write during handshakes and renegotiation) would be ours to
write and to get right. The loop only frames bytes; parsing and ``on_batch`` run in the
hand-over thread (``audit.atna.handover``) so a slow storage never stalls the network side.

Defences: at most ``max_connections`` TCP/TLS connections and ``max_connections_per_peer`` from
one address (extra ones are closed at once); a message that has started must be complete
within ``message_timeout`` and a silent connection is closed after ``idle_timeout`` (a sender
trickling one byte a second is cut off; the others are never waited for); an octet count or
line over ``max_message_bytes`` closes the connection without buffering it; TLS handshakes
must finish within ``handshake_timeout`` and, with a client CA, show a certificate it signed.

What a crash (or kill) of the process can lose, since no syslog sender resends:
- UDP: every datagram in flight, in the kernel's socket buffer or in the queue.
- TCP/TLS: everything read from the socket (acknowledged to the sender) but not yet handed to
  ``on_batch`` -- at most the queue (``queue_messages``), one batch being stored, one read per
  connection past the queue's limit, and partial frames -- plus what sits in kernel buffers.
A clean ``stop()`` first reads what senders already sent (until they are quiet), then hands
over every complete message; a partial frame of a connection that closes (sender, timeout or
stop) is counted in ``incomplete_frames`` and dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import ssl
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from audit.atna.handover import HandOver, Received
from audit.atna.listen import Listen, ReceiverSettings, TLSFiles, parse_listen
from audit.atna.syslog import FramingError, StreamFramer

__all__ = [
    "AtnaReceiver",
    "Listen",
    "Received",
    "ReceiverSettings",
    "ReceiverStats",
    "TLSFiles",
    "parse_listen",
]

log = logging.getLogger(__name__)
UDP_RECEIVE_BUFFER = 4 * 1024 * 1024
BACKLOG = 1024
DRAIN_QUIET = 0.2
LOG_EVERY = 10.0


class _QuietLog:
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


@dataclass(frozen=True)
class ReceiverStats:
    """Counters since start; ``dropped_udp`` is what the app must store and audit as lost."""

    received: int
    delivered: int
    queued: int
    dropped_udp: int
    oversized: int
    framing_errors: int
    refused_connections: int
    timed_out_connections: int
    tls_failures: int
    open_connections: int
    backpressure_pauses: int
    callback_failures: int
    incomplete_frames: int
    lost_at_stop: int


class _Stream(asyncio.Protocol):
    """One TCP or TLS connection: admitted or refused, framed, paused, policed."""

    def __init__(self, receiver: AtnaReceiver, listener: str, tls: ssl.SSLContext | None) -> None:
        self.receiver = receiver
        self.listener = listener
        self.tls = tls
        self.transport: asyncio.Transport | None = None
        self.host, self.port = "", 0
        self.framer = StreamFramer(receiver.settings.max_message_bytes)
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
        if not self.receiver._admit(self):
            transport.abort()
            return
        self.last = self.receiver._now()
        if self.tls is not None:
            transport.pause_reading()
            self.receiver._tasks.add(asyncio.ensure_future(self._upgrade(transport)))

    async def _upgrade(self, raw: Any) -> None:
        """Run the TLS handshake; a failure or a wrong client certificate closes the connection."""
        receiver = self.receiver
        try:
            upgraded = await receiver._loop.start_tls(
                raw, self, self.tls, server_side=True,  # type: ignore[arg-type]
                ssl_handshake_timeout=receiver.settings.handshake_timeout)
        except Exception as exc:  # any handshake failure: bad certificate, timeout, reset, garbage
            receiver._counts["tls_failures"] += 1
            receiver._log.warning("tls", "ATNA %s: TLS handshake from %s refused (%s)", self.listener,
                                  self.host, _tls_reason(exc))
            raw.abort()
            receiver._release(self)
            return
        finally:
            receiver._tasks.discard(asyncio.current_task())  # type: ignore[arg-type]
        if upgraded is None:
            receiver._release(self)
            return
        self.transport = upgraded
        self.certificate = _subject(upgraded.get_extra_info("peercert"))
        self.handshaking = False
        self.last = receiver._now()
        early, self.early = self.early, []
        for data in early:
            if not upgraded.is_closing():
                self.data_received(data)

    def data_received(self, data: bytes) -> None:
        """Frame the bytes, queue complete messages, pause when the queue is full."""
        if self.handshaking:  # TLS data can arrive before _upgrade learns the client certificate
            self.early.append(data)
            return
        receiver = self.receiver
        now = self.last = receiver._now()
        error = None
        try:
            frames = self.framer.feed(data)
        except FramingError as exc:
            frames, error = exc.frames, exc
        if frames:
            at, host, port, cert = time.time(), self.host, self.port, self.certificate
            receiver._counts["received"] += len(frames)
            if not receiver._handover.push([(at, self.listener, host, port, cert, f) for f in frames]):
                receiver._pause(self)
        if error is not None:
            receiver._counts["oversized" if error.too_large else "framing_errors"] += 1
            receiver._log.warning("framing", "ATNA %s: connection from %s closed: %s", self.listener,
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
            self.receiver._counts["incomplete_frames"] += 1
        self.receiver._release(self)

    def close(self) -> None:
        """Close the connection at once (nothing is ever written to a sender)."""
        if self.transport is not None:
            self.transport.abort()


class _Datagrams(asyncio.DatagramProtocol):
    """One UDP listener: a datagram is a message (RFC 5426), dropped and counted when the queue is full."""

    def __init__(self, receiver: AtnaReceiver, listener: str) -> None:
        self.receiver = receiver
        self.listener = listener

    def datagram_received(self, data: bytes, addr: Any) -> None:
        """Queue the datagram, or count it as oversized or dropped."""
        receiver = self.receiver
        if len(data) > receiver.settings.max_message_bytes:
            receiver._counts["oversized"] += 1
            return
        receiver._udp_last = receiver._now()
        if receiver._handover.offer((time.time(), self.listener, str(addr[0]), int(addr[1]), None, data)):
            receiver._counts["received"] += 1
        else:
            receiver._counts["dropped_udp"] += 1

    def error_received(self, exc: Exception) -> None:
        """ICMP errors on a listening socket mean nothing to a receiver."""
        log.debug("ATNA %s: %s", self.listener, type(exc).__name__)


class AtnaReceiver:
    """Listens on the given listeners and calls ``on_batch(list[Received])`` from one thread."""

    def __init__(self, listeners: Sequence[Listen], on_batch: Callable[[list[Received]], None],
                 settings: ReceiverSettings | None = None) -> None:
        if not listeners:
            raise ValueError("listeners: at least one udp://, tcp:// or tls:// listener is needed")
        self.settings = settings or ReceiverSettings()
        self.listeners = tuple(listeners)
        tls_listeners = [str(listen) for listen in listeners if listen.transport == "tls"]
        if tls_listeners and self.settings.tls is None:
            raise ValueError(f"{tls_listeners[0]}: a TLS listener needs a server certificate and key")
        self._tls = self.settings.tls.server_context() if tls_listeners and self.settings.tls else None
        self._handover = HandOver(
            on_batch, capacity=self.settings.queue_messages, batch_messages=self.settings.batch_messages,
            batch_ms=self.settings.batch_ms, max_bytes=self.settings.max_message_bytes,
            on_room=self._room)
        self._thread = threading.Thread(target=self._run, name="atna-receiver", daemon=True)
        self._counts: Counter[str] = Counter()
        self._log = _QuietLog()
        self._streams: set[_Stream] = set()
        self._per_peer: Counter[str] = Counter()
        self._paused: set[_Stream] = set()
        self._tasks: set[asyncio.Future[Any]] = set()
        self._servers: list[asyncio.Server] = []
        self._udp: list[asyncio.DatagramTransport] = []
        self._udp_last = 0.0
        self._bound: list[Listen] = []
        self._state = "new"
        self._lost = 0

    @property
    def bound(self) -> tuple[Listen, ...]:
        """The listeners as bound (a port 0 replaced by the port the system chose)."""
        return tuple(self._bound)

    def __enter__(self) -> AtnaReceiver:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def start(self) -> None:
        """Bind every listener and start serving; OSError names a listener that cannot be bound."""
        if self._state != "new":
            raise RuntimeError("an AtnaReceiver starts once")
        self._state = "starting"
        self._loop = asyncio.new_event_loop()
        self._thread.start()
        done = asyncio.run_coroutine_threadsafe(self._open(), self._loop)
        try:
            done.result()
        except BaseException:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join()
            self._state = "stopped"
            raise
        self._handover.start()
        self._state = "running"

    def stats(self) -> ReceiverStats:
        """A snapshot of the counters."""
        counts, handover = self._counts, self._handover
        return ReceiverStats(
            received=counts["received"], delivered=handover.delivered, queued=handover.queued,
            dropped_udp=counts["dropped_udp"], oversized=counts["oversized"],
            framing_errors=counts["framing_errors"], refused_connections=counts["refused_connections"],
            timed_out_connections=counts["timed_out_connections"], tls_failures=counts["tls_failures"],
            open_connections=len(self._streams), backpressure_pauses=counts["backpressure_pauses"],
            callback_failures=handover.callback_failures,
            incomplete_frames=counts["incomplete_frames"], lost_at_stop=self._lost)

    def stop(self, timeout: float = 10.0) -> int:
        """Stop accepting, read what senders already sent, hand it all over; return how many were lost.

        Connections are read until every sender has been quiet for ``DRAIN_QUIET`` seconds (or half
        of ``timeout`` has passed), so what the kernel already acknowledged to a sender is not lost.
        """
        if self._state != "running":
            return self._lost
        self._state = "stopping"
        started = time.monotonic()
        asyncio.run_coroutine_threadsafe(self._close(timeout / 2), self._loop).result(timeout)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout)
        self._lost = self._handover.close(max(0.5, timeout - (time.monotonic() - started)))
        self._state = "stopped"
        return self._lost

    def _run(self) -> None:
        """The event loop thread."""
        asyncio.set_event_loop(self._loop)
        self._loop.run_forever()
        self._loop.run_until_complete(self._loop.shutdown_asyncgens())
        self._loop.close()

    async def _open(self) -> None:
        """Bind all listeners (closing those already bound if one fails) and start the sweeper."""
        try:
            for listen in self.listeners:
                await self._bind(listen)
        except OSError as exc:
            self._close_listeners()
            raise OSError(exc.errno, f"cannot listen on {listen}: {exc.strerror or exc}") from None
        self._tasks.add(asyncio.ensure_future(self._sweep()))

    async def _bind(self, listen: Listen) -> None:
        """Bind one listener and remember how to close it."""
        loop = self._loop
        if listen.transport == "udp":
            datagrams = _Datagrams(self, str(listen))
            family = socket.AF_INET6 if ":" in listen.host else socket.AF_INET
            transport, _ = await loop.create_datagram_endpoint(
                lambda: datagrams, local_addr=(listen.host, listen.port), family=family,
                reuse_port=self.settings.reuse_port or None)
            self._udp.append(transport)
            try:
                transport.get_extra_info("socket").setsockopt(
                    socket.SOL_SOCKET, socket.SO_RCVBUF, UDP_RECEIVE_BUFFER)
            except OSError:
                log.info("ATNA %s: the system refused a larger receive buffer", listen)
            bound = Listen("udp", listen.host, transport.get_extra_info("sockname")[1])
            datagrams.listener = str(bound)
        else:
            tls = self._tls if listen.transport == "tls" else None
            names = [str(listen)]
            server = await loop.create_server(
                lambda: _Stream(self, names[0], tls), listen.host, listen.port, backlog=BACKLOG,
                reuse_address=True, reuse_port=self.settings.reuse_port or None, start_serving=False)
            self._servers.append(server)
            bound = Listen(listen.transport, listen.host, server.sockets[0].getsockname()[1])
            names[0] = str(bound)
            await server.start_serving()
        self._bound.append(bound)

    def _admit(self, stream: _Stream) -> bool:
        """Take a connection slot for ``stream``, or count a refusal."""
        if len(self._streams) >= self.settings.max_connections or (
                self._per_peer[stream.host] >= self.settings.max_connections_per_peer):
            self._counts["refused_connections"] += 1
            self._log.warning("limit", "ATNA %s: connection from %s refused: connection limit reached",
                              stream.listener, stream.host)
            return False
        stream.admitted = True
        self._streams.add(stream)
        self._per_peer[stream.host] += 1
        return True

    def _release(self, stream: _Stream) -> None:
        """Give back the slot of a closed connection (once)."""
        if not stream.admitted:
            return
        stream.admitted = False
        self._streams.discard(stream)
        self._paused.discard(stream)
        self._per_peer[stream.host] -= 1
        if self._per_peer[stream.host] <= 0:
            del self._per_peer[stream.host]

    def _now(self) -> float:
        """The loop's monotonic clock."""
        return self._loop.time()

    def _pause(self, stream: _Stream) -> None:
        """Stop reading from a sender until the queue has room again."""
        if not stream.paused and stream.transport is not None:
            stream.transport.pause_reading()
            stream.paused = True
            self._paused.add(stream)
            self._counts["backpressure_pauses"] += 1

    def _room(self) -> None:
        """Called from the hand-over thread when the queue has room: resume paused senders."""
        if self._state in ("running", "stopping"):
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile: nothing to resume
                self._loop.call_soon_threadsafe(self._resume)

    def _resume(self) -> None:
        """Resume every paused connection, restarting its timers (waiting was our doing, not theirs)."""
        now = self._now()
        for stream in list(self._paused):
            stream.paused = False
            stream.last = now
            if stream.started is not None:
                stream.started = now
            if stream.transport is not None and not stream.transport.is_closing():
                stream.transport.resume_reading()
        self._paused.clear()

    async def _sweep(self) -> None:
        """Close connections whose message is late or that stayed silent too long."""
        settings = self.settings
        tick = min(1.0, settings.message_timeout / 4, settings.idle_timeout / 4)
        while True:
            await asyncio.sleep(tick)
            now = self._now()
            for stream in list(self._streams):
                if stream.handshaking or stream.paused:
                    continue
                if stream.started is not None and now - stream.started > settings.message_timeout:
                    why = f"message not complete within {settings.message_timeout:g} s"
                elif now - stream.last > settings.idle_timeout:
                    why = f"silent for {settings.idle_timeout:g} s"
                else:
                    continue
                self._counts["timed_out_connections"] += 1
                self._log.warning("timeout", "ATNA %s: connection from %s closed: %s", stream.listener,
                                  stream.host, why)
                stream.close()

    async def _close(self, drain: float) -> None:
        """Stop accepting, read until senders are quiet (at most ``drain`` seconds), close everything."""
        for server in self._servers:
            server.close()
        deadline = self._now() + drain
        while self._now() < deadline and self._busy():
            await asyncio.sleep(DRAIN_QUIET / 4)
        self._close_listeners()
        for task in list(self._tasks):
            task.cancel()
        for stream in list(self._streams):
            stream.close()
        await asyncio.sleep(0)  # let connection_lost count partial frames and free the slots

    def _busy(self) -> bool:
        """Whether a sender sent something within ``DRAIN_QUIET`` seconds or waits for queue room."""
        now = self._now()
        if self._paused or now - self._udp_last < DRAIN_QUIET:
            return True
        return any(now - stream.last < DRAIN_QUIET for stream in self._streams)

    def _close_listeners(self) -> None:
        """Close the listening sockets (TCP/TLS servers and UDP endpoints)."""
        for server in self._servers:
            server.close()
        for transport in self._udp:
            transport.close()


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
