"""Is the disk full? A cheap check for /healthz, and the memory of a write that failed for want of space.

The check looks at the free space of the instance folder and of the SQLite database's folder
against ``PACSDESK_MIN_FREE_DISK_MB`` and writes a small file there; its answer is kept for a few
seconds, so a load balancer polling /healthz costs nothing. A write that failed with ENOSPC or
SQLITE_FULL (a database that hit its size limit) is remembered for a minute: the free space may
look fine while the database still cannot grow.
"""

from __future__ import annotations

import errno
import os
import threading
import time
from pathlib import Path

from flask import Flask
from sqlalchemy.engine import make_url

from core.registry import app_registry, current_app_object

CHECK_CACHE_SECONDS = 5.0
REMEMBER_SECONDS = 60.0
PROBE_BYTES = 4096
_lock = threading.Lock()


def _state(app: Flask) -> dict[str, float | bool]:
    """This process's memory of the last check and of the last failed write."""
    return app_registry(app, "disk_state", dict)


def folders(app: Flask) -> list[Path]:
    """Folders PACS Desk writes to: the instance folder and, on SQLite, the database's folder."""
    found = [Path(app.config["PACSDESK_INSTANCE_PATH"])]
    url = make_url(app.config["SQLALCHEMY_DATABASE_URI"])
    if url.get_backend_name() == "sqlite" and url.database and url.database != ":memory:":
        found.append(Path(url.database).resolve().parent)
    return list(dict.fromkeys(found))


def _short_of_space(folder: Path, min_free_mb: int) -> bool:
    """Whether ``folder`` has less free space than asked, or refuses a small write for want of it."""
    try:
        stats = os.statvfs(folder)
        if stats.f_bavail * stats.f_frsize < min_free_mb * 1024 * 1024:
            return True
        probe = folder / f".pacsdesk-disk-check-{os.getpid()}"
        try:
            with open(probe, "wb") as handle:
                handle.write(b"\0" * PROBE_BYTES)
                handle.flush()
                os.fsync(handle.fileno())
        finally:
            probe.unlink(missing_ok=True)
    except OSError as exc:
        return exc.errno in (errno.ENOSPC, errno.EDQUOT)
    return False


def remember_full(app: Flask | None = None) -> None:
    """Note that a write just failed because the disk (or the database's size limit) is full."""
    _state(app or current_app_object())["failed_at"] = time.monotonic()


def disk_full(app: Flask | None = None) -> bool:
    """Whether writes are failing for want of space (cached for a few seconds)."""
    app = app or current_app_object()
    state = _state(app)
    now = time.monotonic()
    failed_at = float(state.get("failed_at", -REMEMBER_SECONDS))
    if now - failed_at < REMEMBER_SECONDS:
        return True
    with _lock:
        if now - float(state.get("checked_at", -CHECK_CACHE_SECONDS)) >= CHECK_CACHE_SECONDS:
            minimum = app.config["PACSDESK_MIN_FREE_DISK_MB"]
            state["full"] = any(_short_of_space(folder, minimum) for folder in folders(app))
            state["checked_at"] = now
        return bool(state["full"])
