"""Security headers, idle logoff, safe redirects and session settings."""

from __future__ import annotations

from datetime import datetime, timedelta
from urllib.parse import urlsplit

from flask import Flask, flash, redirect, request, session, url_for
from flask_login import current_user, logout_user
from werkzeug.wrappers import Response

from core import audit_sink
from core.extensions import db
from core.timeutil import utcnow

# Audit actions recorded here (registered by the package's init_app).
AUDIT_ACTIONS = {"user.idle_logoff": "User logged off after inactivity"}

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


def _add_headers(response: Response) -> Response:
    """Security headers on every response; no caching of pages that may carry PHI."""
    response.headers.setdefault("Content-Security-Policy", CSP)
    response.headers.setdefault("X-Frame-Options", "DENY")
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("Referrer-Policy", "same-origin")
    response.headers.setdefault("Permissions-Policy", "camera=(), microphone=(), geolocation=()")
    if request.endpoint not in {"static", "bootstrap.static"}:
        response.headers.setdefault("Cache-Control", "no-store")
    return response


def _idle_logoff() -> Response | None:
    """Log a signed-in user off after the configured idle time."""
    if request.endpoint in {"static", "bootstrap.static", "core.healthz"}:
        return None
    if not current_user.is_authenticated:
        return None
    from flask import current_app

    idle = timedelta(minutes=current_app.config["PACSDESK_SESSION_IDLE_MINUTES"])
    now = utcnow()
    last_seen = session.get("last_seen")
    if last_seen is not None and now - datetime.fromisoformat(last_seen) > idle:
        audit_sink.record("user.idle_logoff", object_type="user", object_id=current_user.id,
                          details={"idle_minutes": idle.total_seconds() / 60})
        db.session.commit()
        logout_user()
        session.clear()
        flash("You were logged off after a period of inactivity. Please log in again.", "info")
        next_path = request.full_path if request.method == "GET" else None
        return redirect(url_for("auth.login", next=next_path))
    session["last_seen"] = now.isoformat()
    session.permanent = True
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
