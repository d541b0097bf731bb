"""`pacsdesk atna ...`: run the receiver, search the PACS access log, keep the watchlist."""

from __future__ import annotations

import logging
import signal
import sys
import threading

import click
from flask import current_app
from flask.cli import with_appcontext

from audit.atna.models import MONTHS_AHEAD, ensure_partitions
from core.extensions import db
from core.timeutil import utcnow

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


@click.group("atna")
def atna_group() -> None:
    """The PACS's audit messages (IHE ATNA): receiver, search, watchlist."""


@atna_group.command("listen")
@click.option("--processes", type=click.IntRange(1, 64), default=None,
              help="Receiver processes sharing the listeners (default PACSDESK_ATNA_PROCESSES).")
@click.option("--reuse-port", is_flag=True, hidden=True, help="Bind with SO_REUSEPORT (one of several).")
@with_appcontext
def listen_command(processes: int | None, reuse_port: bool) -> None:
    """Receive ATNA syslog on PACSDESK_ATNA_LISTEN and store it, until SIGTERM."""
    from audit.atna.process import receiver_config, run_until_signalled
    from core.supervisor import Supervised, die_with_parent, helper_command

    logging.basicConfig(level=logging.INFO, format=LOG_FORMAT)
    die_with_parent()
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    try:
        receiver_config(app.config)
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None
    count = processes or app.config["PACSDESK_ATNA_PROCESSES"]
    with app.app_context():
        ensure_partitions(db.session.connection(), utcnow().date(), MONTHS_AHEAD + 1)
        db.session.commit()
    if count == 1:
        try:
            run_until_signalled(app, reuse_port=reuse_port)
        except OSError as exc:
            raise click.ClickException(str(exc)) from None
        return
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    helpers = [Supervised(f"ATNA receiver {n + 1}", helper_command("atna", "listen", "--processes", "1",
                                                                       "--reuse-port"))
               for n in range(count)]
    for helper in helpers:
        helper.start()
    stop.wait()
    for helper in helpers:
        helper.stop()
    sys.exit(0)
