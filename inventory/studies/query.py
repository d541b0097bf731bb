"""List every study on an archive with study-level C-FINDs over date windows (no Flask, no database).

Archives cap how many matches one C-FIND returns (Orthanc: ``LimitFindResults``, ending the
cut answer with status 0xFE00; dcm4chee-arc refuses with 0xA700). The walk goes through the
StudyDate range one window after another, each starting on the day the previous one ended. A
window whose answer is, or may be, cut (the archive's status says so, or the answer holds as
many matches as the archive's known limit) is halved and asked again; the next window is sized
from the last answer to hold about half the limit. A window of two days or less that is still
cut is split by StudyTime instead. Neighbouring windows share their boundary day (its studies
come back twice and are kept once) and the first and last windows are open-ended, so an archive
that compares dates as text (Orthanc does) returns every stored value in some window, malformed
ones (``20250230``, ``19000000``, empty) included; those come back as studies with a problem
and no date.

DICOM has no key that matches only studies without a StudyDate (an empty key matches
everything), so ``find_undated_studies`` asks with universal matching and keeps the studies
whose date is absent or unusable; its answer is complete only when the archive's answer was.

A walk is resumable: every completed window is reported as it finishes, and a walk given the
windows done before continues after them (time splits are deterministic, so a day that was
being split by time is split the same way again and its done parts are skipped).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from datetime import date, timedelta

from inventory.studies.dimse import (
    CANCELLED,
    OUT_OF_RESOURCES,
    STUDY_ROOT_FIND,
    Archive,
    ArchiveConnection,
    ArchiveError,
    FindAnswer,
    OperationFailed,
    connect,
)
from inventory.studies.records import StudyRecord, raw_text, study_from_identifier, study_identifier

DAY_SECONDS = 86_400
# Windows are sized to hold about this share of the archive's limit: few answers are cut, and
# few queries are asked (Orthanc scans its whole index for each date range).
FILL = 0.75
# An archive that refuses (0xA700) a query for studies started within one minute is not
# refusing because of its result limit: the walk stops instead of splitting further.
MIN_REFUSED_SECONDS = 60


@dataclass(frozen=True)
class Window:
    """One C-FIND's range of StudyDate values and, when ``timed``, of StudyTime (seconds of day).

    ``open_start``/``open_end`` drop that bound from the query: the window then also holds
    every value before ``start`` (after ``end``), malformed ones included.
    """

    start: date
    end: date
    open_start: bool = False
    open_end: bool = False
    timed: bool = False
    time_from: int = 0
    time_to: int = DAY_SECONDS - 1

    @property
    def study_date_key(self) -> str:
        """The StudyDate matching key (empty, universal, when both ends are open)."""
        if self.open_start and self.open_end:
            return ""
        low = "" if self.open_start else self.start.strftime("%Y%m%d")
        high = "" if self.open_end else self.end.strftime("%Y%m%d")
        return low if low == high else f"{low}-{high}"

    @property
    def study_time_key(self) -> str:
        """The StudyTime matching key (empty unless split by time; open at midnight and 23:59:59)."""
        if not self.timed:
            return ""
        low = "" if self.time_from == 0 else _hhmmss(self.time_from)
        high = "" if self.time_to == DAY_SECONDS - 1 else _hhmmss(self.time_to)
        return f"{low}-{high}"

    def contains(self, other: Window) -> bool:
        """Whether ``other`` is a part of this window (a window split from it)."""
        if other.start < self.start or other.end > self.end:
            return False
        if (other.open_start and not self.open_start) or (other.open_end and not self.open_end):
            return False
        if self.timed:
            return other.timed and self.time_from <= other.time_from and other.time_to <= self.time_to
        return True

    def split(self) -> tuple[Window, Window] | None:
        """Halves by StudyTime, sharing their boundary second; None below two seconds."""
        if self.time_to - self.time_from <= 1:
            return None
        second = (self.time_from + self.time_to) // 2
        return (Window(self.start, self.end, self.open_start, self.open_end, True, self.time_from, second),
                Window(self.start, self.end, self.open_start, self.open_end, True, second, self.time_to))

    def to_dict(self) -> dict[str, object]:
        """JSON-ready values, for a job to store the windows it has done between attempts."""
        return {"start": self.start.isoformat(), "end": self.end.isoformat(), "open_start": self.open_start,
                "open_end": self.open_end, "timed": self.timed, "time_from": self.time_from,
                "time_to": self.time_to}

    @classmethod
    def from_dict(cls, data: Mapping[str, object]) -> Window:
        """A window stored by ``to_dict``; ValueError naming the field that is wrong."""
        try:
            start, end = (date.fromisoformat(str(data[key])) for key in ("start", "end"))
        except (KeyError, ValueError):
            raise ValueError("window: start and end must be ISO dates (YYYY-MM-DD)") from None
        flags = []
        for key in ("open_start", "open_end", "timed"):
            flag = data.get(key, False)
            if not isinstance(flag, bool):
                raise ValueError(f"window: {key} must be true or false")
            flags.append(flag)
        seconds = []
        for key, default in (("time_from", 0), ("time_to", DAY_SECONDS - 1)):
            value = data.get(key, default)
            if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < DAY_SECONDS:
                raise ValueError(f"window: {key} must be a second of the day (0 to {DAY_SECONDS - 1})")
            seconds.append(value)
        if start > end or seconds[0] > seconds[1]:
            raise ValueError("window: start must not be after end")
        return cls(start, end, *flags, *seconds)


def _hhmmss(seconds: int) -> str:
    """Seconds of the day as DICOM TM ``HHMMSS``."""
    return f"{seconds // 3600:02d}{seconds // 60 % 60:02d}{seconds % 60:02d}"


@dataclass(frozen=True)
class WalkResult:
    """What a walk found: new studies (one per UID), the windows done, and where it may fall short."""

    studies: tuple[StudyRecord, ...]
    windows: tuple[Window, ...]
    incomplete: tuple[Window, ...] = ()
    split_by_time: tuple[Window, ...] = ()
    unreadable: int = 0
    queries: int = 0

    @property
    def complete(self) -> bool:
        """Whether every window's answer was complete (see ``split_by_time`` for one caveat)."""
        return not self.incomplete and not self.unreadable


class WalkInterrupted(ArchiveError):
    """A walk stopped half-way (timeout, lost association); resume it with ``windows``."""

    def __init__(self, cause: ArchiveError, partial: WalkResult, fraction: float) -> None:
        super().__init__(f"study listing interrupted at {fraction:.0%}: {cause}")
        self.cause = cause
        self.partial = partial
        self.fraction = fraction

    @property
    def windows(self) -> tuple[Window, ...]:
        """The windows answered completely so far, resumed ones included."""
        return self.partial.windows


WindowCallback = Callable[[Window, tuple[StudyRecord, ...]], None]
ProgressCallback = Callable[[float], None]


@dataclass
class _Walk:
    """The state of one walk: windows from ``start`` to ``end``, each as wide as answers stay whole."""

    connection: ArchiveConnection
    today: date
    start: date
    end: date
    done: frozenset[Window]
    on_window: WindowCallback | None
    on_progress: ProgressCallback | None
    limit: int | None = None
    seen: set[str] = field(default_factory=set)
    studies: list[StudyRecord] = field(default_factory=list)
    windows: list[Window] = field(default_factory=list)
    incomplete: list[Window] = field(default_factory=list)
    split_by_time: list[Window] = field(default_factory=list)
    unreadable: int = 0
    queries: int = 0
    covered: float = 0.0

    def result(self) -> WalkResult:
        """The result so far."""
        return WalkResult(tuple(self.studies), tuple(self.windows), tuple(self.incomplete),
                          tuple(self.split_by_time), self.unreadable, self.queries)

    def run(self) -> None:
        """Cover the range window after window, each starting on the day the previous one ended."""
        cursor, open_start = self.start, True
        days = max((self.end - self.start).days, 1)  # first try everything in one answer
        total = days
        while True:
            count: int | None = None
            window = self._done_from(cursor, open_start)
            if window is not None:
                self.windows.append(window)
            else:
                window = self._timed_from(cursor, open_start)
                if window is not None:
                    self.split_by_time.append(window)
                    self._by_time(window)
                else:
                    window, count = self._widest(cursor, open_start, days)
            self.covered = min(1.0, (window.end - self.start).days / total)
            if self.on_progress is not None:
                self.on_progress(1.0 if window.open_end else self.covered)
            if window.open_end:
                return
            days = self._next_days(window, count)
            cursor, open_start = window.end, False

    def _done_from(self, cursor: date, open_start: bool) -> Window | None:
        """The window an earlier walk answered whole from ``cursor``, if any."""
        found = [w for w in self.done if not w.timed and w.start == cursor and w.open_start == open_start]
        return max(found, key=lambda w: w.end) if found else None

    def _timed_from(self, cursor: date, open_start: bool) -> Window | None:
        """The window an earlier walk was splitting by time from ``cursor``, if any."""
        for w in self.done:
            if w.timed and w.start == cursor and w.open_start == open_start:
                return Window(w.start, w.end, w.open_start, w.open_end)
        return None

    def _widest(self, cursor: date, open_start: bool, days: int) -> tuple[Window, int | None]:
        """Answer the window from ``cursor``, halving it while the archive cuts its answer."""
        while True:
            high = min(cursor + timedelta(days=days), self.end)
            window = Window(cursor, high, open_start, high >= self.end)
            answer = self._query(window)
            if not answer.truncated:
                self._keep(window, answer)
                return window, len(answer.matches)
            if self.limit is None and answer.status == CANCELLED and answer.matches:
                self.limit = len(answer.matches)  # the archive cut here: its limit
            if (high - cursor).days <= 1:
                self.split_by_time.append(window)
                self._by_time(window)
                return window, None
            days = (high - cursor).days // 2

    def _next_days(self, window: Window, count: int | None) -> int:
        """How many days the next window should span: enough for about FILL of the archive's limit."""
        span = max((window.end - window.start).days, 1)
        if count is None:
            return span
        if self.limit is None or count == 0:
            return span * 4
        return max(1, min(span * 4, int(span * self.limit * FILL / count)))

    def _by_time(self, window: Window) -> None:
        """Answer a window of one or two days in StudyTime halves, skipping those done before."""
        if window in self.done:
            self.windows.append(window)
            return
        halves = window.split()
        if window.timed and (halves is None or not any(window.contains(d) and d != window
                                                       for d in self.done)):
            answer = self._query(window)
            if not answer.truncated:
                self._keep(window, answer)
                return
            if halves is None:
                self._keep(window, answer, complete=False)
                self.incomplete.append(window)
                return
        for half in halves or ():
            self._by_time(half)

    def _query(self, window: Window) -> FindAnswer:
        """One C-FIND for ``window``."""
        self.queries += 1
        answer = self.connection.find(study_identifier(window.study_date_key, window.study_time_key),
                                      STUDY_ROOT_FIND)
        refused = answer.status == OUT_OF_RESOURCES and not answer.matches
        if refused and window.timed and window.time_to - window.time_from < MIN_REFUSED_SECONDS:
            raise OperationFailed(f"{self.connection.archive.address} refuses even a query for one "
                                  f"minute of studies (status 0xA700, out of resources)",
                                  OUT_OF_RESOURCES)
        return answer

    def _keep(self, window: Window, answer: FindAnswer, complete: bool = True) -> None:
        """Record the window's new studies and report them; a complete window counts as done."""
        fresh = []
        for match in answer.matches:
            study = study_from_identifier(match, self.today)
            if study.study_uid and study.study_uid in self.seen:
                continue
            self.seen.add(study.study_uid)
            fresh.append(study)
        self.studies.extend(fresh)
        self.unreadable += answer.unreadable
        if complete:
            self.windows.append(window)
        if self.on_window is not None:
            self.on_window(window, tuple(fresh))

def walk_studies(archive: Archive, start: date, end: date, *, today: date | None = None,
                 done: Collection[Window] = (), on_window: WindowCallback | None = None,
                 on_progress: ProgressCallback | None = None) -> WalkResult:
    """List the studies dated ``start``..``end``, and open-ended before and after, resumably."""
    # ``done``: windows completed by an earlier, interrupted walk of the same range, not asked
    # again. ``on_window(window, studies)`` gets each answered window (complete, or in
    # ``incomplete`` when it could not be split further) with its studies not yet seen in this
    # walk; ``on_progress(fraction)`` the share of the range covered so far. Raises
    # WalkInterrupted, holding the partial result, when the archive stops answering.
    if not isinstance(start, date) or not isinstance(end, date) or start > end:
        raise ValueError(f"start and end must be dates with start <= end, not {start!r} and {end!r}")
    root = Window(start, end, open_start=True, open_end=True)
    for window in done:
        if not isinstance(window, Window) or not root.contains(window):
            raise ValueError("done holds a window outside the walked range; start a fresh walk")
    with connect(archive, [STUDY_ROOT_FIND]) as connection:
        walk = _Walk(connection, today or date.today(), start, end, frozenset(done), on_window, on_progress,
                     archive.find_limit)
        try:
            walk.run()
        except ArchiveError as exc:
            raise WalkInterrupted(exc, walk.result(), walk.covered) from exc
    return walk.result()


@dataclass(frozen=True)
class UndatedAnswer:
    """Studies whose StudyDate is absent or unusable, and whether the archive's answer was whole."""

    studies: tuple[StudyRecord, ...]
    complete: bool


def find_undated_studies(archive: Archive, today: date | None = None) -> UndatedAnswer:
    """Ask for every study (universal StudyDate) and keep those without a usable date."""
    with connect(archive, [STUDY_ROOT_FIND]) as connection:
        answer = connection.find(study_identifier(), STUDY_ROOT_FIND)
    when = today or date.today()
    studies = tuple(s for s in (study_from_identifier(m, when) for m in answer.matches)
                    if s.study_date is None)
    return UndatedAnswer(studies, not answer.truncated and not answer.unreadable)


def check_study_uid(study_uid: str) -> str:
    """``study_uid`` stripped, or ValueError when it cannot be a single-value matching key."""
    if not isinstance(study_uid, str) or not study_uid.strip():
        raise ValueError("study_uid must be a non-empty text")
    if any(c in study_uid for c in "\\*?") or len(study_uid.strip()) > 64:
        raise ValueError("study_uid cannot hold a backslash or wildcard and has at most 64 characters")
    return study_uid.strip()


def study_exists(archive: Archive, study_uid: str) -> bool:
    """Whether the archive still answers a C-FIND for this Study Instance UID."""
    key = check_study_uid(study_uid)
    with connect(archive, [STUDY_ROOT_FIND]) as connection:
        answer = connection.find(study_identifier(study_uid=key), STUDY_ROOT_FIND)
    return any(raw_text(match, "StudyInstanceUID") == key for match in answer.matches)
