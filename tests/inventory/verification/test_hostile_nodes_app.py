"""Hostile and busy DICOM nodes as the app sees them: states, the address policy, TLS files, limits."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from sqlalchemy import func, select

from audit.trail.models import AuditEvent, ObjectChange
from core.config import ConfigError, load_config
from core.extensions import db
from core.jobs.models import Job
from helpdesk.models import Ticket
from inventory.models import Asset
from inventory.verification.dicom import EchoResult, Outcome
from inventory.verification.models import NodeCheck, NodeState
from inventory.verification.services import record_check, sweep, verify_asset
from tests.inventory.assets_support import node_form
from tests.inventory.conftest import PEER_AET
from tests.inventory.verification.test_dicom_hostile import answering, reject

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
OK = EchoResult(Outcome.OK, "C-ECHO succeeded in 12 ms", 12.0)
BUSY = EchoResult(Outcome.BUSY, "Association rejected (transient, service provider, presentation): "
                  "local limit exceeded", 4.0, result=2, source=3, reason=2)
REFUSED = EchoResult(Outcome.REFUSED, "TCP connection refused (nothing listening on the port)", 3.0)


@pytest.fixture(autouse=True)
def _fast(fast_verification):
    """Every test here uses short timeouts."""


def feed(app, asset_id: int, result: EchoResult, at: datetime) -> str:
    """Record ``result`` for the node at time ``at``; returns its state."""
    with time_machine.travel(at, tick=False), app.app_context():
        record_check(db.session.get(Asset, asset_id), result, "schedule", audit_each=False)
        db.session.commit()
        return db.session.get(NodeState, asset_id).state


def ticket_count(app) -> int:
    with app.app_context():
        return db.session.scalar(select(func.count(Ticket.id)))


# ---------------------------------------------------------------- busy


def test_busy_node_is_degraded_not_down_and_gets_no_ticket_within_the_busy_window(app, make_node):
    asset_id = make_node("PACS-01", 104)
    feed(app, asset_id, OK, T0)
    states = [feed(app, asset_id, BUSY, T0 + timedelta(minutes=minute)) for minute in range(1, 30)]
    assert set(states) == {"degraded"}
    assert ticket_count(app) == 0


def test_busy_for_the_whole_busy_window_without_a_success_is_down_with_one_ticket(app,
                                                                                 make_node):
    app.config["PACSDESK_BUSY_DOWN_MINUTES"] = 30
    asset_id = make_node("PACS-01", 104)
    feed(app, asset_id, OK, T0)
    assert feed(app, asset_id, BUSY, T0 + timedelta(minutes=1)) == "degraded"
    assert feed(app, asset_id, BUSY, T0 + timedelta(minutes=30)) == "degraded"
    assert feed(app, asset_id, BUSY, T0 + timedelta(minutes=31)) == "down"
    with app.app_context():
        state = db.session.get(NodeState, asset_id)
        assert state.down_since == T0 + timedelta(minutes=1), "down since the first busy answer"
    assert ticket_count(app) == 1


def test_busy_answer_of_a_node_already_down_keeps_it_down_until_it_answers(app, make_node):
    asset_id = make_node("PACS-01", 104)
    feed(app, asset_id, REFUSED, T0)
    assert feed(app, asset_id, REFUSED, T0 + timedelta(minutes=1)) == "down"
    assert feed(app, asset_id, BUSY, T0 + timedelta(minutes=2)) == "down"
    assert ticket_count(app) == 1
    assert feed(app, asset_id, OK, T0 + timedelta(minutes=3)) in {"up", "degraded"}


def test_busy_peer_checked_through_the_app_is_busy_and_degraded(app, raw_peer, make_node):
    asset_id = make_node("PACS-01", raw_peer(answering(reject(2, 3, 2))))
    with app.app_context():
        check = verify_asset(db.session.get(Asset, asset_id), "manual")
        db.session.commit()
        assert check.outcome is Outcome.BUSY and "local limit exceeded" in check.detail
        assert db.session.get(NodeState, asset_id).state == "degraded"


def test_node_page_names_the_new_outcomes(app, client, login_as, make_node):
    asset_id = make_node("PACS-01", 104)
    feed(app, asset_id, BUSY, T0)
    login_as("technician")
    page = client.get("/assets/PACS-01").get_data(as_text=True)
    assert "<strong>Busy</strong>" in page and "local limit exceeded" in page


# ---------------------------------------------------------------- where checks may connect


@pytest.fixture
def resolver(app, fake_dns):
    """The app resolves names from a table, never from DNS."""
    table = fake_dns({"pacs.hospital.test": ["10.20.0.5"],
                      "sneaky.hospital.test": ["169.254.169.254"],
                      "outside.hospital.test": ["203.0.113.7"]})
    app.config["PACSDESK_DICOM_RESOLVER"] = table
    return table


@pytest.mark.parametrize(("fields", "field", "words"), [
    ({"ip_address": "169.254.169.254"}, "ip_address",
     "169.254.169.254 is a cloud metadata service address"),
    ({"ip_address": "203.0.113.9"}, "ip_address", "203.0.113.9 is outside the networks"),
    ({"ip_address": "", "hostname": "sneaky.hospital.test"}, "hostname",
     "sneaky.hospital.test resolves to 169.254.169.254, which is a cloud metadata service address"),
    ({"ip_address": "", "hostname": "metadata.google.internal"}, "hostname",
     "metadata.google.internal is a cloud metadata service name"),
    ({"ip_address": "10.1.1.1", "hostname": "outside.hospital.test", "tls": "y"}, "hostname",
     "outside.hospital.test resolves to 203.0.113.7"),
], ids=["metadata-address", "outside", "name-to-metadata", "metadata-name", "tls-connects-by-name"])
def test_node_form_refuses_an_address_checks_may_not_reach_naming_it(app, client, login_as,
                                                                    resolver, fields, field, words):
    login_as("technician")
    response = client.post("/assets/new", data=node_form(**fields))
    assert response.status_code == 422
    page = response.get_data(as_text=True)
    assert words in page
    assert f'id="{field}"' in page and "is-invalid" in page
    with app.app_context():
        assert db.session.scalar(select(func.count(Asset.id))) == 0
        assert db.session.scalar(select(func.count(Job.id))) == 0


def test_node_form_accepts_an_address_inside_the_allowed_networks(app, client, login_as, resolver):
    login_as("technician")
    response = client.post("/assets/new", data=node_form(ip_address="", hostname="pacs.hospital.test"))
    assert response.status_code == 302
    assert resolver.lookups == ["pacs.hospital.test"]


def test_allowed_networks_setting_widens_what_the_form_accepts(app, app_config, client, login_as,
                                                              resolver):
    app.config["PACSDESK_DICOM_ALLOWED_NETWORKS"] = load_config(
        {"PACSDESK_DICOM_ALLOWED_NETWORKS": "10.0.0.0/8, 203.0.113.0/24"},
        {"PACSDESK_INSTANCE_PATH": app_config["PACSDESK_INSTANCE_PATH"],
         "PACSDESK_AUDIT_KEY": {1: b"k" * 32}})["PACSDESK_DICOM_ALLOWED_NETWORKS"]
    login_as("technician")
    assert client.post("/assets/new", data=node_form(ip_address="203.0.113.9")).status_code == 302
    refused = client.post("/assets/new", data=node_form(asset_tag="CT-02", ip_address="127.0.0.9"))
    assert refused.status_code == 422 and "127.0.0.9 is outside the networks" in refused.get_data(
        as_text=True)


def test_sweep_of_a_node_outside_the_allowed_networks_is_not_allowed_and_never_connects(
        app, app_config, raw_peer, make_node):
    connections = []
    port = raw_peer(lambda conn: connections.append(conn))
    app.config["PACSDESK_DICOM_ALLOWED_NETWORKS"] = load_config(
        {"PACSDESK_DICOM_ALLOWED_NETWORKS": "10.0.0.0/8"},
        {"PACSDESK_INSTANCE_PATH": app_config["PACSDESK_INSTANCE_PATH"],
         "PACSDESK_AUDIT_KEY": {1: b"k" * 32}})["PACSDESK_DICOM_ALLOWED_NETWORKS"]
    make_node("CT-01", port)
    with app.app_context():
        result = sweep()
    [node] = result.results
    assert node.outcome == "not_allowed"
    assert "127.0.0.1 is outside the networks checks may reach (10.0.0.0/8)" in node.detail
    assert connections == []


def test_bad_allowed_networks_setting_stops_start_up_naming_the_entry(tmp_path):
    with pytest.raises(ConfigError, match=r"PACSDESK_DICOM_ALLOWED_NETWORKS: '10.0.0.1/8' is not a "
                                          r"network .* \(did you mean 10.0.0.0/8\?\)"):
        load_config({"PACSDESK_DICOM_ALLOWED_NETWORKS": "192.168.0.0/16,10.0.0.1/8"},
                    {"PACSDESK_INSTANCE_PATH": str(tmp_path), "PACSDESK_AUDIT_KEY": {1: b"k" * 32}})


# ---------------------------------------------------------------- Verify now, saving


def test_verify_now_is_limited_per_user_with_a_clear_429(app, client, login_as,
                                                        make_node, auth, make_user):
    app.config["PACSDESK_VERIFY_NOW_PER_MINUTE"] = 2
    for tag in ("CT-01", "CT-02", "CT-03"):
        make_node(tag, 104, ae_title=tag.replace("-", ""))
    login_as("technician", "sam")
    assert client.post("/assets/CT-01/verify").status_code == 302
    assert client.post("/assets/CT-02/verify").status_code == 302
    third = client.post("/assets/CT-03/verify")
    assert third.status_code == 429
    assert "You asked for 2 checks in the last minute" in third.get_data(as_text=True)
    with app.app_context():
        assert db.session.scalar(select(func.count(Job.id))) == 2
    auth.logout()
    login_as("technician", "kim")
    assert client.post("/assets/CT-03/verify").status_code == 302, "the limit is per user"
    with time_machine.travel(datetime.now(UTC) + timedelta(minutes=2)):
        auth.logout()
        auth.login("sam")
        assert client.post("/assets/CT-03/verify").status_code == 302


def test_saving_a_node_with_automatic_verification_off_queues_no_check(app, client, login_as):
    login_as("technician")
    form = node_form(ip_address="127.0.0.1", hostname="")
    form.pop("verify_enabled")
    assert client.post("/assets/new", data=form).status_code == 302
    with app.app_context():
        assert db.session.scalar(select(func.count(Job.id))) == 0


# ---------------------------------------------------------------- TLS client certificates


def tls_node(make_node, port: int, **fields) -> int:
    """A TLS node on loopback, its certificate checked for 127.0.0.1."""
    return make_node("PACS-01", port, tls=True, **fields)


def test_node_requiring_a_client_certificate_without_one_is_tls_error_saying_so(app,
                                                                                verification_scp,
                                                                                mini_pki, make_node):
    app.config["PACSDESK_DICOM_TLS_CA_FILE"] = str(mini_pki.ca_cert)
    asset_id = tls_node(make_node, verification_scp(
        ssl_context=mini_pki.server_context(require_client_cert=True)))
    with app.app_context():
        check = verify_asset(db.session.get(Asset, asset_id), "manual")
        assert check.outcome is Outcome.TLS_ERROR
        assert check.detail == "TLS handshake failed: the peer requires a client certificate"


def test_global_client_certificate_is_presented_to_a_node_that_requires_one(app,
                                                                           verification_scp,
                                                                           mini_pki, make_node):
    app.config.update({"PACSDESK_DICOM_TLS_CA_FILE": str(mini_pki.ca_cert),
                       "PACSDESK_DICOM_TLS_CERT": str(mini_pki.client_cert),
                       "PACSDESK_DICOM_TLS_KEY": str(mini_pki.client_key)})
    asset_id = tls_node(make_node, verification_scp(
        ssl_context=mini_pki.server_context(require_client_cert=True)))
    with app.app_context():
        check = verify_asset(db.session.get(Asset, asset_id), "manual")
        assert check.outcome is Outcome.OK, check.detail


def test_nodes_own_client_certificate_takes_precedence_over_the_global_one(app,
                                                                          verification_scp,
                                                                          mini_pki, make_node):
    app.config.update({"PACSDESK_DICOM_TLS_CERT": str(mini_pki.stranger_cert),
                       "PACSDESK_DICOM_TLS_KEY": str(mini_pki.stranger_key)})
    port = verification_scp(ssl_context=mini_pki.server_context(require_client_cert=True))
    asset_id = tls_node(make_node, port, tls_client_cert=str(mini_pki.client_cert),
                        tls_client_key=str(mini_pki.client_key), tls_ca_file=str(mini_pki.ca_cert))
    with app.app_context():
        check = verify_asset(db.session.get(Asset, asset_id), "manual")
        assert check.outcome is Outcome.OK, check.detail


def test_admin_sets_a_nodes_tls_files_checked_recorded_in_history_and_audited(app, client,
                                                                             login_as, mini_pki,
                                                                             make_node):
    make_node("PACS-01", 104, tls=True)
    login_as("admin")
    page = client.get("/assets/PACS-01/edit").get_data(as_text=True)
    assert 'id="tls_client_cert"' in page
    form = node_form(asset_tag="PACS-01", ip_address="127.0.0.1", hostname="", ae_title=PEER_AET,
                     tls="y", tls_client_cert=str(mini_pki.client_cert),
                     tls_client_key=str(mini_pki.client_key), tls_ca_file=str(mini_pki.ca_cert))
    assert client.post("/assets/PACS-01/edit", data=form).status_code == 302
    with app.app_context():
        asset = db.session.scalar(select(Asset).where(Asset.asset_tag == "PACS-01"))
        assert (asset.tls_client_cert, asset.tls_client_key, asset.tls_ca_file) == (
            str(mini_pki.client_cert), str(mini_pki.client_key), str(mini_pki.ca_cert))
        fields = set(db.session.scalars(select(ObjectChange.field).where(
            ObjectChange.object_type == "asset", ObjectChange.object_id == asset.id)))
        assert {"tls_client_cert", "tls_client_key", "tls_ca_file"} <= fields
        [event] = db.session.scalars(select(AuditEvent).where(AuditEvent.action == "asset.tls_files"))
        details = event.details if isinstance(event.details, dict) else json.loads(event.details)
        assert details["fields"] == ["tls_ca_file", "tls_client_cert", "tls_client_key"]
    assert "TLS client certificate" in client.get("/assets/PACS-01").get_data(as_text=True)


@pytest.mark.parametrize(("files", "field", "words"), [
    ({"tls_client_cert": "/nonexistent/client.crt"}, "tls_client_cert",
     "client_cert &#39;/nonexistent/client.crt&#39; cannot be read"),
    ({"tls_client_key": "KEY"}, "tls_client_key", "a key needs the client certificate"),
    ({"tls_ca_file": "NOT_A_CA"}, "tls_ca_file", "holds no usable CA certificate"),
    ({"tls_client_cert": "CLIENT", "tls_client_key": "STRANGER"}, "tls_client_cert",
     "are not a certificate and its private key"),
], ids=["missing", "key-alone", "ca-not-pem", "key-of-another-certificate"])
def test_unusable_tls_file_is_a_field_error_and_nothing_is_saved(app, client, login_as, mini_pki,
                                                                make_node, tmp_path, files, field,
                                                                words):
    junk = tmp_path / "junk.pem"
    junk.write_text("not a certificate\n")
    names = {"KEY": str(mini_pki.client_key), "NOT_A_CA": str(junk), "CLIENT": str(mini_pki.client_cert),
             "STRANGER": str(mini_pki.stranger_key)}
    make_node("PACS-01", 104, tls=True)
    login_as("admin")
    form = node_form(asset_tag="PACS-01", ip_address="127.0.0.1", hostname="", ae_title=PEER_AET,
                     tls="y", location="Room 9", **{k: names.get(v, v) for k, v in files.items()})
    response = client.post("/assets/PACS-01/edit", data=form)
    assert response.status_code == 422
    page = response.get_data(as_text=True)
    assert words in page and f'id="{field}"' in page
    with app.app_context():
        asset = db.session.scalar(select(Asset).where(Asset.asset_tag == "PACS-01"))
        assert asset.location == "Imaging L1" and asset.tls_client_cert is None


def test_technician_neither_sees_nor_sets_tls_files(app, client, login_as, mini_pki, make_node):
    make_node("PACS-01", 104, tls=True)
    login_as("technician")
    assert 'id="tls_client_cert"' not in client.get("/assets/PACS-01/edit").get_data(as_text=True)
    form = node_form(asset_tag="PACS-01", ip_address="127.0.0.1", hostname="", ae_title=PEER_AET,
                     tls="y", tls_client_cert=str(mini_pki.client_cert))
    assert client.post("/assets/PACS-01/edit", data=form).status_code == 302
    with app.app_context():
        asset = db.session.scalar(select(Asset).where(Asset.asset_tag == "PACS-01"))
        assert asset.tls_client_cert is None


@pytest.mark.parametrize(("environ", "words"), [
    ({"PACSDESK_DICOM_TLS_KEY": "KEY"}, "PACSDESK_DICOM_TLS_KEY: set PACSDESK_DICOM_TLS_CERT too"),
    ({"PACSDESK_DICOM_TLS_CERT": "JUNK"}, "are not a certificate and its unencrypted private key"),
    ({"PACSDESK_DICOM_TLS_CERT": "CLIENT", "PACSDESK_DICOM_TLS_KEY": "STRANGER"},
     "are not a certificate and its unencrypted private key"),
    ({"PACSDESK_DICOM_TLS_CA_FILE": "JUNK"}, "PACSDESK_DICOM_TLS_CA_FILE: .* holds no usable CA"),
    ({"PACSDESK_DICOM_TLS_CERT": "/nonexistent.pem"}, "PACSDESK_DICOM_TLS_CERT: must name a readable file"),
], ids=["key-alone", "cert-not-pem", "key-of-another", "ca-not-pem", "missing"])
def test_global_tls_files_are_checked_at_start_up(tmp_path, mini_pki, environ, words):
    junk = tmp_path / "junk.pem"
    junk.write_text("not a certificate\n")
    names = {"KEY": str(mini_pki.client_key), "JUNK": str(junk), "CLIENT": str(mini_pki.client_cert),
             "STRANGER": str(mini_pki.stranger_key)}
    with pytest.raises(ConfigError, match=words):
        load_config({k: names.get(v, v) for k, v in environ.items()},
                    {"PACSDESK_INSTANCE_PATH": str(tmp_path), "PACSDESK_AUDIT_KEY": {1: b"k" * 32}})


def test_global_tls_files_that_load_are_accepted(tmp_path, mini_pki):
    config = load_config({"PACSDESK_DICOM_TLS_CERT": str(mini_pki.client_cert),
                          "PACSDESK_DICOM_TLS_KEY": str(mini_pki.client_key),
                          "PACSDESK_DICOM_TLS_CA_FILE": str(mini_pki.ca_cert)},
                         {"PACSDESK_INSTANCE_PATH": str(tmp_path), "PACSDESK_AUDIT_KEY": {1: b"k" * 32}})
    assert config["PACSDESK_DICOM_TLS_CERT"] == str(mini_pki.client_cert)


# ---------------------------------------------------------------- stored results


def test_sweep_stores_each_hostile_nodes_outcome_and_state(app, raw_peer, verification_scp,
                                                           make_node):
    from tests.inventory.verification.test_dicom_hostile import association_ac, flood, one_byte_a_second

    nodes = {"OK-01": (verification_scp(), "ok", "up"),
             "BUSY-01": (raw_peer(answering(reject(2, 3, 2))), "busy", "degraded"),
             "HUGE-01": (raw_peer(answering(flood(b"\x02\x00\xff\xff\xff\xff"))), "invalid_pdu", "degraded"),
             "DRIP-01": (raw_peer(answering(one_byte_a_second(association_ac()))), "too_slow", "degraded"),
             "ODD-01": (raw_peer(answering(reject(9, 5, 200))), "invalid_pdu", "degraded")}
    for tag, (port, _, _) in nodes.items():
        make_node(tag, port)
    with app.app_context():
        result = sweep()
    assert {r.asset_tag: (r.outcome, r.state) for r in result.results} == {
        tag: (outcome, state) for tag, (_, outcome, state) in nodes.items()}
    with app.app_context():
        assert db.session.scalar(select(func.count(NodeCheck.id))) == len(nodes)
