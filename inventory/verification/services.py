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
from collections.abc import Callable, Iterator, Sequence
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
from core.mail.compose import Notice
from core.timeutil import utcnow
from helpdesk.links import open_outage_incident
from inventory.models import Asset
from inventory.verification.dicom import EchoResult, Outcome, echo_many
from inventory.verification.models import CheckTrigger, NodeCheck, NodeState, NodeStateName
from inventory.verification.netpolicy import IPNetwork, NotAllowed, Resolver, check_destination
from inventory.verification.summary import verifiable_nodes
from inventory.verification.tickets import announce_sweep, node_recovered, node_went_down

log = logging.getLogger(__name__)

# Audit actions recorded here (registered by the package's init_app).
AUDIT_ACTIONS = {
    "node.verify": "DICOM node verified by C-ECHO",
    "node.checks": "DICOM nodes checked by C-ECHO (a batch of a sweep or an import)",
    "node.sweep": "Scheduled C-ECHO sweep of all DICOM nodes",
}

INTERMITTENT_WINDOW = timedelta(hours=1)
DETAIL_MAX = 1000
WRITE_BATCH = 250        # sweep results written per transaction (a few statements each)
WRITE_EVERY = 1.0        # ...or after this many seconds, whichever comes first


class SweepCancelled(Exception):
    """Someone cancelled a running sweep; the checks already stored stay."""


class VerificationError(ValueError):
    """An asset cannot be verified (not a DICOM node, or its address is incomplete)."""


@dataclass(frozen=True)
class EchoTarget:
    """What the check loop needs to echo one node: plain values, no database objects."""

    asset_id: int
    asset_tag: str
    host: str
    port: int
    ae_title: str
    tls: bool
    client_cert: str | None = None
    client_key: str | None = None
    ca_file: str | None = None


def check_address(asset: Asset) -> str:
    """The host a check of ``asset`` connects to: by name for TLS (its certificate names it)."""
    return asset.hostname if asset.tls and asset.hostname else asset.host


def echo_target(asset: Asset) -> EchoTarget:
    """The address and TLS files to echo ``asset`` with; VerificationError when it has none.

    A node's own client certificate (and key) and CA file take precedence over the global
    PACSDESK_DICOM_TLS_CERT/_KEY/_CA_FILE.
    """
    if not asset.is_dicom_node:
        raise VerificationError(f"{asset.asset_tag} is not a DICOM node")
    missing = [name for name, value in (("host name or IP address", asset.host),
                                        ("port", asset.port), ("AE title", asset.ae_title))
               if not value]
    if missing:
        raise VerificationError(f"{asset.asset_tag} has no {' and no '.join(missing)}")
    config = current_app.config
    cert, key = ((asset.tls_client_cert, asset.tls_client_key) if asset.tls_client_cert
                 else (config.get("PACSDESK_DICOM_TLS_CERT"), config.get("PACSDESK_DICOM_TLS_KEY")))
    ca_file = asset.tls_ca_file or config.get("PACSDESK_DICOM_TLS_CA_FILE")
    tls = bool(asset.tls)
    return EchoTarget(asset.id, asset.asset_tag, check_address(asset), int(asset.port or 0),
                      asset.ae_title or "", tls, cert if tls else None, key if tls else None,
                      ca_file if tls else None)


def _settings() -> tuple[str, float]:
    """Calling AE title and per-check timeout from the configuration."""
    config = current_app.config
    return config["PACSDESK_DICOM_AE_TITLE"], float(config["PACSDESK_VERIFY_TIMEOUT"])


def _policy() -> tuple[Sequence[IPNetwork], Resolver | None]:
    """Where checks may connect, and the resolver names are looked up with (None: the system's)."""
    config = current_app.config
    return config["PACSDESK_DICOM_ALLOWED_NETWORKS"], config.get("PACSDESK_DICOM_RESOLVER")


def address_problem(host: str, port: int) -> str | None:
    """Why checks may not connect to ``host`` (named address and reason), or None.

    Resolves a name once (through the configured resolver); a name that does not resolve is
    not a problem here: its checks say ``dns_error``.
    """
    allowed, resolver = _policy()
    try:
        check_destination(host, port, allowed, resolver)
    except NotAllowed as exc:
        return str(exc)
    except (OSError, UnicodeError, ValueError):
        return None
    return None


def _echo_all(targets: Sequence[EchoTarget], concurrency: int) -> Iterator[tuple[EchoTarget, EchoResult]]:
    """Echo ``targets`` on the check loop with the configured policy, yielding results as they end."""
    calling_ae, timeout = _settings()
    allowed, resolver = _policy()
    yield from echo_many(targets, calling_ae, timeout, concurrency, allowed_networks=allowed,
                         resolver=resolver)


# ---------------------------------------------------------------- state machine


def _first_failure_of_streak(asset_id: int, last_ok_at: datetime | None) -> datetime | None:
    """When the current run of failed checks began."""
    query = select(func.min(NodeCheck.checked_at)).where(NodeCheck.asset_id == asset_id,
                                                         NodeCheck.outcome != Outcome.OK)
    if last_ok_at is not None:
        query = query.where(NodeCheck.checked_at > last_ok_at)
    return db.session.execute(query).scalar_one_or_none()


def _failed_recently(asset_ids: Sequence[int], since: datetime) -> set[int]:
    """The nodes among ``asset_ids`` with a failed check since ``since`` (one query)."""
    return set(db.session.scalars(
        select(NodeCheck.asset_id).where(NodeCheck.asset_id.in_(asset_ids),
                                         NodeCheck.checked_at >= since,
                                         NodeCheck.outcome != Outcome.OK).distinct()))


@dataclass
class _Transition:
    """What a check did to its node's state."""

    previous: str
    current: str
    down_since: datetime | None = None


def _apply_check(state: NodeState, check: NodeCheck, failed_recently: bool) -> _Transition:
    """Move ``state`` according to ``check`` (down after N failures, degraded, up).

    A ``busy`` answer (a transient rejection) is no failure of the node: it makes the node
    degraded, and down only when no check has succeeded for PACSDESK_BUSY_DOWN_MINUTES; a node
    already down stays down until it answers.
    """
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
        state.state = NodeStateName.DEGRADED if slow or failed_recently else NodeStateName.UP
        return _Transition(previous, state.state, was_down_since)
    if check.outcome is Outcome.BUSY:
        # The node answered but is busy: degraded, down only once busy (or failing) for too long.
        streak = _first_failure_of_streak(state.asset_id, state.last_ok_at) or check.checked_at
        patience = timedelta(minutes=config["PACSDESK_BUSY_DOWN_MINUTES"])
        down = previous == NodeStateName.DOWN or check.checked_at - streak >= patience
    else:
        state.consecutive_failures = (state.consecutive_failures or 0) + 1
        down = state.consecutive_failures >= config["PACSDESK_DOWN_AFTER_FAILURES"] \
            or previous == NodeStateName.DOWN
        streak = None
    if down:
        if previous != NodeStateName.DOWN:
            state.down_since = streak or _first_failure_of_streak(state.asset_id, state.last_ok_at) \
                or check.checked_at
        state.state = NodeStateName.DOWN
    else:
        state.state = NodeStateName.DEGRADED
    return _Transition(previous, state.state, state.down_since)


def _states_for(asset_ids: Sequence[int]) -> dict[int, NodeState]:
    """The nodes' state rows, locked for this transaction (created unknown on the first check).

    A sweep and a check after a save may record the same node at once: missing rows are
    inserted without failing on the race, then all are locked (in one order, so two writers
    never deadlock) so neither update is lost. Two statements whatever the number of nodes.
    """
    ordered = sorted(set(asset_ids))
    insert = pg_insert if db.session.get_bind().dialect.name == "postgresql" else sqlite_insert
    db.session.execute(insert(NodeState).values([
        {"asset_id": asset_id, "state": NodeStateName.UNKNOWN, "consecutive_failures": 0}
        for asset_id in ordered]).on_conflict_do_nothing())
    rows = db.session.scalars(select(NodeState).where(NodeState.asset_id.in_(ordered))
                              .order_by(NodeState.asset_id).with_for_update()
                              .execution_options(populate_existing=True))
    return {state.asset_id: state for state in rows}


@dataclass(frozen=True)
class Recorded:
    """One stored check with the state it left its node in and the state before."""

    asset: Asset
    check: NodeCheck
    state: NodeState
    previous: NodeStateName
    notice: Notice | None = None  # the unsent down or recovered notice, when not announced


def record_checks(results: Sequence[tuple[Asset, EchoResult, datetime]], trigger: str, *,
                  audit_each: bool, user: Any = None, username: str | None = None,
                  client_address: str | None = None, announce: bool = True) -> list[Recorded]:
    """Store checks, move their nodes' states, open or close tickets (flushes).

    A handful of statements per batch, not per node (the state rows, the recent failures, the
    checks); a node going down or recovering costs a few more. With ``audit_each``, a
    ``node.verify`` event per check; otherwise the caller audits the batch. Without
    ``announce``, down and recovered notices are returned unsent in ``Recorded.notice``.
    """
    if not results:
        return []
    trigger = CheckTrigger(trigger)
    ids = [asset.id for asset, _, _ in results]
    states = _states_for(ids)
    flaky = _failed_recently(ids, min(at for _, _, at in results) - INTERMITTENT_WINDOW)
    checks = [NodeCheck(asset_id=asset.id, checked_at=at, outcome=result.outcome,
                        detail=result.detail[:DETAIL_MAX], latency_ms=result.latency_ms,
                        trigger=trigger) for asset, result, at in results]
    db.session.add_all(checks)
    recorded = []
    for (asset, _, _), check in zip(results, checks, strict=True):
        state = states[asset.id]
        moved = _apply_check(state, check, asset.id in flaky)
        notice = None
        if moved.current == NodeStateName.DOWN and moved.previous != NodeStateName.DOWN:
            notice = node_went_down(asset, state, check, announce=announce)
        elif moved.previous == NodeStateName.DOWN and check.ok:
            notice = node_recovered(asset, state, check, moved.down_since, announce=announce)
        if audit_each:
            record("node.verify", object_type="asset", object_id=asset.asset_tag, user=user,
                   username=username, client_address=client_address,
                   details={"trigger": trigger, "outcome": check.outcome,
                            "latency_ms": check.latency_ms, "detail": check.detail,
                            "state": state.state})
        recorded.append(Recorded(asset, check, state, NodeStateName(moved.previous),
                                 None if announce else notice))
    db.session.flush()
    return recorded


def record_check(asset: Asset, result: EchoResult, trigger: str, *, user: Any = None,
                 username: str | None = None, client_address: str | None = None,
                 audit_each: bool = True, checked_at: datetime | None = None) -> NodeCheck:
    """Store one check's result, move the node's state, open or close its ticket (flushes)."""
    [recorded] = record_checks([(asset, result, checked_at or utcnow())], trigger,
                               audit_each=audit_each, user=user, username=username,
                               client_address=client_address)
    return recorded.check


def verify_asset(asset: Asset, trigger: str, user: User | None = None,
                 client_address: str | None = None) -> NodeCheck:
    """Echo ``asset`` now, store the check and update its state (flushes, audits node.verify).

    The echo may wait for a dead node's whole timeout, so the caller's transaction is ended
    first (call this before writing anything) and the check is stored in a fresh one.
    """
    target = echo_target(asset)
    actor = _request_actor() if user is None else {"user": user, "client_address": client_address}
    with outside_transaction():
        [(_, result)] = list(_echo_all([target], 1))
    checked = db.session.get(Asset, target.asset_id)
    if checked is None:
        raise VerificationError(f"{target.asset_tag} was deleted during its check")
    return record_check(checked, result, trigger, **actor)


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
    # Unsent notices (node name, notice) of a run that announces them together at its end.
    down_notices: list[tuple[str, Notice]] = field(default_factory=list)
    recovered_notices: list[tuple[str, Notice]] = field(default_factory=list)

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


def _slowest_first(targets: list[EchoTarget]) -> list[EchoTarget]:
    """Never-checked and slowest-answering nodes first, so their waits overlap the quick ones."""
    latency = {asset_id: ms for asset_id, ms in
               db.session.execute(select(NodeState.asset_id, NodeState.last_latency_ms))}
    return sorted(targets, key=lambda t: -(latency.get(t.asset_id) or float("inf")))


def _write_batch(sweep: SweepResult, batch: list[tuple[EchoTarget, EchoResult, datetime]], trigger: str,
                 audit_each: bool, username: str | None, announce: bool) -> None:
    """Store a batch of results; without an event per check, one ``node.checks`` event covers them."""
    if not batch:
        return
    assets = {asset.id: asset for asset in db.session.scalars(
        select(Asset).where(Asset.id.in_([target.asset_id for target, _, _ in batch])))}
    found = [(target, result, at) for target, result, at in batch if target.asset_id in assets]
    recorded = record_checks([(assets[target.asset_id], result, at) for target, result, at in found],
                             trigger, audit_each=audit_each, username=username, announce=announce,
                             **_request_actor())
    down, recovered = [], []
    for (target, _, _), done in zip(found, recorded, strict=True):
        node = f"{done.asset.name} ({done.asset.asset_tag})"
        if done.state.state == NodeStateName.DOWN and done.previous != NodeStateName.DOWN:
            down.append(target.asset_tag)
            if done.notice is not None:
                sweep.down_notices.append((node, done.notice))
        elif done.previous == NodeStateName.DOWN and done.check.ok:
            recovered.append(target.asset_tag)
            if done.notice is not None:
                sweep.recovered_notices.append((node, done.notice))
        sweep.results.append(NodeResult(target.asset_tag, target.ae_title, target.host, target.port,
                                        done.check.outcome, done.check.latency_ms, done.check.detail,
                                        done.state.state))
    sweep.went_down += down
    sweep.recovered += recovered
    if recorded and not audit_each:
        record("node.checks", user=None, username=username, client_address=None, details={
            "trigger": trigger, "nodes": [target.asset_tag for target, _, _ in found],
            "outcomes": dict(Counter(done.check.outcome for done in recorded)),
            "went_down": down, "recovered": recovered})


def run_checks(assets: Sequence[Asset], trigger: str, *, audit_each: bool, username: str | None = None,
               progress: Callable[[int, str], None] | None = None,
               cancelled: Callable[[], bool] | None = None, announce: bool = True) -> SweepResult:
    """Echo ``assets`` concurrently, writing results from this thread as they come.

    Job-level code (the sweep, the CLI): it commits each batch of results with its audit
    event (one per check, or one per batch), so no transaction (nor SQLite's write lock) is
    held while the network is waited for; the last batch is left for the caller to commit
    with its own summary. ``cancelled()`` is asked between batches. Without ``announce``, the
    down and recovered notices are kept in the result for the caller to send.
    """
    started_at = utcnow()
    clock = time.perf_counter()
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
    for target, result in _echo_all(targets, concurrency):
        batch.append((target, result, utcnow()))
        if len(batch) >= WRITE_BATCH or time.perf_counter() - written > WRITE_EVERY:
            _write_batch(sweep, batch, trigger, audit_each, username, announce)
            db.session.commit()
            batch, written = [], time.perf_counter()
            if progress is not None:
                progress(int(100 * len(sweep.results) / max(len(targets), 1)),
                         f"{len(sweep.results)} of {len(targets)} nodes checked")
            if cancelled is not None and cancelled():
                raise SweepCancelled(f"stopped after {len(sweep.results)} of {len(targets)} nodes")
    _write_batch(sweep, batch, trigger, audit_each, username, announce)
    db.session.flush()
    sweep.results.sort(key=lambda r: r.asset_tag)
    sweep.seconds = round(time.perf_counter() - clock, 3)
    return sweep


def sweep(progress: Callable[[int, str], None] | None = None,
          cancelled: Callable[[], bool] | None = None) -> SweepResult:
    """Check every enabled DICOM node concurrently; each batch audited, then a node.sweep summary; commits.

    Technicians hear of the nodes that went down or recovered at the end, as one notice when
    many did at once (with the incident ticket that groups them).
    """
    result = run_checks(verifiable_nodes(), CheckTrigger.SCHEDULE, audit_each=False,
                        progress=progress, cancelled=cancelled, announce=False)
    opened = db.session.execute(select(NodeState.open_ticket_id).join(Asset, Asset.id == NodeState.asset_id)
                                .where(Asset.asset_tag.in_(result.went_down),
                                       NodeState.open_ticket_id.is_not(None))).scalars().all()
    # One incident above them when many nodes went down at once, and one notice for it.
    incident = open_outage_incident([ticket_id for ticket_id in opened if ticket_id is not None])
    announce_sweep(result.down_notices, result.recovered_notices, incident)
    record("node.sweep", user=None, client_address=None, details={
        "nodes": len(result.results), "ok": result.ok, "failed": result.failed,
        "outcomes": result.counts, "skipped": len(result.skipped),
        "went_down": result.went_down, "recovered": result.recovered,
        "seconds": result.seconds})
    db.session.commit()
    return result
