"""Received messages into the database: real senders end to end, quarantine, seals and `audit verify`."""

from __future__ import annotations

import zlib
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select, text

from audit.atna.errors import QuarantineReason
from audit.atna.models import AtnaBatch, AtnaMessage, AtnaMessageRef, AtnaQuarantine, AtnaSource
from audit.atna.store import MessageStore
from audit.atna.verify import verify_batches
from audit.trail.models import AuditEvent
from core.extensions import db
from tests.audit.atna.conftest import SAMPLES, compact, received, send_with_logger, wait_for
from tests.audit.atna.test_receiver import BOMB
from tests.helpers import inserts_refused

DICOM_SAMPLES = sorted(SAMPLES.glob("dicom_*.xml"))


def rows(app, model):
    """Every row of ``model``, detached."""
    with app.app_context():
        order = model.__table__.primary_key.columns
        found = list(db.session.execute(select(model).order_by(*order)).scalars())
        db.session.expunge_all()
        return found


def count(app, model) -> int:
    """How many rows ``model`` has."""
    with app.app_context():
        return db.session.execute(select(func.count()).select_from(model)).scalar_one()


@pytest.fixture
def stored(app, start_receiver):
    """A receiver on loopback storing into this test's database; sealing is done by the test."""
    store = MessageStore(app, receiver="test-receiver", seal_seconds=3600)
    running = start_receiver(on_batch=store)
    return running, store


@pytest.mark.integration
def test_every_sample_sent_by_logger_is_stored_with_who_what_and_which_patient(app, stored):
    running, _ = stored
    for path in DICOM_SAMPLES:
        send_with_logger(running.port("tcp"), path.read_text(), tag="ARCHIVE1")
    wait_for(lambda: count(app, AtnaMessage) == len(DICOM_SAMPLES), what="every sample stored",
             state=lambda: (count(app, AtnaMessage), running.state()))
    messages = {m.event_id: m for m in rows(app, AtnaMessage)}
    assert set(messages) == {"110100", "110101", "110103", "110106", "110110", "110112", "110113", "110114"}
    access = messages["110103"]
    assert (access.user_id, access.user_name, access.user_host) == ("dr.lee", "Dr Lee", "10.20.30.77")
    assert (access.patient_id, access.patient_name) == ("MRN-000417", "TEST^ALICE")
    assert (access.study_uid, access.accession) == ("1.2.826.0.1.3680043.8.498.10001", "A-2025-000981")
    assert (access.action, access.outcome, access.source_id) == ("R", 0, "ARCHIVE1")
    assert (access.sender_host, access.transport, access.event_offset) == ("127.0.0.1", "tcp", -300)
    assert access.event_time.isoformat() == "2025-03-14T15:31:07.250000+00:00"
    sample = (SAMPLES / "dicom_110103_instances_accessed.xml").read_text()
    assert zlib.decompress(access.xml_z).decode().strip() == sample.strip()
    sources = rows(app, AtnaSource)
    assert sum(s.message_count for s in sources) == len(DICOM_SAMPLES)
    assert {s.source_id for s in sources} >= {"ARCHIVE1"} and {s.asset_id for s in sources} == {None}
    assert count(app, AtnaQuarantine) == 0


@pytest.mark.integration
def test_a_message_naming_two_studies_is_found_by_either(app, stored):
    running, _ = stored
    xml = (SAMPLES / "dicom_110106_export.xml").read_text()
    send_with_logger(running.port("tcp"), xml)
    wait_for(lambda: count(app, AtnaMessage) == 1, what="the export stored")
    (message,) = rows(app, AtnaMessage)
    extra = {(r.kind, r.value) for r in rows(app, AtnaMessageRef)}
    assert message.event_id == "110106"
    assert message.study_uid and all(kind in "PSA" for kind, _ in extra)
    assert (message.patient_id or extra)


@pytest.mark.integration
def test_bad_payloads_are_kept_raw_in_quarantine_with_their_reason(app, stored):
    running, store = stored
    send_with_logger(running.port("tcp"), BOMB)
    send_with_logger(running.port("tcp"), "this is not XML: patient MRN-000417 TEST^ALICE")
    send_with_logger(running.port("tcp"), b"<AuditMessage>\xc3\x28 TEST^ALICE</AuditMessage>")
    wait_for(lambda: count(app, AtnaQuarantine) == 3, what="three quarantined")
    found = rows(app, AtnaQuarantine)
    assert [q.reason for q in found] == [QuarantineReason.FORBIDDEN_XML, QuarantineReason.NOT_XML,
                                         QuarantineReason.BAD_ENCODING]
    assert b"TEST^ALICE" in found[1].raw and found[1].size == len(found[1].raw)
    assert all("TEST^ALICE" not in q.detail for q in found)
    assert count(app, AtnaMessage) == 0
    assert store.quarantined == 3


@pytest.mark.integration
def test_a_10_megabyte_message_is_quarantined_as_too_large_with_its_sender(app, stored):
    from audit.atna.process import refusals_of

    running, store = stored
    huge = b"<AuditMessage>" + b"A" * (10 * 1024 * 1024) + b"</AuditMessage>\n"
    send_with_logger(running.port("tcp"), stdin=huge)
    wait_for(lambda: running.receiver.stats().oversized == 1, what="the oversized message refused")
    store.store([], refusals_of(running.receiver))
    (entry,) = rows(app, AtnaQuarantine)
    assert entry.reason == QuarantineReason.TOO_LARGE
    assert "over the 65536 byte limit" in entry.detail
    assert entry.sender_host == "127.0.0.1" and entry.raw == b""


def _seal(app, store) -> None:
    """Seal the open batch now."""
    assert store.seal_if_due(force=True)


def _send_samples(running) -> None:
    """Send every DICOM sample, one per line, over one connection (as a relay keeping it open does)."""
    lines = "".join(compact(path.read_text()) + "\n" for path in DICOM_SAMPLES)
    send_with_logger(running.port("tcp"), stdin=lines.encode())


@pytest.mark.integration
def test_a_sealed_batch_is_an_audit_event_and_verify_passes(app, stored, runner):
    running, store = stored
    _send_samples(running)
    wait_for(lambda: count(app, AtnaMessage) == len(DICOM_SAMPLES), what="stored",
             state=lambda: (count(app, AtnaMessage), running.state()))
    _seal(app, store)
    (batch,) = rows(app, AtnaBatch)
    assert (batch.count, batch.receiver) == (len(DICOM_SAMPLES), "test-receiver")
    assert batch.sealed_at is not None and len(batch.hash) == 64
    with app.app_context():
        event = db.session.execute(select(AuditEvent).where(AuditEvent.action == "atna.batch")).scalar_one()
        assert event.seq == batch.audit_seq and batch.hash in event.details
        assert verify_batches() == []
    result = runner.invoke(args=["audit", "verify"])
    assert result.exit_code == 0, result.output
    assert "intact" in result.output


@pytest.mark.integration
@pytest.mark.parametrize("tamper", [
    "UPDATE atna_message SET user_id = 'someone.else' WHERE event_id = '110103'",
    "DELETE FROM atna_message WHERE event_id = '110106'",
    "UPDATE atna_message SET xml_z = (SELECT xml_z FROM atna_message WHERE event_id = '110114') "
    "WHERE event_id = '110112'",
])
def test_a_received_row_edited_in_the_database_makes_audit_verify_fail_naming_the_batch(
        app, stored, runner, tamper):
    running, store = stored
    _send_samples(running)
    wait_for(lambda: count(app, AtnaMessage) == len(DICOM_SAMPLES), what="stored",
             state=lambda: (count(app, AtnaMessage), running.state()))
    _seal(app, store)
    (batch,) = rows(app, AtnaBatch)
    with app.app_context():
        db.session.execute(text(tamper))
        db.session.commit()
    result = runner.invoke(args=["audit", "verify"])
    assert result.exit_code == 1
    assert f"BROKEN at event #{batch.audit_seq}" in result.output
    assert f"PACS access log batch #{batch.id}" in result.output


@pytest.mark.integration
def test_a_forged_message_in_no_sealed_batch_is_found(app, stored):
    running, store = stored
    send_with_logger(running.port("tcp"), (SAMPLES / "dicom_110114_login.xml").read_text())
    wait_for(lambda: count(app, AtnaMessage) == 1, what="stored")
    _seal(app, store)
    with app.app_context():
        db.session.execute(text("INSERT INTO atna_message (id, received_at, batch_id, event_time, event_id, "
                                "outcome, sender_host, transport, xml_z) SELECT id + 1, received_at, 999, "
                                "event_time, event_id, outcome, sender_host, transport, xml_z "
                                "FROM atna_message"))
        db.session.commit()
        (problem,) = verify_batches()
    assert problem.batch_id == 999 and "no atna.batch event sealed" in problem.text


def test_a_failed_transaction_leaves_nothing_and_the_same_batch_can_be_stored_again(app):
    store = MessageStore(app, receiver="test-receiver", seal_seconds=3600)
    batch = [received("dicom_110103_instances_accessed.xml"), received("dicom_110110_patient_record.xml")]
    with inserts_refused(app, "atna_message", "NEW.event_id = '110110'"), \
            pytest.raises(Exception, match="refused"):
        store(batch)
    assert (count(app, AtnaMessage), count(app, AtnaBatch), count(app, AtnaSource)) == (0, 0, 0)
    store(batch)
    _seal(app, store)
    assert (count(app, AtnaMessage), store.stored) == (2, 2)
    with app.app_context():
        assert verify_batches() == []


@pytest.mark.integration
def test_an_incremental_verify_reads_the_batches_sealed_since_and_the_full_walk_reads_them_all(
        app, stored, runner):
    running, store = stored
    send_with_logger(running.port("tcp"), (SAMPLES / "dicom_110103_instances_accessed.xml").read_text())
    wait_for(lambda: count(app, AtnaMessage) == 1, what="the first message stored")
    _seal(app, store)
    assert runner.invoke(args=["audit", "verify"]).exit_code == 0
    send_with_logger(running.port("tcp"), (SAMPLES / "dicom_110114_login.xml").read_text())
    wait_for(lambda: count(app, AtnaMessage) == 2, what="the second message stored")
    _seal(app, store)
    old, new = rows(app, AtnaBatch)
    with app.app_context():
        for batch in (old, new):
            db.session.execute(text("UPDATE atna_message SET user_id = 'someone.else' "
                                    "WHERE batch_id = :batch"), {"batch": batch.id})
        db.session.commit()
    incremental = runner.invoke(args=["audit", "verify"])
    assert incremental.exit_code == 1
    assert f"PACS access log batch #{new.id}" in incremental.output
    assert f"PACS access log batch #{old.id}" not in incremental.output  # verified before: the nightly walk's
    full = runner.invoke(args=["audit", "verify", "--full"])
    assert full.exit_code == 1
    assert f"PACS access log batch #{old.id}" in full.output and f"batch #{new.id}" in full.output


def test_a_hand_over_across_the_end_of_a_month_is_sealed_as_one_batch_per_month(app):
    midnight = datetime(2026, 2, 1, tzinfo=UTC)  # a month's partition is dropped whole: no batch may span two
    store = MessageStore(app, receiver="month-end", seal_seconds=3600)
    store([received("dicom_110103_instances_accessed.xml", at=midnight - timedelta(seconds=1)),
           received("dicom_110114_login.xml", at=midnight + timedelta(seconds=1))])
    store.seal_if_due(force=True)
    with app.app_context():
        batches = db.session.execute(select(
            AtnaBatch.first_received, AtnaBatch.last_received, AtnaBatch.count, AtnaBatch.sealed_at
        ).order_by(AtnaBatch.id)).all()
        assert [(b.first_received.month, b.last_received.month, b.count) for b in batches] == [
            (1, 1, 1), (2, 2, 1)]
        assert all(b.sealed_at is not None for b in batches)
        assert verify_batches() == []
