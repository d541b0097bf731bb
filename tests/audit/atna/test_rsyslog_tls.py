"""A real relay: rsyslog forwards ATNA messages over TLS (RFC 5425, gtls) to the receiver."""

from __future__ import annotations

import pytest

from audit.atna.receiver import TLSFiles
from tests.audit.atna.conftest import SAMPLES, send_with_logger, wait_for

pytestmark = pytest.mark.integration


def tls_files(material, *, require_client: bool) -> TLSFiles:
    """The receiver's TLS settings from the test PKI."""
    return TLSFiles(str(material.server_cert), str(material.server_key),
                    str(material.ca) if require_client else None)


@pytest.mark.parametrize("require_client", [False, True])
def test_rsyslog_relays_every_sample_over_tls(start_receiver, start_rsyslog, tls_material, require_client):
    running = start_receiver("tls://127.0.0.1:0", tls=tls_files(tls_material, require_client=require_client))
    relay = start_rsyslog(running.port("tls"))
    samples = sorted(SAMPLES.glob("*.xml"))
    for path in samples:
        send_with_logger(relay.input_port, path.read_text(), tag="ARCHIVE1")
    received = running.inbox.wait(len(samples), seconds=20)
    assert [r.quarantine for r in received] == [None] * len(samples), relay.log()
    assert sorted(r.message.event_id.code for r in received) == sorted(p.name.split("_")[1] for p in samples)
    first = received[0]
    assert first.listener.startswith("tls://127.0.0.1:")
    assert first.syslog.app_name == "ARCHIVE1"
    assert first.syslog.msgid == "IHE+RFC-3881"
    expected_subject = "CN=rsyslog-client,O=PACS Desk tests" if require_client else None
    assert {r.peer_certificate for r in received} == {expected_subject}


def test_rsyslog_with_a_certificate_from_another_ca_is_refused(start_receiver, start_rsyslog, tls_material):
    running = start_receiver("tls://127.0.0.1:0", tls=tls_files(tls_material, require_client=True))
    relay = start_rsyslog(running.port("tls"), rogue=True)
    send_with_logger(relay.input_port, (SAMPLES / "dicom_110114_login.xml").read_text())
    wait_for(lambda: running.receiver.stats().tls_failures >= 1, 20, "a refused TLS handshake")
    assert running.inbox.messages == []
    assert running.receiver.stats().received == 0
