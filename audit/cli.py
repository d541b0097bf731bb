"""`pacsdesk audit ...`, `pacsdesk retention ...` and `pacsdesk training ...` commands."""

from __future__ import annotations

import json
import sys

import click
from flask import Flask
from flask.cli import with_appcontext

from audit.retention import engine as retention
from audit.trail.chain_verification import run_verification
from audit.training import services as training
from core.auth.services import find_user
from core.extensions import db


@click.group("audit")
def audit_group() -> None:
    """Audit trail commands."""


@audit_group.command("verify")
@with_appcontext
def verify() -> None:
    """Walk the hash chain: exit 0 with the event count if intact, 1 naming the first bad event."""
    run = run_verification("cli")
    db.session.commit()
    if run.ok:
        click.echo(f"audit trail intact: {run.count} events, head #{run.head_seq} {run.head_hash}")
    else:
        click.echo(f"audit trail BROKEN at event #{run.first_bad_seq}: {run.problem}")
    sys.exit(0 if run.ok else 1)


@click.group("retention")
def retention_group() -> None:
    """Retention runs and policies."""


def _print_report(report: retention.RunReport) -> None:
    """A run or dry run as a table."""
    verb = "would destroy" if report.dry_run else "destroyed"
    for c in report.classes:
        span = f" (oldest {c.oldest}, newest {c.newest})" if c.count else ""
        held = f", {c.held} kept by legal holds" if c.held else ""
        click.echo(f"{c.label} [{c.policy} from {c.anchor}]: {verb} {c.count}{span}{held}")
    if not report.classes:
        click.echo("No retention policy is enabled: nothing to do.")
    click.echo(f"total: {report.total}  digest: {report.digest}"
               + (f"  run #{report.run_id}" if report.run_id else ""))


@retention_group.command("run")
@click.option("--dry-run", is_flag=True, help="List what would be destroyed; destroy nothing.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@click.option("--user", "username", default=None, help="Username to record as starting the run.")
@with_appcontext
def run_command(dry_run: bool, as_json: bool, username: str | None) -> None:
    """Destroy records past their retention period (or, with --dry-run, list them)."""
    user = None
    if username:
        user = find_user(username)
        if user is None:
            raise click.ClickException(f"no user '{username}'")
    try:
        report = retention.dry_run() if dry_run else retention.run_retention(
            user.username if user else "command line", user)
    except retention.RetentionBusy as busy:
        raise click.ClickException(str(busy)) from None
    if as_json:
        click.echo(json.dumps(report.as_dict(), indent=2))
    else:
        _print_report(report)


@retention_group.command("policies")
@with_appcontext
def policies_command() -> None:
    """List the record classes and their policies."""
    for rc, policy in retention.list_policies():
        state = "enforced" if policy.enabled else "not enforced"
        click.echo(f"{rc.key:24} {policy.period_text:>22} from {policy.anchor:10} {state}"
                   f"  (floor {rc.floor_years} years)")
    db.session.commit()


@click.group("training")
def training_group() -> None:
    """Training assignments."""


@training_group.command("sync")
@with_appcontext
def sync_command() -> None:
    """Create missing assignments for every user who must take a course."""
    created = training.ensure_assignments()
    db.session.commit()
    click.echo(f"{created} assignments created.")


@training_group.command("overdue")
@with_appcontext
def overdue_command() -> None:
    """List overdue and expired training."""
    training.ensure_assignments()
    db.session.commit()
    _, rows = training.matrix(training.MatrixFilter())
    late = [(u, s) for u, cells in rows for s in cells.values() if s.needs_action]
    for user, status in late:
        click.echo(f"{user.username:20} {status.assignment.course.title:50} {status.status.label:8} "
                   f"due {status.due_on}")
    click.echo(f"{len(late)} overdue or expired.")


def register(app: Flask) -> None:
    """Attach the audit, retention and training commands."""
    for group in (audit_group, retention_group, training_group):
        app.cli.add_command(group)
