"""Home dashboard and the session keep-alive."""

from __future__ import annotations

from flask import Blueprint, current_app, jsonify, render_template
from flask_login import current_user, login_required

from core.navigation import panels_for

bp = Blueprint("core", __name__)


@bp.route("/")
@login_required
def home():
    """The signed-in user's dashboard: the panels their role may see."""
    return render_template("core/home.html", panels=panels_for(current_user))


@bp.route("/session/keepalive", methods=["POST"])
@login_required
def keepalive():
    """"Stay signed in": the user is here, so the idle clock starts again."""
    return jsonify(idle_seconds=current_app.config["PACSDESK_SESSION_IDLE_MINUTES"] * 60)
