"""`pacsdesk studies ...` commands: imaging retention rules and the review of an archive."""

from __future__ import annotations

import json
import sys
from typing import Any

import click
from flask.cli import AppGroup

from audit import record
from core.extensions import db
from inventory.studies import services
from inventory.studies.dimse import ArchiveError
from inventory.studies.review import list_past_retention, local_today
from inventory.studies.rules import FLAG_TEXT
from inventory.studies.services import StudyError, mask

studies_group = AppGroup("studies", help="Imaging studies on the archives: retention rules and reviews.")

# Audit actions recorded here (registered by the package's init_app).
AUDIT_ACTIONS = {"studies.listed_cli": "Imaging studies past retention listed on the command line"}


def _refuse(error: Exception) -> None:
    """Print a refusal and exit 2."""
    click.echo(f"Error: {error}", err=True)
    sys.exit(2)


@studies_group.command("rules")
def rules_command() -> None:
    """List the imaging retention rules in force (the longest applicable rule wins)."""
    for row in services.list_rules():
        rule = row.as_rule()
        click.echo(f"{row.modality or 'ALL':<6} {row.kind:<12} {row.period:<8} "
                   f"{'anchor ' + str(row.anchor):<18} "
                   f"{'minors until ' + str(row.majority_age) if row.majority_age else '':<16} {rule.name}")
        if row.source:
            click.echo(f"{'':8}source: {row.source}")


@studies_group.command("rule-set")
@click.argument("modality")
@click.argument("period")
@click.option("--minors-until", type=int, default=None, metavar="AGE",
              help="A minors rule: keep until this age plus PERIOD, for studies done before it.")
@click.option("--anchor", default="study", metavar="study|last-study",
              help="Count PERIOD from the study date (default) or from the patient's last study.")
def rule_set_command(modality: str, period: str, minors_until: int | None, anchor: str) -> None:
    """Set the rule for MODALITY (ALL for every one) to PERIOD, an ISO-8601 duration such as P7Y."""
    try:
        row = services.set_rule(modality, period, minors_until, anchor, None)
    except StudyError as error:
        db.session.rollback()
        _refuse(error)
        return
    db.session.commit()
    click.echo(f"Rule set: {row.name} ({row.period}).")


@studies_group.command("review")
@click.option("--archive", "tag", required=True, help="The PACS archive node's asset tag.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of lines.")
def review_command(tag: str, as_json: bool) -> None:
    """Print each study on the archive past retention with its rule; deletes nothing."""
    try:
        asset = services.archive_by_tag(tag)
        today = local_today()
        listing = list_past_retention(asset, today, lambda f: click.echo(f"\rlisting {f:4.0%}", err=True,
                                                                          nl=False))
    except (StudyError, ArchiveError) as error:
        db.session.rollback()
        click.echo("", err=True)
        _refuse(error)
        return
    click.echo("", err=True)
    overdue = listing.overdue
    expired = [d for d in overdue if not d.held_by]
    held = [d for d in overdue if d.held_by]
    record("studies.listed_cli", object_type="asset", object_id=asset.asset_tag, user=None, username="cli",
           details={"studies": listing.studies_seen, "past_retention": len(expired), "held": len(held)})
    db.session.commit()
    rows: list[dict[str, Any]] = [{"study_uid": d.study.study_uid, "patient_id": mask(d.study.patient_id),
             "study_date": d.study.study_date.isoformat() if d.study.study_date else None,
             "modalities": list(d.study.modalities), "rule": d.rule.name if d.rule else None,
             "anchor_date": d.anchor_date.isoformat() if d.anchor_date else None, "age": d.age,
             "keep_until": d.keep_until.isoformat() if d.keep_until else None,
             "held_by": list(d.held_by), "flags": [FLAG_TEXT[f] for f in d.flags]} for d in overdue]
    if as_json:
        click.echo(json.dumps({"archive": asset.asset_tag, "as_of": today.isoformat(),
                               "studies_seen": listing.studies_seen, "past_retention": len(expired),
                               "held": len(held), "studies": rows}, indent=2))
        return
    for row in rows:
        status = f"HELD by {', '.join(row['held_by'])}" if row["held_by"] else "past retention"
        age = "adult (no birth date)" if row["age"] is None else f"age {row['age']}"
        click.echo(f"{row['study_uid']}  {row['study_date']}  {'/'.join(row['modalities']) or '-':<6} "
                   f"{age:<22} anchor {row['anchor_date']}  kept until {row['keep_until']}  "
                   f"{status}  rule: {row['rule']}")
    click.echo(f"{listing.studies_seen} studies on {asset.asset_tag}: {len(expired)} past retention, "
               f"{len(held)} more spared by legal holds. Nothing was deleted.")
