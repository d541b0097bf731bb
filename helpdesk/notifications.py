"""Where notifications (e-mail later) attach: signals sent once the change is committed.

Services queue a signal on the session; it is sent after the commit that made the change
durable, and dropped on rollback, so a listener never announces something that did not
happen. Receivers get plain values (ticket id and number, and what changed) and load
what they need in their own session.
"""

from __future__ import annotations

from typing import Any

from blinker import NamedSignal, Namespace
from sqlalchemy.orm import Session

helpdesk_signals = Namespace()

ticket_created = helpdesk_signals.signal("ticket-created")
ticket_replied = helpdesk_signals.signal("ticket-replied")
status_changed = helpdesk_signals.signal("ticket-status-changed")

_KEY = "helpdesk_pending_signals"


def queue_signal(session: Session, signal: NamedSignal, **values: Any) -> None:
    """Send ``signal`` with ``values`` after ``session`` commits."""
    session.info.setdefault(_KEY, []).append((signal, values))


def send_after_commit(session: Session) -> None:
    """Deliver the signals of the transaction that just committed."""
    pending = session.info.pop(_KEY, [])
    for signal, values in pending:
        signal.send("helpdesk", **values)


def drop_after_rollback(session: Session) -> None:
    """Forget the signals of a transaction that rolled back."""
    session.info.pop(_KEY, None)
