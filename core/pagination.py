"""Pagination of select statements for list pages."""

from __future__ import annotations

from flask import request
from flask_sqlalchemy.pagination import Pagination
from sqlalchemy import Select

from core.extensions import db


def paginate(query: Select, per_page: int = 25, count: bool = True) -> Pagination:
    """Paginate ``query`` by the request's ``page`` argument (bad values mean page 1)."""
    try:
        page = max(1, int(request.args.get("page", "1")))
    except ValueError:
        page = 1
    return db.paginate(query, page=page, per_page=per_page, error_out=False, count=count)
