"""Deliver the outbox: the ``mail.deliver`` job, the daily digest, and resending by an administrator.

**Writing the outbox.** A notification to be e-mailed at once waits (``EmailState.WAITING``)
until the job writes its message (``services.outbox_waiting``, first thing in each run), so
the request that caused it pays for one statement, not for the messages.

**At most once.** A message is marked ``sending`` in a committed transaction of its own
before the SMTP conversation starts, and only ``pending`` messages are ever picked. If the
worker dies during the conversation the message stays ``sending``: nobody knows whether the
server took it, so it is never sent again by itself. Once it has been ``sending`` for longer
than any conversation can last (``stale_after``), it becomes ``interrupted``: the outbox page
and the recipient's admin page show it, and an administrator may resend it (the same
Message-ID, so a mail client that got both shows one). A duplicate notice is worse for
nobody than a silent loss, but sending twice on every restart would train people to ignore
them; we chose the visible at-most-once.

**Failures.** A temporary failure (a 4xx answer, a refused or timed-out connection) puts the
message back with a doubling delay (1, 2, 4... minutes, at most an hour) until
``MAX_ATTEMPTS``; a failure of the server or the settings rather than of this message
(connect, TLS, login) stops the run and retries the job, so one dead server does not use up
every message's attempts. A permanent failure of one message (5xx at RCPT or DATA) marks it
``failed`` with the server's answer, and the job ends failed naming it, on the Jobs page.
Every sent or failed message is an audit event (who, which ticket, which kind; never a body).
"""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from core import audit_sink
from core.auth.models import User
from core.database import outside_transaction, rowcount, snapshot_connection
from core.extensions import db
from core.jobs.models import ACTIVE, Job, JobStatus
from core.jobs.registry import JobContext, job_kinds
from core.jobs.worker import Fail, Retry
from core.mail import smtp
from core.mail.compose import Notice, UnsafeMessage, compose
from core.mail.settings import MailSettings
from core.notifications.models import EmailState, Notification, OutboxMessage, OutboxStatus
from core.notifications.services import (
    KICK,
    MAILED_TO,
    mail_settings,
    notice_from_dict,
    outbox_waiting,
    queue_email,
)
from core.timeutil import utcnow

DELIVER_JOB = "mail.deliver"
DIGEST_JOB = "mail.digest"
DIGEST_KIND = "digest"
MAX_ATTEMPTS = 8
BATCH = 200
DIGEST_LINES = 40

# Audit actions recorded here (registered by core's init_app).
AUDIT_ACTIONS = {
    "mail.sent": "E-mail sent",
    "mail.failed": "E-mail could not be delivered",
    "mail.interrupted": "E-mail delivery interrupted; not sent again by itself",
    "mail.resent": "E-mail queued again by an administrator",
}


class OutboxError(ValueError):
    """An outbox action was refused; the message says why."""


def retry_delay(attempts: int) -> timedelta:
    """Wait before the next attempt: 1, 2, 4... minutes, at most an hour."""
    return timedelta(minutes=min(2 ** max(attempts - 1, 0), 60))


def stale_after(settings: MailSettings) -> timedelta:
    """How long a message may stay ``sending`` before it is taken as interrupted."""
    timeout = settings.smtp.timeout if settings.smtp else 30.0
    return timedelta(seconds=timeout * 10 + 60)


# ---------------------------------------------------------------- queueing the job after a commit


def _insert_job(connection: Any, dedup_key: str) -> int:
    """Queue ``mail.deliver`` under ``dedup_key`` unless one is queued or running; returns rows added."""
    kind = job_kinds()[DELIVER_JOB]
    now = utcnow()
    insert = pg_insert if connection.dialect.name == "postgresql" else sqlite_insert
    values = {"kind": DELIVER_JOB, "params": {}, "status": JobStatus.QUEUED, "priority": kind.priority,
              "dedup_key": dedup_key, "title": kind.title, "created_at": now, "run_after": now,
              "attempts": 0, "max_attempts": kind.max_attempts, "cancel_requested": False,
              "progress": 0, "stage": ""}
    # RETURNING tells on both databases (PostgreSQL's driver reports no row count for this insert).
    added = connection.execute(insert(Job).values(**values).on_conflict_do_nothing().returning(Job.id))
    return len(added.all())


def kick_delivery() -> None:
    """Queue a delivery now, in a short transaction of its own (a second one if one is already running).

    A delivery still queued will read the outbox after this commit: then a read, which takes no
    write lock, is all it costs.
    """
    with snapshot_connection() as reader:
        waiting = reader.execute(select(Job.id).where(
            Job.dedup_key == DELIVER_JOB, Job.status == JobStatus.QUEUED)).first()
    if waiting is not None:
        return
    with db.engine.begin() as connection:
        if _insert_job(connection, DELIVER_JOB):
            return
        running = connection.execute(select(Job.status).where(
            Job.dedup_key == DELIVER_JOB, Job.status.in_(ACTIVE))).scalar()
        if running == JobStatus.RUNNING:
            # The running one may have looked at the outbox before this commit.
            _insert_job(connection, f"{DELIVER_JOB}:next")


# The queued delivery, share-locked unless another transaction holds it (built once: every filing asks).
QUEUED_DELIVERY = select(Job.id).where(Job.dedup_key == DELIVER_JOB, Job.status == JobStatus.QUEUED) \
    .with_for_update(read=True, skip_locked=True)


def before_commit(session: Session) -> None:
    """Queue the delivery in the transaction that asks for e-mail, when that can be done safely.

    A queued delivery that this transaction holds a share lock on (on SQLite: any queued one,
    as this transaction holds the write lock a worker needs to claim it) cannot start before
    the commit, so it will see these notifications; with none queued, one is inserted here. Only
    when a delivery runs, or another transaction locks the queued one, is the question left
    for after the commit (``kick_delivery``): never a wait here, so never a deadlock.
    """
    if not session.info.get(KICK) or DELIVER_JOB not in job_kinds():
        return
    connection = session.connection()
    queued = connection.execute(QUEUED_DELIVERY).first()
    if queued is not None or _insert_job(connection, DELIVER_JOB):
        session.info.pop(KICK, None)


def after_commit(session: Session) -> None:
    """Start delivering what the committed transaction asked for, if it could not queue that itself."""
    session.info.pop(MAILED_TO, None)
    if session.info.pop(KICK, False) and DELIVER_JOB in job_kinds():
        kick_delivery()


def after_rollback(session: Session) -> None:
    """Nothing was queued by a transaction that rolled back."""
    session.info.pop(KICK, None)
    session.info.pop(MAILED_TO, None)


# ---------------------------------------------------------------- delivering


def _write(statement: Any) -> int:
    """Run one update in a committed transaction of its own; returns the rows it touched."""
    rows = rowcount(db.session.execute(statement.execution_options(synchronize_session=False)))
    db.session.commit()
    return rows


def mark_interrupted(now: datetime | None = None) -> int:
    """Messages left ``sending`` by a dead worker become ``interrupted``, never re-sent by themselves."""
    now = now or utcnow()
    cutoff = now - stale_after(mail_settings())
    stuck = list(db.session.execute(select(OutboxMessage).where(
        OutboxMessage.status == OutboxStatus.SENDING, OutboxMessage.sending_since < cutoff)).scalars())
    for message in stuck:
        message.status = OutboxStatus.INTERRUPTED
        message.last_result = ("The worker sending it stopped during the SMTP conversation; it may or "
                               "may not have arrived. Resend it from the outbox if it must go.")
        _audit("mail.interrupted", message, outcome="failure")
    db.session.commit()
    return len(stuck)


def _claim(message_id: int, now: datetime) -> bool:
    """Mark one due pending message ``sending`` and commit, before any byte goes out."""
    return _write(update(OutboxMessage).where(
        OutboxMessage.id == message_id, OutboxMessage.status == OutboxStatus.PENDING,
        OutboxMessage.next_attempt_at <= now).values(
        status=OutboxStatus.SENDING, sending_since=now, attempts=OutboxMessage.attempts + 1)) == 1


def _audit(action: str, message: OutboxMessage, *, outcome: str = "success", reason: str = "") -> None:
    """Record a sent, failed or interrupted message: who, which ticket, which kind; never the body."""
    user = db.session.get(User, message.user_id) if message.user_id else None
    details: dict[str, Any] = {"outbox_id": message.id, "template": message.kind,
                               "to_user": user.username if user else None,
                               "message_id": message.message_id, "attempts": message.attempts}
    if reason:
        details["reason"] = reason[:300]
    audit_sink.record(action, object_type="ticket" if message.ticket else "mail",
                      object_id=message.ticket or message.id, outcome=outcome, details=details,
                      user=None, client_address=None)


def _record(message_id: int, result: smtp.SendResult, now: datetime) -> OutboxStatus:
    """Keep what the server said and decide what becomes of the message (commits)."""
    message = db.session.get(OutboxMessage, message_id)
    assert message is not None
    message.last_result = result.describe()[:2000]
    message.sending_since = None
    if result.status is smtp.SendStatus.SENT:
        message.status, message.sent_at = OutboxStatus.SENT, now
        _audit("mail.sent", message)
    elif result.status is smtp.SendStatus.PERMANENT or message.attempts >= MAX_ATTEMPTS:
        message.status = OutboxStatus.FAILED
        _audit("mail.failed", message, outcome="failure", reason=result.describe())
    else:
        message.status = OutboxStatus.PENDING
        message.next_attempt_at = now + retry_delay(message.attempts)
    db.session.commit()
    return message.status


def _put_back(message_id: int, result: smtp.SendResult) -> None:
    """A failure of the server or settings: the message waits, its attempt not counted (commits)."""
    _write(update(OutboxMessage).where(OutboxMessage.id == message_id).values(
        status=OutboxStatus.PENDING, sending_since=None, attempts=OutboxMessage.attempts - 1,
        last_result=result.describe()[:2000]))


def _due(now: datetime) -> list[int]:
    """Ids of pending messages whose time has come, oldest first."""
    return list(db.session.execute(select(OutboxMessage.id).where(
        OutboxMessage.status == OutboxStatus.PENDING, OutboxMessage.next_attempt_at <= now)
        .order_by(OutboxMessage.id).limit(BATCH)).scalars())


def deliver_due(settings: MailSettings, now_fn: Any = utcnow) -> dict[str, Any]:
    """Send every due message, one recipient each, with no transaction open while the server talks."""
    if not settings.enabled:
        # What waits for e-mail would otherwise go out when e-mail is back, days late.
        dropped = _write(update(Notification).where(Notification.email == EmailState.WAITING)
                         .values(email=EmailState.NONE))
        return {"skipped": "e-mail is off (PACSDESK_MAIL_URL is not set)", "not_emailed": dropped}
    assert settings.smtp is not None and settings.identity is not None
    interrupted = mark_interrupted(now_fn())
    outbox_waiting()
    sent, retrying, failed = 0, 0, []
    while ids := _due(now_fn()):
        db.session.commit()
        progressed = False
        for message_id in ids:
            if not _claim(message_id, now_fn()):
                continue  # another worker took it
            progressed = True
            message = db.session.get(OutboxMessage, message_id)
            assert message is not None
            try:
                email = compose(settings.identity, message.to_address, notice_from_dict(message.notice),
                                message_id=message.message_id)
            except UnsafeMessage as refused:
                result = smtp.SendResult(smtp.SendStatus.PERMANENT, smtp.Stage.DATA, None, str(refused))
            else:
                db.session.commit()
                with outside_transaction():
                    result = smtp.send(settings.smtp, email)
            if result.status is not smtp.SendStatus.SENT and not result.message_specific:
                _put_back(message_id, result)
                problem = f"The mail server or its settings failed: {result.describe()}"
                if result.retry:
                    raise Retry(problem)
                raise Fail(problem)
            status = _record(message_id, result, now_fn())
            if status is OutboxStatus.SENT:
                sent += 1
            elif status is OutboxStatus.FAILED:
                failed.append(f"message {message_id} to {message.to_address}: {result.describe()}")
            else:
                retrying += 1
        if not progressed:
            break
    summary: dict[str, Any] = {"sent": sent, "retrying": retrying, "failed": len(failed),
                               "interrupted": interrupted}
    if failed:
        raise Fail(f"{len(failed)} message(s) could not be delivered (sent {sent}): " + "; ".join(failed[:5]))
    return summary


def deliver_job(ctx: JobContext) -> dict[str, Any]:
    """The ``mail.deliver`` job: send what the outbox holds (commits per message)."""
    return deliver_due(mail_settings())


# ---------------------------------------------------------------- digest


def digest_notice(notes: list[Notification]) -> Notice:
    """One daily message listing the subjects of the notifications that waited for it."""
    lines = [f"• {note.subject}" + (f" ({note.ticket})" if note.ticket and note.ticket not in note.subject
                                    else "") for note in notes[:DIGEST_LINES]]
    more = len(notes) - len(lines)
    paragraphs = (f"{len(notes)} notification(s) since your last digest:", "\n".join(lines),
                  *([f"…and {more} more."] if more > 0 else ()))
    return Notice(subject=f"Your PACS Desk digest: {len(notes)} notification(s)", paragraphs=paragraphs,
                  link_path="/notifications", link_label="Open your notifications",
                  reason="You chose a daily digest for these notifications under Notification settings.")


def send_digests() -> int:
    """Queue one digest per person whose notifications wait for it; returns how many (commits)."""
    pending = list(db.session.execute(select(Notification).where(
        Notification.email == EmailState.DIGEST_PENDING)
        .order_by(Notification.user_id, Notification.id)).scalars())
    by_user: dict[int, list[Notification]] = defaultdict(list)
    for note in pending:
        by_user[note.user_id].append(note)
    queued = 0
    enabled = mail_settings().enabled
    for user_id, notes in by_user.items():
        user = db.session.get(User, user_id)
        if enabled and user is not None and not user.is_disabled and user.email:
            queue_email(user, user.email, DIGEST_KIND, digest_notice(notes))
            queued += 1
        mailed = enabled and user is not None and bool(user.email)
        for note in notes:
            note.email = EmailState.DIGEST_SENT if mailed else EmailState.NONE
    db.session.commit()
    return queued


def digest_job(ctx: JobContext) -> dict[str, Any]:
    """The daily ``mail.digest`` job (commits)."""
    return {"digests": send_digests()}


# ---------------------------------------------------------------- administrators


def resend(message_id: int) -> OutboxMessage:
    """Queue a failed or interrupted message again with the same Message-ID (audited; flushes)."""
    message = db.session.get(OutboxMessage, message_id)
    if message is None:
        raise OutboxError("There is no such message.")
    if message.status not in (OutboxStatus.FAILED, OutboxStatus.INTERRUPTED):
        raise OutboxError(f"Message #{message.id} is {message.status.label.lower()}: only failed or "
                          "interrupted messages can be sent again.")
    previous = message.status
    message.status, message.attempts, message.next_attempt_at = OutboxStatus.PENDING, 0, utcnow()
    db.session.flush()
    user = db.session.get(User, message.user_id) if message.user_id else None
    audit_sink.record("mail.resent", object_type="ticket" if message.ticket else "mail",
                      object_id=message.ticket or message.id,
                      details={"outbox_id": message.id, "template": message.kind, "was": previous.value,
                               "to_user": user.username if user else None})
    db.session.info[KICK] = True
    return message


def problems_for(user_id: int, limit: int = 10) -> list[OutboxMessage]:
    """A person's latest failed or interrupted messages (their admin page shows them)."""
    return list(db.session.execute(select(OutboxMessage).where(
        OutboxMessage.user_id == user_id,
        OutboxMessage.status.in_([OutboxStatus.FAILED, OutboxStatus.INTERRUPTED]))
        .order_by(OutboxMessage.id.desc()).limit(limit)).scalars())
