"""Answering questions from the PACS access log: search page, CSV, CLI, watchlist, senders and silence."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select

from audit.atna.jobs import check_silent_sources
from audit.atna.models import AtnaMessage, AtnaSource, AtnaWatch
from audit.atna.store import MessageStore
from audit.trail.models import AuditEvent
from core.extensions import db
from helpdesk.models import Ticket, TicketComment
from inventory.models import Asset
from tests.audit.atna.conftest import received
from tests.helpers import fixture_event

ACCESS = "dicom_110103_instances_accessed.xml"
PATIENT = "MRN-000417"


def seed(app, items, receiver: str = "test-receiver") -> MessageStore:
    """Store ``items`` as one receiver would, and seal the batch."""
    store = MessageStore(app, receiver=receiver, seal_seconds=3600)
    store(items)
    store.seal_if_due(force=True)
    return store


def audit_events(app, action: str) -> list[AuditEvent]:
    """The trail's events of one action, oldest first."""
    with app.app_context():
        found = list(db.session.execute(select(AuditEvent).where(AuditEvent.action == action)
                                        .order_by(AuditEvent.seq)).scalars())
        db.session.expunge_all()
        return found


def add_asset(app, tag: str, **fields) -> int:
    """Insert an asset; returns its id."""
    values = {"asset_tag": tag, "name": f"Archive {tag}", "kind": "dicom_node", "ae_title": "ARCHIVE1",
              "port": 104, "ip_address": "10.1.2.3"} | fields
    with app.app_context():
        asset = Asset(**values)
        db.session.add(asset)
        fixture_event("asset", tag)
        db.session.commit()
        return asset.id


def test_who_accessed_this_patients_images_is_one_step_from_the_patient_id(app, client, login_as):
    seed(app, [received(ACCESS), received(ACCESS, replace={"dr.lee": "dr.kim", "Dr Lee": "Dr Kim"}),
               received(ACCESS, replace={"MRN-000417": "MRN-999999"})])
    officer = login_as("compliance")
    page = client.get(f"/audit/pacs?patient_id={PATIENT}")
    assert page.status_code == 200
    body = page.get_data(as_text=True)
    assert "dr.lee" in body and "dr.kim" in body and "MRN-999999" not in body
    assert "DICOM Instances Accessed" in body and "10.20.30.77" in body
    assert "2025-03-14 15:31:07 +00:00" in body            # local time (UTC here) with its offset
    assert f'href="/audit/pacs?patient_id={PATIENT}"' in body
    (event,) = audit_events(app, "atna.search")
    assert event.username == officer.username
    assert json.loads(event.details)["criteria"] == {"patient_id": PATIENT}


def test_a_study_or_an_accession_number_finds_the_same_access(app, client, login_as):
    seed(app, [received(ACCESS)])
    login_as("compliance")
    by_study = client.get("/audit/pacs?study_uid=1.2.826.0.1.3680043.8.498.10001").get_data(as_text=True)
    by_accession = client.get("/audit/pacs?accession=A-2025-000981").get_data(as_text=True)
    missing = client.get("/audit/pacs?accession=A-0000").get_data(as_text=True)
    assert "dr.lee" in by_study and "dr.lee" in by_accession
    assert "No access matches these filters." in missing


@pytest.mark.parametrize("role", ["requester", "technician"])
def test_only_compliance_officers_and_admins_see_the_pacs_access_log(app, client, login_as, role):
    seed(app, [received(ACCESS)])
    login_as(role)
    assert client.get(f"/audit/pacs?patient_id={PATIENT}").status_code == 403
    assert client.get("/audit/pacs/export.csv").status_code == 403
    assert audit_events(app, "atna.search") == []


def test_csv_export_is_audited_with_its_criteria_and_neutralises_formulas(app, client, login_as):
    seed(app, [received(ACCESS, replace={"dr.lee": "=HYPERLINK(1)"})])
    login_as("admin")
    response = client.get(f"/audit/pacs/export.csv?patient_id={PATIENT}")
    assert response.status_code == 200 and response.mimetype == "text/csv"
    rows = list(csv.DictReader(io.StringIO(response.get_data(as_text=True))))
    assert len(rows) == 1
    assert rows[0]["user_id"] == "'=HYPERLINK(1)"
    assert (rows[0]["patient_id"], rows[0]["event"]) == (PATIENT, "DICOM Instances Accessed")
    (event,) = audit_events(app, "atna.export")
    assert json.loads(event.details)["criteria"] == {"patient_id": PATIENT}


def test_viewing_a_message_shows_its_xml_and_is_audited(app, client, login_as):
    seed(app, [received(ACCESS)])
    login_as("compliance")
    with app.app_context():
        message_id = db.session.execute(select(AtnaMessage.id)).scalar_one()
    body = client.get(f"/audit/pacs/messages/{message_id}").get_data(as_text=True)
    assert "SOPClass UID=&#34;1.2.840.10008.5.1.4.1.1.2&#34;" in body or "1.2.840.10008.5.1.4.1.1.2" in body
    (event,) = audit_events(app, "atna.view")
    assert event.object_id == str(message_id)


def test_cli_search_prints_json_and_is_audited(app, runner):
    seed(app, [received(ACCESS), received("dicom_110114_login.xml")])
    result = runner.invoke(args=["atna", "search", "--patient", PATIENT, "--from", "2025-03-01",
                                 "--to", "2025-03-31", "--json"])
    assert result.exit_code == 0, result.output
    (row,) = json.loads(result.output)
    assert (row["user_id"], row["patient_id"]) == ("dr.lee", PATIENT)
    assert row["event"] == "DICOM Instances Accessed"
    (event,) = audit_events(app, "atna.search")
    assert json.loads(event.details)["criteria"] == {"patient_id": PATIENT, "date_from": "2025-03-01",
                                                     "date_to": "2025-03-31"}
    bad = runner.invoke(args=["atna", "search", "--from", "14/03/2025"])
    assert bad.exit_code == 2 and "--from" in bad.output


def test_watchlist_entries_are_added_removed_and_audited(app, client, login_as):
    login_as("compliance")
    response = client.post("/audit/pacs/watchlist", data={"patient_id": PATIENT, "category": "employee",
                                                          "reason": "Radiology nurse"})
    assert response.status_code == 302
    again = client.post("/audit/pacs/watchlist", data={"patient_id": PATIENT, "category": "vip",
                                                       "reason": "twice"})
    assert "already on the watchlist" in again.get_data(as_text=True)
    with app.app_context():
        watch = db.session.execute(select(AtnaWatch)).scalar_one()
        assert (watch.category, watch.reason) == ("employee", "Radiology nurse")
    seed(app, [received(ACCESS)])
    assert "watched" in client.get(f"/audit/pacs?patient_id={PATIENT}").get_data(as_text=True)
    client.post(f"/audit/pacs/watchlist/{watch.id}/remove")
    with app.app_context():
        assert db.session.execute(select(func.count()).select_from(AtnaWatch)).scalar_one() == 0
    assert [json.loads(e.details)["patient_id"] for e in audit_events(app, "atna.watch_added")] == [PATIENT]
    assert len(audit_events(app, "atna.watch_removed")) == 1


def test_a_watchlist_csv_with_one_bad_row_imports_nothing_and_names_the_row(app, client, login_as, runner,
                                                                            tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("patient_id,category,reason\nMRN-1,vip,Mayor\nMRN-2,celebrity,Singer\nMRN-3,employee,\n")
    result = runner.invoke(args=["atna", "watch-import", str(bad)])
    assert result.exit_code == 1
    assert "line 3: category" in result.output and "line 4: reason" in result.output
    good = tmp_path / "good.csv"
    good.write_text("\ufeffpatient_id,category,reason\r\nMRN-1,vip,Mayor\r\nMRN-2,employee,Night nurse\r\n")
    result = runner.invoke(args=["atna", "watch-import", str(good)])
    assert result.exit_code == 0, result.output
    with app.app_context():
        assert sorted(db.session.execute(select(AtnaWatch.patient_id)).scalars()) == ["MRN-1", "MRN-2"]
    (event,) = audit_events(app, "atna.watch_imported")
    assert json.loads(event.details)["added"] == ["MRN-1", "MRN-2"]


def test_senders_are_matched_to_assets_and_the_asset_page_shows_the_last_message(app, client, login_as):
    asset_id = add_asset(app, "PACS-01", ae_title="ARCHIVE1", ip_address="10.9.9.9")
    add_asset(app, "VIEW-07", kind="workstation", ae_title=None, port=None, ip_address="10.5.5.5")
    seed(app, [received(ACCESS, peer_host="10.200.0.1"),            # audit source id ARCHIVE1
               received("dicom_110114_login.xml", peer_host="10.5.5.5", hostname="-",
                        replace={'AuditSourceID="ARCHIVE1"': 'AuditSourceID="SOMETHING"'}),
               received("dicom_110113_security_alert.xml", peer_host="10.66.66.66", hostname="stranger",
                        replace={'AuditSourceID="ARCHIVE1"': 'AuditSourceID="NOBODY"'})])
    with app.app_context():
        matched = {s.sender_host: s.asset_id for s in db.session.execute(select(AtnaSource)).scalars()}
        stored = {m.sender_host: m.asset_id for m in db.session.execute(select(AtnaMessage)).scalars()}
    assert matched["10.200.0.1"] == asset_id and stored["10.200.0.1"] == asset_id
    assert matched["10.5.5.5"] is not None and matched["10.66.66.66"] is None
    login_as("technician")
    page = client.get("/assets/PACS-01").get_data(as_text=True)
    assert "PACS audit messages" in page and "DICOM Instances Accessed" in page
    assert PATIENT not in page                                         # technicians see no patient data
    client.post("/logout")
    login_as("compliance", "officer2")
    sources = client.get("/audit/pacs/sources").get_data(as_text=True)
    assert "unknown sender" in sources and "PACS-01" in sources


def test_a_silent_in_service_source_opens_one_ticket_resolved_when_messages_come_back(app):
    asset_id = add_asset(app, "PACS-01")
    long_ago = datetime.now(UTC) - timedelta(hours=3)
    seed(app, [received(ACCESS, at=long_ago)])
    with app.app_context():
        db.session.execute(AtnaSource.__table__.update().values(last_seen=long_ago))
        db.session.commit()
        assert [s.asset.tag for s in check_silent_sources()] == ["PACS-01"]
        assert check_silent_sources() == []                              # one ticket, not one per run
        db.session.commit()
        (ticket,) = db.session.execute(select(Ticket)).scalars()
        assert ticket.title == "PACS audit source silent: Archive PACS-01 (PACS-01)"
        assert (ticket.asset_id, ticket.category.code) == (asset_id, "audit_source_silent")
    seed(app, [received(ACCESS)])
    with app.app_context():
        ticket = db.session.execute(select(Ticket)).scalar_one()
        assert ticket.status == "resolved"
        reply = db.session.execute(select(TicketComment.body).where(TicketComment.ticket_id == ticket.id)
                                   ).scalar_one()
        assert "sends audit messages again" in reply
        assert db.session.execute(select(AtnaSource.silent_since)).scalar_one() is None
    assert len(audit_events(app, "atna.source_silent")) == 1


def test_a_retired_asset_going_quiet_opens_no_ticket(app):
    add_asset(app, "PACS-01", status="retired")
    add_asset(app, "PACS-02", ae_title="OTHER", ip_address="10.1.2.3")
    seed(app, [received(ACCESS, peer_host="10.7.7.7")])
    with app.app_context():
        db.session.execute(AtnaSource.__table__.update().values(
            last_seen=datetime.now(UTC) - timedelta(hours=3)))
        assert check_silent_sources() == []
        assert db.session.execute(select(func.count()).select_from(Ticket)).scalar_one() == 0


def test_quarantine_page_counts_reasons_and_a_purge_is_audited(app, client, login_as):
    seed(app, [received("not xml at all"), received("<AuditMessage><Broken></AuditMessage>"),
               received(ACCESS)])
    login_as("compliance")
    page = client.get("/audit/pacs/quarantine").get_data(as_text=True)
    assert "not_xml" in page
    response = client.post("/audit/pacs/quarantine/purge", data={"older_than_days": "1"})
    assert response.status_code == 302
    (event,) = audit_events(app, "atna.quarantine_purged")
    assert json.loads(event.details)["count"] == 0                   # nothing is a day old yet


def test_messages_a_receiver_dropped_are_shown_on_the_pages(app, client, login_as):
    from audit.atna.models import AtnaReceiverState
    from audit.atna.process import ReceiverMonitor
    from audit.atna.receiver import ReceiverStats

    store = seed(app, [received(ACCESS)])
    monitor = ReceiverMonitor(app, "pacs-desk-1:4242", ())
    monitor.started()
    counters = dict.fromkeys(ReceiverStats.__dataclass_fields__, 0)
    monitor.update(ReceiverStats(**{**counters, "received": 1043, "dropped_udp": 1042}), store)
    login_as("compliance")
    page = client.get("/audit/pacs").get_data(as_text=True)
    assert "1,042 UDP datagrams dropped" in page
    sources = client.get("/audit/pacs/sources").get_data(as_text=True)
    assert "pacs-desk-1:4242" in sources and "1,042" in sources
    (lost,) = audit_events(app, "atna.messages_lost")
    assert json.loads(lost.details)["dropped_udp"] == 1042 and lost.outcome == "failure"
    with app.app_context():
        assert db.session.get(AtnaReceiverState, "pacs-desk-1:4242").dropped_udp == 1042
