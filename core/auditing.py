"""How a model declares that its changes are audited, and what its history shows.

A model that sets ``__audit__ = AuditSpec(...)`` may not change (insert, update, delete) unless
an audit event about it is written in the same transaction: the audit package's session hook
refuses the commit otherwise. The same hook writes the object's history (the change log that
ticket and asset pages show), so history is written in one place, never by hand.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any


def _text(value: Any) -> str | None:
    """A stored value as history text."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "yes" if value else "no"
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return str(getattr(value, "value", value))


@dataclass(frozen=True)
class Tracked:
    """An attribute whose changes appear in the object's history.

    ``name`` is the history key (``assignee`` for ``assignee_id``); ``show`` turns a raw value
    into the text kept (an id into a username, at the time of the change); ``label`` names the
    field for people and ``words`` turns a kept text into their words when the history is shown
    (a status code into its label), so histories written before a label changed read well too.
    """

    attribute: str
    name: str = ""
    show: Callable[[Any], str | None] = _text
    label: str = ""
    words: Callable[[str], str] | None = None

    @property
    def key(self) -> str:
        """The history key."""
        return self.name or self.attribute


@dataclass(frozen=True)
class AuditSpec:
    """What an audited model's changes are filed under.

    ``object_type``/``object_id`` name the audit events that cover a change of an instance
    (a reply is covered by an event about its ticket). ``history`` gives the (type, id) of the
    timeline the instance's changes appear on, or None for no history; ``tracked`` lists the
    attributes shown there; ``created`` (key, text) adds an entry when an instance is created.
    ``bookkeeping`` attributes (login counters, progress) change without an event.
    """

    object_type: str
    object_id: Callable[[Any], Any]
    history: Callable[[Any], tuple[str, int]] | None = None
    tracked: tuple[Tracked, ...] = ()
    created: Callable[[Any], tuple[str, str | None]] | None = None
    bookkeeping: frozenset[str] = field(default_factory=frozenset)


def audit_spec(obj: Any) -> AuditSpec | None:
    """The spec of ``obj``'s class, if its changes are audited."""
    spec = getattr(type(obj), "__audit__", None)
    return spec if isinstance(spec, AuditSpec) else None


def _full_names() -> dict[str, str | None]:
    """Full names by username already read in this request (or app context)."""
    from flask import g

    if "pacsdesk_full_names" not in g:
        g.pacsdesk_full_names = {}
    return g.pacsdesk_full_names


def remember_full_names(usernames: Iterable[str]) -> None:
    """Read the full names of these users in one query, for the history lines about to be shown."""
    from sqlalchemy import select

    from core.auth.models import User
    from core.extensions import db

    known = _full_names()
    wanted = {name for name in usernames if name and name not in known}
    if not wanted:
        return
    found = dict(db.session.execute(
        select(User.username, User.full_name).where(User.username.in_(wanted))).all())
    known.update({name: found.get(name) for name in wanted})


def user_words(username: str) -> str:
    """A username kept in a history as people know the user: "Sam Patel (pacs.sam)"."""
    remember_full_names([username])
    full_name = _full_names().get(username)
    return f"{full_name} ({username})" if full_name else username


def choice_words(labels: Callable[[], Mapping[Any, str]]) -> Callable[[str], str]:
    """Words for a kept code from a table of labels (read when shown), the code itself if unknown."""

    def words(code: str) -> str:
        return {str(getattr(k, "value", k)): v for k, v in labels().items()}.get(code, code)

    return words
