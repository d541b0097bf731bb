"""Login in two steps (password or directory, then the second factor), logout, and the user's own account.

Until the second step passes the session holds only a pending login (account, method, when): no
user is logged in, so no page but the next step answers.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from flask import (
    Blueprint,
    abort,
    current_app,
    flash,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from flask_login import current_user, login_required, login_user, logout_user

from core import audit_sink
from core.auth import login as login_service
from core.auth import second_factor, services
from core.auth.forms import CodeForm, ConfirmForm, EnrolForm, LoginForm, PasswordChangeForm
from core.auth.models import User
from core.auth.passwords import check_password
from core.extensions import db, limiter
from core.forms import show_error
from core.security import LOGIN_AT, safe_next
from core.timeutil import utcnow

# Audit actions recorded here (registered by the package's init_app).
AUDIT_ACTIONS = {
    "user.logout": "User logged out",
    "user.password_change_failed": "Wrong current password when changing the password",
}

bp = Blueprint("auth", __name__)

PENDING = "pending_login"
PENDING_LIFETIME = timedelta(minutes=5)


def home_for(user: User) -> str:
    """Where a user lands after logging in."""
    return url_for("core.home")


def _start_pending(user: User, method: str, enrol: bool) -> None:
    """Remember a login whose password was right and whose second step is still to come."""
    next_url = safe_next(request.args.get("next"), "")
    session.clear()
    session[PENDING] = {"uid": user.id, "ver": user.session_version, "method": method,
                        "at": utcnow().isoformat(), "enrol": enrol, "next": next_url}


def _pending() -> tuple[User, dict] | None:
    """The account of a pending login still valid (recent, same session version, not disabled)."""
    data = session.get(PENDING)
    if not isinstance(data, dict):
        return None
    try:
        started = datetime.fromisoformat(data["at"])
        user = db.session.get(User, int(data["uid"]))
    except (KeyError, TypeError, ValueError):
        return None
    if user is None or user.is_disabled or user.session_version != data.get("ver") \
            or utcnow() - started > PENDING_LIFETIME:
        return None
    return user, data


def _start_session(user: User, next_url: str | None) -> str:
    """Log the user in for real; returns where to go next."""
    session.clear()
    login_user(user)
    now = utcnow().isoformat()
    session["last_seen"] = now
    session[LOGIN_AT] = now
    session.permanent = True
    return safe_next(next_url, home_for(user))


def _after_password(user: User, method: str):
    """Ask for the second factor, start enrolment, or log in (then commit)."""
    if user.mfa_enabled or second_factor.mfa_required(user):
        enrol = not user.mfa_enabled
        _start_pending(user, method, enrol=enrol)
        db.session.commit()  # a directory login may have created or updated the account
        return redirect(url_for("auth.login_enrol" if enrol else "auth.login_code"))
    login_service.complete_login(user, method, "none")
    db.session.commit()
    return redirect(_start_session(user, request.args.get("next")))


@bp.route("/login", methods=["GET", "POST"])
@limiter.limit("10 per minute", methods=["POST"])
def login():
    """Show the login form and check the password (first step)."""
    if current_user.is_authenticated:
        return redirect(safe_next(request.args.get("next"), home_for(current_user)))
    form = LoginForm()
    if request.method == "POST":
        typed = request.form.get("username", "")
        problem = login_service.form_problem(typed, request.form.get("password", ""))
        if problem is not None:
            login_service.record_refused_form(typed, problem)
            db.session.commit()
            form.username.data = ""
            form.username.errors = [problem]
            return render_template("auth/login.html", form=form), 400
    if form.validate_on_submit():
        result = login_service.authenticate(form.username.data, form.password.data,
                                            current_app.config["PACSDESK_DIRECTORY"])
        if result.user is not None:
            return _after_password(result.user, result.method)
        db.session.commit()
        form.password.errors.append(result.message)
    return render_template("auth/login.html", form=form), (200 if not form.errors else 401)


def _restart(message: str = "Your login expired. Log in again."):
    """Send a browser whose pending login is gone back to the first step."""
    session.pop(PENDING, None)
    flash(message, "info")
    return redirect(url_for("auth.login"))


@bp.route("/login/code", methods=["GET", "POST"])
@limiter.limit("10 per minute", methods=["POST"])
def login_code():
    """Second step: a code from the authenticator app or a recovery code."""
    pending = _pending()
    if pending is None or pending[1].get("enrol"):
        return _restart()
    user, data = pending
    form = CodeForm()
    if form.validate_on_submit():
        problem, factor = second_factor.verify_login_code(user.id, form.code.data, data["method"])
        if problem is None:
            login_service.complete_login(user, data["method"], factor)
            db.session.commit()
            target = _start_session(user, data.get("next"))
            if factor == "recovery code":
                left = second_factor.recovery_codes_left(user)
                flash(f"You used a recovery code; {left} left. Each works once.", "warning")
            return redirect(target)
        db.session.commit()
        if problem == login_service.locked_message():
            return _restart(problem)
        form.code.errors.append(problem)
    return render_template("auth/login_code.html", form=form, user=user), (401 if form.errors else 200)


@bp.route("/login/enrol", methods=["GET", "POST"])
@limiter.limit("10 per minute", methods=["POST"])
def login_enrol():
    """Second step for a role that must use MFA and has none yet: enrol an authenticator now."""
    pending = _pending()
    if pending is None or not pending[1].get("enrol"):
        return _restart()
    user, data = pending
    return _enrol(user, data["method"], data.get("next"), logged_in=False)


def _enrol(user: User, method: str, next_url: str | None, logged_in: bool):
    """Show the QR code, check the first code, then show the recovery codes once."""
    try:
        user = second_factor.start_enrolment(user.id)
    except services.AccountError as exc:
        flash(str(exc), "info")
        return redirect(url_for("auth.account"))
    db.session.commit()
    form = EnrolForm()
    if form.validate_on_submit():
        try:
            codes = second_factor.confirm_enrolment(user.id, form.code.data)
        except services.AccountError as exc:
            db.session.rollback()
            show_error(form, exc, "code")
        else:
            if not logged_in:
                login_service.complete_login(user, method, "totp")
            db.session.commit()
            target = home_for(user) if logged_in else _start_session(user, next_url)
            return render_template("auth/mfa_recovery_codes.html", codes=codes, next_url=target)
    uri, svg = second_factor.provisioning(user)
    return render_template("auth/mfa_setup.html", form=form, qr_svg=svg, secret=user.mfa_secret,
                           uri=uri, required=not logged_in), (400 if form.errors else 200)


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


@bp.route("/account")
@login_required
def account():
    """The user's own account: where the password is checked, the second factor."""
    return render_template("auth/account.html", user=current_user,
                           required=second_factor.mfa_required(current_user),
                           codes_left=second_factor.recovery_codes_left(current_user))


@bp.route("/account/mfa", methods=["GET", "POST"])
@login_required
@limiter.limit("10 per minute", methods=["POST"])
def account_mfa():
    """Enrol an authenticator app from the account page."""
    return _enrol(current_user._get_current_object(), "", None, logged_in=True)


@bp.route("/account/password", methods=["GET", "POST"])
@login_required
@limiter.limit("10 per minute", methods=["POST"])
def password():
    """Change one's own password: a wrong current password counts toward the lockout."""
    if current_user.is_directory:
        return render_template("auth/password.html", form=None), (403 if request.method == "POST" else 200)
    form = PasswordChangeForm()
    if form.validate_on_submit():
        user = services.find_user(current_user.username, for_update=True)
        assert user is not None
        now = utcnow()
        if user.is_locked(now) or not check_password(user.password_hash, form.current_password.data):
            result = login_service.count_failure(user, now, "wrong current password", "local",
                                                 action="user.password_change_failed")
            locked = result.message == login_service.locked_message()
            if locked:
                user.session_version += 1  # a locked account keeps no session (user.locked is its event)
            db.session.commit()
            if locked:
                logout_user()
                session.clear()
                flash(result.message, "danger")
                return redirect(url_for("auth.login"))
            form.current_password.errors.append("The current password is wrong.")
        elif check_password(user.password_hash, form.new_password.data):
            form.new_password.errors.append("Choose a password different from the current one.")
        else:
            try:
                services.set_password(user, form.new_password.data)
            except services.AccountError as exc:
                db.session.rollback()
                form.new_password.errors.append(str(exc))
            else:
                db.session.commit()
                started = session.get(LOGIN_AT)
                login_user(user)  # this session goes on, with the new session version
                session["last_seen"] = utcnow().isoformat()
                session[LOGIN_AT] = started
                flash("Your password was changed. Your other sessions have been logged out.", "success")
                return redirect(url_for("core.home"))
    return render_template("auth/password.html", form=form), (400 if form.errors else 200)
