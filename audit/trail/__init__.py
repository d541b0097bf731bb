"""PACS Desk's own audit trail: events, the keyed chain, search and chain verification."""

from __future__ import annotations

from flask import Flask


def init_app(app: Flask) -> None:
    """Register the trail's actions, record class, job, pages, navigation and banner."""
    from audit.reports.registry import register_export_actions
    from audit.retention.registry import register_record_class, register_scope_matcher
    from audit.trail import (
        chain,
        chain_verification,
        cli,
        enforcement,
        guards,
        history,
        jobs,
        retention,
        rotation,
        search,
        search_index,
        words,
    )
    from audit.trail.models import AuditEvent
    from core import audit_sink
    from core.auth.models import Role
    from core.auth.permissions import Permission
    from core.database import listen_once
    from core.jobs.registry import JobKind, register_job
    from core.navigation import NavItem, register_banner_source, register_nav
    from core.notifications import NotificationKind, register_notification_kind
    from core.reference_data import register_reference_data

    enforcement.install()
    for module in (chain, chain_verification, rotation, search):
        audit_sink.register_actions(app, module.AUDIT_ACTIONS)
    register_export_actions(app, search.AUDIT_ACTIONS)
    listen_once(AuditEvent.metadata, "after_create", guards.install_after_create)
    listen_once(AuditEvent.__table__, "after_create", search_index.install_after_create)
    register_record_class(app, retention.RETENTION_CLASS)
    register_scope_matcher(app, retention.RETENTION_CLASS.key, retention.audit_matches)
    register_reference_data(app, "audit search index", search_index.ensure_search_index)
    register_job(app, JobKind(jobs.VERIFY_JOB, "Verify the audit chain (full walk)",
                              jobs.verify_chain_job, max_attempts=2, every=lambda _app: jobs.NIGHTLY))
    register_job(app, JobKind(jobs.ANCHOR_JOB, "Anchor the audit chain (incremental verification)",
                              jobs.anchor_chain_job, max_attempts=2, every=lambda _app: jobs.HOURLY))
    register_notification_kind(app, NotificationKind(
        "audit.chain_broken", "The audit trail failed its integrity check (security)",
        roles=frozenset({Role.ADMIN, Role.COMPLIANCE}), optional=False))
    register_nav(app, NavItem("Audit trail", "audit.search_events", Permission.AUDIT_READ, 60,
                              "journal-check", "Compliance"))
    register_banner_source(app, chain_verification.broken_chain_banner)
    app.jinja_env.globals.update(change_words=history.change_words, detail_fields=words.detail_fields,
                                 object_words=words.object_words,
                                 action_words=words.action_words)
    app.cli.add_command(cli.audit_group)
