"""Pagination of select statements for list pages."""

from __future__ import annotations

from flask import abort, request
from flask_sqlalchemy.pagination import Pagination
from sqlalchemy import Select

from core.extensions import db


def paginate(query: Select, per_page: int = 25, count: bool = True) -> Pagination:
    """Paginate ``query`` by the request's ``page`` argument (bad values mean page 1)."""
    raw = request.args.get("page", "1")
    page = int(raw) if raw.isascii() and raw.isdigit() and len(raw) <= 9 else 0
    if page < 1:
        if raw.isascii() and raw.isdigit() and len(raw) > 9:
            abort(400, description="page: the page number is too large.")
        page = 1
    return db.paginate(query, page=page, per_page=per_page, error_out=False, count=count)
