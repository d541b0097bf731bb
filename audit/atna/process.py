"""The receiver as a long-running process: `pacsdesk atna listen`, alone or supervised by serve.

One process runs one ``AtnaReceiver`` whose ``on_batch`` is a ``MessageStore``. Its main thread
wakes every two seconds to store refused (too large) messages as quarantine rows and to seal the
open batch when its minute is up, and about every minute writes the receiver's counters to
``atna_receiver`` and an ``atna.messages_lost`` audit event for every increase in what was lost
(UDP datagrams dropped on a full queue, messages cut short, broken framing). SIGTERM or SIGINT
stop it cleanly: the receiver reads what senders already sent, hands it all over, and the last
batch is sealed. With ``PACSDESK_ATNA_PROCESSES`` above one, the command supervises that many
receiver processes sharing the listeners (SO_REUSEPORT).
"""

from __future__ import annotations

import gc
import logging
import signal
import threading
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from flask import Flask

from audit.atna.listen import Listen, ReceiverSettings, TLSFiles, parse_listen
from audit.atna.models import AtnaReceiverState
from audit.atna.receiver import AtnaReceiver, ReceiverStats
from audit.atna.store import MessageStore, Refusal
from audit.trail.chain import record
from core.extensions import db
from core.timeutil import utcnow

log = logging.getLogger(__name__)

TICK = 2.0
STATS_EVERY = 60.0
LOSSES = {"dropped_udp": "UDP datagrams dropped (queue full)",
          "incomplete_frames": "messages cut short by a closed connection",
          "framing_errors": "connections closed on broken framing",
          "lost_at_stop": "messages not stored when the receiver stopped"}

# Audit actions recorded here (registered by the package's init_app).
AUDIT_ACTIONS = {
    "atna.receiver_started": "PACS audit receiver started",
    "atna.receiver_stopped": "PACS audit receiver stopped",
    "atna.messages_lost": "PACS audit messages lost by the receiver (dropped or cut short)",
}


def receiver_config(config: Mapping[str, Any], reuse_port: bool = False) -> tuple[tuple[Listen, ...],
                                                                                   ReceiverSettings]:
    """Listeners and receiver settings from the app's ``PACSDESK_ATNA_*`` settings."""
    listen = config.get("PACSDESK_ATNA_LISTEN") or ""
    if not listen:
        raise ValueError("PACSDESK_ATNA_LISTEN is not set: give the listeners, e.g. tcp://0.0.0.0:601")
    tls = None
    if config.get("PACSDESK_ATNA_TLS_CERT") and config.get("PACSDESK_ATNA_TLS_KEY"):
        tls = TLSFiles(config["PACSDESK_ATNA_TLS_CERT"], config["PACSDESK_ATNA_TLS_KEY"],
                       config.get("PACSDESK_ATNA_TLS_CLIENT_CA"))
    settings = ReceiverSettings(
        max_message_bytes=config["PACSDESK_ATNA_MAX_MESSAGE_BYTES"],
        max_connections=config["PACSDESK_ATNA_MAX_CONNECTIONS"],
        max_connections_per_peer=config["PACSDESK_ATNA_MAX_CONNECTIONS_PER_PEER"],
        idle_timeout=config["PACSDESK_ATNA_IDLE_TIMEOUT"],
        message_timeout=config["PACSDESK_ATNA_MESSAGE_TIMEOUT"],
        batch_messages=config["PACSDESK_ATNA_BATCH_MESSAGES"],
        queue_messages=config["PACSDESK_ATNA_QUEUE_MESSAGES"], tls=tls, reuse_port=reuse_port)
    return parse_listen(listen), settings


def refusals_of(receiver: AtnaReceiver) -> list[Refusal]:
    """The receiver's refused messages as quarantine entries."""
    return [Refusal(datetime.fromtimestamp(at, UTC), listener, host, port, reason)
            for at, listener, host, port, reason in receiver.take_refusals()]


class ReceiverMonitor:
    """Writes a receiver's counters to ``atna_receiver`` and audits every increase in losses."""

    def __init__(self, app: Flask, name: str, listeners: tuple[Listen, ...]) -> None:
        self.app = app
        self.name = name
        self.listeners = ",".join(map(str, listeners))[:400]
        self._audited: dict[str, int] = dict.fromkeys(LOSSES, 0)

    def started(self) -> None:
        """Record the start (a row of its own and an audit event)."""
        with self.app.app_context():
            now = utcnow()
            state = db.session.get(AtnaReceiverState, self.name) or AtnaReceiverState(id=self.name)
            state.listeners, state.started_at, state.updated_at = self.listeners, now, now
            state.stopped_at = None
            for column in ("received", "stored", "quarantined", "dropped_udp", "oversized", "framing_errors",
                           "refused_connections", "tls_failures", "lost"):
                setattr(state, column, 0)
            db.session.add(state)
            record("atna.receiver_started", object_type="atna_receiver", object_id=self.name,
                   details={"listeners": self.listeners}, user=None, client_address=None)
            db.session.commit()
            db.session.remove()

    def update(self, stats: ReceiverStats, store: MessageStore, stopped: bool = False) -> dict[str, int]:
        """Write the counters; audit what was lost since the last call; returns those increases."""
        with self.app.app_context():
            try:
                state = db.session.get(AtnaReceiverState, self.name) or AtnaReceiverState(
                    id=self.name, listeners=self.listeners)
                db.session.add(state)
                state.updated_at = utcnow()
                for column in ("received", "dropped_udp", "oversized", "framing_errors",
                               "refused_connections", "tls_failures"):
                    setattr(state, column, getattr(stats, column))
                state.stored, state.quarantined = store.stored, store.quarantined
                state.lost = stats.dropped_udp + stats.incomplete_frames + stats.lost_at_stop
                increases = {kind: getattr(stats, kind) - self._audited[kind] for kind in LOSSES
                             if getattr(stats, kind) > self._audited[kind]}
                if increases:
                    record("atna.messages_lost", object_type="atna_receiver", object_id=self.name,
                           outcome="failure", user=None, client_address=None,
                           details={**increases, "totals": {kind: getattr(stats, kind) for kind in LOSSES},
                                    "meaning": {kind: LOSSES[kind] for kind in increases}})
                if stopped:
                    state.stopped_at = utcnow()
                    record("atna.receiver_stopped", object_type="atna_receiver", object_id=self.name,
                           user=None, client_address=None,
                           details={"received": stats.received, "stored": store.stored,
                                    "quarantined": store.quarantined, "lost_at_stop": stats.lost_at_stop})
                db.session.commit()
            finally:
                db.session.remove()
        self._audited.update({kind: getattr(stats, kind) for kind in increases})
        return increases


def serve_receiver(app: Flask, stop: Any, *, reuse_port: bool = False, ready: Any = None,
                   bulk: bool = True) -> AtnaReceiver:
    """Run one receiver until ``stop`` (an Event) is set; returns it, stopped (its ``bound`` listeners kept).

    ``bulk=False`` stores each message with an INSERT of its own (the benchmark's baseline).
    """
    listeners, settings = receiver_config(app.config, reuse_port)
    store = MessageStore(app, bulk=bulk)
    receiver = AtnaReceiver(listeners, store, settings)
    receiver.start()
    monitor = ReceiverMonitor(app, store.receiver, receiver.bound)
    monitor.started()
    log.info("ATNA receiver %s listening on %s", store.receiver, ", ".join(map(str, receiver.bound)))
    gc.freeze()  # what start-up allocated stays out of the collector's way
    if ready is not None:
        ready.set()
    next_stats = time.monotonic() + STATS_EVERY
    while not stop.wait(TICK):
        try:
            refused = refusals_of(receiver)
            if refused:
                store.store([], refused)
            store.seal_if_due()
            if time.monotonic() >= next_stats:
                next_stats = time.monotonic() + STATS_EVERY
                monitor.update(receiver.stats(), store)
        except Exception:  # the database is away: the receiver keeps its queue; try again next tick
            log.exception("ATNA receiver housekeeping failed; retrying")
    receiver.stop()
    store.store([], refusals_of(receiver))
    store.seal_if_due(force=True)
    monitor.update(receiver.stats(), store, stopped=True)
    return receiver


def run_until_signalled(app: Flask, reuse_port: bool = False) -> None:
    """`pacsdesk atna listen` in one process: serve until SIGTERM or SIGINT."""
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    serve_receiver(app, stop, reuse_port=reuse_port)
