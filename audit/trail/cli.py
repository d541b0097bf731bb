"""`pacsdesk audit ...` commands."""

from __future__ import annotations

import sys

import click
from flask.cli import with_appcontext

from audit.trail.chain_verification import run_verification
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
