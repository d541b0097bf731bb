"""C-ECHO DICOM nodes and classify what happened (no Flask, no database).

``echo`` checks one node in the calling thread; ``echo_many`` runs many checks at once in one
loop thread and yields results as they finish. Both run on ``echo_loop``'s deadline-driven
selector loop, so no peer can stretch a check past its timeout; ``echo_pdu`` holds the wire
format, the limits on what a peer may send and the outcomes (re-exported here).
"""

from __future__ import annotations

import functools
import os
import queue
import ssl
import threading
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from core.config import ae_title_problem
from inventory.verification.echo_loop import Loop, Spec
from inventory.verification.echo_pdu import (
    REJECT_REASONS,
    REJECT_RESULTS,
    REJECT_SOURCES,
    EchoResult,
    Outcome,
)
from inventory.verification.netpolicy import IPNetwork, Resolver

__all__ = ["REJECT_REASONS", "REJECT_RESULTS", "REJECT_SOURCES", "EchoResult", "Outcome", "Target",
           "TargetLike", "echo", "echo_many", "tls_context", "validate_target"]


class TargetLike(Protocol):
    """What ``echo_many`` needs of a target; client certificate fields are optional attributes."""

    @property
    def host(self) -> str:
        """Host name or IP address."""

    @property
    def port(self) -> int:
        """TCP port."""

    @property
    def ae_title(self) -> str:
        """Called AE title."""

    @property
    def tls(self) -> bool:
        """Whether the node speaks DICOM over TLS."""


@dataclass(frozen=True)
class Target:
    """One node for ``echo_many``: address, called AE title and TLS settings."""

    host: str
    port: int
    ae_title: str
    tls: bool = False
    client_cert: str | None = None
    client_key: str | None = None
    ca_file: str | None = None


T = TypeVar("T", bound=TargetLike)


def validate_target(host: str, port: int, called_ae: str, calling_ae: str, timeout: float) -> None:
    """Raise ValueError naming the bad argument when an echo target cannot be valid."""
    if not isinstance(host, str) or not host.strip() or any(c.isspace() for c in host.strip()):
        raise ValueError(f"host must be a hostname or IP address without spaces, not {host!r}")
    if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
        raise ValueError(f"port must be a whole number from 1 to 65535, not {port!r}")
    for name, value in (("called AE title", called_ae), ("calling AE title", calling_ae)):
        problem = ae_title_problem(value) if isinstance(value, str) else "it must be text"
        if problem:
            raise ValueError(f"{name} {value!r} is invalid: {problem}")
    if not timeout > 0:
        raise ValueError(f"timeout must be a positive number of seconds, not {timeout!r}")


# ---------------------------------------------------------------- TLS contexts


@functools.cache
def _system_trust() -> ssl.SSLContext:
    """Client TLS context trusting the system CAs (or SSL_CERT_FILE/SSL_CERT_DIR), built once."""
    return ssl.create_default_context()


def _no_password() -> bytes:
    """Refuse an encrypted key instead of prompting on the terminal."""
    raise ValueError("the key is encrypted; give an unencrypted key file")


@functools.lru_cache(maxsize=64)
def _loaded_context(ca_file: str | None, client_cert: str | None, client_key: str | None,
                    _stamps: tuple[float, ...]) -> ssl.SSLContext:
    """A client context trusting ``ca_file`` (or the system) and presenting the certificate."""
    try:
        context = ssl.create_default_context(cafile=ca_file)
    except ssl.SSLError as exc:
        raise ValueError(f"ca_file {ca_file!r} holds no usable CA certificate "
                         f"({exc.reason or exc})") from None
    if client_cert:
        try:
            context.load_cert_chain(client_cert, client_key, password=_no_password)
        except ssl.SSLError as exc:
            raise ValueError(f"client_cert {client_cert!r} and client_key {client_key!r} are not a "
                             f"certificate and its private key ({exc.reason or exc})") from None
        except ValueError as exc:
            raise ValueError(f"client_key {client_key or client_cert!r}: {exc}") from None
    return context


def tls_context(ssl_context: ssl.SSLContext | None = None, *, ca_file: str | None = None,
                client_cert: str | None = None, client_key: str | None = None) -> ssl.SSLContext:
    """The client TLS context for a check; ValueError naming the file that cannot be used.

    A context built from files is cached and rebuilt when one of them changes.
    """
    if ssl_context is not None:
        if ca_file or client_cert or client_key:
            raise ValueError("ssl_context already says whom to trust and which certificate to "
                             "present: do not also give ca_file, client_cert or client_key")
        return ssl_context
    if client_key and not client_cert:
        raise ValueError("client_key needs the client_cert it belongs to")
    if not (ca_file or client_cert):
        return _system_trust()
    stamps = []
    for name, path in (("ca_file", ca_file), ("client_cert", client_cert), ("client_key", client_key)):
        if path:
            try:
                stamps.append(os.stat(path).st_mtime)
            except OSError as exc:
                raise ValueError(f"{name} {path!r} cannot be read: {exc.strerror}") from None
    return _loaded_context(ca_file, client_cert, client_key, tuple(stamps))



def _make_spec(host: str, port: int, called_ae: str, calling_ae: str, timeout: float, tls: bool,
               ssl_context: ssl.SSLContext | None, client_cert: str | None,
               client_key: str | None, ca_file: str | None,
               allowed: Sequence[IPNetwork] | None, resolver: Resolver | None) -> Spec:
    """Validate a check's arguments (ValueError naming the bad one) into a spec."""
    validate_target(host, port, called_ae, calling_ae, timeout)
    context = tls_context(ssl_context, ca_file=ca_file, client_cert=client_cert,
                          client_key=client_key) if tls else None
    return Spec(host.strip(), port, called_ae.strip(), calling_ae.strip(), float(timeout), context,
                 None if ssl_context is not None else bool(client_cert),
                 None if allowed is None else tuple(allowed), resolver)



# ---------------------------------------------------------------- public API


def echo(host: str, port: int, called_ae: str, calling_ae: str, timeout: float,
         tls: bool = False, ssl_context: ssl.SSLContext | None = None, *,
         client_cert: str | None = None, client_key: str | None = None, ca_file: str | None = None,
         allowed_networks: Sequence[IPNetwork] | None = None,
         resolver: Resolver | None = None) -> EchoResult:
    """C-ECHO ``called_ae`` at ``host:port`` within ``timeout`` seconds and classify the outcome.

    With ``tls``, the node's certificate is verified for ``host`` against ``ssl_context`` (or
    ``ca_file``, or the system's CAs) and ``client_cert``/``client_key`` (PEM files) are
    presented when given. With ``allowed_networks``, a destination outside them (see
    ``netpolicy``) is ``not_allowed`` and no socket is opened. ValueError names a bad argument.
    """
    spec = _make_spec(host, port, called_ae, calling_ae, timeout, tls, ssl_context, client_cert,
                      client_key, ca_file, allowed_networks, resolver)
    results: list[EchoResult] = []
    Loop(lambda _key, result: results.append(result)).run(iter([(spec, None)]), 1)
    return results[0]


_DONE = object()


def echo_many(targets: Iterable[T], calling_ae: str, timeout: float, concurrency: int, *,
              ssl_context: ssl.SSLContext | None = None,
              allowed_networks: Sequence[IPNetwork] | None = None,
              resolver: Resolver | None = None) -> Iterator[tuple[T, EchoResult]]:
    """Echo ``targets``, at most ``concurrency`` at once, yielding (target, result) as each ends.

    Each target gives ``host``, ``port``, ``ae_title`` (called) and ``tls``, and may give
    ``client_cert``, ``client_key`` and ``ca_file``. The checks run in one loop thread, so a
    slow consumer never delays them. A target that cannot be checked (bad port, unreadable
    certificate) yields an ``echo_failed`` result naming why; a bad ``calling_ae``, ``timeout``
    or ``concurrency`` raises ValueError at once.
    """
    problem = ae_title_problem(calling_ae) if isinstance(calling_ae, str) else "it must be text"
    if problem:
        raise ValueError(f"calling AE title {calling_ae!r} is invalid: {problem}")
    if not timeout > 0:
        raise ValueError(f"timeout must be a positive number of seconds, not {timeout!r}")
    if isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1:
        raise ValueError(f"concurrency must be a whole number of at least 1, not {concurrency!r}")
    items = list(targets)
    if not items:
        return
    results: queue.SimpleQueue[Any] = queue.SimpleQueue()

    def specs() -> Iterator[tuple[Spec, T]]:
        for target in items:
            try:
                yield _make_spec(target.host, target.port, target.ae_title, calling_ae, timeout,
                                 bool(target.tls), ssl_context, getattr(target, "client_cert", None),
                                 getattr(target, "client_key", None), getattr(target, "ca_file", None),
                                 allowed_networks, resolver), target
            except ValueError as exc:
                results.put((target, EchoResult(Outcome.ECHO_FAILED, f"Cannot check this node: {exc}",
                                                0.0)))

    loop = Loop(lambda target, result: results.put((target, result)))

    def run() -> None:
        try:
            loop.run(specs(), concurrency)
        except BaseException as exc:  # handed to the consumer, which raises it
            results.put(exc)
        finally:
            results.put(_DONE)

    worker = threading.Thread(target=run, name="echo-loop", daemon=True)
    worker.start()
    try:
        while (item := results.get()) is not _DONE:
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        loop.stop()
        worker.join()
