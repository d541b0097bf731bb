"""Every permission check in PACS Desk: roles map to permissions, views require them."""

from __future__ import annotations

from collections.abc import Callable
from enum import StrEnum
from functools import wraps
from typing import Any, TypeVar

from flask import abort
from flask_login import current_user, login_required

from core.auth.models import Role


class Permission(StrEnum):
    """A thing a role may do."""

    TICKET_FILE = "ticket.file"
    TICKET_READ_ALL = "ticket.read_all"
    TICKET_WORK = "ticket.work"
    HELPDESK_CONFIGURE = "helpdesk.configure"
    ASSET_READ = "asset.read"
    ASSET_MANAGE = "asset.manage"
    AUDIT_READ = "audit.read"
    RETENTION_MANAGE = "retention.manage"
    TRAINING_OWN = "training.own"
    TRAINING_MANAGE = "training.manage"
    REPORT_OPERATIONS = "report.operations"
    REPORT_COMPLIANCE = "report.compliance"
    USERS_MANAGE = "users.manage"
    JOBS_MANAGE = "jobs.manage"
    NODE_TLS_FILES = "node.tls_files"  # a DICOM node's TLS client certificate, key and CA file


_EVERYONE = {Permission.TICKET_FILE, Permission.TRAINING_OWN}

ROLE_PERMISSIONS: dict[Role, frozenset[Permission]] = {
    Role.REQUESTER: frozenset(_EVERYONE),
    Role.TECHNICIAN: frozenset(
        _EVERYONE
        | {
            Permission.TICKET_READ_ALL,
            Permission.TICKET_WORK,
            Permission.ASSET_READ,
            Permission.ASSET_MANAGE,
            Permission.REPORT_OPERATIONS,
        }
    ),
    Role.COMPLIANCE: frozenset(
        _EVERYONE
        | {
            Permission.TICKET_READ_ALL,
            Permission.ASSET_READ,
            Permission.AUDIT_READ,
            Permission.RETENTION_MANAGE,
            Permission.TRAINING_MANAGE,
            Permission.REPORT_OPERATIONS,
            Permission.REPORT_COMPLIANCE,
        }
    ),
    Role.ADMIN: frozenset(Permission),
}


def has_permission(user: Any, permission: Permission) -> bool:
    """Whether ``user`` (possibly anonymous) holds ``permission``."""
    if not getattr(user, "is_authenticated", False) or getattr(user, "is_disabled", True):
        return False
    return permission in ROLE_PERMISSIONS[Role(user.role)]


F = TypeVar("F", bound=Callable[..., Any])


def require_permission(*permissions: Permission) -> Callable[[F], F]:
    """Decorate a view: log-in required, and 403 unless the user holds any of ``permissions``."""

    def decorator(view: F) -> F:
        @wraps(view)
        def wrapped(*args: Any, **kwargs: Any) -> Any:
            if not any(has_permission(current_user, p) for p in permissions):
                abort(403)
            return view(*args, **kwargs)

        return login_required(wrapped)

    return decorator


def can(permission: str) -> bool:
    """Template helper: whether the current user holds ``permission``."""
    return has_permission(current_user, Permission(permission))
