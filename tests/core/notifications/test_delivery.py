"""Delivery as a job: retries with back-off, permanent failures shown, at most once after a worker dies."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pytest
from sqlalchemy import select, update

from core.auth.models import User
from core.auth.services import disable_user
from core.config import load_config
from core.extensions import db
from core.jobs.models import Job, JobStatus
from core.jobs.worker import claim
from core.mail.compose import Notice
from core.notifications import delivery, notify
from core.notifications.models import EmailState, Notification, OutboxMessage, OutboxStatus
from core.notifications.services import outbox_waiting, queue_email
from core.timeutil import utcnow
from tests.core.notifications.conftest import mail_settings
from tests.helpers import free_port

NOTICE = Notice(subject="Test notice", paragraphs=("Something happened.",), link_path="/notifications")


@pytest.fixture
def queue(app):
    """Queue one message to ``address`` for ``user`` (committed); returns its outbox id."""

    def add(user: User | None, address: str) -> int:
        with app.app_context():
            owner = db.session.get(User, user.id) if user else None
            message = queue_email(owner, address, "helpdesk.ticket_filed", NOTICE)
            db.session.commit()
            return message.id

    return add


def row(app, message_id: int) -> OutboxMessage:
    """One outbox row, detached."""
    with app.app_context():
        found = db.session.get(OutboxMessage, message_id)
        assert found is not None
        db.session.expunge(found)
        return found


def deliveries(app) -> list[Job]:
    """The delivery jobs, oldest first, detached."""
    with app.app_context():
        jobs = list(db.session.execute(
            select(Job).where(Job.kind == "mail.deliver").order_by(Job.id)).scalars())
        for job in jobs:
            db.session.expunge(job)
        return jobs


def test_a_commit_that_fills_the_outbox_queues_one_delivery_job(app, queue, make_user):
    user = make_user("requester", "ann", email="a@hospital.example")
    queue(user, "a@hospital.example")
    queue(user, "a@hospital.example")
    assert [(j.kind, j.status, j.dedup_key) for j in deliveries(app)] == [
        ("mail.deliver", JobStatus.QUEUED, "mail.deliver")]


def test_a_commit_while_a_delivery_runs_queues_the_next_one(app, queue):
    queue(None, "first@hospital.example")
    with app.app_context():
        db.session.execute(update(Job).where(Job.kind == "mail.deliver").values(status=JobStatus.RUNNING))
        db.session.commit()
    queue(None, "second@hospital.example")
    queue(None, "third@hospital.example")
    assert [(j.status, j.dedup_key) for j in deliveries(app)] == [
        (JobStatus.RUNNING, "mail.deliver"), (JobStatus.QUEUED, "mail.deliver:next")]


@pytest.mark.postgres
def test_the_queued_delivery_cannot_start_before_the_commit_that_fills_the_outbox(app, queue):
    queue(None, "first@hospital.example")
    with app.app_context():
        queue_email(None, "second@hospital.example", "helpdesk.ticket_filed", NOTICE)
        db.session.flush()
        delivery.before_commit(db.session)  # what the commit does first: share-locks the queued job
        assert claim(app, "worker-1", ["mail.deliver"]) is None  # the worker passes it by, not waits
        db.session.commit()
    started = claim(app, "worker-1", ["mail.deliver"])
    assert started is not None
    with app.app_context():
        pending = db.session.execute(select(OutboxMessage.to_address).where(
            OutboxMessage.status == OutboxStatus.PENDING)).scalars().all()
    assert sorted(pending) == ["first@hospital.example", "second@hospital.example"]
    assert len(deliveries(app)) == 1


@pytest.mark.smtp(rcpt_replies={"busy@hospital.example": "451 4.3.0 Mailbox busy, try later"})
def test_a_temporary_refusal_is_retried_later_with_doubling_waits(app, queue, run_jobs, mail_server):
    first = queue(None, "busy@hospital.example")
    run_jobs(["mail.deliver"])
    message = row(app, first)
    assert message.status is OutboxStatus.PENDING and message.attempts == 1
    assert "451" in (message.last_result or "")
    assert timedelta(seconds=50) < message.next_attempt_at - utcnow() <= timedelta(minutes=1)
    with app.app_context():
        db.session.execute(update(OutboxMessage).values(next_attempt_at=utcnow()))
        db.session.commit()
        delivery.deliver_due(app.config["PACSDESK_MAIL"])
    message = row(app, first)
    assert message.attempts == 2
    assert timedelta(seconds=110) < message.next_attempt_at - utcnow() <= timedelta(minutes=2)
    assert mail_server.messages == []
    assert delivery.retry_delay(3) == timedelta(minutes=4)
    assert delivery.retry_delay(7) == timedelta(minutes=60)


@pytest.mark.smtp(rcpt_replies={"gone@hospital.example": "550 5.1.1 No such user"})
def test_a_permanent_refusal_fails_the_message_and_shows_on_the_jobs_and_user_pages(
        app, client, queue, run_jobs, mail_server, make_user, auth):
    gone = make_user("requester", "gone", email="gone@hospital.example")
    fine = make_user("requester", "fine", email="fine@hospital.example")
    bad = queue(gone, "gone@hospital.example")
    good = queue(fine, "fine@hospital.example")
    run_jobs(["mail.deliver"])
    failed = row(app, bad)
    assert failed.status is OutboxStatus.FAILED and "550 5.1.1 No such user" in (failed.last_result or "")
    assert row(app, good).status is OutboxStatus.SENT
    assert [m.rcpt_tos for m in mail_server.messages] == [("fine@hospital.example",)]
    [job] = deliveries(app)
    assert job.status is JobStatus.FAILED and "550 5.1.1 No such user" in (job.error or "")
    admin = make_user("admin", "root")
    auth.login(admin.username)
    assert "550 5.1.1 No such user" in client.get("/admin/jobs?status=failed").data.decode()
    user_page = client.get(f"/admin/users/{gone.id}").data.decode()
    assert "E-mail that did not reach gone" in user_page and "550 5.1.1" in user_page
    assert "did not reach" not in client.get(f"/admin/users/{fine.id}").data.decode()


def test_a_refused_connection_keeps_the_message_and_retries_the_job(app, queue, run_jobs, mail_server):
    closed = mail_settings(mail_server, port=free_port())
    app.config["PACSDESK_MAIL"] = load_config(closed, {"PACSDESK_INSTANCE_PATH": app.instance_path,
                                                       "SECRET_KEY": "x"})["PACSDESK_MAIL"]
    first = queue(None, "a@hospital.example")
    run_jobs(["mail.deliver"])
    message = row(app, first)
    assert message.status is OutboxStatus.PENDING and message.attempts == 0
    assert "connection refused" in (message.last_result or "")
    [job] = deliveries(app)
    assert job.status is JobStatus.QUEUED and "connection refused" in (job.error or "")


def test_a_message_left_sending_by_a_dead_worker_is_never_sent_again_by_itself(
        app, client, queue, run_jobs, mail_server, make_user, auth):
    user = make_user("requester", "ann", email="a@hospital.example")
    first = queue(user, "a@hospital.example")
    with app.app_context():
        # The worker marked it sending and committed, then died during the SMTP conversation.
        assert delivery._claim(first, utcnow())
    run_jobs(["mail.deliver"])
    assert row(app, first).status is OutboxStatus.SENDING and mail_server.messages == []
    with app.app_context():
        later = utcnow() + delivery.stale_after(app.config["PACSDESK_MAIL"]) + timedelta(seconds=1)
        delivery.deliver_due(app.config["PACSDESK_MAIL"], now_fn=lambda: later)
    interrupted = row(app, first)
    assert interrupted.status is OutboxStatus.INTERRUPTED and mail_server.messages == []
    admin = make_user("admin", "root")
    auth.login(admin.username)
    outbox_page = client.get("/admin/mail").data.decode()
    assert "Interrupted: not known to be sent" in outbox_page
    assert client.post(f"/admin/mail/{first}/resend").status_code == 302
    run_jobs(["mail.deliver"])
    assert row(app, first).status is OutboxStatus.SENT
    assert len(mail_server.messages) == 1
    sent = mail_server.messages[0].content.decode()
    assert interrupted.message_id in sent
    assert client.post(f"/admin/mail/{first}/resend").status_code == 302
    assert "only failed or interrupted" in client.get("/admin/mail").data.decode()


def test_two_deliveries_at_once_send_each_message_once(app, queue, mail_server):
    ids = [queue(None, f"p{n}@hospital.example") for n in range(5)]
    settings = app.config["PACSDESK_MAIL"]
    with app.app_context():
        for message_id in ids[:2]:
            assert delivery._claim(message_id, utcnow())  # another worker holds these two
        delivery.deliver_due(settings)
        delivery.deliver_due(settings)
    received = sorted(m.rcpt_tos[0] for m in mail_server.messages)
    assert received == [f"p{n}@hospital.example" for n in (2, 3, 4)]


@pytest.mark.mail_off
def test_with_mail_off_the_delivery_job_sends_nothing_and_what_waited_is_not_e_mailed_later(
        app, run_jobs, queue_job, make_user, outbox, notifications_of):
    tech = make_user("technician", "pacs.sam", email="sam@hospital.example")
    with app.app_context():
        notify("inventory.node_down", [db.session.get(User, tech.id)],
               Notice(subject="Node CT-1 is down", paragraphs=("It does not answer C-ECHO.",)))
        db.session.commit()  # e-mail was on when this was asked for, and turned off before the job ran:
        db.session.execute(update(Notification).values(email=EmailState.WAITING))
        db.session.commit()
    queue_job("mail.deliver")
    [(_, status)] = run_jobs(["mail.deliver"])
    assert status is JobStatus.DONE
    assert deliveries(app)[0].result == {"skipped": "e-mail is off (PACSDESK_MAIL_URL is not set)",
                                         "not_emailed": 1}
    assert [n.email for n in notifications_of(tech.id)] == [EmailState.NONE]
    assert outbox() == []


def test_filing_only_asks_for_e_mail_and_the_job_writes_and_sends_it(
        app, switch_to, make_user, file_ticket, outbox, notifications_of, run_jobs, delivered):
    tech = make_user("technician", "pacs.sam", email="sam@hospital.example")
    requester = switch_to("requester", "dr.okafor", email="okafor@hospital.example")
    _, number = file_ticket()
    assert outbox() == []  # the request wrote no message: it left that to the job
    assert [n.email for n in notifications_of(requester.id) + notifications_of(tech.id)] == [
        EmailState.WAITING, EmailState.WAITING]
    run_jobs(["mail.deliver"])
    assert sorted((m.to_address, m.ticket, m.status) for m in outbox()) == [
        ("okafor@hospital.example", number, OutboxStatus.SENT),
        ("sam@hospital.example", number, OutboxStatus.SENT)]
    assert [n.email for n in notifications_of(requester.id) + notifications_of(tech.id)] == [
        EmailState.QUEUED, EmailState.QUEUED]
    assert sorted(m["To"] for m in delivered()) == ["okafor@hospital.example", "sam@hospital.example"]


def test_someone_disabled_before_the_job_runs_gets_no_e_mail(
        app, switch_to, make_user, file_ticket, outbox, notifications_of, run_jobs, delivered):
    tech = make_user("technician", "pacs.sam", email="sam@hospital.example")
    requester = switch_to("requester", "dr.okafor", email="okafor@hospital.example")
    file_ticket()
    with app.app_context():
        disable_user(db.session.get(User, tech.id))
        db.session.commit()
    run_jobs(["mail.deliver"])
    assert [m.to_address for m in outbox()] == ["okafor@hospital.example"]
    assert [m["To"] for m in delivered()] == ["okafor@hospital.example"]
    assert [n.email for n in notifications_of(tech.id)] == [EmailState.NONE]
    assert [n.email for n in notifications_of(requester.id)] == [EmailState.QUEUED]


def test_two_workers_writing_the_outbox_at_once_write_each_message_once(app, make_user):
    people = [make_user("technician", f"tech{n}", email=f"tech{n}@hospital.example") for n in range(4)]
    with app.app_context():
        for n in range(30):
            notify("inventory.node_down", [db.session.get(User, p.id) for p in people],
                   Notice(subject=f"Node {n} is down", paragraphs=("It does not answer C-ECHO.",)))
        db.session.commit()
    start = threading.Barrier(2)

    def take() -> int:
        with app.app_context():
            start.wait()
            return outbox_waiting(batch=7)

    with ThreadPoolExecutor(2) as pool:
        written = [future.result() for future in [pool.submit(take), pool.submit(take)]]
    with app.app_context():
        carried = db.session.execute(select(OutboxMessage.notification_id)).scalars().all()
        left = db.session.execute(select(Notification.id).where(
            Notification.email != EmailState.QUEUED)).scalars().all()
    assert sum(written) == 120 and len(carried) == 120 and len(set(carried)) == 120
    assert left == []
