"""Associations to an archive for C-FIND and C-STORE, every wait bounded (no Flask, no database).

Errors raised here name the archive's address and what went wrong, never a patient: the
identifiers sent and received are patient data, so pynetdicom is told not to log them.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from pydicom.dataset import Dataset
from pynetdicom import AE, evt
from pynetdicom import _config as pynetdicom_config
from pynetdicom.association import Association

# pynetdicom creates its SOP classes at import time; its type information does not list them
from pynetdicom.sop_class import StudyRootQueryRetrieveInformationModelFind  # type: ignore[attr-defined]

from inventory.verification.dicom import REJECT_REASONS, REJECT_RESULTS, validate_target
from inventory.verification.netpolicy import resolve

# Query keys and answers carry patient identifiers: keep them out of every log.
pynetdicom_config.LOG_REQUEST_IDENTIFIERS = False
pynetdicom_config.LOG_RESPONSE_IDENTIFIERS = False
logging.getLogger("pynetdicom").setLevel(logging.CRITICAL)

STUDY_ROOT_FIND = str(StudyRootQueryRetrieveInformationModelFind)
PENDING = frozenset({0xFF00, 0xFF01})
CANCELLED = 0xFE00  # Orthanc ends an answer cut at LimitFindResults with this status
OUT_OF_RESOURCES = 0xA700  # archives that refuse an oversized query (dcm4chee-arc) answer this


@dataclass(frozen=True)
class Archive:
    """How PACS Desk calls one archive; ``find_limit`` is the archive's answer cap when known."""

    host: str
    port: int
    called_ae: str
    calling_ae: str = "PACSDESK"
    timeout: float = 10.0
    find_limit: int | None = None

    def __post_init__(self) -> None:
        """Refuse an address, AE title, timeout or limit that cannot work, naming the field."""
        validate_target(self.host, self.port, self.called_ae, self.calling_ae, self.timeout)
        if self.find_limit is not None and (isinstance(self.find_limit, bool)
                                            or not isinstance(self.find_limit, int)
                                            or self.find_limit < 1):
            raise ValueError(f"find_limit must be a whole number of at least 1 or None, "
                             f"not {self.find_limit!r}")

    @property
    def address(self) -> str:
        """``AE@host:port``, for messages."""
        return f"{self.called_ae.strip()}@{self.host.strip()}:{self.port}"


class ArchiveError(Exception):
    """A DICOM exchange with an archive failed; the message never names a patient."""


class ArchiveUnreachable(ArchiveError):
    """No TCP connection to the archive (refused, filtered, timed out, or the name did not resolve)."""


class AssociationRejected(ArchiveError):
    """The archive rejected the association (A-ASSOCIATE-RJ)."""

    def __init__(self, message: str, result: int, source: int, reason: int) -> None:
        super().__init__(message)
        self.result, self.source, self.reason = result, source, reason

    @property
    def transient(self) -> bool:
        """Whether trying again later may succeed (result 2)."""
        return self.result == 2


class ArchiveTimeout(ArchiveError):
    """The archive did not answer (association or a response) within the timeout."""


class ArchiveAborted(ArchiveError):
    """The archive aborted the association or closed the connection."""


class ServiceNotAccepted(ArchiveError):
    """The archive accepted the association but not the SOP class the operation needs."""


class OperationFailed(ArchiveError):
    """The archive answered a C-FIND or C-STORE with a failure status."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


class IncompleteAnswer(ArchiveError):
    """An answer the archive cut short where the whole answer is needed."""


@dataclass(frozen=True)
class FindAnswer:
    """One C-FIND's matches, final status, and pending responses whose identifier could not be decoded."""

    matches: tuple[Dataset, ...]
    status: int
    unreadable: int = 0
    limit: int | None = None

    @property
    def truncated(self) -> bool:
        """Whether the archive said, or the count shows, that matches may be missing."""
        if self.status in (CANCELLED, OUT_OF_RESOURCES) or 0xB000 <= self.status <= 0xBFFF:
            return True
        return self.limit is not None and len(self.matches) + self.unreadable >= self.limit


def _status_text(status: int) -> str:
    """A status code as DICOM writes it."""
    return f"0x{status:04X}"


def _resolve_within(host: str, port: int, seconds: float) -> tuple[str | None, str]:
    """Resolve ``host`` to one address (IPv4 first) within ``seconds``: (address, why not)."""
    found: dict[str, Any] = {}

    def lookup() -> None:
        try:
            found["addresses"] = resolve(host, port)
        except (OSError, UnicodeError) as exc:
            found["error"] = exc

    worker = threading.Thread(target=lookup, name="dns-archive", daemon=True)
    worker.start()
    worker.join(seconds)
    if found.get("addresses"):
        return str(found["addresses"][0]), ""
    if "error" in found:
        return None, "the host name does not resolve"
    return None, f"no DNS answer within {seconds:g} s"


class ArchiveConnection:
    """An association to one archive that re-associates when the archive dropped an idle one."""

    def __init__(self, archive: Archive, contexts: Sequence[str]) -> None:
        self.archive = archive
        self.contexts = tuple(contexts)
        self._ae: AE | None = None
        self._assoc: Association | None = None

    def _associate(self) -> Association:
        """Open a new association, raising the error that says why it failed."""
        self.close()
        archive = self.archive
        address, problem = _resolve_within(archive.host.strip(), archive.port, archive.timeout)
        if address is None:
            raise ArchiveUnreachable(f"{archive.address}: {problem}")
        ae = AE(ae_title=archive.calling_ae.strip())
        for context in self.contexts:
            ae.add_requested_context(context)
        ae.connection_timeout = ae.acse_timeout = archive.timeout
        ae.dimse_timeout = ae.network_timeout = archive.timeout
        seen: set[str] = set()
        start = time.monotonic()

        def on_open(event: evt.Event) -> None:
            seen.add("opened")
            _no_delay(event.assoc)

        handlers: list[Any] = [(evt.EVT_CONN_OPEN, on_open),
                               (evt.EVT_ACCEPTED, lambda event: seen.add("accepted"))]
        assoc = ae.associate(address, archive.port, ae_title=archive.called_ae.strip(),
                             evt_handlers=handlers)
        self._ae = ae
        if not assoc.is_established:
            ae.shutdown()
            self._ae = None
            if "accepted" in seen and not assoc.accepted_contexts:
                raise ServiceNotAccepted(f"{archive.address} accepted the association but none of "
                                         f"the SOP classes {', '.join(self.contexts)}")
            raise _association_failure(archive, assoc, "opened" in seen, time.monotonic() - start)
        _responses_to_the_caller_only(assoc)
        self._assoc = assoc
        return assoc

    def _established(self, sop_class: str) -> Association:
        """The open association (re-associating if needed), checked to accept ``sop_class``."""
        assoc = self._assoc
        if assoc is None or not assoc.is_established:
            assoc = self._associate()
        if any(context.abstract_syntax == sop_class for context in assoc.accepted_contexts):
            return assoc
        raise ServiceNotAccepted(f"{self.archive.address} did not accept SOP class {sop_class} "
                                 f"(is PACS Desk's AE title allowed to use it?)")

    def find(self, identifier: Dataset, model: str = STUDY_ROOT_FIND) -> FindAnswer:
        """Send one C-FIND and collect every match, each response waited for at most the timeout."""
        assoc = self._established(model)
        matches: list[Dataset] = []
        unreadable = 0
        last = time.monotonic()
        for status, match in assoc.send_c_find(identifier, model):
            code = getattr(status, "Status", None)
            if code is None:
                raise self._lost(assoc, time.monotonic() - last, "C-FIND")
            last = time.monotonic()
            if code in PENDING:
                if match is None:
                    unreadable += 1
                else:
                    matches.append(match)
                continue
            if code >= 0xA000 and code not in (CANCELLED, OUT_OF_RESOURCES) \
                    and not 0xB000 <= code <= 0xBFFF:
                # The archive's Error Comment is left out: it may repeat the query's keys.
                raise OperationFailed(f"{self.archive.address} refused the C-FIND with status "
                                      f"{_status_text(code)}", code)
            return FindAnswer(tuple(matches), code, unreadable, self.archive.find_limit)
        raise self._lost(assoc, time.monotonic() - last, "C-FIND")

    def store(self, dataset: Dataset) -> None:
        """C-STORE one instance; raise OperationFailed unless the archive answers success or warning."""
        assoc = self._established(str(dataset.SOPClassUID))
        start = time.monotonic()
        status = assoc.send_c_store(dataset)
        code = getattr(status, "Status", None)
        if code is None:
            raise self._lost(assoc, time.monotonic() - start, "C-STORE")
        if code != 0x0000 and not 0xB000 <= code <= 0xBFFF:
            raise OperationFailed(f"{self.archive.address} refused the C-STORE with status "
                                  f"{_status_text(code)}", code)

    def _lost(self, assoc: Association, waited: float, operation: str) -> ArchiveError:
        """The error for an operation that ended without a final response."""
        if assoc.is_established:
            assoc.abort()
        if waited >= self.archive.timeout * 0.9:
            return ArchiveTimeout(f"{self.archive.address} sent no {operation} response within "
                                  f"{self.archive.timeout:.1f} s")
        return ArchiveAborted(f"{self.archive.address} aborted the association during the {operation}")

    def close(self) -> None:
        """Release the association (abort it if the archive does not answer) and stop the AE."""
        assoc, ae = self._assoc, self._ae
        self._assoc = self._ae = None
        if assoc is not None and assoc.is_established:
            assoc.release()
            if assoc.is_established:
                assoc.abort()
        if ae is not None:
            ae.shutdown()


def _responses_to_the_caller_only(assoc: Association) -> None:
    """Stop the association's reactor thread from taking responses meant for send_c_find/c_store."""
    # pynetdicom pauses its reactor around each send_*() by waiting on a flag that can still be
    # set from before the previous answer, so the reactor may take the first response of the
    # next operation off the queue and drop it ("unexpected C-FIND service message",
    # pynetdicom issue 875): a lost match, or a lost final status seen as a timeout. The reactor
    # is the only caller of get_msg(block=False) and only serves requests from the peer, which
    # an archive never sends on our query and store associations.
    dimse = assoc.dimse
    blocking_get = dimse.get_msg

    def get_msg(block: bool = False) -> Any:
        return blocking_get(block=True) if block else (None, None)

    # Replacing a library method on one instance, which mypy refuses for methods.
    dimse.get_msg = get_msg  # type: ignore[method-assign]


def _no_delay(assoc: Association) -> None:
    """Send each PDU at once (TCP_NODELAY)."""
    # A walk is a string of small request/response exchanges; Nagle's algorithm against the
    # archive's delayed acknowledgements would add ~40 ms to each.
    sock = getattr(getattr(assoc.dul, "socket", None), "socket", None)
    if isinstance(sock, socket.socket):
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def _association_failure(archive: Archive, assoc: Association, opened: bool,
                         elapsed: float) -> ArchiveError:
    """Tell apart why an association was not established."""
    if not opened:
        return ArchiveUnreachable(f"{archive.address}: no TCP connection (refused, filtered or no answer "
                                  f"within {archive.timeout:.1f} s)")
    if assoc.is_rejected:
        primitive: Any = assoc.acceptor.primitive
        result, source = int(primitive.result), int(primitive.result_source)
        reason = int(primitive.diagnostic) if primitive.diagnostic is not None else 0
        text = REJECT_REASONS.get((source, reason), f"reason {reason}")
        return AssociationRejected(f"{archive.address} rejected the association "
                                   f"({REJECT_RESULTS.get(result, result)}): {text}",
                                   result, source, reason)
    if elapsed >= archive.timeout * 0.9:
        return ArchiveTimeout(f"{archive.address} accepted the connection but did not answer the "
                              f"association request within {archive.timeout:.1f} s")
    return ArchiveAborted(f"{archive.address} closed the connection during the association request")


@contextmanager
def connect(archive: Archive, contexts: Sequence[str]) -> Iterator[ArchiveConnection]:
    """An ArchiveConnection proposing ``contexts``, associated on first use and released on exit."""
    connection = ArchiveConnection(archive, contexts)
    try:
        yield connection
    finally:
        connection.close()
