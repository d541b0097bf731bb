"""`pacsdesk retention ...` commands."""

from __future__ import annotations

import json

import click
from flask.cli import with_appcontext

from audit.retention import engine as retention
from core.auth.services import find_user
from core.extensions import db


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
