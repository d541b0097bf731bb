"""`pacsdesk atna ...`: run the receiver, search the PACS access log, keep the watchlist."""

from __future__ import annotations

import logging
import signal
import sys
import threading
from datetime import date

import click
from flask.cli import with_appcontext

from audit.atna.models import MONTHS_AHEAD, ensure_partitions
from core.extensions import db
from core.registry import current_app_object
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
    app = current_app_object()
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


def _day(value: str | None, label: str) -> date | None:
    """A YYYY-MM-DD option as a date."""
    if not value:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise click.BadParameter(f"'{value}' is not a date; write it as YYYY-MM-DD",
                                 param_hint=label) from None


@atna_group.command("search")
@click.option("--patient", default="", help="Patient ID: who accessed this patient's images.")
@click.option("--user", default="", help="PACS user ID.")
@click.option("--study", default="", help="Study Instance UID.")
@click.option("--accession", default="", help="Accession number.")
@click.option("--source", default="", help="Audit source id, host name or address of the sender.")
@click.option("--event", "event_id", default="", help="Event ID code, e.g. 110103.")
@click.option("--from", "date_from", default=None, help="First local day, YYYY-MM-DD.")
@click.option("--to", "date_to", default=None, help="Last local day, YYYY-MM-DD.")
@click.option("--json", "as_json", is_flag=True, help="One JSON array instead of lines.")
@click.option("--limit", default=1000, show_default=True, type=click.IntRange(1, 1_000_000))
@with_appcontext
def search_command(patient: str, user: str, study: str, accession: str, source: str, event_id: str,
                   date_from: str | None, date_to: str | None, as_json: bool, limit: int) -> None:
    """List accesses, newest first (the search is recorded in the audit trail)."""
    import json

    from audit.atna import search
    from core.timeutil import DateOutOfRange

    flt = search.AccessFilter(patient_id=patient, user=user, study_uid=study, accession=accession,
                              source=source, event_id=event_id, date_from=_day(date_from, "--from"),
                              date_to=_day(date_to, "--to"))
    if flt.date_from and flt.date_to and flt.date_to < flt.date_from:
        raise click.BadParameter("the period ends before it starts", param_hint="--to")
    try:
        rows = [search.access_row(r) for r in db.session.execute(search.access_query(flt).limit(limit))]
    except DateOutOfRange as error:
        raise click.BadParameter(str(error), param_hint="--from") from None
    from audit.trail.chain import record

    record("atna.search", object_type="atna_message", username="command line",
           details={"criteria": flt.criteria(), "results": len(rows), "source": "cli"})
    db.session.commit()
    if as_json:
        click.echo(json.dumps([{"time": r.when, "time_utc": r.event_time.isoformat(), "event_id": r.event_id,
                                "event": r.event, "event_type": r.event_type, "action": r.action,
                                "outcome": r.outcome, "user_id": r.user_id, "user_name": r.user_name,
                                "user_host": r.user_host, "patient_id": r.patient_id,
                                "patient_name": r.patient_name, "study_uid": r.study_uid,
                                "accession": r.accession, "source": r.source, "sender_host": r.sender_host,
                                "message_id": r.id} for r in rows], indent=1))
        return
    for r in rows:
        click.echo(f"{r.when}  {r.user_id or '-':16} {r.patient_id or '-':16} {r.accession or '-':14} "
                   f"{r.event}{' / ' + r.event_type if r.event_type else ''} ({r.outcome}) "
                   f"from {r.user_host or '-'} via {r.source or r.sender_host}")
    more = " (limit reached)" if len(rows) == limit else ""
    click.echo(f"{len(rows)} access{'' if len(rows) == 1 else 'es'}{more}")


@atna_group.command("watch-import")
@click.argument("path", type=click.Path(exists=True, dir_okay=False))
@with_appcontext
def watch_import_command(path: str) -> None:
    """Add patients to the watchlist from a CSV (patient_id,category,reason); a bad row imports nothing."""
    from audit.atna.watchlist import WatchImportError, import_watch_csv

    with open(path, "rb") as handle:
        raw = handle.read()
    try:
        done = import_watch_csv(raw, None)
    except WatchImportError as error:
        db.session.rollback()
        for line, why in error.problems:
            click.echo(f"line {line}: {why}", err=True)
        raise click.ClickException("nothing was imported") from None
    db.session.commit()
    click.echo(f"{len(done.added)} patients added; {len(done.already)} already watched")


@atna_group.command("purge-quarantine")
@click.option("--older-than-days", type=click.IntRange(1, 36500), required=True)
@with_appcontext
def purge_quarantine_command(older_than_days: int) -> None:
    """Delete quarantined messages received more than N days ago (recorded in the audit trail)."""
    from audit.atna.quarantine import purge_quarantine

    removed = purge_quarantine(older_than_days)
    db.session.commit()
    click.echo(f"{removed} quarantined messages purged")
