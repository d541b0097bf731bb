"""Login, logout, own password, and the administrators' account pages."""

from __future__ import annotations

from flask import Blueprint, abort, flash, redirect, render_template, request, session, url_for
from flask_login import current_user, login_required, login_user, logout_user
from sqlalchemy import select

from core import audit_sink
from core.auth import services
from core.auth.forms import (
    ConfirmForm,
    LoginForm,
    PasswordChangeForm,
    UserCreateForm,
    UserEditForm,
)
from core.auth.models import Role, User
from core.auth.passwords import check_password
from core.auth.permissions import Permission, require_permission
from core.extensions import db, limiter
from core.forms import show_error
from core.pagination import paginate
from core.security import safe_next
from core.timeutil import utcnow

# Audit actions recorded here (registered by the package's init_app).
AUDIT_ACTIONS = {"user.logout": "User logged out"}

bp = Blueprint("auth", __name__)


def home_for(user: User) -> str:
    """Where a user lands after logging in."""
    return url_for("core.home")


@bp.route("/login", methods=["GET", "POST"])
@limiter.limit("10 per minute", methods=["POST"])
def login():
    """Show the login form and sign the user in."""
    if current_user.is_authenticated:
        return redirect(safe_next(request.args.get("next"), home_for(current_user)))
    form = LoginForm()
    if form.validate_on_submit():
        result = services.authenticate(form.username.data, form.password.data)
        db.session.commit()
        if result.user is not None:
            session.clear()
            login_user(result.user)
            session["last_seen"] = utcnow().isoformat()
            session.permanent = True
            return redirect(safe_next(request.args.get("next"), home_for(result.user)))
        form.password.errors.append(result.message)
    return render_template("auth/login.html", form=form), (200 if not form.errors else 401)


@bp.route("/logout", methods=["POST"])
@login_required
def logout():
    """Sign the user out (POST only, with a CSRF token)."""
    form = ConfirmForm()
    if not form.validate_on_submit():
        abort(400)
    audit_sink.record("user.logout", object_type="user", object_id=current_user.id)
    # A copy of the session cookie taken before logout must not work after it: logging out
    # ends every session of the account (sessions are signed cookies, not server rows).
    current_user.session_version += 1
    db.session.commit()
    logout_user()
    session.clear()
    flash("You are logged out.", "info")
    return redirect(url_for("auth.login"))


@bp.route("/account/password", methods=["GET", "POST"])
@login_required
def password():
    """Let a user change their own password."""
    form = PasswordChangeForm()
    if form.validate_on_submit():
        if not check_password(current_user.password_hash, form.current_password.data):
            form.current_password.errors.append("The current password is wrong.")
        else:
            try:
                services.set_password(current_user, form.new_password.data)
            except services.AccountError as exc:
                form.new_password.errors.append(str(exc))
            else:
                db.session.commit()
                login_user(current_user._get_current_object())  # this session goes on
                session["last_seen"] = utcnow().isoformat()
                flash("Your password was changed. Your other sessions have been logged out.",
                      "success")
                return redirect(url_for("core.home"))
    return render_template("auth/password.html", form=form)


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
    """Create an account."""
    form = UserCreateForm()
    if form.validate_on_submit():
        password = form.password.data or services.generate_password()
        try:
            user = services.create_user(
                services.NewUser(
                    username=form.username.data, role=Role(form.role.data), password=password,
                    email=form.email.data, full_name=form.full_name.data or "",
                    department=form.department.data or "",
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
    """Change an account's details and role."""
    user = _user_or_404(user_id)
    form = UserEditForm(obj=user)
    if form.validate_on_submit():
        if user.id == current_user.id and form.role.data != user.role:
            form.role.errors.append("You cannot change your own role.")
        else:
            services.update_profile(user, form.full_name.data or "", form.email.data,
                                    form.department.data or "")
            services.change_role(user, Role(form.role.data))
            db.session.commit()
            flash(f"Account {user.username} saved.", "success")
            return redirect(url_for("auth.users"))
    return render_template("auth/user_edit.html", form=form, user=user,
                           action_form=ConfirmForm())


@bp.route("/admin/users/<int:user_id>/<any(disable,enable,unlock):action>", methods=["POST"])
@require_permission(Permission.USERS_MANAGE)
def user_action(user_id: int, action: str):
    """Disable, re-enable or unlock an account."""
    user = _user_or_404(user_id)
    if not ConfirmForm().validate_on_submit():
        abort(400)
    try:
        {"disable": services.disable_user, "enable": services.enable_user,
         "unlock": services.unlock_user}[action](user, actor=current_user._get_current_object())
    except services.AccountError as exc:
        flash(str(exc), "danger")
        return redirect(url_for("auth.user_edit", user_id=user.id))
    db.session.commit()
    done = {"disable": "disabled", "enable": "re-enabled", "unlock": "unlocked"}[action]
    flash(f"Account {user.username} {done}.", "success")
    return redirect(url_for("auth.user_edit", user_id=user.id))
