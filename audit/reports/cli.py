"""`pacsdesk reports ...` commands."""

from __future__ import annotations

from pathlib import Path

import click
from flask import Flask
from flask.cli import with_appcontext

from audit.reports import (
    kinds,  # noqa: F401 - registers the audit report kinds
    services,
)
from audit.reports.registry import ReportError, report_kinds
from core.extensions import db


@click.group("reports")
def reports_group() -> None:
    """PDF compliance and operations reports."""


@reports_group.command("build")
@click.argument("kind")
@click.option("--from", "date_from", metavar="YYYY-MM-DD", help="First local day of the period.")
@click.option("--to", "date_to", metavar="YYYY-MM-DD", help="Last local day of the period (included).")
@click.option("--user", "username", help="Access audit: only this username's events.")
@click.option("--object", "obj", metavar="TYPE:ID",
              help="Access audit: only this object, e.g. ticket:PD-000123.")
@click.option("--run", "run_id", help="Certificate of destruction: the retention run's number.")
@click.option("--include-identifiers", is_flag=True,
              help="Access audit: print patient identifiers in full (masked otherwise); audited.")
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False, writable=True),
              help="Where to write the PDF.")
@with_appcontext
def build(kind: str, date_from: str | None, date_to: str | None, username: str | None,
          obj: str | None, run_id: str | None, include_identifiers: bool, output: str) -> None:
    """Generate a KIND report as PDF (access-audit, training, inventory, retention, helpdesk)."""
    try:
        request = services.validate_request(kind, date_from, date_to, username, obj, run_id,
                                            include_identifiers=include_identifiers)
    except ReportError as exc:
        db.session.rollback()
        option = {"date_from": "--from", "date_to": "--to", "user": "--user", "object": "--object",
                  "run_id": "--run", "include_identifiers": "--include-identifiers",
                  "kind": "KIND"}.get(exc.field or "", "")
        raise click.UsageError(f"{option}: {exc}" if option else str(exc)) from None
    target = Path(output)
    if not target.parent.is_dir():
        raise click.UsageError(f"-o: folder {target.parent} does not exist")
    try:
        pdf = services.build_from_cli(request)
    except ReportError as exc:
        db.session.rollback()
        raise click.ClickException(str(exc)) from None
    target.write_bytes(pdf)
    click.echo(f"{request.kind} report {request.report_id} written to {target} ({len(pdf) // 1024} KB)")


@reports_group.command("kinds")
@with_appcontext
def list_kinds() -> None:
    """List the report kinds."""
    for kind in report_kinds():
        click.echo(f"{kind.key:14} {kind.title}")


def register(app: Flask) -> None:
    """Attach the reports commands."""
    app.cli.add_command(reports_group)
