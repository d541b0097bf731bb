"""Security headers, idle logoff, the absolute session lifetime, safe redirects and session settings."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

from flask import Flask, flash, redirect, request, session, url_for
from flask_login import current_user, logout_user
from werkzeug.wrappers import Response

from core import audit_sink
from core.assets import STATIC_ENDPOINTS
from core.extensions import db
from core.timeutil import utcnow

# Audit actions recorded here (registered by the package's init_app).
AUDIT_ACTIONS = {
    "user.idle_logoff": "User logged off after inactivity",
    "user.session_expired": "User logged off at the end of the longest session allowed",
}

LOGIN_AT = "login_at"  # session key: when the user logged in (the absolute lifetime counts from it)
# What a user who must choose a new password may still reach.
BEFORE_NEW_PASSWORD = {"auth.password", "auth.logout", *STATIC_ENDPOINTS}

CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "font-src 'self'; object-src 'none'; base-uri 'self'; form-action 'self'; "
    "frame-ancestors 'none'"
)


def safe_next(target: str | None, default: str) -> str:
    """Return ``target`` if it is a path on this site, else ``default``."""
    if not target:
        return default
    target = target.strip()
    if any(ord(c) < 32 for c in target) or "\\" in target:
        return default
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not target.startswith("/") or target.startswith("//"):
        return default
    return target


SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=()",
}


def _add_headers(response: Response) -> Response:
    """Security headers on every response; no caching of pages that may carry PHI."""
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
    if request.endpoint not in STATIC_ENDPOINTS:
        response.headers.setdefault("Cache-Control", "no-store")
    return response


def _end_session(action: str, details: dict, message: str) -> Response:
    """Audit why a session ends, end it, and send the browser to the login page."""
    audit_sink.record(action, object_type="user", object_id=current_user.id, details=details)
    db.session.commit()
    logout_user()
    session.clear()
    flash(message, "info")
    next_path = request.full_path if request.method == "GET" else None
    return redirect(url_for("auth.login", next=next_path))


def passive(view: Callable[..., Any]) -> Callable[..., Any]:
    """Mark a view that pages call by themselves (polling): it does not count as user activity."""
    view.passive = True  # type: ignore[attr-defined]  # a marker the activity check reads off the view
    return view


def _is_passive() -> bool:
    """Whether this request is a page's own polling rather than something the user did."""
    from flask import current_app

    return bool(getattr(current_app.view_functions.get(request.endpoint or ""), "passive", False))


def _session_age(now: datetime) -> timedelta | None:
    """How long ago this session logged in (None: it does not say, so it is treated as too old)."""
    started = session.get(LOGIN_AT)
    try:
        return now - datetime.fromisoformat(started) if started else None
    except (TypeError, ValueError):
        return None


def _idle_logoff() -> Response | None:
    """Log a signed-in user off after the idle time or the absolute lifetime; keep a new password first."""
    if request.endpoint in STATIC_ENDPOINTS:
        return None
    if not current_user.is_authenticated:
        return None
    from flask import current_app

    idle = timedelta(minutes=current_app.config["PACSDESK_SESSION_IDLE_MINUTES"])
    longest = timedelta(hours=current_app.config["PACSDESK_SESSION_MAX_HOURS"])
    now = utcnow()
    last_seen = session.get("last_seen")
    if last_seen is not None and now - datetime.fromisoformat(last_seen) > idle:
        return _end_session("user.idle_logoff", {"idle_minutes": idle.total_seconds() / 60},
                            "You were logged off after a period of inactivity. Please log in again.")
    age = _session_age(now)
    if age is None or age > longest:
        hours = longest.total_seconds() / 3600
        return _end_session("user.session_expired", {"max_hours": hours},
                            f"Sessions last at most {hours:g} hours. Please log in again.")
    if not _is_passive():
        session["last_seen"] = now.isoformat()
    session.permanent = True
    if current_user.must_change_password and request.endpoint not in BEFORE_NEW_PASSWORD:
        flash("Choose a new password before you go on: the one you have was set for you.", "warning")
        return redirect(url_for("auth.password"))
    return None


def init_app(app: Flask) -> None:
    """Install session settings, idle logoff and headers."""
    app.config.update(
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=app.config["PACSDESK_SECURE_COOKIES"],
        SESSION_COOKIE_NAME="pacsdesk_session",
        REMEMBER_COOKIE_HTTPONLY=True,
        REMEMBER_COOKIE_SECURE=app.config["PACSDESK_SECURE_COOKIES"],
        # Outlives the idle limit so the server sees the stale session, ends it in
        # _idle_logoff and audits user.idle_logoff (an expired cookie leaves no trace).
        PERMANENT_SESSION_LIFETIME=timedelta(
            minutes=app.config["PACSDESK_SESSION_IDLE_MINUTES"]
        ) + timedelta(hours=12),
        SESSION_REFRESH_EACH_REQUEST=True,
    )
    app.before_request(_idle_logoff)
    app.after_request(_add_headers)
