"""Static files (CSS, JS, fonts) under content-hashed URLs, cached by browsers for a year.

``url_for('static', filename=...)`` and ``url_for('bootstrap.static', filename=...)`` add
``?v=<hash of the file>``; a request whose ``v`` is the file's current hash is answered with
``Cache-Control: public, max-age=31536000, immutable``, so after the first visit a page costs one
request. A stylesheet is served with its own ``url(...)`` references (fonts, images) versioned the
same way, and its hash is that of what is served, so a changed font changes the stylesheet's URL
too. A request without the current hash (an old page, a hand-typed URL) must revalidate.
"""

from __future__ import annotations

import hashlib
import mimetypes
import os
import posixpath
import re
from dataclasses import dataclass

from flask import Flask, Response, abort, request, send_from_directory
from werkzeug.security import safe_join

IMMUTABLE = "public, max-age=31536000, immutable"
REVALIDATE = "no-cache"
VERSION_ARG = "v"
HASH_LENGTH = 16
STATIC_ENDPOINTS = ("static", "bootstrap.static")
_CSS_URL = re.compile(r"""url\(\s*(['"]?)([^'")]+)\1\s*\)""")


@dataclass(frozen=True)
class _Entry:
    """What is known of one file: its stat stamp, hash, and (stylesheets) the body served."""

    stamp: tuple[int, int]
    version: str
    body: bytes | None
    references: tuple[tuple[str, str], ...]  # (file, version) a stylesheet points at


class Assets:
    """Hashes of an app's static files, computed once per file version, and their serving."""

    def __init__(self, app: Flask) -> None:
        self.app = app
        self._entries: dict[tuple[str, str], _Entry] = {}

    def folder(self, endpoint: str) -> str | None:
        """The folder ``endpoint`` serves."""
        if endpoint == "static":
            return self.app.static_folder
        blueprint = self.app.blueprints.get(endpoint.rsplit(".", 1)[0])
        return blueprint.static_folder if blueprint is not None else None

    def _path(self, endpoint: str, filename: str) -> str | None:
        """The file's path on disk, None outside the folder or missing."""
        folder = self.folder(endpoint)
        path = safe_join(folder, filename) if folder else None
        return path if path and os.path.isfile(path) else None

    def entry(self, endpoint: str, filename: str) -> _Entry | None:
        """The file's current entry (recomputed when it or a file it references changed)."""
        path = self._path(endpoint, filename)
        if path is None:
            return None
        stat = os.stat(path)
        stamp = (stat.st_mtime_ns, stat.st_size)
        key = (endpoint, filename)
        known = self._entries.get(key)
        if known is not None and known.stamp == stamp and all(
                self.version(endpoint, ref) == version for ref, version in known.references):
            return known
        with open(path, "rb") as handle:
            content = handle.read()
        body: bytes | None = None
        references: tuple[tuple[str, str], ...] = ()
        if filename.endswith(".css"):
            body, references = self._versioned_css(endpoint, filename, content)
            content = body
        entry = _Entry(stamp, hashlib.sha256(content).hexdigest()[:HASH_LENGTH], body, references)
        self._entries[key] = entry
        return entry

    def version(self, endpoint: str, filename: str) -> str | None:
        """The content hash of a static file, None if there is no such file."""
        entry = self.entry(endpoint, filename)
        return entry.version if entry else None

    def _versioned_css(self, endpoint: str, filename: str, content: bytes
                       ) -> tuple[bytes, tuple[tuple[str, str], ...]]:
        """A stylesheet with its relative ``url(...)`` references versioned, and what they are."""
        text = content.decode("utf-8")
        references: list[tuple[str, str]] = []

        def versioned(match: re.Match[str]) -> str:
            quote, target = match.group(1), match.group(2).strip()
            if target.startswith(("data:", "/", "#")) or "://" in target:
                return match.group(0)
            path, _, fragment = target.partition("#")
            path = path.split("?", 1)[0]
            resolved = posixpath.normpath(posixpath.join(posixpath.dirname(filename), path))
            version = self.version(endpoint, resolved)
            if version is None:
                return match.group(0)
            references.append((resolved, version))
            return f"url({quote}{path}?{VERSION_ARG}={version}{'#' + fragment if fragment else ''}{quote})"

        return _CSS_URL.sub(versioned, text).encode("utf-8"), tuple(references)

    def serve(self, endpoint: str, filename: str) -> Response:
        """The file, cached for a year when the request names its current hash."""
        entry = self.entry(endpoint, filename)
        if entry is None:
            abort(404)
        if entry.body is not None:
            response = Response(entry.body, mimetype=mimetypes.guess_type(filename)[0] or "text/css")
            response.set_etag(entry.version)
            response.make_conditional(request)
        else:
            folder = self.folder(endpoint)
            assert folder is not None
            response = send_from_directory(folder, filename, max_age=0)
        current = request.args.get(VERSION_ARG) == entry.version
        response.headers["Cache-Control"] = IMMUTABLE if current else REVALIDATE
        return response


def _add_version(assets: Assets, endpoint: str, values: dict) -> None:
    """``url_for`` of a static file: add its content hash."""
    if endpoint in STATIC_ENDPOINTS and "filename" in values and VERSION_ARG not in values:
        version = assets.version(endpoint, values["filename"])
        if version is not None:
            values[VERSION_ARG] = version


def init_app(app: Flask) -> None:
    """Serve the app's and Bootstrap's static files through ``Assets`` (after Bootstrap is bound)."""
    assets = Assets(app)
    app.extensions["pacsdesk_assets"] = assets
    app.url_defaults(lambda endpoint, values: _add_version(assets, endpoint, values))
    for endpoint in STATIC_ENDPOINTS:
        if endpoint in app.view_functions:
            app.view_functions[endpoint] = (
                lambda filename, _endpoint=endpoint: assets.serve(_endpoint, filename))
