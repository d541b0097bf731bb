"""Verification of DICOM nodes: stored checks, the node state machine, single checks and sweeps.

The C-ECHO itself (``inventory.verification.dicom``) never touches the database, and every
network wait happens outside a transaction (``core.database.outside_transaction``). Single
checks ("Verify now", after a save) and sweeps run as jobs (``inventory.jobs``); services
flush, and the sweep commits each batch of results with its own audit event. Outage tickets
live in ``tickets``, what pages show in ``summary``.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from flask import current_app, has_request_context, request
from flask_login import current_user
from sqlalchemy import func, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from audit import record
from core.auth.models import User
from core.database import outside_transaction
from core.extensions import db
from core.timeutil import utcnow
from helpdesk.links import open_outage_incident
from inventory.models import Asset
from inventory.verification.dicom import EchoResult, Outcome, echo
from inventory.verification.models import CheckTrigger, NodeCheck, NodeState, NodeStateName
from inventory.verification.summary import verifiable_nodes
from inventory.verification.tickets import node_recovered, node_went_down

log = logging.getLogger(__name__)

# Audit actions recorded here (registered by the package's init_app).
AUDIT_ACTIONS = {
    "node.verify": "DICOM node verified by C-ECHO",
    "node.checks": "DICOM nodes checked by C-ECHO (a batch of a sweep or an import)",
    "node.sweep": "Scheduled C-ECHO sweep of all DICOM nodes",
}

INTERMITTENT_WINDOW = timedelta(hours=1)
DETAIL_MAX = 1000
WRITE_BATCH = 100        # sweep results written per transaction
WRITE_EVERY = 0.5        # ...or after this many seconds, whichever comes first


class SweepCancelled(Exception):
    """Someone cancelled a running sweep; the checks already stored stay."""


class VerificationError(ValueError):
    """An asset cannot be verified (not a DICOM node, or its address is incomplete)."""


@dataclass(frozen=True)
class EchoTarget:
    """What a worker thread needs to echo one node: plain values, no database objects."""

    asset_id: int
    asset_tag: str
    host: str
    port: int
    ae_title: str
    tls: bool


def echo_target(asset: Asset) -> EchoTarget:
    """The address to echo for ``asset``; VerificationError when it has none."""
    if not asset.is_dicom_node:
        raise VerificationError(f"{asset.asset_tag} is not a DICOM node")
    missing = [name for name, value in (("host name or IP address", asset.host),
                                        ("port", asset.port), ("AE title", asset.ae_title))
               if not value]
    if missing:
        raise VerificationError(f"{asset.asset_tag} has no {' and no '.join(missing)}")
    # A TLS node proves its identity for its host name: connect by name when there is one.
    host = asset.hostname if asset.tls and asset.hostname else asset.host
    return EchoTarget(asset.id, asset.asset_tag, host, int(asset.port or 0),
                      asset.ae_title or "", bool(asset.tls))


def _echo(target: EchoTarget, calling_ae: str, timeout: float) -> EchoResult:
    """Echo one target; never raises (bad data and surprises become a classified result)."""
    started = time.perf_counter()
    try:
        return echo(target.host, target.port, target.ae_title, calling_ae, timeout, tls=target.tls)
    except ValueError as exc:
        return EchoResult(Outcome.ECHO_FAILED, f"Cannot check this node: {exc}", 0.0)
    except Exception as exc:  # a peer must never crash a sweep
        log.exception("C-ECHO of %s failed unexpectedly", target.asset_tag)
        return EchoResult(Outcome.ABORTED, f"Unexpected error during the check: {exc}",
                          round((time.perf_counter() - started) * 1000, 1))


def _settings() -> tuple[str, float]:
    """Calling AE title and per-check timeout from the configuration."""
    config = current_app.config
    return config["PACSDESK_DICOM_AE_TITLE"], float(config["PACSDESK_VERIFY_TIMEOUT"])


# ---------------------------------------------------------------- state machine


def _first_failure_of_streak(asset_id: int, last_ok_at: datetime | None) -> datetime | None:
    """When the current run of failed checks began."""
    query = select(func.min(NodeCheck.checked_at)).where(NodeCheck.asset_id == asset_id,
                                                         NodeCheck.outcome != Outcome.OK)
    if last_ok_at is not None:
        query = query.where(NodeCheck.checked_at > last_ok_at)
    return db.session.execute(query).scalar_one_or_none()


def _failed_recently(asset_id: int, now: datetime) -> bool:
    """Whether any check of the node failed within the intermittence window."""
    return db.session.execute(
        select(NodeCheck.id).where(NodeCheck.asset_id == asset_id,
                                   NodeCheck.checked_at >= now - INTERMITTENT_WINDOW,
                                   NodeCheck.outcome != Outcome.OK).limit(1)
    ).first() is not None


@dataclass
class _Transition:
    """What a check did to its node's state."""

    previous: str
    current: str
    down_since: datetime | None = None


def _apply_check(state: NodeState, check: NodeCheck) -> _Transition:
    """Move ``state`` according to ``check`` (down after N failures, degraded, up)."""
    config = current_app.config
    previous = state.state or NodeStateName.UNKNOWN
    state.last_check_at = check.checked_at
    state.last_latency_ms = check.latency_ms
    if check.ok:
        was_down_since = state.down_since
        state.consecutive_failures = 0
        state.last_ok_at = check.checked_at
        state.down_since = None
        slow = check.latency_ms > config["PACSDESK_DEGRADED_LATENCY_MS"]
        intermittent = _failed_recently(state.asset_id, check.checked_at)
        state.state = NodeStateName.DEGRADED if slow or intermittent else NodeStateName.UP
        return _Transition(previous, state.state, was_down_since)
    state.consecutive_failures = (state.consecutive_failures or 0) + 1
    if state.consecutive_failures >= config["PACSDESK_DOWN_AFTER_FAILURES"] \
            or previous == NodeStateName.DOWN:
        if previous != NodeStateName.DOWN:
            state.down_since = _first_failure_of_streak(state.asset_id, state.last_ok_at) \
                or check.checked_at
        state.state = NodeStateName.DOWN
    else:
        state.state = NodeStateName.DEGRADED
    return _Transition(previous, state.state, state.down_since)


def _state_for(asset_id: int) -> NodeState:
    """The node's state row, locked for this transaction (created unknown on the first check).

    A sweep and a check after a save may record the same node at once: the row is inserted
    if missing without failing on the race, then locked so neither update is lost.
    """
    insert = pg_insert if db.session.get_bind().dialect.name == "postgresql" else sqlite_insert
    db.session.execute(insert(NodeState).values(
        asset_id=asset_id, state=NodeStateName.UNKNOWN, consecutive_failures=0)
        .on_conflict_do_nothing())
    state = db.session.get(NodeState, asset_id, with_for_update=True, populate_existing=True)
    assert state is not None
    return state


def record_check(asset: Asset, result: EchoResult, trigger: str, *, user: Any = None,
                 username: str | None = None, client_address: str | None = None,
                 audit_each: bool = True, checked_at: datetime | None = None) -> NodeCheck:
    """Store one check's result, move the node's state, open or close its ticket (flushes)."""
    trigger = CheckTrigger(trigger)
    check = NodeCheck(asset_id=asset.id, checked_at=checked_at or utcnow(),
                      outcome=result.outcome,
                      detail=result.detail[:DETAIL_MAX], latency_ms=result.latency_ms,
                      trigger=trigger)
    db.session.add(check)
    state = _state_for(asset.id)
    db.session.flush()
    moved = _apply_check(state, check)
    if moved.current == NodeStateName.DOWN and moved.previous != NodeStateName.DOWN:
        node_went_down(asset, state, check)
    elif moved.previous == NodeStateName.DOWN and check.ok:
        node_recovered(asset, state, check, moved.down_since)
    if audit_each:
        record("node.verify", object_type="asset", object_id=asset.asset_tag, user=user,
               username=username, client_address=client_address,
               details={"trigger": trigger, "outcome": check.outcome,
                        "latency_ms": check.latency_ms, "detail": check.detail,
                        "state": state.state})
    db.session.flush()
    return check


def verify_asset(asset: Asset, trigger: str, user: User | None = None,
                 client_address: str | None = None) -> NodeCheck:
    """Echo ``asset`` now, store the check and update its state (flushes, audits node.verify).

    The echo may wait for a dead node's whole timeout, so the caller's transaction is ended
    first (call this before writing anything) and the check is stored in a fresh one.
    """
    target = echo_target(asset)
    actor = _request_actor() if user is None else {"user": user, "client_address": client_address}
    with outside_transaction():
        result = _echo(target, *_settings())
    return record_check(db.session.get(Asset, target.asset_id), result, trigger, **actor)


def _request_actor() -> dict[str, Any]:
    """The signed-in user and client address of the current request (empty outside one)."""
    if not has_request_context():
        return {}
    user = current_user._get_current_object() if current_user.is_authenticated else None
    return {"user": user, "client_address": request.remote_addr}


# ---------------------------------------------------------------- sweeps


@dataclass
class NodeResult:
    """One node's check within a run, for reports and the CLI."""

    asset_tag: str
    ae_title: str
    host: str
    port: int
    outcome: str
    latency_ms: float
    detail: str
    state: str


@dataclass
class SweepResult:
    """What a run of checks found."""

    started_at: datetime
    seconds: float
    results: list[NodeResult] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    went_down: list[str] = field(default_factory=list)
    recovered: list[str] = field(default_factory=list)

    @property
    def counts(self) -> dict[str, int]:
        """How many checks ended in each outcome."""
        return dict(Counter(r.outcome for r in self.results))

    @property
    def ok(self) -> int:
        """Nodes that answered."""
        return sum(1 for r in self.results if r.outcome == Outcome.OK)

    @property
    def failed(self) -> int:
        """Nodes that did not answer."""
        return len(self.results) - self.ok

    @property
    def all_ok(self) -> bool:
        """Whether every checked node answered (and none was skipped)."""
        return not self.skipped and self.failed == 0


def echo_many(targets: Sequence[EchoTarget], calling_ae: str, timeout: float,
              concurrency: int) -> Iterable[tuple[EchoTarget, EchoResult]]:
    """Echo ``targets`` with at most ``concurrency`` at once; yields results as they come."""
    if not targets:
        return
    with ThreadPoolExecutor(max_workers=max(1, min(concurrency, len(targets))),
                            thread_name_prefix="echo") as pool:
        futures = {pool.submit(_echo, target, calling_ae, timeout): target for target in targets}
        for future in as_completed(futures):
            yield futures[future], future.result()


def _slowest_first(targets: list[EchoTarget]) -> list[EchoTarget]:
    """Never-checked and slowest-answering nodes first, so their waits overlap the quick ones."""
    latency = {asset_id: ms for asset_id, ms in
               db.session.execute(select(NodeState.asset_id, NodeState.last_latency_ms))}
    return sorted(targets, key=lambda t: -(latency.get(t.asset_id) or float("inf")))


def _write_result(sweep: SweepResult, target: EchoTarget, result: EchoResult,
                  checked_at: datetime, trigger: str, audit_each: bool,
                  username: str | None) -> None:
    """Store one node's result and note what it changed."""
    asset = db.session.get(Asset, target.asset_id)
    if asset is None:
        return
    previous = db.session.get(NodeState, asset.id)
    before = previous.state if previous is not None else NodeStateName.UNKNOWN
    check = record_check(asset, result, trigger, audit_each=audit_each, username=username,
                         checked_at=checked_at, **_request_actor())
    state = db.session.get(NodeState, asset.id)
    assert state is not None
    if state.state == NodeStateName.DOWN and before != NodeStateName.DOWN:
        sweep.went_down.append(asset.asset_tag)
    elif before == NodeStateName.DOWN and check.ok:
        sweep.recovered.append(asset.asset_tag)
    sweep.results.append(NodeResult(target.asset_tag, target.ae_title, target.host, target.port,
                                    check.outcome, check.latency_ms, check.detail, state.state))


def _write_batch(sweep: SweepResult, batch: list[tuple[EchoTarget, EchoResult, datetime]], trigger: str,
                 audit_each: bool, username: str | None) -> None:
    """Store a batch of results; without an event per check, one ``node.checks`` event covers them."""
    first = len(sweep.results)
    down, recovered = len(sweep.went_down), len(sweep.recovered)
    for target, result, checked_at in batch:
        _write_result(sweep, target, result, checked_at, trigger, audit_each, username)
    written = sweep.results[first:]
    if written and not audit_each:
        record("node.checks", user=None, username=username, client_address=None, details={
            "trigger": trigger, "nodes": [r.asset_tag for r in written],
            "outcomes": dict(Counter(r.outcome for r in written)),
            "went_down": sweep.went_down[down:], "recovered": sweep.recovered[recovered:]})


def run_checks(assets: Sequence[Asset], trigger: str, *, audit_each: bool, username: str | None = None,
               progress: Callable[[int, str], None] | None = None,
               cancelled: Callable[[], bool] | None = None) -> SweepResult:
    """Echo ``assets`` concurrently, writing results from this thread as they come.

    Job-level code (the sweep, the CLI): it commits each batch of results with its audit
    event (one per check, or one per batch), so no transaction (nor SQLite's write lock) is
    held while the network is waited for; the last batch is left for the caller to commit
    with its own summary. ``cancelled()`` is asked between batches.
    """
    started_at = utcnow()
    clock = time.perf_counter()
    calling_ae, timeout = _settings()
    concurrency = int(current_app.config["PACSDESK_VERIFY_CONCURRENCY"])
    sweep = SweepResult(started_at=started_at, seconds=0.0)
    targets = []
    for asset in assets:
        try:
            targets.append(echo_target(asset))
        except VerificationError as exc:
            sweep.skipped.append((asset.asset_tag, str(exc)))
    targets = _slowest_first(targets)
    db.session.commit()
    batch: list[tuple[EchoTarget, EchoResult, datetime]] = []
    written = time.perf_counter()
    for target, result in echo_many(targets, calling_ae, timeout, concurrency):
        batch.append((target, result, utcnow()))
        if len(batch) >= WRITE_BATCH or time.perf_counter() - written > WRITE_EVERY:
            _write_batch(sweep, batch, trigger, audit_each, username)
            db.session.commit()
            batch, written = [], time.perf_counter()
            if progress is not None:
                progress(int(100 * len(sweep.results) / max(len(targets), 1)),
                         f"{len(sweep.results)} of {len(targets)} nodes checked")
            if cancelled is not None and cancelled():
                raise SweepCancelled(f"stopped after {len(sweep.results)} of {len(targets)} nodes")
    _write_batch(sweep, batch, trigger, audit_each, username)
    db.session.flush()
    sweep.results.sort(key=lambda r: r.asset_tag)
    sweep.seconds = round(time.perf_counter() - clock, 3)
    return sweep


def sweep(progress: Callable[[int, str], None] | None = None,
          cancelled: Callable[[], bool] | None = None) -> SweepResult:
    """Check every enabled DICOM node concurrently; each batch audited, then a node.sweep summary; commits."""
    result = run_checks(verifiable_nodes(), CheckTrigger.SCHEDULE, audit_each=False,
                        progress=progress, cancelled=cancelled)
    opened = db.session.execute(select(NodeState.open_ticket_id).join(Asset, Asset.id == NodeState.asset_id)
                                .where(Asset.asset_tag.in_(result.went_down),
                                       NodeState.open_ticket_id.is_not(None))).scalars().all()
    open_outage_incident([i for i in opened if i is not None])  # one incident when many went down at once
    record("node.sweep", user=None, client_address=None, details={
        "nodes": len(result.results), "ok": result.ok, "failed": result.failed,
        "outcomes": result.counts, "skipped": len(result.skipped),
        "went_down": result.went_down, "recovered": result.recovered,
        "seconds": result.seconds})
    db.session.commit()
    return result
