"""``notify``: tell people something in the app and, as they chose, by e-mail; preferences; read marks.

``notify`` runs in the caller's transaction: the notification and the change that caused it
commit or roll back together, so a rolled-back change tells nobody. A notification to be
e-mailed at once is marked ``waiting``, and the ``mail.deliver`` job (queued in the same
commit, see ``delivery``) writes its outbox message and sends it with no request waiting:
filing a ticket with e-mail on costs one more statement than with e-mail off.

No patient data reaches a message: the caller builds a ``core.mail.compose.Notice`` from
words PACS Desk writes (ticket number, title after ``phi.safe_title``, status, a link); the
job checks each message again with ``compose`` before it enters the outbox, and one that
looks like it names a patient goes out without its details (``_mailable``).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import replace
from functools import cache

from flask import current_app
from sqlalchemy import Select, bindparam, func, insert, select, update

from core import audit_sink
from core.auth.models import Role, User
from core.database import rowcount
from core.extensions import db
from core.mail.compose import Notice, UnsafeMessage, check_address, check_notice, new_message_id
from core.mail.settings import MailSettings
from core.notifications.models import (
    Delivery,
    EmailState,
    Notification,
    NotificationPreference,
    OutboxMessage,
    OutboxStatus,
)
from core.notifications.registry import NotificationKind, get_kind, notification_kinds
from core.timeutil import utcnow

# Audit actions recorded here (registered by core's init_app).
AUDIT_ACTIONS = {
    "notifications.preferences": "Notification settings changed",
}

KICK = "pacsdesk_mail_kick"
MAILED_TO = "pacsdesk_mail_to"  # session.info: (user id, kind, ticket) -> address, this transaction
log = logging.getLogger("pacsdesk.notifications")


class PreferenceError(ValueError):
    """A notification choice was refused; the message names the kind."""


def mail_settings() -> MailSettings:
    """The app's mail settings."""
    return current_app.config["PACSDESK_MAIL"]


def users_with_roles(*roles: Role) -> list[User]:
    """Active accounts holding one of ``roles``, by username."""
    return list(db.session.execute(
        select(User).where(User.role.in_([r.value for r in roles]), User.is_disabled.is_(False))
        .order_by(User.username)).scalars())


def delivery_for(user: User, kind: NotificationKind) -> Delivery:
    """What ``user`` chose for ``kind`` (its default when nothing; always at once when it cannot be off)."""
    if not kind.optional:
        return Delivery.IMMEDIATE
    chosen = db.session.execute(select(NotificationPreference.delivery).where(
        NotificationPreference.user_id == user.id, NotificationPreference.kind == kind.name)).scalar()
    return chosen or kind.default


def queue_email(user: User | None, address: str, kind: str, notice: Notice,
                notification: Notification | None = None, *, checked: bool = False) -> OutboxMessage:
    """Add one outgoing message to the outbox (the caller flushes); delivery starts after the commit.

    Unless ``checked`` (``notify`` checked the notice once for all its recipients, and stored
    addresses were checked when saved), the address and the notice are checked now, in the
    transaction, rather than at delivery.
    """
    identity = mail_settings().identity
    if identity is None:
        raise RuntimeError("queue_email: e-mail is off (PACSDESK_MAIL_URL is not set)")
    if not checked:
        check_address(address)
        check_notice(identity, notice)
    values = _outbox_values(user.id if user else None, address, kind, notice, identity.domain)
    message = OutboxMessage(notification=notification, **values)
    db.session.add(message)
    db.session.info[KICK] = True
    return message


def _outbox_values(user_id: int | None, address: str, kind: str, notice: Notice, domain: str) -> dict:
    """The columns of one pending outbox message (its notification aside)."""
    now = utcnow()
    return {"user_id": user_id, "kind": kind, "to_address": address,
            "message_id": new_message_id(domain, notice.ticket),
            "ticket": notice.ticket.upper() if notice.ticket else None, "subject": notice.subject[:300],
            "notice": notice_to_dict(notice), "status": OutboxStatus.PENDING, "attempts": 0,
            "created_at": now, "next_attempt_at": now}


def notice_to_dict(notice: Notice) -> dict:
    """A notice as stored in the outbox."""
    return {"subject": notice.subject, "paragraphs": list(notice.paragraphs), "link_path": notice.link_path,
            "link_label": notice.link_label, "ticket": notice.ticket, "reason": notice.reason}


def notice_from_dict(values: Mapping) -> Notice:
    """A notice read back from the outbox."""
    return Notice(**{**values, "paragraphs": tuple(values.get("paragraphs", ()))})


def _with_reason(kind: NotificationKind, notice: Notice) -> Notice:
    """The notice with a footer saying why the person gets it."""
    if notice.reason:
        return notice
    why = (f"You get this message for “{kind.label}”. "
           + ("Choose what you receive under Notification settings in PACS Desk." if kind.optional
              else "This message cannot be turned off."))
    return replace(notice, reason=why)


def _mailable(kind: NotificationKind, notice: Notice) -> Notice:
    """``notice``, or a generic one when ``compose`` finds something that may identify a patient.

    The check fails closed without failing the caller's change: the person still hears that
    something happened and follows the link; the words stay in the app.
    """
    identity = mail_settings().identity
    if identity is None:
        return notice
    try:
        check_notice(identity, notice)
    except UnsafeMessage as refused:
        log.warning("notification %s e-mailed without details: %s", kind.name, refused)
        return Notice(subject=kind.label, ticket=notice.ticket, link_path=notice.link_path,
                      link_label=notice.link_label, reason=notice.reason,
                      paragraphs=(f"There is news in PACS Desk: {kind.label.lower()}.",
                                  "For patient privacy this message holds no details: open PACS Desk "
                                  "to read them."))
    return notice


def _choices(kind: NotificationKind, user_ids: list[int]) -> dict[int, Delivery]:
    """What each of ``user_ids`` chose for ``kind``, in one query (absent: the default)."""
    if not kind.optional:
        return {}
    return dict(db.session.execute(select(NotificationPreference.user_id, NotificationPreference.delivery)
                                   .where(NotificationPreference.kind == kind.name,
                                          NotificationPreference.user_id.in_(user_ids))).all())


def _told(key: str, user_ids: list[int]) -> set[int]:
    """Which of ``user_ids`` were already told about ``key``."""
    return set(db.session.execute(select(Notification.user_id).where(
        Notification.key == key, Notification.user_id.in_(user_ids))).scalars())


def notify(kind_name: str, recipients: Iterable[User | None], notice: Notice, *,
           key: str | None = None) -> list[Notification]:
    """Tell each recipient (once per ``key`` when given), in the app and by e-mail as they chose; flushes."""
    kind = get_kind(kind_name)
    people: dict[int, User] = {}
    for user in recipients:
        if user is not None and not user.is_disabled and kind.applies_to(user.role):
            people.setdefault(user.id, user)
    if not people:
        return []
    mail_on = mail_settings().enabled
    ids = list(people)
    chosen = _choices(kind, ids)
    told = _told(key, ids) if key is not None else set()
    made: list[Notification] = []
    waiting: dict[tuple[int, str, str | None], str] = {}
    ticket = notice.ticket.upper() if notice.ticket else None
    for user_id, user in people.items():
        delivery = Delivery.IMMEDIATE if not kind.optional else chosen.get(user_id, kind.default)
        if delivery is Delivery.OFF or user_id in told:
            continue
        email = EmailState.NONE
        if mail_on and user.email:
            email = {Delivery.IMMEDIATE: EmailState.WAITING, Delivery.DIGEST: EmailState.DIGEST_PENDING}.get(
                delivery, EmailState.NONE)
        note = Notification(user_id=user_id, kind=kind.name, subject=notice.subject[:300],
                            paragraphs=list(notice.paragraphs), link_path=notice.link_path,
                            link_label=notice.link_label[:120], ticket=ticket, key=key,
                            created_at=utcnow(), email=email)
        db.session.add(note)
        if email is EmailState.WAITING:
            waiting[(user_id, kind.name, ticket)] = str(user.email)
        made.append(note)
    db.session.flush()
    if waiting:  # the delivery job writes the messages; this transaction only asks for it
        db.session.info.setdefault(MAILED_TO, {}).update(waiting)
        db.session.info[KICK] = True
    return made


def _waiting_notice(note: Notification) -> Notice:
    """The e-mail of a waiting notification: its words, why the person gets it, checked for patient data."""
    notice = Notice(subject=note.subject, paragraphs=tuple(note.paragraphs), link_path=note.link_path,
                    link_label=note.link_label or Notice.link_label, ticket=note.ticket)
    kind = notification_kinds().get(note.kind)
    if kind is None:  # a kind no package registers any more: still sent, with a plain reason
        return replace(notice, reason="You get this message from PACS Desk.")
    return _mailable(kind, _with_reason(kind, notice))


def outbox_waiting(batch: int = 200) -> int:
    """Write the outbox messages of notifications waiting for e-mail; returns how many (commits per batch).

    Each notification is taken by a conditional update before its message is written, in the
    same transaction, so two workers never write one twice.
    """
    identity = mail_settings().identity
    if identity is None:
        return 0
    written = 0
    while True:
        oldest = select(Notification.id).where(Notification.email == EmailState.WAITING) \
            .order_by(Notification.id).limit(batch)
        taken = list(db.session.execute(update(Notification).where(
            Notification.id.in_(oldest.scalar_subquery()), Notification.email == EmailState.WAITING)
            .values(email=EmailState.QUEUED).returning(Notification.id)
            .execution_options(synchronize_session=False)).scalars())
        if not taken:
            db.session.commit()
            return written
        rows, unsent = [], []
        notes = db.session.execute(select(Notification, User).join(User, User.id == Notification.user_id)
                                   .where(Notification.id.in_(taken)).order_by(Notification.id))
        for note, user in notes:
            if user.is_disabled or not user.email:
                unsent.append(note.id)
                continue
            notice = _waiting_notice(note)
            rows.append({**_outbox_values(user.id, user.email, note.kind, notice, identity.domain),
                         "notification_id": note.id})
        if unsent:
            db.session.execute(update(Notification).where(Notification.id.in_(unsent))
                               .values(email=EmailState.NONE).execution_options(synchronize_session=False))
        if rows:
            # A Core insert: the rows are plain values, and the ORM's bulk path costs more than the statement.
            db.session.connection().execute(insert(OutboxMessage.__table__), rows)
        db.session.commit()
        written += len(rows)


def emailed_to(user_id: int, kind: str, ticket: str) -> str | None:
    """Where ``notify`` had ``kind`` about ``ticket`` e-mailed for ``user_id`` in this transaction."""
    return db.session.info.get(MAILED_TO, {}).get((user_id, kind, ticket.upper()))


# ---------------------------------------------------------------- preferences


def preferences_for(user: User) -> list[tuple[NotificationKind, Delivery]]:
    """The kinds ``user`` may receive, with what they chose."""
    kinds = [k for k in notification_kinds().values() if k.applies_to(user.role)]
    kinds.sort(key=lambda k: (k.optional, k.label))
    return [(kind, delivery_for(user, kind)) for kind in kinds]


def set_preferences(user: User, choices: Mapping[str, str]) -> dict[str, str]:
    """Save ``user``'s choices (kind name -> delivery); returns what changed; audited; flushes."""
    kinds = notification_kinds()
    changed: dict[str, str] = {}
    for name, raw in choices.items():
        kind = kinds.get(name)
        if kind is None or not kind.applies_to(user.role):
            raise PreferenceError(f"{name}: there is no such notification for your role.")
        try:
            delivery = Delivery(raw)
        except ValueError:
            raise PreferenceError(f"{kind.label}: choose one of the listed options.") from None
        if delivery not in kind.choices():
            raise PreferenceError(f"{kind.label}: this notification cannot be turned off or delayed.")
        if delivery == delivery_for(user, kind):
            continue
        row = db.session.get(NotificationPreference, (user.id, name))
        if row is None:
            db.session.add(NotificationPreference(user_id=user.id, kind=name, delivery=delivery,
                                                  updated_at=utcnow()))
        else:
            row.delivery, row.updated_at = delivery, utcnow()
        changed[name] = delivery.value
    if changed:
        db.session.flush()
        audit_sink.record("notifications.preferences", object_type="user", object_id=user.username,
                          details={"changed": changed})
    return changed


# ---------------------------------------------------------------- reading


@cache
def _unread_statement() -> Select[int]:
    """The bell's count for the user bound as ``user_id``, built once (it runs on every page)."""
    return select(func.count()).select_from(Notification).where(
        Notification.user_id == bindparam("user_id"), Notification.read_at.is_(None))


def unread_count(user_id: int) -> int:
    """How many notifications ``user_id`` has not read."""
    return db.session.execute(_unread_statement(), {"user_id": user_id}).scalar_one()


def mark_read(user_id: int, notification_id: int | None = None) -> int:
    """Mark one (or every) unread notification of ``user_id`` read; returns how many; flushes."""
    statement = update(Notification).where(Notification.user_id == user_id, Notification.read_at.is_(None))
    if notification_id is not None:
        statement = statement.where(Notification.id == notification_id)
    count = rowcount(db.session.execute(statement.values(read_at=utcnow())
                                        .execution_options(synchronize_session=False)))
    db.session.flush()
    return count
