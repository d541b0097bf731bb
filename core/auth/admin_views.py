"""The administrators' account pages, and the compliance page of ended accesses (on the auth blueprint).

A role change, disabling, a password reset and an MFA reset each show a confirmation page first;
only the form sent from that page (``confirmed=yes``) carries the change out.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from flask import abort, current_app, flash, redirect, render_template, request, url_for
from flask_login import current_user
from sqlalchemy import select

from core.auth import directory_accounts, second_factor, services
from core.auth.forms import ConfirmForm, UserCreateForm, UserEditForm
from core.auth.models import Role, User
from core.auth.permissions import Permission, require_permission
from core.auth.views import bp
from core.extensions import db
from core.forms import show_error
from core.pagination import paginate
from core.timeutil import utcnow

ACCESS_END_LIMIT = timedelta(hours=24)  # HIPAA 164.308(a)(3)(ii)(C); the 2025 proposed rule's 24 hours


def _confirmed() -> bool:
    """Whether the form was sent from a confirmation page."""
    return request.form.get("confirmed") == "yes"


def _confirm_page(user: User, title: str, message: str, button: str, action: str,
                  fields: dict[str, Any] | None = None, danger: bool = True):
    """The page that asks an administrator to confirm a change before it is made."""
    return render_template("auth/user_confirm.html", user=user, title=title, message=message,
                           button=button, action=action, fields=fields or {}, danger=danger,
                           form=ConfirmForm())


@bp.route("/admin/users")
@require_permission(Permission.USERS_MANAGE)
def users():
    """List accounts."""
    query = select(User).order_by(User.is_disabled, User.username)
    role = request.args.get("role", "")
    if role in {r.value for r in Role}:
        query = query.where(User.role == role)
    text = request.args.get("q", "").strip()
    if text:
        like = f"%{text.lower()}%"
        query = query.where(User.username.ilike(like) | User.full_name.ilike(like))
    page = paginate(query, per_page=50)
    return render_template("auth/user_list.html", page=page, roles=list(Role), role=role,
                           q=text, action_form=ConfirmForm())


@bp.route("/admin/users/new", methods=["GET", "POST"])
@require_permission(Permission.USERS_MANAGE)
def user_new():
    """Create a local account; its first password must be changed at first login."""
    form = UserCreateForm()
    if form.validate_on_submit():
        password = form.password.data or services.generate_password()
        try:
            user = services.create_user(
                services.NewUser(
                    username=form.username.data, role=Role(form.role.data), password=password,
                    email=form.email.data, full_name=form.full_name.data or "",
                    department=form.department.data or "", must_change_password=True,
                )
            )
        except services.AccountError as exc:
            show_error(form, exc, "username")
        else:
            db.session.commit()
            if not form.password.data:
                flash(f"Account {user.username} created. Its initial password, shown only "
                      f"this once: {password}", "warning")
            else:
                flash(f"Account {user.username} created.", "success")
            return redirect(url_for("auth.users"))
    return render_template("auth/user_new.html", form=form)


def _user_or_404(user_id: int) -> User:
    """Load an account or answer 404."""
    user = db.session.get(User, user_id)
    if user is None:
        abort(404)
    return user


@bp.route("/admin/users/<int:user_id>", methods=["GET", "POST"])
@require_permission(Permission.USERS_MANAGE)
def user_edit(user_id: int):
    """Change an account's details and role (a role change is confirmed first)."""
    user = _user_or_404(user_id)
    form = UserEditForm(obj=user)
    if form.validate_on_submit():
        new_role = Role(form.role.data)
        if user.id == current_user.id and new_role != user.role:
            form.role.errors.append("You cannot change your own role.")
        elif user.is_directory and new_role != user.role:
            form.role.errors.append("The role of a directory account follows its directory groups; "
                                    "change the groups in the directory.")
        elif new_role != user.role and not _confirmed():
            fields = {"full_name": form.full_name.data or "", "email": form.email.data or "",
                      "department": form.department.data or "", "role": new_role.value}
            return _confirm_page(
                user, "Change role",
                f"Change {user.username} from {user.role_enum.label} to {new_role.label}? "
                "Their open sessions end now and the new role applies at their next login.",
                "Change role", url_for("auth.user_edit", user_id=user.id), fields, danger=False)
        else:
            if not user.is_directory:
                services.update_profile(user, form.full_name.data or "", form.email.data,
                                        form.department.data or "")
            services.change_role(user, new_role)
            db.session.commit()
            flash(f"Account {user.username} saved.", "success")
            return redirect(url_for("auth.users"))
    return render_template("auth/user_edit.html", form=form, user=user, action_form=ConfirmForm(),
                           mfa_required=second_factor.mfa_required(user),
                           codes_left=second_factor.recovery_codes_left(user))


CONFIRMATIONS = {
    "disable": ("Disable account", "Disable {name}? Their open sessions end now and they can no longer "
                "log in. The account and its history are kept.", "Disable account"),
    "reset-password": ("Reset password", "Give {name} a new one-time password? Their current password "
                       "stops working, their sessions end, and they must choose a new password at "
                       "their next login.", "Reset password"),
    "reset-mfa": ("Reset multi-factor authentication", "Remove {name}'s authenticator and recovery "
                  "codes? Their sessions end and they enrol a new authenticator at their next login.",
                  "Reset MFA"),
}


@bp.route("/admin/users/<int:user_id>/<any(disable,enable,unlock,\"reset-password\",\"reset-mfa\"):action>",
          methods=["GET", "POST"])
@require_permission(Permission.USERS_MANAGE)
def user_action(user_id: int, action: str):
    """Disable, re-enable or unlock an account, reset its password or its MFA."""
    user = _user_or_404(user_id)
    confirmation = CONFIRMATIONS.get(action)
    if request.method == "GET":
        if confirmation is None:
            abort(405)
        title, message, button = confirmation
        return _confirm_page(user, title, message.format(name=user.username), button,
                             url_for("auth.user_action", user_id=user.id, action=action))
    if not ConfirmForm().validate_on_submit():
        abort(400)
    if confirmation is not None and not _confirmed():
        title, message, button = confirmation
        return _confirm_page(user, title, message.format(name=user.username), button,
                             url_for("auth.user_action", user_id=user.id, action=action))
    actor = current_user._get_current_object()
    try:
        if action == "reset-password":
            password = services.reset_password(user, actor=actor)
            db.session.commit()
            return render_template("auth/password_reset_done.html", user=user, password=password)
        {"disable": services.disable_user, "enable": services.enable_user,
         "unlock": services.unlock_user, "reset-mfa": second_factor.reset_mfa}[action](user, actor=actor)
    except services.AccountError as exc:
        db.session.rollback()
        flash(str(exc), "danger")
        return redirect(url_for("auth.user_edit", user_id=user.id))
    db.session.commit()
    done = {"disable": "disabled", "enable": "re-enabled", "unlock": "unlocked",
            "reset-mfa": "has no authenticator now; they enrol again at their next login"}[action]
    flash(f"Account {user.username} {done}.", "success")
    return redirect(url_for("auth.user_edit", user_id=user.id))


@bp.route("/compliance/access-ended")
@require_permission(Permission.AUDIT_READ)
def access_ended():
    """Every ended access: when the change was first seen, when access ended, and any over 24 hours."""
    query = select(User).where(User.access_ended_at.is_not(None)).order_by(User.access_ended_at.desc())
    page = paginate(query, per_page=50)
    rows = []
    for user in page.items:
        seen = user.directory_missing_since or user.access_ended_at
        delay = user.access_ended_at - seen
        rows.append({"user": user, "seen": seen, "delay": delay, "late": delay > ACCESS_END_LIMIT})
    configured = current_app.config["PACSDESK_DIRECTORY"] is not None
    last_good = directory_accounts.last_good_run() if configured else None
    stale = configured and (last_good is None or last_good.finished_at is None
                            or utcnow() - last_good.finished_at > ACCESS_END_LIMIT)
    return render_template("auth/access_ended.html", page=page, rows=rows, configured=configured,
                           runs=directory_accounts.last_runs() if configured else [],
                           last_good=last_good, stale=stale, limit_hours=24)
