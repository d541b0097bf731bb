"""Home dashboard and the health check."""

from __future__ import annotations

from flask import Blueprint, current_app, jsonify, render_template
from flask_login import current_user, login_required
from sqlalchemy import text

from core.db_faults import discard_session
from core.disk import disk_full
from core.extensions import csrf, db, limiter
from core.navigation import panels_for

bp = Blueprint("core", __name__)


@bp.route("/")
@login_required
def home():
    """The signed-in user's dashboard: the panels their role may see."""
    return render_template("core/home.html", panels=panels_for(current_user))


@bp.route("/healthz")
@csrf.exempt
@limiter.exempt
def healthz():
    """Liveness and database state as JSON, without a login and without details."""
    try:
        db.session.execute(text("SELECT 1"))
        database = "disk full" if disk_full() else "ok"
    except Exception as exc:
        current_app.logger.warning("health check: database unavailable (%s)", type(exc).__name__)
        discard_session()
        database = "unavailable"
    status = "ok" if database == "ok" else "degraded"
    return jsonify(status=status, app="ok", database=database), (200 if database == "ok" else 503)


@bp.route("/session/keepalive", methods=["POST"])
@login_required
def keepalive():
    """"Stay signed in": the user is here, so the idle clock starts again."""
    return jsonify(idle_seconds=current_app.config["PACSDESK_SESSION_IDLE_MINUTES"] * 60)
