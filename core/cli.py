"""The `pacsdesk` command: Flask's CLI with the app loaded, plus setup, serve and demo."""

from __future__ import annotations

import gc
import logging
import os
import random
import sys
from typing import Any

import click
from flask import Flask, current_app
from flask.cli import FlaskGroup, with_appcontext
from flask_migrate import upgrade
from sqlalchemy import inspect

from core import audit_sink
from core.auth.cli import users_group
from core.auth.models import Role
from core.auth.services import NewUser, count_users, create_user, generate_password
from core.backup import backup_command, restore_command
from core.config import JOB_THREADS, ConfigError, load_config
from core.demo import DemoContext, existing_data, seeders
from core.extensions import db
from core.reference_data import load_reference_data

# Audit actions recorded here (registered by the package's init_app).
AUDIT_ACTIONS = {"system.demo_loaded": "Demonstration data loaded"}


def _create_app(config: dict[str, Any] | None = None) -> Flask:
    """App factory for the CLI (``config`` overrides the environment's settings)."""
    from app import create_app

    return create_app(config)


def web_app(threads: int) -> Flask:
    """A web worker's app, its pool sized to its threads, its own objects kept out of full collections.

    A full garbage collection walks every tracked object. With the app loaded that is some
    200,000 objects, which stopped a worker for 70-110 ms every thousand or so requests, and
    every request queued behind it waited as long. What exists once the app is built lives as
    long as the worker, so it is frozen: a full pass then walks only what requests leave behind.
    """
    app = _create_app({"PACSDESK_WEB_THREADS": threads})
    gc.collect()  # building the app's garbage goes first: a frozen object is never freed
    gc.freeze()
    return app


def worker_app(threads: int, config: dict[str, Any] | None = None) -> Flask:
    """The job worker's app, its pool sized to each job's session and snapshot read and the loop's own."""
    return _create_app({**(config or {}), "PACSDESK_WEB_THREADS": threads + 1})


def _schema_is_current() -> bool:
    """Whether the database already has the account table (a cheap first-run probe)."""
    return inspect(db.engine).has_table("user_account")


@click.command("setup")
@click.option("--admin", "admin_name", default="admin", show_default=True,
              help="Username of the first administrator.")
@with_appcontext
def setup_command(admin_name: str) -> None:
    """Build or upgrade the schema and create the first administrator if there is none."""
    upgrade()
    load_reference_data()
    db.session.commit()
    if count_users() == 0:
        password = generate_password()
        create_user(NewUser(username=admin_name, role=Role.ADMIN, password=password,
                            full_name="PACS Desk administrator", must_change_password=True))
        db.session.commit()
        click.echo("")
        click.echo("First administrator created. Log in with:")
        click.echo(f"  username: {admin_name}")
        click.echo(f"  password: {password}")
        click.echo("This password is shown only once; you will be asked to change it when you first log in.")
        click.echo("")
    else:
        click.echo("Schema is up to date; accounts already exist (no new administrator).")


LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


@click.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=click.IntRange(1, 65535))
@click.option("--workers", type=click.IntRange(1, 64),
              help="Web worker processes (default: PACSDESK_WEB_WORKERS, one per core, at least 2).")
@click.option("--threads", type=click.IntRange(1, 64),
              help="Request threads per worker (default: PACSDESK_WEB_THREADS, 1).")
@click.option("--no-worker", is_flag=True, help="Do not run a job worker beside the web server.")
def serve_command(host: str, port: int, workers: int | None, threads: int | None, no_worker: bool) -> None:
    """Serve PACS Desk with gunicorn; supervise a job worker and, when configured, the ATNA receiver."""
    from core.supervisor import Supervised, helper_command
    from core.webworker import WebServer

    server = WebServer(f"{host}:{port}", workers or current_app.config["PACSDESK_WEB_WORKERS"],
                       threads or current_app.config["PACSDESK_WEB_THREADS"])
    logging.basicConfig(level=logging.INFO, format=LOG_FORMAT)
    logging.getLogger("pacsdesk.serve").info("serving with %d workers of %d threads",
                                             server.cfg.workers, server.cfg.threads)
    helpers = []
    if not no_worker and current_app.config["PACSDESK_WORKER"]:
        helpers.append(Supervised("job worker", helper_command("worker")))
    if current_app.config.get("PACSDESK_ATNA_LISTEN"):
        helpers.append(Supervised("ATNA receiver", helper_command("atna", "listen")))
    for helper in helpers:
        helper.start()
    try:
        server.run()
    except RuntimeError as exc:  # gunicorn's own way to report a bad configuration
        raise click.ClickException(str(exc)) from None
    finally:
        for helper in helpers:
            helper.stop()


@click.command("worker")
@click.option("--threads", default=JOB_THREADS, show_default=True, type=click.IntRange(1, 64),
              help="Jobs run at once by this worker.")
def worker_command(threads: int) -> None:
    """Run queued and periodic jobs (reports, sweeps, retention, chain verification...) until stopped."""
    from core.jobs.worker import Worker
    from core.supervisor import die_with_parent

    logging.basicConfig(level=logging.INFO, format=LOG_FORMAT)
    die_with_parent()
    Worker(worker_app(threads), threads).run_forever()


@click.command("demo")
@click.option("--seed", default=2026, show_default=True, help="Random seed.")
@with_appcontext
def demo_command(seed: int) -> None:
    """Fill an empty database with a believable hospital for trying PACS Desk."""
    data = existing_data()
    if count_users() > 1 or data:
        found = ", ".join(f"{n} {name}" for name, n in data.items()) or f"{count_users()} users"
        raise click.ClickException(f"refusing to load demo data: the database holds real data "
                                   f"({found}). Use an empty database.")
    people = [
        ("dr.okafor", "Dr. Amara Okafor", Role.REQUESTER, "Radiology"),
        ("dr.lindqvist", "Dr. Erik Lindqvist", Role.REQUESTER, "Radiology"),
        ("ct.tech.mora", "Lucia Mora", Role.REQUESTER, "CT"),
        ("mr.tech.chen", "Wei Chen", Role.REQUESTER, "MRI"),
        ("clerk.patel", "Priya Patel", Role.REQUESTER, "Front desk"),
        ("ed.nurse.brown", "Jordan Brown", Role.REQUESTER, "Emergency"),
        ("pacs.sam", "Sam Rivera", Role.TECHNICIAN, "PACS team"),
        ("pacs.noor", "Noor Haddad", Role.TECHNICIAN, "PACS team"),
        ("it.kim", "Min-jun Kim", Role.TECHNICIAN, "IT"),
        ("privacy.garcia", "Elena Garcia", Role.COMPLIANCE, "Privacy office"),
        ("demo.admin", "Demo Administrator", Role.ADMIN, "PACS team"),
    ]
    ctx = DemoContext(rng=random.Random(seed), users={})
    click.echo("Demo accounts (username / password / role):")
    for username, name, role, department in people:
        password = generate_password(16)
        user = create_user(NewUser(username=username, role=role, password=password,
                                   full_name=name, department=department,
                                   email=f"{username}@hospital.example"))
        ctx.users[username] = user
        click.echo(f"  {username:16} {password}  {role.label}")
    for _, name, seeder in seeders():
        seeder(ctx)
        click.echo(f"  + {name}")
    audit_sink.record("system.demo_loaded", details={"seed": seed, "users": len(ctx.users)})
    db.session.commit()
    for note in ctx.notes:
        click.echo(note)


@click.group("mail")
def mail_group() -> None:
    """E-mail: check the outgoing server."""


@mail_group.command("test")
@click.argument("address")
@with_appcontext
def mail_test_command(address: str) -> None:
    """Send a test message to ADDRESS now and print what the server answered (exit 0 only when sent)."""
    from core.mail.compose import UnsafeMessage
    from core.mail.smtp import SendStatus, send_test

    settings = current_app.config["PACSDESK_MAIL"]
    if not settings.enabled:
        raise click.ClickException("e-mail is off: set PACSDESK_MAIL_URL, PACSDESK_MAIL_FROM and "
                                   "PACSDESK_BASE_URL")
    click.echo(f"Sending a test message to {address} through {settings.smtp.describe()}...")
    try:
        result = send_test(settings.smtp, settings.identity, address)
    except UnsafeMessage as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"Server answered: {result.describe()}")
    for refused in result.refused:
        click.echo(f"Refused {refused.address}: {refused.code} {refused.reply}")
    if result.status is not SendStatus.SENT:
        sys.exit(1)


def register(app: Flask) -> None:
    """Attach the core commands."""
    for command in (setup_command, serve_command, worker_command, demo_command, users_group, mail_group,
                    backup_command, restore_command):
        app.cli.add_command(command)


def main() -> None:
    """Entry point of the `pacsdesk` console script."""
    try:
        load_config(os.environ)
    except ConfigError as exc:
        click.echo(f"pacsdesk: configuration error: {exc}", err=True)
        sys.exit(2)
    cli = FlaskGroup(create_app=_create_app, add_version_option=False,
                     help="PACS Desk: help desk, DICOM inventory and HIPAA compliance.")
    cli.main(prog_name="pacsdesk")


if __name__ == "__main__":
    main()
