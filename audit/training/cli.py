"""`pacsdesk training ...` commands."""

from __future__ import annotations

from pathlib import Path

import click
from flask.cli import with_appcontext

from audit.training import bulk
from audit.training import services as training
from core.auth.permissions import Permission, has_permission
from core.auth.services import find_user
from core.database import commit_keeping_loaded
from core.extensions import db


@click.group("training")
def training_group() -> None:
    """Training assignments and completions."""


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


@training_group.command("import")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--source", default=None, help="Where the records come from, kept in the audit trail "
                                             "(default: the file's name).")
@click.option("--user", "username", default=None,
              help="The training manager recorded as entering the completions (needed unless --dry-run).")
@click.option("--dry-run", is_flag=True, help="Check every row and print the counts; import nothing.")
@with_appcontext
def import_command(file: Path, source: str | None, username: str | None, dry_run: bool) -> None:
    """Import past completions from FILE (CSV, as on the web page): nothing if any row is bad."""
    actor = None
    if not dry_run:
        if not username:
            raise click.UsageError("give --user: the training manager recorded as entering the completions")
        actor = find_user(username)
        if actor is None or not has_permission(actor, Permission.TRAINING_MANAGE):
            raise click.ClickException(f"no active account {username!r} that manages training")
    raw = file.read_bytes()
    try:
        plan = bulk.plan_import(raw) if actor is None else bulk.import_completions(
            raw, actor, source or file.name, lambda _recorded, _total: commit_keeping_loaded())
    except bulk.CompletionImportError as refused:
        db.session.rollback()
        for row, column, message in refused.problems:
            click.echo(f"{file.name}: row {row}: {column or 'row'}: {message}", err=True)
        click.echo(f"{len(refused.problems)} problem(s) in {file.name}; nothing was imported.", err=True)
        raise SystemExit(2) from None
    counts = f"{len(plan.rows)} row(s): {len(plan.to_record)} to record, {len(plan.skipped)} already recorded"
    if actor is None:
        db.session.rollback()
        click.echo(f"{file.name}: {counts}. Dry run: nothing was imported.")
        return
    db.session.commit()
    click.echo(f"Imported {len(plan.to_record)} completion(s) from {file.name} ({counts}).")
