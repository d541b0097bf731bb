"""Audit blueprint: compliance pages (search, retention, training, reports)."""

from __future__ import annotations

from flask import Blueprint

bp = Blueprint("audit", __name__)
