"""Demo data for the compliance pages: training progress with some overdue, a chain verification."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import func, select

from audit.trail.chain_verification import run_verification
from audit.training import services as training
from audit.training.completions import add_completion
from audit.training.models import TrainingAssignment, TrainingCompletion
from core.demo import DemoContext
from core.extensions import db


def seed_compliance(ctx: DemoContext) -> None:
    """Most people trained today, a few late, one verification of the trail (flushes)."""
    training.ensure_assignments()
    today = training.local_today()
    assignments = list(db.session.execute(
        select(TrainingAssignment).order_by(TrainingAssignment.id)).scalars())
    for assignment in assignments:
        roll = ctx.rng.random()
        if roll < 0.7:
            add_completion(assignment, today, assignment.user, score=ctx.rng.randint(78, 100))
        elif roll < 0.85:
            assignment.due_on = today - timedelta(days=ctx.rng.randint(3, 40))
    db.session.flush()
    run_verification("demo")
    ctx.notes.append("Compliance: training assigned (some overdue), audit trail verified.")


def training_records() -> int:
    """Real training completions present."""
    return db.session.execute(select(func.count()).select_from(TrainingCompletion)).scalar_one()
