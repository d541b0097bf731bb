"""The bell's page, notification settings, and the administrators' outbox."""

from __future__ import annotations

from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from flask_login import current_user, login_required
from sqlalchemy import func, select

from core.auth.forms import ConfirmForm
from core.auth.models import User
from core.auth.permissions import Permission, require_permission
from core.extensions import db
from core.notifications import delivery, services
from core.notifications.models import Notification, OutboxMessage, OutboxStatus
from core.pagination import paginate

bp = Blueprint("notifications", __name__)

OUTBOX_FILTERS = {
    "problems": ("Failed or interrupted", (OutboxStatus.FAILED, OutboxStatus.INTERRUPTED)),
    "waiting": ("Waiting or being sent", (OutboxStatus.PENDING, OutboxStatus.SENDING)),
    "sent": ("Sent", (OutboxStatus.SENT,)),
    "all": ("All", tuple(OutboxStatus)),
}


def _confirmed() -> None:
    """Refuse a POST without a valid CSRF token."""
    if not ConfirmForm().validate_on_submit():
        abort(400)


def safe_link(path: str | None) -> str:
    """A notification's own link inside PACS Desk (never another site), else the list."""
    if path and path.startswith("/") and not path.startswith(("//", "/\\")):
        return path
    return url_for("notifications.notification_list")


@bp.route("/notifications")
@login_required
def notification_list():
    """The current user's notifications, newest first, unread marked."""
    query = (select(Notification).where(Notification.user_id == current_user.id)
             .order_by(Notification.id.desc()))
    return render_template("notifications/notification_list.html", page=paginate(query, per_page=30),
                           unread=services.unread_count(current_user.id), form=ConfirmForm(),
                           safe_link=safe_link)


@bp.route("/notifications/<int:notification_id>/open", methods=["POST"])
@login_required
def notification_open(notification_id: int):
    """Mark one notification read and follow its link."""
    _confirmed()
    note = db.session.get(Notification, notification_id)
    if note is None or note.user_id != current_user.id:
        abort(404)
    services.mark_read(current_user.id, notification_id)
    db.session.commit()
    return redirect(safe_link(note.link_path))


@bp.route("/notifications/<int:notification_id>/read", methods=["POST"])
@login_required
def notification_read(notification_id: int):
    """Mark one notification read."""
    _confirmed()
    if not services.mark_read(current_user.id, notification_id):
        note = db.session.get(Notification, notification_id)
        if note is None or note.user_id != current_user.id:
            abort(404)
    db.session.commit()
    return redirect(url_for("notifications.notification_list"))


@bp.route("/notifications/read-all", methods=["POST"])
@login_required
def notification_read_all():
    """Mark every notification read."""
    _confirmed()
    count = services.mark_read(current_user.id)
    db.session.commit()
    flash(f"{count} notification(s) marked read." if count else "Nothing was unread.", "success")
    return redirect(url_for("notifications.notification_list"))


@bp.route("/account/notifications", methods=["GET", "POST"])
@login_required
def preferences():
    """Which notifications the current user gets, and how."""
    form = ConfirmForm()
    rows = services.preferences_for(current_user)
    status = 200
    if request.method == "POST":
        if not form.validate_on_submit():
            abort(400)
        choices = {kind.name: request.form.get(f"kind-{kind.name}", chosen.value)
                   for kind, chosen in rows if kind.optional}
        try:
            changed = services.set_preferences(current_user, choices)
        except services.PreferenceError as error:
            db.session.rollback()
            flash(str(error), "danger")
            status = 400
        else:
            db.session.commit()
            flash("Your notification settings are saved." if changed else "Nothing changed.", "success")
            return redirect(url_for("notifications.preferences"))
    mail = services.mail_settings()
    return render_template("notifications/preferences.html", rows=rows, form=form,
                           mail_on=mail.enabled, address=current_user.email), status


@bp.route("/admin/mail")
@require_permission(Permission.JOBS_MANAGE)
def outbox():
    """Outgoing messages by state, newest first, with resend for failed and interrupted ones."""
    shown = request.args.get("status", "problems")
    if shown not in OUTBOX_FILTERS:
        abort(400)
    query = (select(OutboxMessage).where(OutboxMessage.status.in_(OUTBOX_FILTERS[shown][1]))
             .order_by(OutboxMessage.id.desc()))
    page = paginate(query, per_page=50)
    user_ids = {m.user_id for m in page.items if m.user_id is not None}
    names = dict(db.session.execute(select(User.id, User.username).where(User.id.in_(user_ids))).all()) \
        if user_ids else {}
    counts = dict(db.session.execute(select(OutboxMessage.status, func.count()).group_by(
        OutboxMessage.status)).all())
    filter_counts = {key: sum(counts.get(s, 0) for s in statuses)
                     for key, (_label, statuses) in OUTBOX_FILTERS.items()}
    return render_template("notifications/outbox.html", page=page, shown=shown, filters=OUTBOX_FILTERS,
                           filter_counts=filter_counts, names=names, form=ConfirmForm(),
                           mail=services.mail_settings())


@bp.route("/admin/mail/<int:message_id>/resend", methods=["POST"])
@require_permission(Permission.JOBS_MANAGE)
def outbox_resend(message_id: int):
    """Queue a failed or interrupted message again."""
    _confirmed()
    try:
        message = delivery.resend(message_id)
    except delivery.OutboxError as error:
        db.session.rollback()
        flash(str(error), "danger")
    else:
        db.session.commit()
        flash(f"Message #{message.id} to {message.to_address} is queued again.", "success")
    return redirect(url_for("notifications.outbox"))
