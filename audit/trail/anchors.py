"""Anchors: the audit chain's verified heads and purges, written outside the database.

Each anchor is one line of JSON in an append-only log file (``audit-anchors.log`` in
``PACSDESK_AUDIT_ANCHOR_DIR``), chained to the line before by that line's keyed hash and
sealed itself with HMAC-SHA256 under an audit key, and optionally sent as an RFC 5424 syslog
message to the hospital's log collector. Someone who can write the database but neither the
log nor the key cannot move the trail back behind an anchor without verification noticing.

    {"at":"2026-03-01T02:00:00.123456Z","count":48213,"from_seq":48100,"hash":"6c1f...",
     "key_id":1,"kind":"head","mac":"...","mode":"incremental","n":17,"prev":"...","seq":48213}

``kind`` is ``head`` (a verified head: ``seq``, ``hash``, ``count`` events in the trail,
``mode``, ``from_seq`` the first event walked) or ``purge`` (a retention purge: events
``from_seq`` to ``seq`` removed, ``hash`` the last one's, ``count`` of them, ``run`` the
retention run). ``prev`` is the previous line's ``mac`` (64 zeros for the first line);
``mac`` covers every other field (sorted keys, compact JSON).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from audit.trail.keys import Keyring
from audit.trail.sealing import iso_utc
from core.timeutil import utcnow

ANCHOR_FILE = "audit-anchors.log"
GENESIS = "0" * 64
KINDS = ("head", "purge")
TAIL_CHUNK = 64 * 1024
SYSLOG_TIMEOUT = 5.0
SYSLOG_PRI = 13 * 8 + 5  # facility 13 (log audit), severity 5 (notice)
_REQUIRED = {"n", "at", "kind", "seq", "hash", "count", "key_id", "prev", "mac"}
_FIELDS = _REQUIRED | {"mode", "from_seq", "run"}
_INTS = ("n", "seq", "count", "key_id", "from_seq", "run")
_TEXTS = ("at", "kind", "hash", "prev", "mac")


class AnchorError(RuntimeError):
    """An anchor could not be written; the message says where and why."""


@dataclass(frozen=True)
class Anchor:
    """One line of the anchor log."""

    n: int
    at: str
    kind: str
    seq: int
    hash: str
    count: int
    key_id: int
    prev: str
    mac: str
    mode: str | None = None
    from_seq: int | None = None
    run: int | None = None

    def sealed_fields(self) -> dict[str, Any]:
        """What ``mac`` covers: every field but ``mac``, the unset ones left out."""
        return {k: v for k, v in asdict(self).items() if k != "mac" and v is not None}

    def line(self) -> str:
        """The log line, newline included."""
        return json.dumps({**self.sealed_fields(), "mac": self.mac}, sort_keys=True,
                          separators=(",", ":")) + "\n"


def _payload(fields: Mapping[str, Any]) -> bytes:
    """The bytes an anchor's mac covers."""
    return json.dumps(dict(fields), sort_keys=True, separators=(",", ":")).encode("ascii")


@dataclass(frozen=True)
class AnchorLog:
    """The anchors read from the log (all of them, or its end), or what is wrong with it."""

    path: Path
    entries: tuple[Anchor, ...]
    problem: str | None = None

    def latest_head(self) -> Anchor | None:
        """The last verified head anchored."""
        return next((a for a in reversed(self.entries) if a.kind == "head"), None)

    def heads(self) -> dict[int, Anchor]:
        """Head anchors by chain position (the latest one for each)."""
        return {a.seq: a for a in self.entries if a.kind == "head"}

    def purge_through(self, seq: int, last_hash: str) -> Anchor | None:
        """The purge anchor for a purge through ``seq`` whose last event had ``last_hash``."""
        return next((a for a in reversed(self.entries)
                     if a.kind == "purge" and a.seq == seq and a.hash == last_hash), None)


def anchor_path(config: Mapping[str, Any]) -> Path:
    """The anchor log file the configuration names."""
    return Path(config["PACSDESK_AUDIT_ANCHOR_DIR"]) / ANCHOR_FILE


def parse_line(text: str, where: str) -> Anchor:
    """One log line as an Anchor; ValueError naming ``where`` (the line) when it is not one."""
    try:
        data = json.loads(text)
    except ValueError:
        raise ValueError(f"{where} of the anchor log is not JSON") from None
    if not isinstance(data, dict) or not set(data) <= _FIELDS or not set(data) >= _REQUIRED:
        raise ValueError(f"{where} of the anchor log is not an anchor entry")
    if any(data.get(k) is not None and type(data[k]) is not int for k in _INTS) or \
            any(type(data[k]) is not str for k in _TEXTS) or data["kind"] not in KINDS:
        raise ValueError(f"{where} of the anchor log has a field of the wrong type")
    return Anchor(**data)


def _check(anchor: Anchor, before: Anchor | None, ring: Keyring) -> str | None:
    """Why ``anchor`` does not verify: its seal, and its link to ``before`` unless that is None."""
    key = ring.get(anchor.key_id)
    if key is None:
        return (f"anchor log entry #{anchor.n} is sealed with audit key #{anchor.key_id}, "
                "which is not in the keyring")
    if key.mac(_payload(anchor.sealed_fields())) != anchor.mac:
        return f"anchor log entry #{anchor.n} was altered: its keyed hash does not match"
    if before is not None and (anchor.n != before.n + 1 or anchor.prev != before.mac):
        return (f"the anchor log is not continuous: entry #{anchor.n} follows entry #{before.n}; "
                "entries were removed, reordered or forged")
    return None


def _window(path: Path, start: int) -> tuple[list[str], bool]:
    """Whole lines from byte ``start`` (a partial first line dropped unless at 0), and whether
    the file ends with a newline."""
    with open(path, "rb") as handle:
        handle.seek(start)
        data = handle.read()
    lines = data.decode("utf-8", errors="replace").split("\n")
    if start > 0:
        lines = lines[1:]
    return [line for line in lines if line], not data or data.endswith(b"\n")


def read_anchor_log(path: Path, ring: Keyring, full: bool = True) -> AnchorLog:
    """Read and check the anchor log: all of it (``full``), or its end back to the last head.

    Every entry read must be sealed with a known key and linked to the entry before it;
    reading all of it also checks that it starts at entry #1.
    """
    if not path.exists():
        return AnchorLog(path, ())
    size = path.stat().st_size
    start = 0 if full else max(0, size - TAIL_CHUNK)
    lines, complete = _window(path, start)
    while start > 0 and not any('"kind":"head"' in line for line in lines):
        start = max(0, start - 4 * TAIL_CHUNK)
        lines, complete = _window(path, start)
    if not complete:
        return AnchorLog(path, (), "the anchor log's last line is incomplete: it was cut short "
                                   "or edited")
    entries: list[Anchor] = []
    for index, text in enumerate(lines):
        where = f"line {index + 1}" if start == 0 else "a line near the end"
        try:
            anchor = parse_line(text, where)
        except ValueError as exc:
            return AnchorLog(path, tuple(entries), str(exc))
        before = entries[-1] if entries else None
        if before is None and start == 0 and (anchor.n != 1 or anchor.prev != GENESIS):
            return AnchorLog(path, (), f"the anchor log starts at entry #{anchor.n}, not #1: "
                                       "its first entries were removed")
        problem = _check(anchor, before, ring)
        if problem:
            return AnchorLog(path, tuple(entries), problem)
        entries.append(anchor)
    return AnchorLog(path, tuple(entries), _clashing_heads(entries))


def _clashing_heads(entries: list[Anchor]) -> str | None:
    """Two head anchors that give one chain position two different hashes."""
    seen: dict[int, Anchor] = {}
    for anchor in entries:
        if anchor.kind != "head":
            continue
        other = seen.setdefault(anchor.seq, anchor)
        if other.hash != anchor.hash:
            return (f"anchor log entries #{other.n} and #{anchor.n} record different hashes "
                    f"for event #{anchor.seq}")
    return None


def _last_entry(fd: int) -> tuple[Anchor | None, int]:
    """The last line of an open log (None when empty) and the file's size."""
    size = os.fstat(fd).st_size
    if size == 0:
        return None, 0
    start = max(0, size - 8192)
    os.lseek(fd, start, os.SEEK_SET)
    data = os.read(fd, size - start)
    if not data.endswith(b"\n"):
        raise AnchorError("the anchor log's last line is incomplete; nothing is appended after it "
                          "until an administrator repairs the log")
    last = data.rstrip(b"\n").rsplit(b"\n", 1)[-1].decode("utf-8", errors="replace")
    try:
        return parse_line(last, "the last line"), size
    except ValueError:
        raise AnchorError("the anchor log's last line is not an anchor entry; nothing is "
                          "appended after it until an administrator repairs the log") from None


def append_anchor(path: Path, ring: Keyring, kind: str, seq: int, last_hash: str, count: int,
                  *, mode: str | None = None, from_seq: int | None = None,
                  run: int | None = None) -> Anchor:
    """Append one sealed anchor to the log under an exclusive lock (fsynced); AnchorError if not."""
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o600)
    except OSError as exc:
        raise AnchorError(f"cannot open the anchor log {path}: {exc.strerror or exc}") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        before, size = _last_entry(fd)
        if before is not None and _check(before, None, ring) is not None:
            raise AnchorError("the anchor log's last entry does not verify; nothing is appended "
                              "after it until an administrator investigates")
        key = ring.newest
        fields: dict[str, Any] = {
            "n": 1 if before is None else before.n + 1, "at": iso_utc(utcnow()), "kind": kind,
            "seq": seq, "hash": last_hash, "count": count, "key_id": key.key_id,
            "prev": GENESIS if before is None else before.mac, "mode": mode,
            "from_seq": from_seq, "run": run}
        sealed = {k: v for k, v in fields.items() if v is not None}
        anchor = Anchor(**fields, mac=key.mac(_payload(sealed)))
        _write_all(fd, anchor.line().encode("ascii"), size, path)
        return anchor
    finally:
        os.close(fd)


def _write_all(fd: int, data: bytes, size: int, path: Path) -> None:
    """Write ``data`` at the end and fsync, or cut the file back to ``size`` and raise."""
    try:
        written = os.write(fd, data)
        if written != len(data):
            raise OSError(28, "No space left on device")
        os.fsync(fd)
    except OSError as exc:
        with contextlib.suppress(OSError):  # if even this fails, readers report the cut line
            os.ftruncate(fd, size)
        raise AnchorError(f"cannot write the anchor log {path}: {exc.strerror or exc}") from None


def syslog_message(anchor: Anchor, hostname: str | None = None, pid: int | None = None) -> bytes:
    """The anchor as an RFC 5424 message: header, no structured data, the log line as MSG."""
    host = "".join(c for c in (hostname or socket.gethostname()) if "!" <= c <= "~")[:255] or "-"
    header = f"<{SYSLOG_PRI}>1 {anchor.at} {host} pacsdesk {pid or os.getpid()} audit-anchor -"
    return f"{header} {anchor.line().rstrip()}".encode("ascii")


def send_syslog(target: tuple[str, str, int], anchor: Anchor) -> None:
    """Send the anchor to the collector: one UDP datagram, or an octet-counted TCP frame (RFC 6587)."""
    protocol, host, port = target
    message = syslog_message(anchor)
    if protocol == "tcp":
        with socket.create_connection((host, port), timeout=SYSLOG_TIMEOUT) as sock:
            sock.sendall(f"{len(message)} ".encode("ascii") + message)
        return
    family, kind, proto, _name, address = socket.getaddrinfo(host, port, type=socket.SOCK_DGRAM)[0]
    with socket.socket(family, kind, proto) as sock:
        sock.sendto(message, address)
