"""`pacsdesk training ...` commands."""

from __future__ import annotations

import click
from flask.cli import with_appcontext

from audit.training import services as training
from core.extensions import db


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
