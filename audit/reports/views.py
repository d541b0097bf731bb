"""Reports blueprint: choose, generate and download PDF reports."""

from __future__ import annotations

from flask import Blueprint

bp = Blueprint("reports", __name__)
