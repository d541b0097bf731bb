"""Inventory blueprint."""

from __future__ import annotations

from flask import Blueprint

bp = Blueprint("inventory", __name__)
