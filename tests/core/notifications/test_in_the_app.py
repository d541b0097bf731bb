"""The bell, the notifications page, settings and digests, SLA alerts, and the notices of other packages."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select

from audit.retention.holds import NewHold, place_hold, release_hold
from audit.trail.chain_verification import run_verification
from core.auth.models import User
from core.config import ConfigError, load_config
from core.extensions import db
from core.notifications.delivery import send_digests
from core.notifications.models import Delivery, EmailState, Notification, NotificationPreference
from core.timeutil import utcnow
from helpdesk.models import Ticket
from helpdesk.notifications import sla_alerts
from tests.audit.compliance_fixtures import tamper
from tests.core.notifications.conftest import body_text
from tests.helpers import fixture_event

__all__ = ["tamper"]


def test_the_bell_counts_unread_and_the_page_marks_them_read(client, switch_to, login, make_user,
                                                              file_ticket):
    tech = make_user("technician", "pacs.sam", email="sam@hospital.example")
    switch_to("requester", "dr.okafor")
    file_ticket(title="Viewer slow")
    file_ticket(title="Printer jammed")
    login(tech)
    home = client.get("/").data.decode()
    assert "Notifications, 2 unread" in home
    page = client.get("/notifications").data.decode()
    assert "New ticket: Viewer slow" in page and "New ticket: Printer jammed" in page
    assert "Mark all 2 read" in page
    with client.application.app_context():
        first, second = db.session.execute(select(Notification.id).where(
            Notification.user_id == tech.id).order_by(Notification.id)).scalars()
    opened = client.post(f"/notifications/{first}/open")
    assert opened.status_code == 302 and opened.headers["Location"] == "/tickets/PD-000001"
    assert "Notifications, 1 unread" in client.get("/").data.decode()
    client.post("/notifications/read-all")
    assert "Notifications, none unread" in client.get("/").data.decode()
    switch_to("technician", "pacs.noor")
    assert client.post(f"/notifications/{second}/read").status_code == 404


def test_settings_choose_per_kind_and_security_notices_cannot_be_turned_off(
        client, switch_to, app, make_user, file_ticket, login, outbox, notifications_of, run_jobs, delivered):
    compliance = switch_to("compliance", "privacy.garcia", email="garcia@hospital.example")
    page = client.get("/account/notifications").data.decode()
    assert "The audit trail failed its integrity check" in page and "cannot be turned off" in page
    assert "A new ticket in the queue" not in page  # not a compliance officer's notice
    client.post("/account/notifications", data={"kind-audit.chain_broken": "off"})
    assert "cannot be turned off" in client.get("/account/notifications").data.decode()
    requester = switch_to("requester", "dr.okafor", email="okafor@hospital.example")
    saved = client.post("/account/notifications", data={"kind-helpdesk.ticket_filed": "digest",
                                                          "kind-helpdesk.team_replied": "off"})
    assert saved.status_code == 302
    assert '<option value="digest" selected>' in client.get("/account/notifications").data.decode()
    _, number = file_ticket()
    assert outbox() == []
    [note] = notifications_of(requester.id)
    assert note.email is EmailState.DIGEST_PENDING
    with app.app_context():
        assert send_digests() == 1
    run_jobs(["mail.deliver"])
    [digest] = delivered()
    assert digest["To"] == "okafor@hospital.example" and "digest" in digest["Subject"]
    assert f"Ticket filed: Viewer freezes on reading room 2 ({number})" in body_text(digest)
    assert notifications_of(requester.id)[0].email is EmailState.DIGEST_SENT
    assert compliance.id


def test_a_choice_the_role_cannot_make_is_refused_naming_the_notification(app, make_user):
    from core.notifications.services import PreferenceError, set_preferences

    with app.test_request_context():
        user = db.session.get(User, make_user("compliance", "privacy.garcia").id)
        with pytest.raises(PreferenceError, match="cannot be turned off"):
            set_preferences(user, {"audit.chain_broken": Delivery.OFF})
        with pytest.raises(PreferenceError, match="no such notification for your role"):
            set_preferences(user, {"helpdesk.ticket_new": Delivery.OFF})
        with pytest.raises(PreferenceError, match="choose one of the listed options"):
            set_preferences(user, {"audit.legal_hold": "sometimes"})


def test_sla_warnings_and_breaches_are_told_once_each(app, make_user, switch_to, file_ticket, run_jobs,
                                                      notifications_of, delivered):
    tech = make_user("technician", "pacs.sam", email="sam@hospital.example")
    admin = make_user("admin", "root", email="root@hospital.example")
    switch_to("requester", "dr.okafor")
    file_ticket(title="CT 3 images missing")
    with app.app_context():
        ticket = db.session.get(Ticket, 1)
        ticket.assignee_id = tech.id
        ticket.sla_due_at = utcnow() + timedelta(minutes=20)
        ticket.response_due_at = ticket.sla_due_at
        fixture_event("ticket", ticket.number)
        db.session.commit()
        assert sla_alerts() == {"soon": 1, "breached": 0}
        assert sla_alerts() == {"soon": 1, "breached": 0}
        later = utcnow() + timedelta(minutes=25)
        assert sla_alerts(later) == {"soon": 0, "breached": 1}
        sla_alerts(later + timedelta(minutes=1))
    subjects = [n.subject for n in notifications_of(tech.id)]
    assert subjects.count("Due within 30 minutes: CT 3 images missing") == 1
    assert subjects.count("Service level missed: CT 3 images missing") == 1
    assert [n.subject for n in notifications_of(admin.id)] == ["Service level missed: CT 3 images missing"]
    run_jobs(["mail.deliver"])
    breach = [m for m in delivered() if m["To"] == "root@hospital.example"]
    assert len(breach) == 1 and "first response was due at" in body_text(breach[0])


def test_a_broken_chain_tells_admins_and_compliance_at_once_even_if_they_chose_a_digest(
        app, make_user, tamper, run_jobs, delivered, switch_to, client):
    admin = make_user("admin", "root", email="root@hospital.example")
    make_user("compliance", "privacy.garcia", email="garcia@hospital.example")
    make_user("technician", "pacs.sam", email="sam@hospital.example")
    with app.app_context():
        db.session.add(NotificationPreference(user_id=admin.id, kind="audit.chain_broken",
                                              delivery=Delivery.DIGEST))
        db.session.commit()
    tamper(1)
    with app.app_context():
        run = run_verification("test")
        db.session.commit()
        assert not run.ok
    run_jobs(["mail.deliver"])
    assert sorted(m["To"] for m in delivered()) == ["garcia@hospital.example", "root@hospital.example"]
    assert all("Audit trail integrity check failed" in m["Subject"] for m in delivered())
    assert admin.id


def test_legal_holds_are_told_to_compliance_officers(app, make_user, notifications_of):
    officer = make_user("compliance", "privacy.garcia")
    placer = make_user("compliance", "privacy.lee")
    with app.test_request_context():
        user = db.session.get(User, placer.id)
        hold = place_hold(NewHold(reason="Case 2026-17, Doe v. Hospital", kind="class",
                                  record_class="audit_events"), user)
        release_hold(hold.id, "Case settled", user)
        db.session.commit()
    subjects = [n.subject for n in notifications_of(officer.id)]
    assert subjects == ["Legal hold #1 placed", "Legal hold #1 released"]
    assert all("Doe" not in " ".join(n.paragraphs) for n in notifications_of(officer.id))


def test_the_requesters_home_shows_what_waits_on_them_first(client, switch_to, login, make_user, file_ticket,
                                                            app):
    tech = make_user("technician", "pacs.sam")
    requester = switch_to("requester", "dr.okafor")
    assert "Nothing waits for your answer." in client.get("/").data.decode()
    _, number = file_ticket(title="Dictation microphone dead")
    with app.app_context():
        ticket = db.session.get(Ticket, 1)
        category = ticket.category_id
    login(tech)
    client.post(f"/tickets/{number}/update", data={"assignee_id": str(tech.id), "status": "waiting",
                                                    "priority": "P3", "category_id": str(category)})
    login(requester)
    home = client.get("/").data.decode()
    assert home.index("Needs your action") < home.index("</main>")
    assert "Dictation microphone dead" in home and number in home
    main = home[home.index("<main"):]
    first_panel = main[main.index("<h2"):]
    assert first_panel[:first_panel.index("</h2>")].endswith("Needs your action")


def test_followers_of_a_merged_ticket_hear_replies_and_resolution_and_their_answers_reach_the_team(
        client, switch_to, login, make_user, file_ticket, app, notifications_of, run_jobs, delivered):
    tech = make_user("technician", "pacs.sam", email="sam@hospital.example")
    first = switch_to("requester", "dr.okafor", email="okafor@hospital.example")
    _, survivor = file_ticket(title="CT viewer crashes")
    second = switch_to("requester", "dr.lind", email="lind@hospital.example")
    _, duplicate = file_ticket(title="CT viewer crashed again")
    login(tech)
    with app.app_context():
        category = db.session.execute(select(Ticket.category_id)).scalars().first()
    client.post(f"/tickets/{survivor}/update", data={"assignee_id": str(tech.id), "status": "open",
                                                      "priority": "P3", "category_id": str(category)})
    merged = client.post(f"/tickets/{duplicate}/links", data={"kind": "merge", "other": survivor})
    assert merged.status_code == 302
    before = len(notifications_of(second.id))
    client.post(f"/tickets/{survivor}/reply", data={"body": "Fixed in the viewer update.", "then": "resolve"})
    told = [n.subject for n in notifications_of(second.id)[before:]]
    assert told == ["New reply from the PACS team: CT viewer crashes",
                    "Your ticket was resolved: CT viewer crashes"]
    assert [n.subject for n in notifications_of(first.id)][-2:] == told
    run_jobs(["mail.deliver"])
    to = [m["To"] for m in delivered() if "resolved" in m["Subject"]]
    assert sorted(to) == ["lind@hospital.example", "okafor@hospital.example"]
    login(second)
    heard = len(notifications_of(tech.id))
    client.post(f"/tickets/{survivor}/reopen")
    client.post(f"/tickets/{survivor}/reply", data={"body": "It crashed again this morning."})
    tech_told = [n.subject for n in notifications_of(tech.id)[heard:]]
    assert "The requester answered: CT viewer crashes" in tech_told


@pytest.mark.parametrize(("variable", "value", "words"), [
    ("PACSDESK_MAIL_URL", "ftp://pacs:hunter2@mail.hospital.example", "must start with smtp:// or smtps://"),
    ("PACSDESK_MAIL_URL", "smtp://pacs:hunter2@mail.hospital.example:99999", "invalid port"),
    ("PACSDESK_MAIL_IMAP_URL", "imaps://pacs:hunter2@mail.hospital.example/INBOX?x=1", "unknown option"),
])
def test_a_bad_mail_setting_stops_start_up_naming_it_without_the_password(tmp_path, variable, value, words):
    with pytest.raises(ConfigError) as caught:
        load_config({"PACSDESK_INSTANCE_PATH": str(tmp_path), variable: value,
                     "PACSDESK_MAIL_FROM": "pacsdesk@hospital.example",
                     "PACSDESK_BASE_URL": "https://pacsdesk.hospital.example"})
    assert str(caught.value).startswith(f"{variable}:") and words in str(caught.value)
    assert "hunter2" not in str(caught.value)


def test_mail_on_without_a_sender_is_refused_naming_it(tmp_path):
    with pytest.raises(ConfigError, match=r"^PACSDESK_MAIL_FROM: is required"):
        load_config({"PACSDESK_INSTANCE_PATH": str(tmp_path), "PACSDESK_MAIL_URL": "smtp://u:p@mail.example"})


def test_mail_test_command_prints_the_servers_answer(runner, mail_server):
    result = runner.invoke(args=["mail", "test", "it@hospital.example"])
    assert result.exit_code == 0, result.output
    assert "Server answered: sent: 250 2.0.0 Ok: queued as TEST42" in result.output
    assert [m.rcpt_tos for m in mail_server.messages] == [("it@hospital.example",)]
    bad = runner.invoke(args=["mail", "test", "not an address"])
    assert bad.exit_code != 0 and "not an e-mail address" in bad.output


@pytest.mark.smtp(rcpt_replies={"nobody@hospital.example": "550 5.1.1 No such user"})
def test_mail_test_command_exits_1_when_the_server_refuses(runner, mail_server):
    result = runner.invoke(args=["mail", "test", "nobody@hospital.example"])
    assert result.exit_code == 1
    assert "permanent at recipients: 550 5.1.1 No such user" in result.output
