"""The report kinds the audit package itself provides (domains register theirs)."""

from audit.reports import access_audit, retention, training  # noqa: F401
