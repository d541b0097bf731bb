"""Attachment checks: size limit, an allow-list checked by content and by name, safe names."""

from __future__ import annotations

import hashlib
import unicodedata
from dataclasses import dataclass

from flask import current_app
from werkzeug.utils import secure_filename

MAX_FILES = 10

# kind -> (extensions, content type served)
KINDS: dict[str, tuple[tuple[str, ...], str]] = {
    "png": ((".png",), "image/png"),
    "jpeg": ((".jpg", ".jpeg"), "image/jpeg"),
    "gif": ((".gif",), "image/gif"),
    "pdf": ((".pdf",), "application/pdf"),
    "text": ((".txt", ".log"), "text/plain; charset=utf-8"),
    "zip": ((".zip",), "application/zip"),
}
ALLOWED_EXTENSIONS = tuple(ext for exts, _ in KINDS.values() for ext in exts)
ALLOWED_DESCRIPTION = "PNG, JPEG, GIF, PDF, text or log (.txt, .log) and ZIP files"


class AttachmentError(ValueError):
    """An upload was refused; the message says which file and why."""


@dataclass(frozen=True)
class Upload:
    """A file as received: the name the browser sent and its bytes."""

    filename: str
    data: bytes


@dataclass(frozen=True)
class CheckedFile:
    """A file that passed every check, ready to store."""

    filename: str
    content_type: str
    data: bytes
    sha256: str

    @property
    def size(self) -> int:
        """Size in bytes."""
        return len(self.data)


def _is_text(data: bytes) -> bool:
    """Valid UTF-8 without NUL bytes (a BOM is fine)."""
    if b"\x00" in data:
        return False
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def sniff(data: bytes) -> str | None:
    """The allowed kind the bytes really are, or None."""
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if data.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if data[:6] in (b"GIF87a", b"GIF89a"):
        return "gif"
    if data.startswith(b"%PDF-"):
        return "pdf"
    if data[:4] in (b"PK\x03\x04", b"PK\x05\x06"):
        return "zip"
    if _is_text(data):
        return "text"
    return None


def _extension(name: str) -> str:
    """Lower-case extension including the dot, or an empty string."""
    dot = name.rfind(".")
    return name[dot:].lower() if dot > 0 else ""


def safe_filename(raw: str, kind: str) -> str:
    """A download name without paths or control characters; a fallback when nothing is left."""
    cleaned = "".join(c for c in unicodedata.normalize("NFKC", raw) if c.isprintable())
    base = cleaned.replace("\\", "/").rsplit("/", 1)[-1]
    ext = _extension(base)
    stem = base[: -len(ext)] if ext else base
    if ext not in KINDS[kind][0]:
        ext = KINDS[kind][0][0]
    stem = secure_filename(stem)[:100].strip("._") or "attachment"
    return f"{stem}{ext}"


def check_uploads(uploads: list[Upload]) -> list[CheckedFile]:
    """Check every file; raise AttachmentError naming the first bad one (nothing is stored)."""
    uploads = [u for u in uploads if u.filename or u.data]
    if len(uploads) > MAX_FILES:
        raise AttachmentError(f"Attach at most {MAX_FILES} files at a time.")
    limit_mb = current_app.config["PACSDESK_MAX_UPLOAD_MB"]
    checked = []
    for upload in uploads:
        shown = "".join(c for c in upload.filename if c.isprintable())[:100] or "(no name)"
        if len(upload.data) > limit_mb * 1024 * 1024:
            raise AttachmentError(f"{shown}: larger than the {limit_mb} MB limit.")
        if not upload.data:
            raise AttachmentError(f"{shown}: the file is empty.")
        ext = _extension(shown.replace("\\", "/").rsplit("/", 1)[-1])
        if ext not in ALLOWED_EXTENSIONS:
            raise AttachmentError(f"{shown}: this type of file is not accepted. "
                                  f"Allowed: {ALLOWED_DESCRIPTION}.")
        kind = sniff(upload.data)
        if kind is None or ext not in KINDS[kind][0]:
            raise AttachmentError(f"{shown}: the content does not match a {ext} file "
                                  f"(it is not an allowed {ext.lstrip('.').upper()} file).")
        checked.append(CheckedFile(safe_filename(upload.filename, kind), KINDS[kind][1],
                                   upload.data, hashlib.sha256(upload.data).hexdigest()))
    return checked
