"""Flask-Login wiring: load users from the session id, refuse disabled or stale sessions."""

from __future__ import annotations

from flask import Flask

from core.auth.models import User
from core.extensions import db, login_manager


def load_user(session_id: str) -> User | None:
    """Load the user of ``id.version``; disabled accounts and old versions get None."""
    try:
        raw_id, raw_version = session_id.split(".", 1)
        user_id, version = int(raw_id), int(raw_version)
    except ValueError:
        return None
    user = db.session.get(User, user_id)
    if user is None or user.is_disabled or user.session_version != version:
        return None
    return user


def init_app(app: Flask) -> None:
    """Configure the user loader, the login view and messages."""
    login_manager.user_loader(load_user)
    login_manager.login_view = "auth.login"
    login_manager.login_message = "Please log in to continue."
    login_manager.login_message_category = "info"
    login_manager.session_protection = "basic"
