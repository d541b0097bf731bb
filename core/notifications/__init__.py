"""Notifications: the bell in the app, e-mail through an outbox delivered by jobs, people's choices.

Every package registers its kinds (``register_notification_kind``) in its ``init_app`` and
calls ``notify(kind, recipients, notice, key=...)`` in the transaction of the change it
announces. See ``services`` (notify, preferences) and ``delivery`` (the jobs, at-most-once).
"""

from __future__ import annotations

from typing import Any

from flask import Flask

from core.notifications.registry import NotificationKind, register_notification_kind
from core.notifications.services import notify, users_with_roles

__all__ = ["NotificationKind", "init_app", "notify", "register_notification_kind", "users_with_roles"]


def _template_context() -> dict[str, Any]:
    """The bell's unread count, and the outbox problems an admin page may list for a user."""
    from flask_login import current_user

    from core.notifications.delivery import problems_for
    from core.notifications.services import unread_count

    count = unread_count(current_user.id) if getattr(current_user, "is_authenticated", False) else 0
    return {"unread_notifications": count, "mail_problems_for": problems_for}


def init_app(app: Flask) -> None:
    """Register the pages, the delivery and digest jobs, audit actions and the after-commit hook."""
    from sqlalchemy.orm import Session

    from core import audit_sink
    from core.auth.permissions import Permission
    from core.database import listen_once
    from core.jobs.registry import JobKind, register_job
    from core.navigation import NavItem, register_nav
    from core.notifications import delivery, services, views
    from core.templating import register_context_provider

    for module in (services, delivery):
        audit_sink.register_actions(app, module.AUDIT_ACTIONS)
    listen_once(Session, "before_commit", delivery.before_commit)
    listen_once(Session, "after_commit", delivery.after_commit)
    listen_once(Session, "after_rollback", delivery.after_rollback)
    mail_on = app.config["PACSDESK_MAIL"].enabled
    # Queued after each commit that fills the outbox; every minute as a safety net when mail is on.
    register_job(app, JobKind(delivery.DELIVER_JOB, "Deliver e-mail", delivery.deliver_job,
                              max_attempts=5, retry_delay=60.0, priority=20,
                              every=(lambda _app: 60.0) if mail_on else None))
    register_job(app, JobKind(delivery.DIGEST_JOB, "Queue the daily notification digests",
                              delivery.digest_job, every=lambda _app: 24 * 3600.0))
    register_nav(app, NavItem("Mail", "notifications.outbox", Permission.JOBS_MANAGE, 92, "envelope",
                              "Administration"))
    register_context_provider(app, _template_context)
    app.register_blueprint(views.bp)
