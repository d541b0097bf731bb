"""A small client for Orthanc's REST API: find a study by its UID and delete it (no Flask, no database).

Each failure is its own exception so a job can tell the user what to fix: the credentials
(401/403), a study that is not there (404), the archive failing (5xx), or no answer at all.
Messages name the archive and the HTTP status, never a patient or a study.
"""

from __future__ import annotations

import base64
import http.client
import json
import re
import ssl
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

ORTHANC_ID = re.compile(r"[0-9a-f]{8}(-[0-9a-f]{8}){4}")


class OrthancError(Exception):
    """A request to Orthanc's REST API failed."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class OrthancAuthError(OrthancError):
    """Orthanc refused the credentials (401) or the user's rights (403)."""


class OrthancNotFound(OrthancError):
    """Orthanc has no such resource (404)."""


class OrthancServerError(OrthancError):
    """Orthanc failed while handling the request (5xx)."""


class OrthancUnreachable(OrthancError):
    """No answer from Orthanc: connection refused or reset, TLS failed, or the name did not resolve."""


class OrthancTimeout(OrthancUnreachable):
    """Orthanc did not connect or answer within the timeout."""


@dataclass(frozen=True)
class OrthancClient:
    """One Orthanc's REST API at ``base_url`` (``http://host:8042``), with HTTP Basic credentials."""

    base_url: str
    username: str = ""
    password: str = field(default="", repr=False)
    timeout: float = 10.0
    ssl_context: ssl.SSLContext | None = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        """Refuse a URL, user name or timeout that cannot work, naming the field."""
        parts = urlsplit(self.base_url) if isinstance(self.base_url, str) else None
        if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"base_url must be an http:// or https:// URL, not {self.base_url!r}")
        if parts.query or parts.fragment or parts.username or parts.password:
            raise ValueError("base_url cannot carry a query, a fragment or credentials; "
                             "give username and password separately")
        try:
            parts.port  # noqa: B018 - raises ValueError on a bad port
        except ValueError as exc:
            raise ValueError(f"base_url has an invalid port: {exc}") from None
        if ":" in self.username or any(ord(c) < 32 for c in self.username + self.password):
            raise ValueError("username cannot contain a colon or control characters, "
                             "nor can password contain control characters")
        if not self.timeout > 0:
            raise ValueError(f"timeout must be a positive number of seconds, not {self.timeout!r}")

    @property
    def _where(self) -> str:
        """The archive's address for messages (no credentials)."""
        parts = urlsplit(self.base_url)
        return f"Orthanc at {parts.scheme}://{parts.netloc}"

    def _request(self, method: str, path: str, body: bytes | None = None) -> Any:
        """Send one request and return the decoded JSON answer, or raise the matching error."""
        parts = urlsplit(self.base_url)
        connection: http.client.HTTPConnection
        if parts.scheme == "https":
            connection = http.client.HTTPSConnection(parts.hostname or "", parts.port, timeout=self.timeout,
                                                     context=self.ssl_context)
        else:
            connection = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=self.timeout)
        headers = {"Accept": "application/json"}
        if self.username or self.password:
            token = base64.b64encode(f"{self.username}:{self.password}".encode()).decode("ascii")
            headers["Authorization"] = f"Basic {token}"
        if body is not None:
            headers["Content-Type"] = "text/plain"
        try:
            connection.request(method, parts.path.rstrip("/") + path, body=body, headers=headers)
            response = connection.getresponse()
            status, payload = response.status, response.read()
        except TimeoutError:
            raise OrthancTimeout(f"{self._where}: no answer within {self.timeout:.1f} s") from None
        except ssl.SSLError as exc:
            raise OrthancUnreachable(f"{self._where}: TLS failed: {exc.reason or exc}") from None
        except (OSError, http.client.HTTPException) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else type(exc).__name__
            raise OrthancUnreachable(f"{self._where}: connection failed: {reason}") from None
        finally:
            connection.close()
        return self._decode(method, status, payload)

    def _decode(self, method: str, status: int, payload: bytes) -> Any:
        """The JSON of a 2xx answer, or the error for any other status."""
        if status in (401, 403):
            raise OrthancAuthError(f"{self._where} refused the credentials (HTTP {status}); check the "
                                   f"user name and password file", status)
        if status == 404:
            raise OrthancNotFound(f"{self._where}: not found (HTTP 404) for {method}", status)
        if status >= 500:
            raise OrthancServerError(f"{self._where} failed (HTTP {status}) on {method}"
                                     f"{_orthanc_detail(payload)}", status)
        if not 200 <= status < 300:
            raise OrthancError(f"{self._where} answered HTTP {status} on {method}"
                               f"{_orthanc_detail(payload)}", status)
        if not payload.strip():
            return None
        try:
            return json.loads(payload)
        except ValueError:
            raise OrthancError(f"{self._where} answered {method} with something that is not JSON",
                               status) from None

    def find_study(self, study_uid: str) -> str | None:
        """The Orthanc id of the study with this Study Instance UID, or None (``POST /tools/lookup``)."""
        if not isinstance(study_uid, str) or not study_uid.strip():
            raise ValueError("study_uid must be a non-empty text")
        found = self._request("POST", "/tools/lookup", study_uid.strip().encode("ascii", "replace"))
        if not isinstance(found, list):
            raise OrthancError(f"{self._where} answered /tools/lookup with an unexpected document")
        for item in found:
            if isinstance(item, dict) and item.get("Type") == "Study" and isinstance(item.get("ID"), str):
                return str(item["ID"])
        return None

    def delete_study(self, orthanc_id: str) -> None:
        """Delete the study with this Orthanc id (``DELETE /studies/{id}``); OrthancNotFound if absent."""
        if not isinstance(orthanc_id, str) or not ORTHANC_ID.fullmatch(orthanc_id):
            raise ValueError("orthanc_id must be an Orthanc id: five groups of 8 hex digits joined by '-'")
        self._request("DELETE", f"/studies/{orthanc_id}")


def _orthanc_detail(payload: bytes) -> str:
    """Orthanc's generic error name from a JSON error body (its ``Details`` may name a study: left out)."""
    try:
        document = json.loads(payload)
    except ValueError:
        return ""
    if isinstance(document, dict):
        message = document.get("Message")
        if isinstance(message, str) and message:
            return f": {message[:200]}"
    return ""
