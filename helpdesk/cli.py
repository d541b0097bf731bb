"""`pacsdesk helpdesk ...` commands."""

from __future__ import annotations

import click
from flask.cli import AppGroup

helpdesk_group = AppGroup("helpdesk", help="Help desk maintenance.")


@helpdesk_group.command("autoclose")
def autoclose_command() -> None:
    """Close tickets resolved more than PACSDESK_AUTOCLOSE_DAYS days ago."""
    from helpdesk.jobs import close_resolved_tickets

    closed = close_resolved_tickets()
    click.echo(f"Closed {len(closed)} resolved ticket{'' if len(closed) == 1 else 's'}"
               + (f": {', '.join(closed)}" if closed else "."))
