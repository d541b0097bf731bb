"""Administrators' page of e-mail held from unknown senders: assign to a person (filed as them) or discard."""

from __future__ import annotations

from flask import abort, flash, redirect, render_template, request, url_for
from flask_login import current_user

from core.auth.forms import ConfirmForm
from core.auth.permissions import Permission, require_permission
from core.extensions import db
from helpdesk import mail_in
from helpdesk.views import bp


@bp.route("/admin/mail/held")
@require_permission(Permission.JOBS_MANAGE)
def held_mail():
    """Messages from senders no account matches, waiting for a decision."""
    return render_template("notifications/held_mail.html", held=mail_in.held_messages(), form=ConfirmForm())


@bp.route("/admin/mail/held/<int:inbound_id>/<any(assign,discard):action>", methods=["POST"])
@require_permission(Permission.JOBS_MANAGE)
def held_mail_action(inbound_id: int, action: str):
    """File a held message as a person, or discard it."""
    if not ConfirmForm().validate_on_submit():
        abort(400)
    try:
        if action == "assign":
            handled = mail_in.assign_held(inbound_id, request.form.get("username", ""), current_user)
            flash(f"The message was filed as ticket {handled.ticket}." if handled.outcome.value == "filed"
                  else f"The message was added to ticket {handled.ticket}.", "success")
        else:
            mail_in.discard_held(inbound_id, current_user)
            db.session.commit()
            flash("The message was discarded.", "success")
    except mail_in.HeldMailError as error:
        db.session.rollback()
        flash(str(error), "danger")
    return redirect(url_for("helpdesk.held_mail"))
