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
import logging
import socket
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from audit.atna.connections import DRAIN_QUIET, Connections, DatagramListener, StreamConnection
from audit.atna.handover import HandOver, Received
from audit.atna.listen import Listen, ReceiverSettings, TLSFiles, parse_listen

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


@dataclass(frozen=True)
class ReceiverStats:
    """Counters since start; ``dropped_udp`` is what the app must store and audit as lost."""

    received: int
    delivered: int
    queued: int
    dropped_udp: int
    oversized: int
    framing_errors: int
    accepted_connections: int      # TCP and TLS connections admitted within the limits
    refused_connections: int
    timed_out_connections: int
    tls_failures: int
    open_connections: int
    partial_messages: int          # open connections holding the start of a message
    backpressure_pauses: int
    callback_failures: int
    incomplete_frames: int
    lost_at_stop: int


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
        self._hub: Connections | None = None
        self._thread = threading.Thread(target=self._run, name="atna-receiver", daemon=True)
        self._servers: list[asyncio.Server] = []
        self._udp: list[asyncio.DatagramTransport] = []
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
        self._hub = Connections(self.settings, self._handover, self._loop)
        self._thread.start()
        done = asyncio.run_coroutine_threadsafe(self._open(self._hub), self._loop)
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
        handover = self._handover
        counts = self._hub.counts if self._hub is not None else {}
        return ReceiverStats(
            received=counts.get("received", 0), delivered=handover.delivered, queued=handover.queued,
            dropped_udp=counts.get("dropped_udp", 0), oversized=counts.get("oversized", 0),
            framing_errors=counts.get("framing_errors", 0),
            accepted_connections=counts.get("accepted_connections", 0),
            refused_connections=counts.get("refused_connections", 0),
            timed_out_connections=counts.get("timed_out_connections", 0),
            tls_failures=counts.get("tls_failures", 0),
            open_connections=len(self._hub.streams) if self._hub is not None else 0,
            partial_messages=sum(1 for stream in list(self._hub.streams) if stream.framer.pending)
            if self._hub is not None else 0,
            backpressure_pauses=counts.get("backpressure_pauses", 0),
            callback_failures=handover.callback_failures,
            incomplete_frames=counts.get("incomplete_frames", 0), lost_at_stop=self._lost)

    def take_refusals(self) -> list[tuple[float, str, str, int, str]]:
        """Messages refused as too large since the last call: (time, listener, host, port, reason)."""
        hub = self._hub
        taken: list[tuple[float, str, str, int, str]] = []
        while hub is not None and hub.refusals:
            taken.append(hub.refusals.popleft())
        return taken

    def stop(self, timeout: float = 10.0) -> int:
        """Stop accepting, read what senders already sent, hand it all over; return how many were lost.

        Connections are read until every sender has been quiet for ``DRAIN_QUIET`` seconds with nothing
        left unread in its socket (or half of ``timeout`` has passed), so what the kernel already
        acknowledged to a sender is not lost.
        """
        if self._state != "running" or self._hub is None:
            return self._lost
        self._state = "stopping"
        started = time.monotonic()
        asyncio.run_coroutine_threadsafe(self._close(self._hub, timeout / 2), self._loop).result(timeout)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout)
        self._lost = self._handover.close(max(0.5, timeout - (time.monotonic() - started)))
        self._state = "stopped"
        return self._lost

    def _room(self) -> None:
        """The hand-over thread has room again: let paused senders resume."""
        if self._hub is not None:
            self._hub.room()

    def _run(self) -> None:
        """The event loop thread."""
        asyncio.set_event_loop(self._loop)
        self._loop.run_forever()
        self._loop.run_until_complete(self._loop.shutdown_asyncgens())
        self._loop.close()

    async def _open(self, hub: Connections) -> None:
        """Bind all listeners (closing those already bound if one fails) and start the sweeper."""
        try:
            for listen in self.listeners:
                await self._bind(listen, hub)
        except OSError as exc:
            self._close_listeners()
            raise OSError(exc.errno, f"cannot listen on {listen}: {exc.strerror or exc}") from None
        hub.tasks.add(asyncio.ensure_future(hub.sweep()))

    async def _bind(self, listen: Listen, hub: Connections) -> None:
        """Bind one listener and remember how to close it."""
        loop = self._loop
        if listen.transport == "udp":
            datagrams = DatagramListener(hub, str(listen))
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
                lambda: StreamConnection(hub, names[0], tls), listen.host, listen.port, backlog=BACKLOG,
                reuse_address=True, reuse_port=self.settings.reuse_port or None, start_serving=False)
            self._servers.append(server)
            bound = Listen(listen.transport, listen.host, server.sockets[0].getsockname()[1])
            names[0] = str(bound)
            await server.start_serving()
        self._bound.append(bound)

    async def _close(self, hub: Connections, drain: float) -> None:
        """Stop accepting, read until senders are quiet (at most ``drain`` seconds), close everything."""
        for server in self._servers:
            server.close()
        deadline = hub.now() + drain
        while hub.now() < deadline and hub.busy():
            await asyncio.sleep(DRAIN_QUIET / 4)
        self._close_listeners()
        hub.close_all()
        await asyncio.sleep(0)  # let connection_lost count partial frames and free the slots

    def _close_listeners(self) -> None:
        """Close the listening sockets (TCP/TLS servers and UDP endpoints)."""
        for server in self._servers:
            server.close()
        for transport in self._udp:
            transport.close()
