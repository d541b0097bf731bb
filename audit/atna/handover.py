"""Hand received frames to the storage in batches, from one thread, parsed on the way.

The network side puts raw frames into a bounded queue; one dispatcher thread takes up to
``batch_messages`` of them (or what arrived within ``batch_ms`` of the oldest), parses each
(syslog header, then the AuditMessage) and calls ``on_batch`` once with the list. While
``on_batch`` fails the same batch is retried with a growing pause, so the queue fills and the
receiver pushes back on TCP senders instead of losing their messages.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

from audit.atna.errors import Quarantined, QuarantineReason
from audit.atna.parse import AuditMessage, parse_audit_message
from audit.atna.syslog import SyslogMessage, parse_syslog

log = logging.getLogger(__name__)

# (received at, epoch seconds; listener; peer host; peer port; client certificate subject; frame)
Frame = tuple[float, str, str, int, str | None, bytes]
RETRY_FIRST, RETRY_MAX = 0.2, 5.0


@dataclass(frozen=True, slots=True)
class Received:
    """One received syslog message: where it came from, and what it said or why it was quarantined."""

    received_at: datetime
    listener: str
    peer_host: str
    peer_port: int
    peer_certificate: str | None
    raw: bytes
    syslog: SyslogMessage | None
    message: AuditMessage | None
    quarantine: QuarantineReason | None
    quarantine_detail: str | None

    @property
    def transport(self) -> str:
        """udp, tcp or tls."""
        return self.listener.partition("://")[0]


def decode_frame(frame: Frame, max_bytes: int) -> Received:
    """Parse one frame into a Received; failures become a quarantine reason, never an exception."""
    at, listener, host, port, certificate, raw = frame
    received_at = datetime.fromtimestamp(at, UTC)
    syslog = message = reason = detail = None
    try:
        syslog = parse_syslog(raw, received_at)
        message = parse_audit_message(syslog.message, max_bytes)
    except Quarantined as exc:
        reason, detail = exc.reason, exc.detail
    except Exception as exc:  # one unreadable frame must not stop the hand-over of the others
        log.warning("syslog reader failed with %s on a message from %s", type(exc).__name__, host)
        reason, detail = QuarantineReason.PARSER_ERROR, f"reader failed ({type(exc).__name__})"
    return Received(received_at, listener, host, port, certificate, raw, syslog, message, reason, detail)


class HandOver:
    """A bounded queue of frames and the one thread that parses them and calls ``on_batch``."""

    def __init__(self, on_batch: Callable[[list[Received]], None], *, capacity: int, batch_messages: int,
                 batch_ms: int, max_bytes: int, on_room: Callable[[], None]) -> None:
        self._on_batch = on_batch
        self._on_room = on_room
        self.capacity = capacity
        self._batch = batch_messages
        self._wait = batch_ms / 1000
        self._max_bytes = max_bytes
        self._items: deque[Frame] = deque()
        self._cond = threading.Condition()
        self._oldest = 0.0
        self._want_room = False
        self._closing = threading.Event()
        self._give_up_at: float | None = None
        self._thread = threading.Thread(target=self._run, name="atna-handover", daemon=True)
        self.delivered = 0
        self.callback_failures = 0
        self.lost = 0

    @property
    def queued(self) -> int:
        """Frames waiting to be handed over."""
        return len(self._items)

    def start(self) -> None:
        """Start the dispatcher thread."""
        self._thread.start()

    def offer(self, frame: Frame) -> bool:
        """Queue a datagram's frame unless the queue is full (then the caller counts a drop)."""
        with self._cond:
            if len(self._items) >= self.capacity:
                return False
            self._append(frame)
        return True

    def push(self, frames: Iterable[Frame]) -> bool:
        """Queue a stream's frames (always taken); False when the sender should now be paused."""
        with self._cond:
            for frame in frames:
                self._append(frame)
            if len(self._items) >= self.capacity:
                self._want_room = True
                return False
        return True

    def _append(self, frame: Frame) -> None:
        """Add one frame (lock held), waking the dispatcher when a batch can start or is full."""
        items = self._items
        if not items:
            self._oldest = time.monotonic()
            items.append(frame)
            self._cond.notify()
            return
        items.append(frame)
        if len(items) == self._batch:
            self._cond.notify()

    def close(self, timeout: float) -> int:
        """Hand over everything queued (retrying a failing ``on_batch`` until ``timeout``); return losses."""
        with self._cond:
            self._give_up_at = time.monotonic() + timeout
            self._closing.set()
            self._cond.notify()
        if self._thread.is_alive():
            self._thread.join(timeout + 1)
        if self._thread.is_alive():
            log.error("ATNA hand-over still inside on_batch after %.0f s; %d messages not handed over",
                      timeout, len(self._items))
        return self.lost + len(self._items)

    def _run(self) -> None:
        """Take batches, parse them and deliver them until closed and empty."""
        while (frames := self._take()) is not None:
            self._deliver([decode_frame(frame, self._max_bytes) for frame in frames])

    def _take(self) -> list[Frame] | None:
        """The next batch: full, or due ``batch_ms`` after its oldest frame; None once closed and empty."""
        room = False
        with self._cond:
            items = self._items
            while True:
                count = len(items)
                if count >= self._batch or (count and self._closing.is_set()):
                    break
                if not count:
                    if self._closing.is_set():
                        return None
                    self._cond.wait()
                    continue
                left = self._oldest + self._wait - time.monotonic()
                if left <= 0:
                    break
                self._cond.wait(left)
            frames = [items.popleft() for _ in range(min(count, self._batch))]
            if items:
                self._oldest = time.monotonic()
            if self._want_room and len(items) <= self.capacity // 2:
                room, self._want_room = True, False
        if room:
            self._on_room()
        return frames

    def _deliver(self, batch: list[Received]) -> None:
        """Call ``on_batch``, retrying with a growing pause; give up only when closing runs out of time."""
        pause = RETRY_FIRST
        while True:
            try:
                self._on_batch(batch)
            except Exception as exc:  # the storage is down or refused: keep the batch and retry
                self.callback_failures += 1
                log.error("ATNA batch of %d messages not stored (%s); retrying",
                          len(batch), type(exc).__name__)
                deadline = self._give_up_at
                if deadline is not None and time.monotonic() >= deadline:
                    self.lost += len(batch)
                    log.error("ATNA receiver stopping: %d messages of a failed batch are lost", len(batch))
                    return
                if deadline is None:
                    self._closing.wait(pause)  # a stop cuts the pause short
                else:
                    time.sleep(max(0.0, min(pause, deadline - time.monotonic())))
                pause = min(pause * 2, RETRY_MAX)
                continue
            self.delivered += len(batch)
            return
