"""Report test helpers: seed audit events at chosen local times, read PDFs back as text."""

from __future__ import annotations

import subprocess
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import time_machine
from flask import Flask

from audit import record
from core.auth.models import User
from core.extensions import db

TZ = "America/New_York"


@pytest.fixture
def app_config(app_config: dict) -> dict:
    """Reports are tested in a time zone with daylight saving time."""
    app_config["PACSDESK_TIMEZONE"] = TZ
    app_config["PACSDESK_ORGANIZATION"] = "Riverside General Hospital"
    return app_config


def local(text: str, tz: str = TZ) -> datetime:
    """An aware datetime from local 'YYYY-MM-DD HH:MM'."""
    return datetime.fromisoformat(text).replace(tzinfo=ZoneInfo(tz))


@pytest.fixture
def seed_event(app: Flask):
    """Record an audit event as if it happened at a local time: seed(when, action, user=..., ...)."""

    def seed(when: str, action: str, user: User | None = None, **kwargs) -> None:
        with app.app_context(), time_machine.travel(local(when), tick=False):
            actor = db.session.get(User, user.id) if user is not None else None
            record(action, user=actor, **kwargs)
            db.session.commit()

    return seed


def pdf_text(data: bytes, tmp_path: Path) -> str:
    """The PDF's text, laid out, via poppler's pdftotext."""
    source = tmp_path / "report.pdf"
    source.write_bytes(data)
    out = subprocess.run(["pdftotext", "-layout", str(source), "-"], capture_output=True, check=True)
    return out.stdout.decode()
