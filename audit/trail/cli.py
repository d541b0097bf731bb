"""`pacsdesk audit ...` commands: verify the trail, rotate its key."""

from __future__ import annotations

import re
import sys

import click
from flask.cli import with_appcontext
from sqlalchemy.exc import SQLAlchemyError

from audit.trail.chain_verification import run_verification
from audit.trail.keys import AuditKeyError, keyring, new_key_line
from audit.trail.rotation import rotate_key
from audit.trail.verify import ChainVerification
from core.config import AUDIT_KEY_ID_MAX
from core.db_faults import Fault, classify
from core.extensions import db

HEAD_HASH = re.compile(r"^[0-9a-f]{64}$")
EXIT_BROKEN = 1
EXIT_NOT_RECORDED = 2


@click.group("audit")
def audit_group() -> None:
    """Audit trail commands."""


def _head_hash(_ctx: click.Context, _param: click.Parameter, value: str | None) -> str | None:
    """Check a head hash given with --against."""
    if value is None:
        return None
    value = value.strip().lower()
    if not HEAD_HASH.match(value):
        raise click.BadParameter("must be the 64 hexadecimal digits of a head hash, as printed "
                                 "in a report")
    return value


@audit_group.command("verify")
@click.option("--full", is_flag=True, help="Walk every event, not only those since the last "
              "verified head.")
@click.option("--against", metavar="HASH", callback=_head_hash,
              help="Also check that this head hash (printed in a report) is still in the trail.")
@with_appcontext
def verify(full: bool, against: str | None) -> None:
    """Verify the trail against its keys and anchors, then anchor and record the result.

    Exit 0: intact. Exit 1: broken, naming the first problem. Exit 2: intact, but the anchor or
    the run record could not be written (the state is printed first).
    """
    outcome: ChainVerification | None = None

    def announce(result: ChainVerification) -> None:
        nonlocal outcome
        outcome = result
        click.echo(result.summary())
        if result.ok and result.against_seq is not None:
            click.echo(f"head hash {against} is event #{result.against_seq}, still in the trail "
                       "and linked to the current head")

    try:
        run = run_verification("cli", full=full, against=against, announce=announce)
        db.session.commit()
    except (SQLAlchemyError, OSError) as exc:
        db.session.rollback()
        if outcome is None:
            raise
        if classify(exc) is Fault.DISK_FULL:
            click.echo("not recorded: disk full (the result above stands; run the verification again "
                       "once there is space, to record it)", err=True)
        else:
            click.echo(f"the verification could not be recorded in the database: {_reason(exc)}",
                       err=True)
        sys.exit(EXIT_NOT_RECORDED if outcome.ok else EXIT_BROKEN)
    if run.anchor_n is not None:
        click.echo(f"anchored as entry #{run.anchor_n} of the anchor log")
    if run.anchor_note:
        click.echo(f"anchor not complete: {run.anchor_note}", err=True)
    click.echo(f"recorded as verification run #{run.id}")
    if not run.ok:
        sys.exit(EXIT_BROKEN)
    if run.anchor_note:
        sys.exit(EXIT_NOT_RECORDED)


def _reason(exc: BaseException) -> str:
    """The first line of a database or disk error, without the statement."""
    original = getattr(exc, "orig", None) or exc
    return str(original).splitlines()[0] if str(original) else type(original).__name__


@audit_group.command("rotate-key")
@with_appcontext
def rotate_key_command() -> None:
    """Seal new events with a newer audit key and record the rotation in the trail.

    With a key file, a new key is generated into it; with PACSDESK_AUDIT_KEY, add the new
    id:key there on every process and restart them first.
    """
    try:
        rotation = rotate_key()
        db.session.commit()
    except AuditKeyError as exc:
        db.session.rollback()
        raise click.ClickException(str(exc)) from None
    made = "generated into the key file and " if rotation.generated else ""
    click.echo(f"audit key #{rotation.key_id} {made}in force from event #{rotation.seq} "
               f"(previous key #{rotation.previous_key_id}); keep every key of the keyring: "
               "older events are verified with theirs")


@audit_group.command("new-key")
@with_appcontext
def new_key() -> None:
    """Print a new id:key entry for the keyring kept in a secret manager (records nothing)."""
    next_id = keyring().newest.key_id + 1
    if next_id > AUDIT_KEY_ID_MAX:
        raise click.ClickException(f"key ids go up to {AUDIT_KEY_ID_MAX}")
    click.echo(new_key_line(next_id))
