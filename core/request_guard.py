"""Input no page can use: control characters, numbers too large for the database, absolute redirects.

Every request passes here before its view: a NUL or another control character in a query
parameter or a form field, or a whole-number query parameter beyond the database's 64-bit
integers, is answered with a 400 that names the parameter, on SQLite and PostgreSQL alike
(PostgreSQL refuses NUL in text and both refuse such integers, which surfaced as a 500). So is a
query parameter holding a character no search can match as typed: a superscript or Roman-numeral
"digit" (``²``, ``Ⅻ``), a private-use, unassigned or surrogate code point. The
login form checks its own fields, so that a refused login is still audited. Redirects that
Werkzeug builds itself (a doubled slash, a missing trailing slash) carry the request's Host
header; they are rewritten here to a path on this site.
"""

from __future__ import annotations

import re
import unicodedata
from urllib.parse import urlsplit, urlunsplit

from flask import Flask, make_response, request
from werkzeug.exceptions import BadRequest
from werkzeug.routing import IntegerConverter
from werkzeug.wrappers import Response

from core.errors import error_response

DB_INT_MAX = 2**63 - 1
CONTROL_IN_ARG = re.compile(r"[\x00-\x1f\x7f]")
CONTROL_IN_FORM = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")  # tab and line breaks are text
WHOLE_NUMBER = re.compile(r"[+-]?[0-9]+")
# Endpoints that check their own input: the login audits what it refuses and keeps ``next`` safe.
SELF_CHECKED = {"auth.login"}
# Query parameters whose long runs of digits are not database ids: words or identifiers typed by
# a person (an accession number, a serial), and the audit search's cursors, which it clamps.
# Unicode categories a query parameter cannot hold: numbers that are not decimal digits, private use,
# unassigned and surrogate code points.
UNSEARCHABLE_CATEGORIES = {"No", "Nl", "Co", "Cn", "Cs"}
NOT_IDS = {"q", "username", "user", "object_id", "client_address", "patient_id", "patient_name",
           "accession", "study_uid", "source", "asset", "location", "next", "before", "after"}


class DatabaseIntConverter(IntegerConverter):
    """``<int:...>`` in a route: a number beyond the database's integers is a 400, not a crash."""

    def to_python(self, value: str) -> int:
        """The id, or a 400 when the database could not hold it."""
        number = super().to_python(value)
        if number > DB_INT_MAX:
            raise BadRequest("The number in the address is too large.")
        return number


def _unsearchable(value: str) -> str | None:
    """The first character of ``value`` no search can match as typed, or None."""
    for char in value:
        if unicodedata.category(char) in UNSEARCHABLE_CATEGORIES:
            return char
    return None


def input_problem() -> str | None:
    """Why this request's parameters cannot be processed at all, or None."""
    if request.endpoint in SELF_CHECKED:
        return None
    for name, value in request.args.items(multi=True):
        if CONTROL_IN_ARG.search(name) or CONTROL_IN_ARG.search(value):
            return f"The parameter «{CONTROL_IN_ARG.sub('', name)[:40]}» contains a control character " \
                   "(such as NUL). Remove it and try again."
        odd = _unsearchable(value)
        if odd is not None:
            shown = f"«{odd}» " if unicodedata.category(odd) in {"No", "Nl"} else ""
            return f"The parameter «{CONTROL_IN_ARG.sub('', name)[:40]}» contains {shown}" \
                   f"(U+{ord(odd):04X}), which cannot be searched. Type plain digits and letters."
        if name not in NOT_IDS and WHOLE_NUMBER.fullmatch(value) and abs(int(value)) > DB_INT_MAX:
            return f"The number in «{name[:40]}» is too large."
    if request.method not in {"POST", "PUT", "PATCH"}:
        return None
    for name, value in request.form.items(multi=True):
        if CONTROL_IN_FORM.search(name) or CONTROL_IN_FORM.search(value):
            return f"The field «{CONTROL_IN_FORM.sub('', name)[:40]}» contains a control character " \
                   "(such as NUL). Remove it and try again."
    return None


def _refuse_bad_input() -> Response | None:
    """Answer 400 before any view sees unusable input."""
    problem = input_problem()
    if problem is None:
        return None
    return make_response(error_response(400, problem))


def _relative_location(response: Response) -> Response:
    """Turn a redirect to this request's own Host into a path (the Host header is the client's word)."""
    location = response.headers.get("Location")
    if not location:
        return response
    parts = urlsplit(location)
    if parts.netloc and parts.netloc.lower() == request.host.lower():
        path = parts.path if parts.path.startswith("/") and not parts.path.startswith("//") else "/"
        response.headers["Location"] = urlunsplit(("", "", path, parts.query, parts.fragment))
    return response


def init_app(app: Flask) -> None:
    """Check every request's input first and keep redirects on this site."""
    app.url_map.converters["int"] = DatabaseIntConverter
    app.before_request_funcs.setdefault(None, []).insert(0, _refuse_bad_input)
    app.after_request(_relative_location)
