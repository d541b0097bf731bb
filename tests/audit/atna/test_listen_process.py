"""`pacsdesk atna listen` as operators run it: a process of its own, stopped by SIGTERM."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sqlalchemy import func, select

from audit.atna.models import AtnaBatch, AtnaMessage, AtnaReceiverState
from audit.trail.models import AuditEvent
from core.extensions import db
from tests.audit.atna.conftest import SAMPLES, compact, send_with_logger, wait_for
from tests.helpers import free_port

PACSDESK = Path(sys.executable).with_name("pacsdesk")
LOGIN = compact((SAMPLES / "dicom_110114_login.xml").read_text())


def _accepts(port: int) -> bool:
    """Whether something accepts TCP connections on loopback ``port``."""
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
        return True
    except OSError:
        return False


@pytest.mark.integration
def test_atna_listen_stores_until_sigterm_seals_its_batch_and_audits_udp_drops(app, database_url, tmp_path):
    tcp, udp = free_port(), free_port(socket.SOCK_DGRAM)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PACSDESK_")}
    env.update(PACSDESK_INSTANCE_PATH=str(tmp_path / "instance"), PACSDESK_DATABASE_URL=database_url,
               PACSDESK_ATNA_LISTEN=f"tcp://127.0.0.1:{tcp},udp://127.0.0.1:{udp}",
               PACSDESK_ATNA_QUEUE_MESSAGES="100")
    with (tmp_path / "listen.log").open("wb") as log:  # the child keeps its own descriptor
        process = subprocess.Popen([str(PACSDESK), "atna", "listen"], env=env, stdout=log,
                                   stderr=subprocess.STDOUT)
    try:
        wait_for(lambda: process.poll() is not None or _accepts(tcp), 30, "the receiver listening")
        assert process.poll() is None, (tmp_path / "listen.log").read_text()
        for path in sorted(SAMPLES.glob("dicom_*.xml")):
            send_with_logger(tcp, path.read_text())
        frame = f"<110>1 2026-01-01T00:00:00Z flood ARCHIVE1 - - - {LOGIN}".encode()
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            deadline = time.monotonic() + 10
            for _ in range(20_000):
                sock.sendto(frame, ("127.0.0.1", udp))
                if time.monotonic() > deadline:
                    break
        time.sleep(1)
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(60) == 0, (tmp_path / "listen.log").read_text()
    with app.app_context():
        tcp_stored = db.session.execute(select(func.count()).select_from(AtnaMessage).where(
            AtnaMessage.transport == "tcp")).scalar_one()
        batch = db.session.execute(select(AtnaBatch)).scalars().all()
        state = db.session.execute(select(AtnaReceiverState)).scalar_one()
        lost = db.session.execute(select(AuditEvent.details).where(
            AuditEvent.action == "atna.messages_lost")).scalars().all()
        actions = set(db.session.execute(select(AuditEvent.action)).scalars())
        udp_stored = db.session.execute(select(func.count()).select_from(AtnaMessage).where(
            AtnaMessage.transport == "udp")).scalar_one()
    assert tcp_stored == 8                                      # every TCP message, none lost
    assert all(b.sealed_at is not None for b in batch)          # the last batch sealed on stop
    assert state.stopped_at is not None and state.dropped_udp > 0
    assert udp_stored + state.dropped_udp <= 20_000
    assert state.stored == tcp_stored + udp_stored
    assert lost and '"dropped_udp":' in lost[-1]
    assert {"atna.receiver_started", "atna.receiver_stopped", "atna.batch"} <= actions
