"""`pacsdesk audit ...`: verify the chain from the shell."""

from __future__ import annotations

import sys

import click
from flask import Flask
from flask.cli import with_appcontext

from audit.chain import record, verify_chain
from core.extensions import db


@click.group("audit")
def audit_group() -> None:
    """Audit trail commands."""


@audit_group.command("verify")
@with_appcontext
def verify() -> None:
    """Walk the hash chain: exit 0 with the event count if intact, 1 naming the first bad event."""
    result = verify_chain()
    record("audit.verify", outcome="success" if result.ok else "failure",
           object_type="audit_event",
           details={"ok": result.ok, "count": result.count, "head_seq": result.head_seq,
                    "head_hash": result.head_hash, "first_bad_seq": result.first_bad_seq,
                    "problem": result.problem, "source": "cli"})
    db.session.commit()
    click.echo(result.summary())
    sys.exit(0 if result.ok else 1)


def register(app: Flask) -> None:
    """Attach the audit commands."""
    app.cli.add_command(audit_group)
