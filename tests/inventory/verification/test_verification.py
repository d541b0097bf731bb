"""Verification services: stored checks, the node state machine, sweeps, background checks."""

from __future__ import annotations

import json
import re
import threading
import time
from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from pynetdicom import evt
from sqlalchemy import select

from audit import record
from audit.trail.models import AuditEvent
from core.extensions import db
from inventory.models import Asset
from inventory.services import request_checks
from inventory.verification.dicom import EchoResult, Outcome
from inventory.verification.models import NodeCheck, NodeState
from inventory.verification.services import (
    record_check,
    sweep,
    verify_asset,
)
from inventory.verification.summary import node_summary, uptime_percentages
from tests.helpers import fixture_event, free_port
from tests.inventory.conftest import record_at_once, stay_silent

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
OK = EchoResult(Outcome.OK, "C-ECHO succeeded in 12 ms", 12.0)
REFUSED = EchoResult(Outcome.REFUSED, "TCP connection refused (nothing listening on the port)", 3.0)


@pytest.fixture(autouse=True)
def _fast(fast_verification):
    """Every test here uses short timeouts."""


def events(action: str) -> list[AuditEvent]:
    """Audit events of one action, oldest first."""
    return list(db.session.execute(
        select(AuditEvent).where(AuditEvent.action == action).order_by(AuditEvent.seq)).scalars())


def feed(app, asset_id: int, result: EchoResult, at: datetime, trigger: str = "schedule") -> NodeState:
    """Record ``result`` for the node at time ``at``; returns its state."""
    with time_machine.travel(at, tick=False), app.app_context():
        record_check(db.session.get(Asset, asset_id), result, trigger, audit_each=False)
        db.session.commit()
        state = db.session.get(NodeState, asset_id)
        db.session.expunge(state)
        return state


def test_manual_verification_of_a_live_node_is_stored_up_and_audited(app, verification_scp,
                                                                     make_node):
    asset_id = make_node("CT-01", verification_scp())
    with app.test_request_context(), app.app_context():
        check = verify_asset(db.session.get(Asset, asset_id), "manual")
        db.session.commit()
        assert check.outcome == "ok" and check.trigger == "manual" and check.latency_ms > 0
        state = db.session.get(NodeState, asset_id)
        assert state.state == "up" and state.consecutive_failures == 0
        assert state.last_ok_at == state.last_check_at
        (event,) = events("node.verify")
        assert event.object_id == "CT-01"
        assert json.loads(event.details)["trigger"] == "manual"
        assert json.loads(event.details)["outcome"] == "ok"


def test_never_checked_node_is_unknown(app, make_node):
    asset_id = make_node("CT-01", 104)
    with app.app_context():
        summary = node_summary(db.session.get(Asset, asset_id))
        assert summary.state.value == "unknown"
        assert summary.last_check is None and summary.recent == []
        assert summary.uptime == {"24h": None, "7d": None, "30d": None}


def test_node_goes_down_after_two_consecutive_failures_and_recovers(app, make_node):
    asset_id = make_node("CT-01", 104)
    first = feed(app, asset_id, REFUSED, T0)
    assert (first.state, first.consecutive_failures, first.down_since) == ("degraded", 1, None)
    second = feed(app, asset_id, REFUSED, T0 + timedelta(minutes=5))
    assert second.state == "down" and second.consecutive_failures == 2
    assert second.down_since == T0, "the outage began with the first failure of the streak"
    third = feed(app, asset_id, REFUSED, T0 + timedelta(minutes=10))
    assert third.state == "down" and third.down_since == T0
    back = feed(app, asset_id, OK, T0 + timedelta(minutes=15))
    assert back.state == "degraded", "intermittent: failures within the last hour"
    assert back.consecutive_failures == 0 and back.down_since is None
    assert back.last_ok_at == T0 + timedelta(minutes=15)
    later = feed(app, asset_id, OK, T0 + timedelta(minutes=75))
    assert later.state == "up"
    with app.app_context():
        (down,) = events("node.down")
        (recovered,) = events("node.recovered")
        assert down.object_id == recovered.object_id == "CT-01"
        assert json.loads(recovered.details)["downtime_seconds"] == 15 * 60


def test_one_failure_after_success_is_degraded_not_down(app, make_node):
    asset_id = make_node("CT-01", 104)
    feed(app, asset_id, OK, T0)
    state = feed(app, asset_id, REFUSED, T0 + timedelta(minutes=5))
    assert state.state == "degraded"


def test_down_threshold_follows_the_setting(app, app_config, make_node):
    app.config["PACSDESK_DOWN_AFTER_FAILURES"] = 3
    asset_id = make_node("CT-01", 104)
    feed(app, asset_id, REFUSED, T0)
    assert feed(app, asset_id, REFUSED, T0 + timedelta(minutes=1)).state == "degraded"
    assert feed(app, asset_id, REFUSED, T0 + timedelta(minutes=2)).state == "down"


def test_slow_answer_is_degraded(app, verification_scp, make_node):
    app.config["PACSDESK_DEGRADED_LATENCY_MS"] = 1

    def slowish(event):
        time.sleep(0.05)
        return 0x0000

    asset_id = make_node("CT-01", verification_scp(handlers=[(evt.EVT_C_ECHO, slowish)]))
    with app.app_context():
        check = verify_asset(db.session.get(Asset, asset_id), "manual")
        db.session.commit()
        assert check.outcome == "ok"
        assert db.session.get(NodeState, asset_id).state == "degraded"


def test_verify_now_of_a_silent_node_lets_others_write_while_it_waits(app, client, login_as,
                                                                     raw_peer, make_node, run_jobs):
    app.config["PACSDESK_VERIFY_TIMEOUT"] = 60.0  # outlasts a blocked writer's 30 s busy wait
    accepted, release = threading.Event(), threading.Event()

    def hold_then_hang_up(conn) -> None:
        accepted.set()
        release.wait(90)
        conn.close()

    make_node("CT-01", raw_peer(hold_then_hang_up))
    login_as("technician")
    responses, errors = [], []

    def write_elsewhere() -> None:
        try:
            with app.app_context():
                record("audit.verify", user=None, username="compliance-desk", client_address=None,
                       details={"ok": True})
                db.session.commit()
        except Exception as exc:
            errors.append(exc)

    responses.append(client.post("/assets/CT-01/verify"))
    verifying = threading.Thread(target=run_jobs)
    writer = threading.Thread(target=write_elsewhere)
    verifying.start()
    try:
        assert accepted.wait(60), "verify now never connected to the node"
        writer.start()
        writer.join(90)
        assert not writer.is_alive() and errors == [], errors
        assert verifying.is_alive(), "the check must still be waiting when the other write ends"
    finally:
        release.set()
        verifying.join(90)
    (response,) = responses
    assert response.status_code == 302
    with app.app_context():
        (check,) = db.session.query(NodeCheck).all()
        assert check.outcome == "aborted" and check.trigger == "manual"
        assert [e.action for e in db.session.execute(select(AuditEvent).where(
            AuditEvent.action.in_(["audit.verify", "node.verify"])).order_by(AuditEvent.seq))
            .scalars()] == ["audit.verify", "node.verify"]
        assert db.session.get(NodeState, check.asset_id).consecutive_failures == 1


def test_verify_now_after_an_unsaved_change_refuses_rather_than_losing_it(app, make_node):
    asset_id = make_node("CT-01", 104)
    with app.app_context():
        asset = db.session.get(Asset, asset_id)
        asset.location = "Room 9"
        with pytest.raises(RuntimeError, match="commit or discard the pending changes first"):
            verify_asset(asset, "manual")
        fixture_event("asset", "CT-01")
        db.session.commit()
    with app.app_context():
        assert db.session.get(Asset, asset_id).location == "Room 9"
        assert db.session.query(NodeCheck).count() == 0


def test_failed_manual_check_is_classified_and_audited(app, closed_port, make_node):
    asset_id = make_node("CT-01", closed_port)
    with app.app_context():
        check = verify_asset(db.session.get(Asset, asset_id), "manual")
        db.session.commit()
        assert check.outcome == "refused"
        assert json.loads(events("node.verify")[0].details)["outcome"] == "refused"


def test_sweep_checks_enabled_nodes_only_and_audits_once(app, verification_scp, closed_port,
                                                         make_node):
    port = verification_scp()
    make_node("CT-01", port)
    make_node("MR-01", port)
    make_node("US-01", closed_port)
    make_node("OLD-01", port, status="retired")
    make_node("GONE-01", port, status="disposed")
    make_node("MAN-01", port, verify_enabled=False)
    make_node("WS-01", port, kind="workstation")
    with app.app_context():
        result = sweep()
        assert sorted(r.asset_tag for r in result.results) == ["CT-01", "MR-01", "US-01"]
        assert (result.ok, result.failed) == (2, 1)
        assert result.counts == {"ok": 2, "refused": 1}
        assert db.session.query(NodeCheck).count() == 3
        assert {c.trigger for c in db.session.query(NodeCheck)} == {"schedule"}
        assert events("node.verify") == []
        (event,) = events("node.sweep")
        details = json.loads(event.details)
        assert (details["nodes"], details["ok"], details["failed"]) == (3, 2, 1)
        assert details["outcomes"] == {"ok": 2, "refused": 1}


def test_sweep_waits_for_all_silent_nodes_at_once_not_one_after_another(app, raw_peer,
                                                                       make_node):
    app.config["PACSDESK_VERIFY_TIMEOUT"] = 2.0  # room for all eight to connect on a busy machine
    lock = threading.Lock()
    connections = {"open": 0, "most": 0}

    def count_while_silent(conn) -> None:
        with lock:
            connections["open"] += 1
            connections["most"] = max(connections["most"], connections["open"])
        try:
            stay_silent(conn)
        finally:
            with lock:
                connections["open"] -= 1

    ports = [raw_peer(count_while_silent) for _ in range(8)]
    for i, port in enumerate(ports):
        make_node(f"SILENT-{i}", port)
    with app.app_context():
        result = sweep()
    assert result.counts == {"no_response": 8}
    assert connections["most"] == 8, "every silent node was waited for at the same time"


def test_sweep_skips_a_node_without_an_address_and_reports_it(app, make_node):
    make_node("CT-01", 104, ip_address="", hostname="")
    with app.app_context():
        result = sweep()
        assert result.results == []
        assert result.skipped == [("CT-01", "CT-01 has no host name or IP address")]
        assert json.loads(events("node.sweep")[0].details)["skipped"] == 1


def test_check_after_save_is_a_job_that_runs_outside_the_request(app, raw_peer, make_node, make_user,
                                                                 run_jobs):
    user = make_user("technician", "sam")
    asset_id = make_node("CT-01", raw_peer(stay_silent))
    with app.app_context():
        from core.auth.models import User

        assert len(request_checks([asset_id], "save", user=db.session.get(User, user.id))) == 1
        db.session.commit()
        assert db.session.query(NodeCheck).count() == 0, "queueing does not check the node"
    assert [status for _, status in run_jobs()] == ["done"]
    with app.app_context():
        (check,) = db.session.query(NodeCheck).all()
        assert check.trigger == "save" and check.outcome == "no_response"
        (event,) = events("node.verify")
        assert event.username == "sam"
        assert json.loads(event.details)["trigger"] == "save"


def test_check_after_save_of_a_non_node_does_nothing(app, make_node, run_jobs):
    asset_id = make_node("WS-01", 104, kind="workstation")
    with app.app_context():
        request_checks([asset_id], "save")
        db.session.commit()
    run_jobs()
    with app.app_context():
        assert db.session.query(NodeCheck).count() == 0


def test_a_node_with_automatic_verification_off_is_not_checked_on_save_but_can_be_checked_by_hand(
        app, make_node, run_jobs):
    asset_id = make_node("CT-01", 104, verify_enabled=False)
    with app.app_context():
        assert request_checks([asset_id], "save") == []
        assert len(request_checks([asset_id], "manual")) == 1
        db.session.commit()


def test_uptime_counts_successful_checks_per_window(app, make_node):
    asset_id = make_node("CT-01", 104)
    now = T0
    for hours, result in ((1, OK), (2, OK), (3, REFUSED), (4, OK),      # last 24 h: 3/4
                          (48, REFUSED), (72, REFUSED),                  # last 7 d: 3/6
                          (24 * 20, OK), (24 * 40, OK)):                 # last 30 d: 4/7
        feed(app, asset_id, result, now - timedelta(hours=hours))
    with app.app_context():
        assert uptime_percentages(asset_id, now) == {"24h": 75.0, "7d": 50.0, "30d": 57.14}


def test_node_summary_shows_recent_checks_newest_first_and_an_svg_chart(app, make_node):
    asset_id = make_node("CT-01", 104)
    for minutes in range(0, 25 * 5, 5):
        feed(app, asset_id, OK if minutes % 20 else REFUSED, T0 + timedelta(minutes=minutes))
    with time_machine.travel(T0 + timedelta(hours=2), tick=False), app.app_context():
        summary = node_summary(db.session.get(Asset, asset_id))
        assert len(summary.recent) == 20
        assert summary.recent[0].checked_at == T0 + timedelta(minutes=120)
        assert summary.last_check is summary.recent[0]
        svg = str(summary.chart_svg)
        assert svg.startswith("<svg") and svg.endswith("</svg>")
        assert "style=" not in svg and "<script" not in svg
        assert 'fill="#dc3545"' in svg and "<polyline" in svg
        assert "25 checks, 7 failed" in svg


def test_node_status_partial_renders_state_uptime_chart_and_verify_button(app, make_node,
                                                                        login_as, client):
    asset_id = make_node("CT-01", 104)
    feed(app, asset_id, REFUSED, T0)
    login_as("technician")
    with app.test_request_context():
        from flask import render_template_string
        from flask_login import login_user

        from core.auth.forms import ConfirmForm
        from core.auth.models import User

        login_user(db.session.execute(select(User)).scalar_one())
        asset = db.session.get(Asset, asset_id)
        html = render_template_string('{% include "inventory/_node_status.html" %}',
                                      summary=node_summary(asset), asset=asset,
                                      verify_form=ConfirmForm())
    assert 'data-node-state="degraded"' in html
    assert 'action="/assets/CT-01/verify"' in html and "Verify now" in html
    assert "Connection refused" in html and "<svg" in html
    assert "style=" not in html


def test_dashboard_shows_down_nodes_to_technicians_only(app, make_node, login_as, client, auth):
    asset_id = make_node("CT-01", 104, name="CT scanner Main")
    make_node("MR-01", 105)
    feed(app, asset_id, REFUSED, T0)
    feed(app, asset_id, REFUSED, T0 + timedelta(minutes=5))
    login_as("technician")
    page = client.get("/").get_data(as_text=True)
    panel = page[page.index("DICOM nodes"):]
    assert re.search(r'display-6 text-danger">1</div><div class="small text-muted">down', panel)
    assert re.search(r'>1</div><div class="small text-muted">not yet checked', panel)
    assert "CT scanner Main" in panel and "failing since" in panel
    auth.logout()
    login_as("requester")
    assert "DICOM nodes" not in client.get("/").get_data(as_text=True)


def test_verify_cli_prints_one_line_per_node_and_exits_1_on_failure(app, runner, verification_scp,
                                                                   closed_port, make_node):
    make_node("CT-01", verification_scp())
    make_node("US-01", closed_port)
    result = runner.invoke(args=["inventory", "verify"])
    assert result.exit_code == 1, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 2
    assert lines[0].startswith("CT-01") and " ok " in lines[0]
    assert lines[1].startswith("US-01") and "refused" in lines[1]
    with app.app_context():
        assert {e.object_id for e in events("node.verify")} == {"CT-01", "US-01"}
        assert {e.username for e in events("node.verify")} == {"cli"}


def test_verify_cli_json_for_chosen_assets_exits_0_when_all_ok(app, runner, verification_scp,
                                                              closed_port, make_node):
    port = verification_scp()
    make_node("CT-01", port)
    make_node("US-01", closed_port)
    result = runner.invoke(args=["inventory", "verify", "--asset", "CT-01", "--json"])
    assert result.exit_code == 0, result.output
    (row,) = json.loads(result.output)
    assert set(row) == {"asset_tag", "ae_title", "host", "port", "outcome", "latency_ms", "detail",
                        "state"}
    assert (row["asset_tag"], row["ae_title"], row["host"], row["port"], row["outcome"],
            row["state"]) == ("CT-01", "TESTSCP", "127.0.0.1", port, "ok", "up")


def test_verify_cli_json_gives_each_nodes_state_after_the_check(app, runner,
                                                               verification_scp, closed_port,
                                                               make_node):
    app.config["PACSDESK_DOWN_AFTER_FAILURES"] = 2
    make_node("CT-01", verification_scp())
    make_node("US-01", closed_port)
    first = runner.invoke(args=["inventory", "verify", "--json"])
    assert first.exit_code == 1
    assert {r["asset_tag"]: r["state"] for r in json.loads(first.output)} == \
        {"CT-01": "up", "US-01": "degraded"}
    second = runner.invoke(args=["inventory", "verify", "--json"])
    assert {r["asset_tag"]: (r["outcome"], r["state"]) for r in json.loads(second.output)} == \
        {"CT-01": ("ok", "up"), "US-01": ("refused", "down")}


def test_verify_cli_refuses_an_unknown_tag_or_a_non_node(app, runner, make_node):
    make_node("WS-01", 104, kind="workstation")
    unknown = runner.invoke(args=["inventory", "verify", "--asset", "NOPE"])
    assert unknown.exit_code == 2 and "no asset with tag 'NOPE'" in unknown.output
    workstation = runner.invoke(args=["inventory", "verify", "--asset", "WS-01"])
    assert workstation.exit_code == 2 and "WS-01 is not a DICOM node" in workstation.output


def test_verification_of_a_node_whose_host_name_does_not_resolve_is_dns_error(app, make_node,
                                                                              unresolvable):
    lookups = unresolvable("no-such-node.invalid")
    asset_id = make_node("CT-01", free_port(), host="no-such-node.invalid", ip_address="",
                         hostname="no-such-node.invalid")
    with app.app_context():
        check = verify_asset(db.session.get(Asset, asset_id), "manual")
        assert check.outcome == "dns_error"
        assert "no-such-node.invalid" in check.detail
    assert lookups == ["no-such-node.invalid"], "the name was looked up, by no DNS server"


def test_sweep_starts_the_nodes_slowest_last_time_first(app, verification_scp, closed_port,
                                                        make_node):
    app.config["PACSDESK_VERIFY_CONCURRENCY"] = 1
    quick = make_node("A-QUICK", verification_scp())
    slow = make_node("Z-SLOW", closed_port)
    feed(app, quick, OK, T0)
    feed(app, slow, EchoResult(Outcome.NO_RESPONSE, "no association answer", 1000.0), T0)
    with app.app_context():
        sweep()
        order = db.session.execute(
            select(Asset.asset_tag).join(NodeCheck, NodeCheck.asset_id == Asset.id)
            .where(NodeCheck.checked_at > T0).order_by(NodeCheck.id)).scalars().all()
        assert order == ["Z-SLOW", "A-QUICK"]


def test_a_fresh_app_registers_the_sweep_job_audit_actions_retention_class_and_panel(tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    script = (
        "from app import create_app\n"
        f"app = create_app({{'SQLALCHEMY_DATABASE_URI': 'sqlite://', 'SECRET_KEY': 'x', "
        f"'PACSDESK_INSTANCE_PATH': {str(tmp_path)!r}}})\n"
        "from core import audit_sink\n"
        "from core.jobs.registry import job_kinds\n"
        "from audit.retention.registry import record_classes\n"
        "from core.navigation import _navigation\n"
        "print(job_kinds(app)['inventory.sweep'].name,\n"
        "      sorted(a for a in audit_sink.actions(app) if a.startswith('node.')),\n"
        "      'verification_results' in record_classes(app),\n"
        "      any(p.template == 'inventory/_dashboard_nodes.html' for p in _navigation(app).panels))\n"
    )
    out = subprocess.run([sys.executable, "-c", script], cwd=Path(__file__).resolve().parents[3],
                         capture_output=True, text=True, timeout=60, check=True).stdout
    assert out.strip() == ("inventory.sweep ['node.checks', 'node.down', 'node.recovered', 'node.sweep', "
                           "'node.verify'] True True")


def test_two_checks_of_a_new_node_recorded_at_once_both_count(app, make_node):
    asset_id = make_node("CT-01", 104)
    record_at_once(app, asset_id, REFUSED)
    with app.app_context():
        state = db.session.get(NodeState, asset_id)
        assert (state.consecutive_failures, state.state) == (2, "down")


def test_tls_node_is_checked_by_host_name_against_the_configured_trust(app, verification_scp,
                                                                        self_signed_tls,
                                                                        make_node, monkeypatch):
    from inventory.verification import dicom

    port = verification_scp(ssl_context=self_signed_tls.server_context())
    asset_id = make_node("PACS-01", port, tls=True, hostname="localhost", ip_address="127.0.0.2")
    with app.app_context():
        untrusted = verify_asset(db.session.get(Asset, asset_id), "manual")
        assert untrusted.outcome == "tls_error" and "not trusted" in untrusted.detail
    monkeypatch.setenv("SSL_CERT_FILE", str(self_signed_tls.cert_path))
    dicom._system_trust.cache_clear()
    try:
        with app.app_context():
            trusted = verify_asset(db.session.get(Asset, asset_id), "manual")
            assert trusted.outcome == "ok", trusted.detail
    finally:
        dicom._system_trust.cache_clear()
