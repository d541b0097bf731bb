"""Word search over ticket numbers, titles and descriptions through a small word index.

Every ticket's title and description are split into lower-case words stored once per
ticket in ``ticket_word``; a search term matches the words it begins, through an index
range, so a search costs the same on 100 or 100,000 tickets and on SQLite or PostgreSQL.
A term without any word in it (punctuation only) falls back to a substring match.
"""

from __future__ import annotations

import re

from sqlalchemy import ColumnElement, ForeignKey, Index, String, delete, exists, func, insert, or_, select
from sqlalchemy.orm import Mapped, mapped_column

from core.database import LIKE_ESCAPE, contains_pattern
from core.extensions import Model, db
from helpdesk.models import Ticket, parse_number

WORD_RE = re.compile(r"[^\W_]+", re.UNICODE)
WORD_MAX = 40
MIN_WORD = 2
MAX_TERMS = 8
COMMON_WORD = 2000  # postings from which a word counts as common


class TicketWord(Model):
    """One distinct word of a ticket's title or description (bytewise order for prefix ranges)."""

    __tablename__ = "ticket_word"

    word: Mapped[str] = mapped_column(
        String(WORD_MAX).with_variant(String(WORD_MAX, collation="C"), "postgresql"),
        primary_key=True)
    ticket_id: Mapped[int] = mapped_column(ForeignKey("ticket.id"), primary_key=True)

    __table_args__ = (Index("ix_ticket_word_ticket", "ticket_id", "word"),)


def words_of(text: str) -> set[str]:
    """The distinct searchable words of ``text``."""
    return {w[:WORD_MAX] for w in WORD_RE.findall(text.lower()) if len(w) >= MIN_WORD}


def index_ticket(ticket: Ticket) -> None:
    """(Re)build the word index of one ticket; only flushes."""
    db.session.execute(delete(TicketWord).where(TicketWord.ticket_id == ticket.id))
    words = words_of(f"{ticket.title}\n{ticket.description}")
    if words:
        db.session.execute(insert(TicketWord), [{"word": w, "ticket_id": ticket.id} for w in words])


def _prefix(word: str) -> ColumnElement[bool]:
    """Tickets holding a word that starts with ``word``.

    A rare word drives the query from the word index; a common one is checked per ticket
    (an index probe by ticket), so the queue's own order index finds the first page
    without fetching and sorting every match.
    """
    upper = word[:-1] + chr(ord(word[-1]) + 1)
    in_range = (TicketWord.word >= word, TicketWord.word < upper)
    postings = select(TicketWord.ticket_id).where(*in_range)
    seen = db.session.execute(
        select(func.count()).select_from(postings.limit(COMMON_WORD).subquery())).scalar_one()
    if seen >= COMMON_WORD:
        return exists().where(TicketWord.ticket_id == Ticket.id, *in_range)
    return Ticket.id.in_(postings)


def term_condition(term: str) -> ColumnElement[bool]:
    """What one search term requires of a ticket."""
    ticket_id = parse_number(term)
    if ticket_id is not None:
        return Ticket.id == ticket_id
    words = words_of(term)
    if not words:
        pattern = contains_pattern(term)
        return or_(Ticket.title.ilike(pattern, escape=LIKE_ESCAPE),
                   Ticket.description.ilike(pattern, escape=LIKE_ESCAPE))
    condition = _prefix(min(words)) if len(words) == 1 else None
    if condition is None:
        parts = [_prefix(w) for w in sorted(words)]
        condition = parts[0]
        for part in parts[1:]:
            condition = condition & part
    if term.isascii() and term.isdigit() and len(term) < 10:
        condition = or_(condition, Ticket.id == int(term))
    return condition


def search_conditions(text: str) -> list[ColumnElement[bool]]:
    """Conditions that every word of ``text`` puts on a ticket (all must hold)."""
    return [term_condition(term) for term in text.split()[:MAX_TERMS]]
