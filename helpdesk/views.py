"""Helpdesk blueprint."""

from __future__ import annotations

from flask import Blueprint

bp = Blueprint("helpdesk", __name__)
