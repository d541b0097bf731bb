"""`pacsdesk users ...`: manage accounts from the shell."""

from __future__ import annotations

import sys

import click
from flask import current_app
from flask.cli import with_appcontext
from sqlalchemy import select

from core.auth import directory_accounts, second_factor, services
from core.auth.models import Role, User
from core.extensions import db


@click.group("users")
def users_group() -> None:
    """Create, list, disable accounts and change roles."""


@users_group.command("create")
@click.argument("username")
@click.option("--role", required=True, type=click.Choice([r.value for r in Role]))
@click.option("--email", default=None)
@click.option("--full-name", default="")
@click.option("--department", default="")
@click.option("--password-stdin", is_flag=True, help="Read the password from standard input.")
@with_appcontext
def create(username: str, role: str, email: str | None, full_name: str, department: str,
           password_stdin: bool) -> None:
    """Create an account; prints a generated password unless --password-stdin."""
    password = sys.stdin.readline().rstrip("\r\n") if password_stdin else services.generate_password()
    try:
        user = services.create_user(services.NewUser(
            username=username, role=Role(role), password=password, email=email,
            full_name=full_name, department=department, must_change_password=not password_stdin))
    except services.AccountError as exc:
        raise click.ClickException(str(exc)) from None
    db.session.commit()
    click.echo(f"created {user.username} ({user.role})")
    if not password_stdin:
        click.echo(f"password: {password}")


@users_group.command("list")
@with_appcontext
def list_users() -> None:
    """List accounts."""
    for user in db.session.execute(select(User).order_by(User.username)).scalars():
        state = "disabled" if user.is_disabled else ("locked" if user.is_locked() else "active")
        mfa = "mfa" if user.mfa_enabled else "-"
        click.echo(f"{user.username:24} {user.role:12} {state:9} {user.auth_source:9} {mfa:3} "
                   f"{user.full_name}")


def _get(username: str) -> User:
    """Find an account or fail with a clear message."""
    user = services.find_user(username)
    if user is None:
        raise click.ClickException(f"no account named {username!r}")
    return user


@users_group.command("set-role")
@click.argument("username")
@click.argument("role", type=click.Choice([r.value for r in Role]))
@with_appcontext
def set_role(username: str, role: str) -> None:
    """Change an account's role."""
    services.change_role(_get(username), Role(role))
    db.session.commit()
    click.echo(f"{username}: role {role}")


@users_group.command("disable")
@click.argument("username")
@with_appcontext
def disable(username: str) -> None:
    """Disable an account and end its sessions."""
    services.disable_user(_get(username))
    db.session.commit()
    click.echo(f"{username}: disabled")


@users_group.command("enable")
@click.argument("username")
@with_appcontext
def enable(username: str) -> None:
    """Re-enable an account."""
    services.enable_user(_get(username))
    db.session.commit()
    click.echo(f"{username}: enabled")


@users_group.command("unlock")
@click.argument("username")
@with_appcontext
def unlock(username: str) -> None:
    """Clear a lockout after failed logins."""
    services.unlock_user(_get(username))
    db.session.commit()
    click.echo(f"{username}: unlocked")


@users_group.command("set-password")
@click.argument("username")
@click.option("--password-stdin", is_flag=True, help="Read the password from standard input.")
@with_appcontext
def set_password(username: str, password_stdin: bool) -> None:
    """Set a new password (generated, printed, and to be changed at next login, unless --password-stdin)."""
    password = sys.stdin.readline().rstrip("\r\n") if password_stdin else services.generate_password()
    try:
        services.set_password(_get(username), password, must_change=not password_stdin)
    except services.AccountError as exc:
        raise click.ClickException(str(exc)) from None
    db.session.commit()
    click.echo(f"{username}: password changed")
    if not password_stdin:
        click.echo(f"password: {password}")


@users_group.command("reset-mfa")
@click.argument("username")
@with_appcontext
def reset_mfa(username: str) -> None:
    """Remove an account's authenticator and recovery codes; it enrols again at next login."""
    try:
        second_factor.reset_mfa(_get(username))
    except services.AccountError as exc:
        raise click.ClickException(str(exc)) from None
    db.session.commit()
    click.echo(f"{username}: multi-factor authentication reset")


@users_group.command("sync-directory")
@with_appcontext
def sync_directory() -> None:
    """Sync with the hospital directory now: end the access of people gone from it (exit 1 on failure)."""
    config = current_app.config["PACSDESK_DIRECTORY"]
    if config is None:
        raise click.ClickException("no directory is configured (PACSDESK_LDAP_URL is not set)")
    outcome = directory_accounts.sync_directory(config)
    db.session.commit()
    if not outcome.ok:
        click.echo(f"directory sync failed, nothing changed: {outcome.problem}", err=True)
        raise SystemExit(1)
    click.echo(f"directory sync: {outcome.listed} people listed, access ended for {outcome.ended}, "
               f"role changed for {outcome.role_changes}")
